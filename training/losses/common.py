"""What every loss term shares: the per-step schedule values and how images reach D.

Blur and the one-pass discriminator (SPEC §4.7, §6.5, §12.3)
------------------------------------------------------------
The reference blurs `img['image']` IN PLACE inside its D wrapper and calls D twice on the
same dict (first for the pose label ĉ, then for the score), so during the blur window the
scored image is blurred twice (effective sigma·√2) while the pose head sees it blurred once.
Our DualDiscriminator is one-pass (project decision), so the choice is explicit:

- `blur_mode='single'` (default): one D pass on B(x); the score and the pose label both see
  the image blurred once. Same cost as EG3D; differs from the reference only while sigma > 0
  (the first `blur_fade_kimg` kimg). The score equals that of the reference's two passes
  (D.pose_only, then D.score_given on the detached label); tests/reference/losses.py keeps
  them for the equivalence test.
- `blur_mode='reference'`: reproduces the quirk. ĉ = sg(D.pose_only(B x)) and
  s = D.score_given(B(B x), ĉ): two trunk passes per scored image while blurring, one pass
  (= 'single') once floor(3 sigma) = 0.

`image_raw` is never blurred here: fakes' raw images are not blurred at all, reals' raw
images are blurred once when the real pair is built (`real_pair`, SPEC §6.3.5, §6.5). Pose
losses always see one blur (SPEC §6.5).

Augmentation (unused by every shipped script, SPEC §7) is applied once, after the first
blur, to the image and the bilinearly upsampled raw image jointly; the reference would
augment again on its second D call, which we do not reproduce.

Shapes: image [N, 3, H, H], image_raw [N, 3, R, R], score [N, 1], pose [N, 2].
"""

import dataclasses
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from torch_utils import training_stats
from training.generator_output import GeneratorOutput
from training.rendering.options import RenderSchedule
from training.blur import blur_kernel, gaussian_blur

ImagePair = Dict[str, torch.Tensor]  # D's input as EG3D's D takes it: {'image': [N,3,H,H], 'image_raw': [N,3,R,R]}

BLUR_MODES = ('single', 'reference')


