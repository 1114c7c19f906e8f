"""Alpha compositing along rays, EG3D's `MipRayMarcher2` (SPEC §4.5).

Shapes: N batch, M rays, S samples per ray (sorted by depth), C feature channels.
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F


class MarchResult(NamedTuple):
    """Output of `march_rays` (unpacks like the reference's 4-tuple)."""
    features: torch.Tensor               # [N, M, C]  composite features, mapped to 2*f - 1
    depth: torch.Tensor                  # [N, M, 1]  expected ray distance of the midpoints
    weights: torch.Tensor                # [N, M, S-1, 1]  w_i = alpha_i * T_i per interval
    final_transmittance: torch.Tensor    # [N, M, 1]  T after the last interval ("bg_lambda")


def march_rays(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor,
               white_back: bool = False, clamp_mode: str = 'softplus') -> MarchResult:
    """Composite S samples per ray into one feature vector and one depth.

    colors [N, M, S, C], densities [N, M, S, 1] (raw decoder sigma), depths [N, M, S, 1]
    (ray distance t, sorted along S). Quantities live on the S-1 intervals between samples:
    delta_i = t_{i+1} - t_i, and colour / raw sigma / t are averaged at the interval midpoint.
      sigma_i = softplus(sigma_mid_i - 1)          (the -1 bias helps initialization)
      alpha_i = 1 - exp(-sigma_i * delta_i)
      T_i     = prod_{j<i} (1 - alpha_j + 1e-10),  T_0 = 1
      w_i     = alpha_i * T_i
    Depth = sum w t_mid / sum w, NaN -> +inf, clamped to [min t, max t] of the whole batch.
    white_back adds 1 - sum w to every channel; the features are finally mapped by 2f - 1.
    """
    if clamp_mode != 'softplus':
        raise ValueError(f"clamp_mode={clamp_mode!r} is not supported; the ray marcher implements "
                         "only 'softplus' (SPEC §4.5)")
    deltas = depths[:, :, 1:] - depths[:, :, :-1]                        # [N, M, S-1, 1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2

    sigma = F.softplus(densities_mid - 1)
    alpha = 1 - torch.exp(-sigma * deltas)
    # Transmittance factors; the 1e-10 keeps T > 0 behind fully opaque intervals (EG3D).
    survive = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2)
    transmittance = torch.cumprod(survive, dim=-2)                       # [N, M, S, 1]
    weights = alpha * transmittance[:, :, :-1]
    final_transmittance = transmittance[:, :, -1]

    features = torch.sum(weights * colors_mid, dim=-2)                   # [N, M, C]
    weight_total = weights.sum(dim=-2)                                   # [N, M, 1]
    depth = torch.sum(weights * depths_mid, dim=-2) / weight_total
    # Empty rays give 0/0: send them to the far end, then clip to the sampled range.
    depth = torch.nan_to_num(depth, nan=float('inf'))
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    if white_back:
        features = features + 1 - weight_total
    features = features * 2 - 1
    return MarchResult(features, depth, weights, final_transmittance)


class MipRayMarcher2(torch.nn.Module):
    """EG3D-compatible module wrapper around `march_rays` (holds no parameters)."""

    def forward(self, colors, densities, depths, rendering_options):
        """Same tensors as `march_rays`; reads 'clamp_mode' and 'white_back' from the options.

        Returns (features [N, M, C], depth [N, M, 1], weights [N, M, S-1, 1],
        final_transmittance [N, M, 1]), the PoF3D 4-tuple.
        """
        return march_rays(colors, densities, depths,
                          white_back=bool(rendering_options.get('white_back', False)),
                          clamp_mode=rendering_options.get('clamp_mode', 'softplus'))
