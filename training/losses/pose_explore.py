"""The pose head's exploration term for D (issue 15, next lever after run 5; a project option, off by default).

    L_explore = λ_explore · MSE(D_pose(B G(z; cam(h_e, v_G(z)))), sg (h_e, v_G(z))),
    h_e ~ U[h_mean − R, h_mean + R]

Measured (docs/benchmark.md "Issue 15", run 5): D's pose head, trained by L4 on G's own cameras
only, learns the reals' pose order (correlation 0.89) but only within the narrow range of G's
cameras, so its estimates on reals are as narrow as G's cameras and the pose-distribution term
(`pose_dist.py`) asks G for no more spread. This term also trains the head on renders of the
same latents from yaws spread wider than G's: an exploration law for the head only. G's camera
law stays learned (no prior on G; G gets no gradient: the render is under no_grad, and this is a
Dmain term); only the yaw explores, v is G's own learned v for the same z.

h_mean is the pose learner's offset (the preset's rendering_kwargs['h_mean']). The draws come
from a CPU torch.Generator owned by the term, seeded from the loss seed (offset, so that they do
not replay the pose-distribution term's latents) and saved by `state_dict` for a bit-exact resume.
Weight 0: nothing is rendered and nothing is drawn.
"""

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from torch_utils import training_stats
from training.losses.common import DInput, Step, fake_pair
from training.pose_sources import pose_to_camera

SEED_OFFSET = 0x5EED   # the term's generator: seed + SEED_OFFSET (PoseDistribution's is seeded with seed)


class PoseHeadExplore:
    """L_explore for D (see the module doc). weight = λ_explore (0 = off), explore_range = R (rad)."""

    def __init__(self, d_input: DInput, weight: float = 0.0, explore_range: float = math.pi / 2, seed: int = 0):
        if explore_range < 0:
            raise ValueError(f'pose_explore_range must be >= 0, got {explore_range}')
        self.d_input, self.weight, self.explore_range = d_input, weight, float(explore_range)
        self.generator = torch.Generator().manual_seed(seed + SEED_OFFSET)

    @torch.no_grad()
    def cameras(self, G, z: torch.Tensor, c: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """z [N, z_dim], c [N, 25] -> (pose [N, 2] = (h_e, v_G(z)), cam2world [N, 4, 4]), no graph.
        The camera is built as the learned pose source builds its own (`pose_to_camera`)."""
        source = G.pose_source
        v = G.pose(z, c).pose[:, 1:2]                                                 # [N, 1] G's learned v
        u = torch.rand([z.shape[0], 1], generator=self.generator).to(v)               # [N, 1] in [0, 1)
        h = source.h_mean + (2 * u - 1) * self.explore_range                          # U[h_mean − R, h_mean + R]
        pose = torch.cat([h, v], dim=1)
        cam2world, _ = pose_to_camera(pose, source.radius, source.pivot, source.safe_pose_clamp)
        return pose, cam2world

    def __call__(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step) -> Optional[torch.Tensor]:
        """-> scalar with graph into D (trunk + pose head), or None when the weight is 0."""
        if not self.weight:
            return None
        pose, cam2world = self.cameras(G, z, c)
        with torch.no_grad():
            out = G(z, c, neural_rendering_resolution=step.resolution, render_schedule=step.render,
                    cam2world=cam2world)
        pred = self.d_input.pose(D, fake_pair(out), step.blur_sigma)                 # [N, 2]
        loss = F.mse_loss(pred, pose) * self.weight
        training_stats.report('Loss/D/loss_Dexplore', loss)
        return loss

    def state_dict(self) -> dict:
        return {'generator': self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state['generator'])