@dataclasses.dataclass(frozen=True)
class Step:
    """Schedule values for one call of `accumulate_gradients`, all pure functions of cur_nimg."""
    blur_sigma: float                     # std of the D-input blur (SPEC §4.7), 0 = off
    resolution: int                       # neural rendering resolution R (SPEC §4.7)
    swapping_prob: Optional[float] = None  # EG3D generator pose conditioning (SPEC §6.1)
    pose_gd_on: bool = True               # L3 on: cur_nimg is past pose_gd_start_kimg (extension)
    pose_hold: bool = False               # G's camera held: renders at the detached camera (extension)
    render: Optional[RenderSchedule] = None  # the renderer's schedule values (schedules.render_schedule)
    topk_frac: float = 1.0                # share of the most-real fake scores in G's loss (pi-GAN top-k)


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear, align_corners False, NO antialias (PoF3D, SPEC §12.4)."""
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    return F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False, antialias=False)


def image_from_raw(G) -> bool:
    """True for a generator without super-resolution: its image is its raw render resized to H
    (`real_pair`'s image_from_raw)."""
    return getattr(G, 'superresolution', None) is None


def real_pair(real_img: torch.Tensor, resolution: int, blur_sigma: float, image_from_raw: bool = False) -> ImagePair:
    """Reals [N, 3, H, H] in [-1, 1] -> {'image': x, 'image_raw': B(resize(x, R))} (SPEC §6.3.5).
    image_from_raw (a generator without super-resolution, whose image is its raw render resized
    to H): 'image' is resize(resize(x, R), H) too, so that D sees reals at the fakes' R."""
    small = _resize(real_img, resolution)
    image = _resize(small, real_img.shape[-1]) if image_from_raw else real_img
    return {'image': image, 'image_raw': gaussian_blur(small, blur_sigma)}


def fake_pair(out: GeneratorOutput) -> ImagePair:
    """D's input pair from a generator output (no copy)."""
    return {'image': out.image, 'image_raw': out.image_raw}


def report_scores(kind: str, score: torch.Tensor) -> None:
    """Loss/scores/{kind} and Loss/signs/{kind} (SPEC §7)."""
    training_stats.report(f'Loss/scores/{kind}', score)
    training_stats.report(f'Loss/signs/{kind}', score.sign())


def cond_kwargs(cond_grad: bool) -> dict:
    """D's (or DInput's) keyword for --pose_cond_grad, empty when off: the paper's call, which every D
    (label-conditioned ones, the reference passes of tests/reference) takes."""
    return {'cond_grad': True} if cond_grad else {}


class DInput:
    """Feeds an image pair to D: blur, optional augmentation, and the blur mode above."""

    def __init__(self, blur_mode: str = 'single', augment_pipe=None):
        if blur_mode not in BLUR_MODES:
            raise ValueError(f'blur_mode must be one of {BLUR_MODES}, got {blur_mode!r}')
        self.blur_mode = blur_mode
        self.augment_pipe = augment_pipe

    def _augment(self, img: ImagePair) -> ImagePair:
        image, raw = img['image'], img['image_raw']
        both = torch.cat([image, _resize(raw, image.shape[-1])], dim=1)   # [N, 6, H, H]
        both = self.augment_pipe(both)
        c = image.shape[1]
        return {'image': both[:, :c], 'image_raw': _resize(both[:, c:], raw.shape[-1])}

    def prepare(self, img: ImagePair, blur_sigma: float) -> ImagePair:
        """Blur `image` once (out of place), then augment. The caller's dict is untouched."""
        out = {'image': gaussian_blur(img['image'], blur_sigma), 'image_raw': img['image_raw']}
        return self._augment(out) if self.augment_pipe is not None else out

    def pose(self, D, img: ImagePair, blur_sigma: float) -> torch.Tensor:
        """D_pose(B x) [N, 2], with its graph (SPEC §6.1 L3, §6.3 L4)."""
        return D.pose_only(self.prepare(img, blur_sigma))

    def score(self, D, img: ImagePair, blur_sigma: float, c: Optional[torch.Tensor] = None,
              update_emas: bool = False, cond_grad: bool = False) -> Tuple[torch.Tensor, ImagePair]:
        """Score [N, 1] and the pair D's score actually consumed (R1 differentiates w.r.t. it).

        c: the label for a D conditioned on labels (EG3D); None for a self-conditioned or
        unconditional D. cond_grad: a self-conditioned D's label ĉ keeps its graph (G phases
        with --pose_cond_grad, `DualDiscriminator.forward`).
        """
        x = self.prepare(img, blur_sigma)
        if self.blur_mode == 'single' or blur_kernel(blur_sigma) is None:
            return D(x, c, update_emas=update_emas, **cond_kwargs(cond_grad))['score'], x
        if c is not None:
            raise ValueError("blur_mode='reference' is for a self-conditioned D (its own pose is the label)")
        label = D.pose_only(x)                                           # ĉ from B x
        label = label if cond_grad else label.detach()
        x2 = {'image': gaussian_blur(x['image'], blur_sigma), 'image_raw': x['image_raw']}
        return D.score_given(x2, label), x2                               # s from B(B x)

    def score_and_pose(self, D, img: ImagePair, blur_sigma: float, update_emas: bool = False,
                       cond_grad: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
        """(score [N, 1], pose [N, 2] with its graph) of a self-conditioned D from ONE trunk pass
        on B x: the score conditioned on sg(pose) (SPEC §6 notation: s(x) and D_pose(B x)), or on
        pose with its graph with cond_grad. Single blur mode only (the reference mode scores
        B(B x), another input than the pose's)."""
        if self.blur_mode != 'single' and blur_kernel(blur_sigma) is not None:
            raise ValueError("score_and_pose needs blur_mode 'single' (or no blur)")
        out = D(self.prepare(img, blur_sigma), None, update_emas=update_emas, **cond_kwargs(cond_grad))
        return out['score'], out['pose']


# ---------------------------------------------------------------------------------------------
# Phase driver helpers (EG3D's accumulate_gradients interface, SPEC §7 "Phases").

PHASES = ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth')


def effective_phase(phase: str, g_reg: bool, d_reg: bool) -> str:
    """EG3D's phase remap: without a G regularizer 'Greg' does nothing and 'Gboth' is 'Gmain';
    likewise for D without R1 (gamma 0)."""
    if phase not in PHASES:
        raise ValueError(f'phase must be one of {PHASES}, got {phase!r}')
    if not g_reg:
        phase = {'Greg': 'none', 'Gboth': 'Gmain'}.get(phase, phase)
    if not d_reg:
        phase = {'Dreg': 'none', 'Dboth': 'Dmain'}.get(phase, phase)
    return phase


def backward(loss: Optional[torch.Tensor], gain: float) -> Optional[torch.Tensor]:
    """(loss * gain).backward() for one term (each term separately, SPEC §6); returns the
    detached loss. Skips switched-off terms (None) and constants (e.g. R1 of a D that ignores
    its input)."""
    if loss is None:
        return None
    if loss.requires_grad:
        (loss * gain).backward()
    return loss.detach()


def check_unsupported(style_mixing_prob: float, pl_weight: float) -> None:
    """Style mixing and path-length regularization are off in every PoF3D/EG3D config (SPEC §7)."""
    if style_mixing_prob or pl_weight:
        raise ValueError('style_mixing_prob and pl_weight are not implemented (both 0 in every config, SPEC §7)')
