"""Depth samplers of the pi-GAN family as strategies (SEEDS_SPEC §6.1 item 3).

`RenderingOptions.depth_sampler` picks one; 'eg3d' (stratified + EG3D's importance) is the
renderer's own path and not listed here. A sampler is a function

    sampler(rays: RayQuery, options: RenderingOptions, window: float, generator) -> Samples

that may query the field along the rays itself (`rays(depths)`), and returns the depths the
renderer must still query plus the samples it already queried *with gradient* that join the
composite. The renderer then composites everything with the per-sample alpha rule
(compositing.march_samples). Shapes: N batch, M rays, K samples per ray.
"""

import dataclasses
from typing import Callable, NamedTuple, Optional, Tuple

import torch

from training.rendering.compositing import sample_weights
from training.rendering.samplers import (first_crossing, sample_importance_nerf, sample_linspace, secant_root,
                                         window_bounds)


@dataclasses.dataclass(frozen=True)
class RayQuery:
    """The field bound to one batch of rays (built by the renderer for each render).
    query(depths [N, M, K, 1], noise: bool, channels: int | None) -> (features [N, M, K, C'],
    raw sigma [N, M, K, 1]); noise adds the call's density noise. t_start, t_end [N, M, 1]: the
    ray range."""
    query: Callable
    t_start: torch.Tensor
    t_end: torch.Tensor

    def __call__(self, depths, noise: bool = True, channels: Optional[int] = None):
        return self.query(depths, noise, channels)


class Samples(NamedTuple):
    """What a sampler hands back to the renderer."""
    depths: Optional[torch.Tensor]       # [N, M, K, 1] still to query (any order), or None
    queried: Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]   # (depths, features, sigma) to reuse
    surface_depth: Optional[torch.Tensor] = None   # [N, M, 1] secant depth, NaN without a crossing


def importance_nerf(rays: RayQuery, options, window: float, generator=None) -> Samples:
    """pi-GAN (SEEDS_SPEC §1.2, §1.5): depth_resolution coarse samples, linspace over the ray range
    jittered by U(-1/2, 1/2) spacing, queried with gradient (they join the composite); then
    depth_resolution_importance fine samples from their per-sample weights (no gradient,
    `sample_importance_nerf`). `window` is unused."""
    coarse = sample_linspace(rays.t_start, rays.t_end, options.depth_resolution, jitter=True, generator=generator)
    features, sigma = rays(coarse)
    if options.depth_resolution_importance == 0:
        return Samples(None, (coarse, features, sigma))
    with torch.no_grad():
        weights = sample_weights(sigma, coarse, options.alpha_rule, options.density_activation)[0]
    fine = sample_importance_nerf(coarse, weights, options.depth_resolution_importance, generator=generator)
    return Samples(fine, (coarse, features, sigma))


@torch.no_grad()
def surface_window(rays: RayQuery, options, window: float, generator=None) -> Samples:
    """GOF (SEEDS_SPEC §3.2, §6.3), all without gradient: depth_resolution coarse samples (linspace,
    no jitter, no density noise); the first empty -> occupied crossing of sigma - logit(surface_level);
    secant_steps secant steps; the window depth +- window (half-width, world units) shifted inside
    the ray range (the full range for rays without a crossing); depth_resolution_surface samples
    linspace over the window, jittered +-1/2 spacing; depth_resolution_importance fine samples from
    the coarse weights. The coarse samples never join the composite (§3.2 item 5)."""
    coarse = sample_linspace(rays.t_start, rays.t_end, options.depth_resolution, jitter=False)
    level = options.surface_logit
    sigma = rays(coarse, noise=False, channels=1)[1]
    t_lo, t_hi, f_lo, f_hi, valid = first_crossing(sigma - level, coarse)

    def level_at(t):
        return rays(t, noise=False, channels=1)[1] - level

    depth = secant_root(level_at, t_lo, t_hi, f_lo, f_hi, options.secant_steps)[:, :, 0]   # [N, M, 1]
    lo, hi = window_bounds(depth, valid, window, rays.t_start, rays.t_end)
    samples = sample_linspace(lo, hi, options.depth_resolution_surface, jitter=True, generator=generator)
    if options.depth_resolution_importance > 0:
        weights = sample_weights(sigma, coarse, options.alpha_rule, options.density_activation)[0]
        fine = sample_importance_nerf(coarse, weights, options.depth_resolution_importance, generator=generator)
        samples = torch.cat([samples, fine], dim=-2)
    return Samples(samples, None, torch.where(valid, depth, torch.full_like(depth, float('nan'))))


def uniform(rays: RayQuery, options, window: float, generator=None) -> Samples:
    """The evaluation sampler of GOF's weighted depth variance (SEEDS_SPEC §3.4 "Metric"):
    depth_resolution samples, the plain linspace over the ray range (no jitter, no importance or
    surface samples; depth_resolution_importance and `window` are unused), queried with gradient
    and composited. Under alpha_rule 'occupancy' it also returns the surface depth, the secant root
    of sigma = logit(surface_level) bracketed by these samples (as `surface_window`; NaN without a
    crossing), which the metric cuts the alpha in front of; None under other rules."""
    depths = sample_linspace(rays.t_start, rays.t_end, options.depth_resolution, jitter=False)
    features, sigma = rays(depths, noise=False)
    if options.alpha_rule != 'occupancy':
        return Samples(None, (depths, features, sigma))
    with torch.no_grad():
        level = options.surface_logit
        t_lo, t_hi, f_lo, f_hi, valid = first_crossing(sigma - level, depths)
        depth = secant_root(lambda t: rays(t, noise=False, channels=1)[1] - level, t_lo, t_hi, f_lo, f_hi,
                            options.secant_steps)[:, :, 0]
    return Samples(None, (depths, features, sigma), torch.where(valid, depth, torch.full_like(depth, float('nan'))))


SAMPLERS = {'importance_nerf': importance_nerf, 'surface_window': surface_window, 'uniform': uniform}
