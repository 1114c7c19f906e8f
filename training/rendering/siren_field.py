"""pi-GAN's FiLM-SIREN as a field the renderer queries (SEEDS_SPEC §1.4, §6.1 item 1, §6.2).

The field binds one FiLM code per sample (gamma, beta [N, L + 1, H], from the generator's
`backbone.synthesis`) to the point network (training/film_siren.py: `SirenNetwork`), and maps
world points into the network's box: x * 2 / box_warp (pi-GAN's `UniformBoxWarp(0.24)` is
box_warp 0.24; the synthetic data's box is 1.0, SEEDS_SPEC §6.0 "Scale").

    query(points [N, K, 3], directions [N, K, 3] | None, channels) -> (rgb [N, K, 3] in [0, 1],
                                                                     sigma [N, K, 1] raw)

rgb is in [0, 1] like the OSG decoder's, so the compositing's 2f - 1 gives pi-GAN's image
2C - 1 (SEEDS_SPEC §1.5). No fused kernel runs for this field (`kernel_inputs` is None).
"""

import dataclasses
from typing import Optional

import torch

from training.rendering.normals import query_with_normals


@dataclasses.dataclass(frozen=True)
class SirenField:
    """FiLM code gamma, beta [N, L + 1, H] read by a point network
    `network(x [N, K, 3], directions [N, K, 3], gamma, beta[, light]) -> (rgb, sigma)`; light
    [N, 4] is bound only for a light-conditioned albedo head (ShadeGAN)."""
    gamma: torch.Tensor
    beta: torch.Tensor
    network: torch.nn.Module
    box_warp: float
    light: Optional[torch.Tensor] = None   # [N, 4] for a light-conditioned albedo head (SEEDS_SPEC §4.2)

    @property
    def batch_size(self) -> int:
        return self.gamma.shape[0]

    def query(self, points: torch.Tensor, directions: Optional[torch.Tensor] = None, channels: Optional[int] = None,
              need_normal: bool = False):
        """(rgb [N, K, 3], sigma [N, K, 1] raw) at world points [N, K, 3], and the normals [N, K, 3]
        when need_normal (training/rendering/normals.py; plain autograd differentiates the SIREN
        twice). directions None: zero vectors (sigma does not depend on them, only the colour
        does). channels is accepted for the field interface; the network's 3 channels are
        returned whatever it asks."""
        del channels
        if need_normal:
            return query_with_normals(self.query, points, directions)
        if directions is None:
            directions = torch.zeros_like(points)
        light = {} if self.light is None else dict(light=self.light)
        return self.network(points * (2 / self.box_warp), directions, self.gamma, self.beta, **light)

    def kernel_inputs(self):
        """None: the fused kernel implements the tri-plane decoder only (docs/architecture.md)."""
        return None
