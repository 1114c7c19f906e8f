"""GOF's geometry regularizers (SEEDS_SPEC §3.3, §6.3), each a small term switched off by weight 0.

    NormalConsistency  λ_n · MSE(n(x_s), n(x_s + h u)) over the rays where a surface was found:
                       x_s = o + t_s d at the secant surface depth t_s of the surface_window
                       sampler, u = (U[0, 1)³ − ½) normalized (a cube draw, not uniform on the
                       sphere, as GOF's), n = −∇σ̃/(|∇σ̃| + 1e-7) (training/rendering/normals.py)
    OpacityPrior       λ_o(step) · mean[log(0.1 + o) + log(1.1 − o) − log(0.11)], 0 at o ∈ {0, 1},
                       λ_o = min(10 λ₀, λ₀ exp(growth · step)) (`schedules.opacity_weight`)

The prior reads the **occupancy** o = sigmoid(σ̃) of every composited sample (the per-sample alpha
of the render; with alpha_rule 'occupancy' that is the occupancy), the fix of §3.5 q1. With
`legacy_red_channel` it reads what GOF's code reads: o = sigmoid(C_red), C_red the composited red
channel in [0, 1] (with the render's background), which nudges red upward (§3.5 q1).

Both read one render, `G.render_geometry` (training/generator.py): the render of the G step's
camera with the renderer's per-sample record (`RecordedRender.samples`) and surface depth
(`RecordedRender.surface_depth`), and the field for the normal queries. `GeometryRegularizers` makes
that render once per call when either term is on (an extra render per Gmain: GOF's code reads the
adversarial render itself; sharing it is left for later, docs/architecture.md).
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F

from torch_utils import training_stats
from training import schedules

PRIOR_OFFSET = -math.log(0.1 * 1.1)   # 2.20727: makes the prior 0 at o = 0 and o = 1 (§3.3)


def normal_consistency(n_surface: torch.Tensor, n_near: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """MSE between normals [N, M, 3] at the surface points and at their perturbed neighbours, over
    the rays where valid [N, M] (bool) (GOF: F.mse_loss of the masked normals, a mean over rays and
    the 3 components). 0 with a graph when no ray is valid."""
    if not valid.any():
        return (n_surface * 0).sum()
    return F.mse_loss(n_surface[valid], n_near[valid])


def opacity_prior(o: torch.Tensor) -> torch.Tensor:
    """mean[log(0.1 + o) + log(1.1 - o) + 2.20727] over o in [0, 1] (any shape; §3.3)."""
    return (torch.log(0.1 + o) + torch.log(1.1 - o) + PRIOR_OFFSET).mean()


def _unit_cube_directions(shape, device, generator=None) -> torch.Tensor:
    """u = (U[0, 1)^3 - 1/2) / |.|, [..., 3] (GOF's perturbation direction, §3.3)."""
    u = torch.rand(shape, device=device, generator=generator) - 0.5
    return F.normalize(u, dim=-1)


class NormalConsistency:
    """λ_n MSE(n(x_s), n(x_s + h u)) on the rays with a surface (module docstring). weight = λ_n,
    h = the perturbation length in world units (GOF 0.01 at box 0.24; ×7.5 on the synthetic data, §6.0)."""

    def __init__(self, weight: float = 0.0, h: float = 0.075):
        self.weight, self.h = float(weight), float(h)

    def __call__(self, geometry, generator: Optional[torch.Generator] = None) -> Optional[torch.Tensor]:
        """geometry: a GeometryRender (training/generator.py) -> scalar or None (weight 0)."""
        if not self.weight:
            return None
        depth = geometry.render.surface_depth                                 # [N, M, 1], NaN: no surface
        if depth is None:
            raise ValueError("NormalConsistency needs the surface depth of depth_sampler 'surface_window'")
        valid = torch.isfinite(depth[..., 0])                                 # [N, M]
        x_s = geometry.ray_origins + torch.nan_to_num(depth) * geometry.ray_directions   # [N, M, 3], no graph
        x_n = x_s + self.h * _unit_cube_directions(x_s.shape, x_s.device, generator)
        M = x_s.shape[1]
        normals = geometry.field.query(torch.cat([x_s, x_n], dim=1), None, 1, need_normal=True)[2]
        loss = normal_consistency(normals[:, :M], normals[:, M:], valid)
        training_stats.report('Loss/G/normal', loss)
        training_stats.report('Geometry/surface_frac', valid.float().mean())
        return loss * self.weight


class OpacityPrior:
    """λ_o(cur_nimg) opacity_prior(o) (module docstring). weight = λ₀, growth per step, batch: images
    per step (the schedule's step = cur_nimg / batch); legacy_red_channel: GOF's red-channel quirk."""

    def __init__(self, weight: float = 0.0, growth: float = 0.0, batch: int = 1, legacy_red_channel: bool = False):
        self.weight, self.growth, self.batch = float(weight), float(growth), int(batch)
        self.legacy_red_channel = bool(legacy_red_channel)

    def occupancy(self, geometry) -> torch.Tensor:
        """What the prior reads: per-sample occupancy [N, M, S, 1], or sigmoid(C_red) [N, M] (legacy)."""
        render = geometry.render
        if self.legacy_red_channel:
            return torch.sigmoid((render.output.features[..., 0] + 1) / 2)   # features are 2C - 1
        if render.samples is None:
            raise ValueError("OpacityPrior reads per-sample occupancy: it needs a per-sample alpha_rule "
                             "('occupancy' or 'sample_delta'), or legacy_red_channel=True")
        return render.samples.alpha

    def __call__(self, geometry, cur_nimg: float) -> Optional[torch.Tensor]:
        if not self.weight:
            return None
        loss = opacity_prior(self.occupancy(geometry))
        weight = schedules.opacity_weight(cur_nimg, self.batch, self.weight, self.growth)
        training_stats.report('Loss/G/opacity', loss)
        training_stats.report('Loss/G/opacity_weight', weight)
        return loss * weight


class GeometryRegularizers:
    """Both GOF terms on one `G.render_geometry` per call (Gmain; same z, c and schedule as the G
    step). Returns their sum, or None when both are off (no render)."""

    def __init__(self, normal_weight=0.0, normal_h=0.075, opacity_weight=0.0, opacity_growth=0.0, batch=1,
                 legacy_red_channel=False):
        self.normal = NormalConsistency(normal_weight, normal_h)
        self.opacity = OpacityPrior(opacity_weight, opacity_growth, batch, legacy_red_channel)

    @property
    def on(self) -> bool:
        return bool(self.normal.weight or self.opacity.weight)

    def check(self, options) -> None:
        """ValueError for renderer options (RenderingOptions) the switched-on terms cannot read."""
        if self.normal.weight and options.depth_sampler != 'surface_window':
            raise ValueError("normal_weight > 0 needs depth_sampler 'surface_window' (its surface depth, "
                             'SEEDS_SPEC §3.3)')
        if self.opacity.weight and options.alpha_rule == 'eg3d' and not self.opacity.legacy_red_channel:
            raise ValueError("opacity_weight > 0 needs a per-sample alpha_rule ('occupancy' or 'sample_delta')")

    def __call__(self, G, z: torch.Tensor, c: torch.Tensor, step, cur_nimg: float) -> Optional[torch.Tensor]:
        if not self.on:
            return None
        geometry = G.render_geometry(z, c, neural_rendering_resolution=step.resolution, render_schedule=step.render)
        terms = [x for x in (self.normal(geometry), self.opacity(geometry, cur_nimg)) if x is not None]
        return sum(terms[1:], terms[0])
