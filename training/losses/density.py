"""Density regularizer of EG3D (SPEC §6.2), run in the lazy `Greg` phase.

    L_dens = λ_dens · mean |σ_raw(p) − σ_raw(p + ε)|,  p ~ U[−1, 1]³ (1000 points per sample,
    not scaled by box_warp), ε ~ N(0, p_dist²) per coordinate,

with σ_raw the decoder's density before softplus (`G.sample_mixed`). Ray directions are
random normals, as EG3D passes them (the OSG decoder ignores them).
"""

from typing import Optional

import torch
import torch.nn.functional as F

from torch_utils import training_stats

REG_TYPES = ('l1',)  # the reference's unused 'monotonic-*', 'l1-alt', 'total-variation' are not implemented


class DensityRegularizer:
    """L_dens for G (SPEC §6.2). weight = density_reg (0.25), p_dist = density_reg_p_dist (0.004)."""

    def __init__(self, weight: float = 0.25, p_dist: float = 0.004, num_points: int = 1000, reg_type: str = 'l1'):
        if reg_type not in REG_TYPES:
            raise ValueError(f'reg_type must be one of {REG_TYPES}, got {reg_type!r}')
        self.weight, self.p_dist, self.num_points = weight, p_dist, num_points

    def __call__(self, G, z: torch.Tensor, c_map: torch.Tensor) -> Optional[torch.Tensor]:
        """z [N, z_dim], c_map [N, c_dim] the mapping's label -> scalar (None when weight is 0)."""
        if not self.weight:
            return None
        ws = G.mapping(z, c_map, update_emas=False)                              # [N, num_ws, w_dim]
        p = torch.rand([z.shape[0], self.num_points, 3], device=z.device) * 2 - 1  # [N, M, 3]
        p_perturbed = p + torch.randn_like(p) * self.p_dist
        points = torch.cat([p, p_perturbed], dim=1)                              # [N, 2M, 3]
        sigma = G.sample_mixed(points, torch.randn_like(points), ws, update_emas=False)['sigma']  # [N, 2M, 1]
        m = self.num_points
        loss = F.l1_loss(sigma[:, :m], sigma[:, m:]) * self.weight
        training_stats.report('Loss/G/reg', loss)
        return loss
