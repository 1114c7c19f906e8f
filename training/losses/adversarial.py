"""Non-saturating adversarial terms (SPEC §6.1 L1/L2, §6.3 L5/L6/L7).

Each term is an object with one `__call__` that runs its own forward passes and returns a
scalar loss already multiplied by its weight, or None when its weight is 0 (switched off: no
forward pass, no gradient). sp = softplus; s = D's score.

    GeneratorAdversarial  L1 = mean sp(-s(G z)),  L2 = mean sp(-s(G_F z))      (G phase)
    DiscriminatorFake     L5 = w_f mean sp(s(G z)), L6 = w_f mean sp(s(G_F z))  (D phase)
    DiscriminatorReal     L7 = mean sp(-s(x))                                    (D phase)

Which fakes (plain or mirrored, PoF3D or EG3D) is the injected `fakes` strategy
(`training/losses/fakes.py`); how images reach D (blur, blur mode) is the `DInput`.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F

from torch_utils import training_stats
from training.generator_output import GeneratorOutput
from training.losses.common import DInput, ImagePair, Step, cond_kwargs, fake_pair, report_scores


def report_pose_stats(out: GeneratorOutput) -> None:
    """Pose/{h,v}_{mean,std} and Pose/clamped_frac of the generator pose (SPEC §12.9)."""
    if out.pose is not None:
        pose = out.pose.detach()
        for i, name in enumerate(('h', 'v')):
            x = pose[:, i]
            training_stats.report(f'Pose/{name}_mean', x.mean())
            training_stats.report(f'Pose/{name}_std', x.std() if x.numel() > 1 else torch.zeros_like(x[0]))
    if out.clamped_frac is not None:
        training_stats.report('Pose/clamped_frac', out.clamped_frac)


class _FakeTerm:
    """Shared constructor of the fake-image terms: where D's input comes from (d_input), how
    fakes are rendered (fakes: plain or mirrored), the weight, and 'fake' | 'fake_flip'."""

    def __init__(self, d_input: DInput, fakes, weight: float = 1.0, kind: str = 'fake'):
        if kind not in ('fake', 'fake_flip'):
            raise ValueError(f"kind must be 'fake' or 'fake_flip', got {kind!r}")
        self.d_input, self.fakes, self.weight, self.kind = d_input, fakes, weight, kind


class GeneratorAdversarial(_FakeTerm):
    """weight * mean sp(-s(fake)) for G (SPEC §6.1 L1, L2 with a mirrored fake source).

    kind: 'fake' (L1, reports Loss/G/loss and the Pose/* stats) or 'fake_flip' (L2,
    Loss/G/loss_flip). The reference's L2 weight is always 1, not w_f (SPEC §12.6).

    cond_grad (extension, --pose_cond_grad; False = paper): G differentiates a self-conditioned
    D's score through D's pose label too, s(x) = f(x, D_pose(x)), not f(x, sg D_pose(x)). The
    part of D's score that says which *poses* are real lives in that label (a projection D's
    log p_data(c) / p_G(c)); with the label detached G's camera never sees it
    (docs/benchmark.md run 25).
    """

    def __init__(self, d_input: DInput, fakes, weight: float = 1.0, kind: str = 'fake', cond_grad: bool = False):
        super().__init__(d_input, fakes, weight, kind)
        self.cond_grad = bool(cond_grad)

    def __call__(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step) -> Optional[torch.Tensor]:
        """z [N, z_dim], c [N, 25] -> scalar (or None when weight is 0)."""
        if not self.weight:
            return None
        out, label = self.fakes(G, z, c, step)
        score, _ = self.d_input.score(D, fake_pair(out), step.blur_sigma, label, **cond_kwargs(self.cond_grad))
        return self._loss(out, score, step.topk_frac)

    def with_pose(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step):
        """(the same loss or None, D_pose(B G(z)) [N, 2] with its graph into G) from one render and
        one D pass: L3's target once detached, the image-level pose term's input as it is
        (PoF3DLoss's shared renders; self-conditioned D, single blur)."""
        out, _ = self.fakes(G, z, c, step)
        score, pose = self.d_input.score_and_pose(D, fake_pair(out), step.blur_sigma, **cond_kwargs(self.cond_grad))
        return (self._loss(out, score, step.topk_frac) if self.weight else None), pose

    def _loss(self, out: dict, score: torch.Tensor, topk_frac: float = 1.0) -> torch.Tensor:
        """topk_frac < 1: the mean over the ceil(topk_frac N) most-real scores only (pi-GAN's top-k,
        SEEDS_SPEC §1.7); the reported loss is every sample's."""
        loss = F.softplus(-score)                                  # [N, 1]
        report_scores(self.kind, score)
        training_stats.report('Loss/G/loss' if self.kind == 'fake' else 'Loss/G/loss_flip', loss)
        if self.kind == 'fake':
            report_pose_stats(out)
        if topk_frac < 1:
            k = max(1, math.ceil(topk_frac * score.numel()))
            loss = F.softplus(-score.flatten().topk(k).values)
        return loss.mean() * self.weight


class DiscriminatorFake(_FakeTerm):
    """weight * mean sp(s(fake)) for D (SPEC §6.3 L5; L6 with a mirrored fake source).

    The fakes are rendered without a graph (D phase: G gets no gradient) and with
    update_emas=True, as EG3D does. weight = w_f (flip_to_disd_weight when flip_to_disd, else 1).
    """

    def __call__(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step) -> Optional[torch.Tensor]:
        if not self.weight:
            return None
        with torch.no_grad():
            out, label = self.fakes(G, z, c, step, update_emas=True)
        score, _ = self.d_input.score(D, fake_pair(out), step.blur_sigma, label, update_emas=True)
        return self._loss(score)

    def with_pose(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step):
        """(the same loss or None, D_pose(B G(z)) [N, 2] with its graph, the fake's output dict)
        from one render and one D pass: L4's prediction (PoF3DLoss's shared renders)."""
        with torch.no_grad():
            out, _ = self.fakes(G, z, c, step, update_emas=True)
        score, pose = self.d_input.score_and_pose(D, fake_pair(out), step.blur_sigma, update_emas=True)
        return (self._loss(score) if self.weight else None), pose, out

    def _loss(self, score: torch.Tensor) -> torch.Tensor:
        loss = F.softplus(score)
        report_scores(self.kind, score)
        training_stats.report('Loss/D/loss_Dgen' if self.kind == 'fake' else 'Loss/D/loss_Dgen_flip', loss)
        return loss.mean() * self.weight


class DiscriminatorReal:
    """weight * mean sp(-s(x)) on reals (SPEC §6.3 L7). real: `common.real_pair(...)`;
    c: the label for a label-conditioned D (EG3D), None for PoF3D's self-conditioned D."""

    def __init__(self, d_input: DInput, weight: float = 1.0):
        self.d_input, self.weight = d_input, weight

    def __call__(self, D, real: ImagePair, c: Optional[torch.Tensor], step: Step) -> Optional[torch.Tensor]:
        if not self.weight:
            return None
        score, _ = self.d_input.score(D, {k: v.detach() for k, v in real.items()}, step.blur_sigma, c)
        loss = F.softplus(-score)
        report_scores('real', score)
        return loss.mean() * self.weight
