"""The shading stage, after compositing (SEEDS_SPEC §4.3, §6.1 item 4, §6.4): 'none' | 'lambertian'.

ShadeGAN shades per pixel, after the composite (deferred shading, §4.3):
  A = clamp(sum w c, 0, 1)           the composited albedo
  N = normalize(sum w n)             n = -d sigma / d x_hat per sample (normals.py), eps 1e-7
  s = k_a + k_d clamp(N . L, 0, 1)   k_a = a/2 + 1/2, k_d = d/2 + 1/2, L = normalize(l_x, l_y, 1)
  s' = r s + (1 - r)                 the ramp r in [0, 1] (training/schedules.py shading_ratio)
  image = clamp(A s' + b, 0, 1) 2 - 1
b is the unshaded white background 1 - sum w with white_back (0 otherwise): the synthetic data
shade the object only (training/synthetic/render.py), ShadeGAN has no white background. The
light terms are `light_terms` below, which training/synthetic/lights.py uses too, so the model and the synthetic ground
truth share one Lambertian law and one frame: L is a world direction (x right, y up, +z towards
the frontal camera, SEEDS_SPEC §4.3 and §6.0 "Pose": the frontal camera sits at +z in both).
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F


SHADINGS = ('none', 'lambertian')
NORMAL_EPS = 1e-7   # ShadeGAN's normalize eps (SEEDS_SPEC §4.3)


class Shaded(NamedTuple):
    """What `lambertian` returns; images are [N, M, C] per ray (the generator reshapes them)."""
    rgb: torch.Tensor        # [N, M, 3] shaded colour in [-1, 1]
    albedo: torch.Tensor     # [N, M, 3] A in [0, 1]
    normal: torch.Tensor     # [N, M, 3] unit world normal N (0 where sum w n = 0)
    shading: torch.Tensor    # [N, M, 1] s' (after the ramp)



def light_terms(light: torch.Tensor):
    """light [K, 4] (a, d, l_x, l_y) -> (k_a [K, 1], k_d [K, 1], L [K, 3] unit world direction)
    (SEEDS_SPEC §4.3: k_a = a/2 + 1/2, k_d = d/2 + 1/2, L = normalize(l_x, l_y, 1))."""
    k_a = light[:, 0:1] / 2 + 0.5
    k_d = light[:, 1:2] / 2 + 0.5
    L = F.normalize(torch.cat([light[:, 2:4], torch.ones_like(light[:, :1])], dim=1), dim=1)
    return k_a, k_d, L

def shading_factor(normal: torch.Tensor, light: torch.Tensor, ratio: float) -> torch.Tensor:
    """s' = r (k_a + k_d clamp(N . L, 0, 1)) + 1 - r: normal [N, M, 3] unit, light [N, 4] ->
    [N, M, 1]. NaN in s (a NaN normal) reads as 1, as ShadeGAN."""
    k_a, k_d, L = light_terms(light.reshape(-1, 4).to(normal.dtype))         # [N, 1], [N, 1], [N, 3]
    cos = (normal * L.unsqueeze(1)).sum(-1, keepdim=True).clamp(0, 1)
    s = torch.nan_to_num(k_a.unsqueeze(1) + k_d.unsqueeze(1) * cos, nan=1.0)
    return s * ratio + (1 - ratio)


def lambertian(albedo_sum: torch.Tensor, normal_sum: torch.Tensor, weight_sum: torch.Tensor, light: torch.Tensor,
               ratio: float = 1.0, white_back: bool = False) -> Shaded:
    """The module docstring's image from the raw composites: albedo_sum = sum w c [N, M, 3],
    normal_sum = sum w n [N, M, 3], weight_sum = sum w [N, M, 1], light [N, 4], ratio r."""
    albedo = albedo_sum.clamp(0, 1)
    normal = F.normalize(normal_sum, dim=-1, eps=NORMAL_EPS)
    factor = shading_factor(normal, light, ratio)
    background = 1 - weight_sum if white_back else 0.0
    rgb = (albedo * factor + background).clamp(0, 1) * 2 - 1
    return Shaded(rgb, albedo, normal, factor)
