"""How the loss terms render fakes: small strategies injected into the adversarial terms.

A fake source is called as `fakes(G, z, c, step, update_emas) -> (out, d_label)`:
out is the generator's output dict (docs/model_api.md), d_label the label a
label-conditioned D scores it with (None for PoF3D's self-conditioned D).

- `PoF3DFakes`: G(z) with the learned pose, or G_F(z), the same z rendered from the mirrored
  camera F(M(z)) (SPEC §3.4, §6.1 L2, §6.3 L6).
- `EG3DFakes`: EG3D's run_G for the `dataset` / `prior` / `prior_residual` pose sources, with
  generator pose conditioning swaps (SPEC §6.1, §4.9).

Mirror draw (deviation, documented): the reference draws its yaw/pitch coin from Python's
global, never-seeded `random` (SPEC §3.4, §12.7). `MirrorCamera` owns a `random.Random`
seeded from the training seed (pass seed * num_gpus + rank for per-GPU draws as in the
reference), and its state travels with `state_dict()`, so a resumed run draws the same coins.
The distribution (one fair coin per minibatch per call) is unchanged.
"""

import random
from typing import Optional, Tuple

import torch

from training.cameras import FLIP_TYPES, Camera, flip_camera
from training.generator_output import GeneratorOutput
from training.losses.common import Step


class MirrorCamera:
    """cam2world [N, 4, 4] -> the mirrored cameras, one coin per call (SPEC §3.4)."""

    def __init__(self, flip_type: str = 'flip_both', seed: int = 0):
        if flip_type not in FLIP_TYPES:
            raise ValueError(f'flip_type must be one of {FLIP_TYPES}, got {flip_type!r}')
        self.flip_type = flip_type
        self.rng = random.Random(seed)

    def __call__(self, cam2world: torch.Tensor) -> torch.Tensor:
        coin = self.rng.random() < 0.5   # True: yaw mirror (x, or z for ShapeNet); False: pitch mirror
        return flip_camera(cam2world, self.flip_type, coin)

    def state_dict(self) -> dict:
        return {'rng': self.rng.getstate()}

    def load_state_dict(self, state: dict) -> None:
        self.rng.setstate(state['rng'])


class PoF3DFakes:
    """G(z) (mirror None) or G_F(z) (SPEC §6.1 L1/L2, §6.3 L5/L6); d_label is always None.

    The mirrored camera is F(M(z)) with M(z) from `G.pose(z, c)` (the mapping is deterministic,
    so it is the camera G(z) renders); the pose gradient flows through the mirrored matrix
    unless `detach_pose` (SPEC §6.1.2). While `step.pose_hold` (extension, --pose_hold_kimg) both
    renders use the detached camera: the adversarial terms do not move the pose learner.
    """

    def __init__(self, mirror: Optional[MirrorCamera] = None, detach_pose: bool = False):
        self.mirror = mirror
        self.detach_pose = detach_pose

    def __call__(self, G, z: torch.Tensor, c: torch.Tensor, step: Step,
                 update_emas: bool = False) -> Tuple[GeneratorOutput, None]:
        if self.mirror is None and not step.pose_hold:
            return G(z, c, neural_rendering_resolution=step.resolution,
                     render_schedule=step.render, update_emas=update_emas), None
        cam2world = G.pose(z, c).cam2world                       # [N, 4, 4]
        if self.detach_pose or step.pose_hold:
            cam2world = cam2world.detach()
        if self.mirror is None:
            return G(z, c, neural_rendering_resolution=step.resolution, render_schedule=step.render,
                     update_emas=update_emas, cam2world=cam2world), None
        out = G(z, c, neural_rendering_resolution=step.resolution, render_schedule=step.render,
                update_emas=update_emas, cam2world=self.mirror(cam2world))
        return out, None


def mapping_condition(c: torch.Tensor, swapping_prob: Optional[float],
                      generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """EG3D's label for the mapping network [N, 25] (SPEC §6.1 swapping):
    zeros without generator pose conditioning (swapping_prob None); otherwise each sample's
    own c, replaced with probability swapping_prob by its neighbour's (c rolled by one).
    generator: a CPU torch.Generator for the draws (None = the global RNG)."""
    if swapping_prob is None:
        return torch.zeros_like(c)
    swapped = torch.roll(c, 1, 0)
    pick = (torch.rand([c.shape[0], 1], generator=generator) < swapping_prob).to(c.device)
    return torch.where(pick, swapped, c)


class EG3DFakes:
    """EG3D run_G: ws = G.mapping(z, mapping_condition(c)), camera from the pose source
    (`dataset`: c[:, :16]; `prior*`: a sampled pose), G.synthesis(ws, c, cam2world).

    d_conditional: D is conditioned on labels (c_dim 25); d_label is then the label of the
    camera actually rendered, [cam2world (16), K (9)] (= c for the `dataset` source).
    seed: seeds the swap draws (a CPU torch.Generator owned here, saved by `state_dict`).
    """

    def __init__(self, d_conditional: bool, seed: int = 0):
        self.d_conditional = d_conditional
        self.generator = torch.Generator().manual_seed(seed)

    def mapping_condition(self, c: torch.Tensor, step: Step) -> torch.Tensor:
        return mapping_condition(c, step.swapping_prob, self.generator)

    def __call__(self, G, z: torch.Tensor, c: torch.Tensor, step: Step,
                 update_emas: bool = False) -> Tuple[GeneratorOutput, Optional[torch.Tensor]]:
        ws = G.mapping(z, self.mapping_condition(c, step), update_emas=update_emas)
        pose = G.pose(z, c)
        out = G.synthesis(ws, c, cam2world=pose.cam2world, neural_rendering_resolution=step.resolution,
                          render_schedule=step.render,
                          update_emas=update_emas)
        out = out.replace(pose=pose.pose, clamped_frac=pose.clamped_frac)
        label = None
        if self.d_conditional:
            label = Camera(out.cam2world, Camera.from_label(c).intrinsics).to_label()
        return out, label

    def state_dict(self) -> dict:
        return {'generator': self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state['generator'])
