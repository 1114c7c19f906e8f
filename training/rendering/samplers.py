"""Depth samples along rays: stratified (coarse) and importance (fine) sampling (SPEC §4.5), and
the pi-GAN family's conventions (SEEDS_SPEC §1.2, §1.5): jittered linspace, NeRF importance.
The strategies that combine them with field queries: depth_samplers.py.

Shapes: N batch, M rays, S coarse samples per ray, I importance samples per ray. Depths are
ray distances t in world units, stored as [N, M, S, 1] like EG3D. Randomness is explicit:
every sampler takes either the uniform draws themselves or a `torch.Generator`.
"""

import torch
import torch.nn.functional as F

from torch_utils import misc
from training.rendering.math_utils import linspace


def sample_stratified(ray_start: torch.Tensor, ray_end: torch.Tensor, depth_resolution: int,
                      noise: torch.Tensor = None, generator: torch.Generator = None) -> torch.Tensor:
    """Jittered evenly spaced depths, t_i = start + i*delta + u_i*delta, i = 0..D-1.

    ray_start, ray_end: [N, M, 1]; D = depth_resolution >= 2; delta = (end - start)/(D - 1),
    so the last sample may land past ray_end (EG3D). noise: optional u in [0, 1) of shape
    [N, M, D, 1]; drawn with torch.rand(generator=generator) when None. Returns [N, M, D, 1].
    """
    misc.assert_shape(ray_start, [None, None, 1])
    misc.assert_shape(ray_end, list(ray_start.shape))
    N, M, _ = ray_start.shape
    D = int(depth_resolution)
    depths = linspace(ray_start, ray_end, D).permute(1, 2, 0, 3)         # [N, M, D, 1]
    delta = ((ray_end - ray_start) / (D - 1)).unsqueeze(-1)              # [N, M, 1, 1]
    if noise is None:
        noise = torch.rand([N, M, D, 1], generator=generator, dtype=depths.dtype, device=depths.device)
    misc.assert_shape(noise, [N, M, D, 1])
    return depths + noise * delta


def smooth_weights(weights: torch.Tensor) -> torch.Tensor:
    """EG3D's blur of coarse weights before importance sampling: [R, S-1] -> [R, S-1].

    Max-pool (kernel 2, stride 1, pad 1) -> length S, then average-pool (kernel 2, stride 1)
    -> length S-1, then + 0.01 so that every interval keeps some probability. Written as the
    max / mean of neighbours: the same values bit for bit, ~3x faster than the pooling ops.
    """
    padded = F.pad(weights, [1, 1], value=-float('inf'))
    w = torch.maximum(padded[:, :-1], padded[:, 1:])
    return (w[:, :-1] + w[:, 1:]) / 2 + 0.01


def sample_pdf(bins: torch.Tensor, weights: torch.Tensor, n_samples: int, u: torch.Tensor = None,
               generator: torch.Generator = None, eps: float = 1e-5) -> torch.Tensor:
    """Inverse-CDF sampling of a piecewise-constant pdf.

    bins [R, B] sorted edges; weights [R, K] with K <= B-1: interval k = [bins[k], bins[k+1]]
    carries weight k (edges beyond K are never used). pdf = (weights + eps) / sum; the CDF is
    [0, cumsum(pdf)] of length K+1. u: optional [R, n_samples] in [0, 1); torch.rand when None.
    idx = searchsorted(cdf, u, right=True); below = max(idx-1, 0), above = min(idx, K);
    t = bins[below] + (u - cdf[below]) / den * (bins[above] - bins[below]) with den = 1 where
    cdf[above] - cdf[below] < eps. Returns [R, n_samples].
    """
    R, K = weights.shape
    if bins.shape[0] != R or bins.shape[1] < K + 1:
        raise ValueError(f'sample_pdf: bins {list(bins.shape)} need >= K+1 = {K + 1} edges per row')
    weights = weights + eps
    pdf = weights / weights.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(pdf[:, :1]), torch.cumsum(pdf, dim=-1)], dim=-1)   # [R, K+1]
    if u is None:
        u = torch.rand([R, n_samples], generator=generator, dtype=cdf.dtype, device=cdf.device)
    misc.assert_shape(u, [R, n_samples])
    u = u.contiguous()

    idx = torch.searchsorted(cdf, u, right=True)
    below = torch.clamp(idx - 1, min=0)
    above = torch.clamp(idx, max=K)
    cdf_below, cdf_above = torch.gather(cdf, 1, below), torch.gather(cdf, 1, above)
    bins_below, bins_above = torch.gather(bins, 1, below), torch.gather(bins, 1, above)
    den = cdf_above - cdf_below
    den = torch.where(den < eps, torch.ones_like(den), den)
    return bins_below + (u - cdf_below) / den * (bins_above - bins_below)


@torch.no_grad()
def sample_importance(depths: torch.Tensor, weights: torch.Tensor, n_importance: int,
                      u: torch.Tensor = None, generator: torch.Generator = None) -> torch.Tensor:
    """Fine depths drawn from the coarse weights, without gradient (SPEC §4.5 steps 1-4).

    depths [N, M, S, 1] coarse t; weights [N, M, S-1, 1] from the marcher; u optional
    [N, M, I] uniforms. Returns [N, M, I, 1] (unsorted).
    Bins are the S-1 midpoints of the coarse t, but the pdf is smoothed_weights[1:-1], only
    S-3 values: the last midpoint is never used and interval k carries the weight of
    interval k+1, shifting the fine samples about one coarse step towards the camera. This
    off-by-one comes from EG3D and is reproduced on purpose.
    """
    N, M, S, _ = depths.shape
    misc.assert_shape(weights, [N, M, S - 1, 1])
    w = smooth_weights(weights.reshape(N * M, S - 1))
    return _sample_midpoint_pdf(depths, w[:, 1:-1], n_importance, u, generator)


@torch.no_grad()
def sample_importance_nerf(depths: torch.Tensor, weights: torch.Tensor, n_importance: int,
                           u: torch.Tensor = None, generator: torch.Generator = None) -> torch.Tensor:
    """pi-GAN's hierarchical sampling (SEEDS_SPEC §1.5, §6.0), without gradient: depths
    [N, M, S, 1] sorted coarse t, weights [N, M, S, 1] per sample (compositing.sample_weights),
    u optional [N, M, I] -> fine depths [N, M, I, 1] (unsorted, not jittered).
    Bins are the S-1 midpoints; the bin between midpoints k and k+1 surrounds sample k+1 and
    carries its weight: the pdf is weights[1:-1] + 1e-5 (S-2 values, no smoothing; `sample_pdf`
    adds its own eps 1e-5 on top, as pi-GAN's does)."""
    N, M, S, _ = depths.shape
    misc.assert_shape(weights, [N, M, S, 1])
    w = weights.reshape(N * M, S) + 1e-5
    return _sample_midpoint_pdf(depths, w[:, 1:-1], n_importance, u, generator)


def _sample_midpoint_pdf(depths, pdf_weights, n_importance, u, generator):
    """`sample_pdf` over the midpoints of depths [N, M, S, 1] with pdf_weights [N*M, K] (K <= S-2),
    u optional [N, M, I] -> [N, M, I, 1]."""
    N, M, S, _ = depths.shape
    t = depths.reshape(N * M, S)
    bins = 0.5 * (t[:, :-1] + t[:, 1:])                                  # [N*M, S-1]
    if u is not None:
        misc.assert_shape(u, [N, M, n_importance])
        u = u.reshape(N * M, n_importance)
    fine = sample_pdf(bins, pdf_weights, n_importance, u=u, generator=generator)
    return fine.reshape(N, M, n_importance, 1)


def sample_linspace(t_lo: torch.Tensor, t_hi: torch.Tensor, n: int, jitter: bool = True, u: torch.Tensor = None,
                    generator: torch.Generator = None) -> torch.Tensor:
    """The pi-GAN family's evenly spaced samples (SEEDS_SPEC §1.2; GOF §3.2 items 1 and 3):
    t_i = lo + i d + (u_i - 1/2) d, d = (hi - lo) / (n - 1), i = 0..n-1, each u_i ~ U[0, 1)
    (jitter=False: the plain linspace). t_lo, t_hi [N, M, 1]; u optional [N, M, n, 1].
    Returns [N, M, n, 1], sorted when jitter is off; jittered samples may leave [lo, hi] by d/2
    (as pi-GAN's)."""
    misc.assert_shape(t_hi, list(t_lo.shape))
    depths = linspace(t_lo, t_hi, int(n)).permute(1, 2, 0, 3)            # [N, M, n, 1]
    if not jitter:
        return depths
    if u is None:
        u = torch.rand(depths.shape, generator=generator, dtype=depths.dtype, device=depths.device)
    misc.assert_shape(u, list(depths.shape))
    return depths + (u - 0.5) * ((t_hi - t_lo) / (n - 1)).unsqueeze(-1)


def first_crossing(level: torch.Tensor, depths: torch.Tensor):
    """GOF's surface bracket (SEEDS_SPEC §3.2 item 2): level f = sigma - logit(tau) [N, M, S, 1] at
    sorted depths [N, M, S, 1] -> (t_lo, t_hi, f_lo, f_hi [N, M, 1, 1], valid [N, M, 1] bool).
    A ray is valid when its first sample is empty (f_0 < 0) and a later one is occupied (f > 0);
    the bracket is then (k-1, k) with k the first occupied sample, so it crosses empty -> occupied.
    Invalid rays get the bracket (0, 1), to be masked by the caller."""
    occupied = level > 0
    valid = occupied.any(dim=-2) & (level[:, :, 0] < 0)                 # [N, M, 1]
    k = torch.argmax(occupied.to(torch.uint8), dim=-2, keepdim=True).clamp(min=1)   # first occupied (argmax: first max)
    below, above = k - 1, k
    return (torch.gather(depths, -2, below), torch.gather(depths, -2, above), torch.gather(level, -2, below),
            torch.gather(level, -2, above), valid)


def secant_root(level_at, t_lo, t_hi, f_lo, f_hi, steps: int) -> torch.Tensor:
    """Secant search of the level crossing in a bracket (SEEDS_SPEC §3.2 item 2): t_lo, t_hi, f_lo <= 0,
    f_hi > 0 [N, M, 1, 1]; level_at(t [N, M, 1, 1]) -> f [N, M, 1, 1] (a field query).
    t = t_lo - f_lo (t_hi - t_lo) / (f_hi - f_lo); then `steps` times: f(t) is queried, it replaces
    the bracket end of its sign (f < 0: the low end) and t is re-estimated (GOF's loop: 4 steps,
    one query each). Exact at once for a linear level. Returns t [N, M, 1, 1]."""
    def estimate():
        den = f_hi - f_lo
        return t_lo - f_lo * (t_hi - t_lo) / torch.where(den > 0, den, torch.ones_like(den))
    t = estimate()
    for _ in range(steps):
        f = level_at(t)
        low = f < 0
        t_lo, f_lo = torch.where(low, t, t_lo), torch.where(low, f, f_lo)
        t_hi, f_hi = torch.where(low, t_hi, t), torch.where(low, f_hi, f)
        t = estimate()
    return t


def window_bounds(depth: torch.Tensor, valid: torch.Tensor, half_width: float, t_start: torch.Tensor,
                  t_end: torch.Tensor):
    """GOF's surface window (SEEDS_SPEC §3.2 item 3, §6.3): depth, t_start, t_end [N, M, 1], valid
    [N, M, 1] bool -> (lo, hi) [N, M, 1] each. [depth - D, depth + D] (width 2D), shifted inside the
    ray's own range [t_start, t_end] (the fix of §3.5 q2; GOF shifts into a fixed [0.88, 1.12]), the
    width capped at the range. Rays without a crossing span the full range (GOF: depth 1.0, window =
    the whole range)."""
    width = torch.clamp(t_end - t_start, max=2 * float(half_width))
    lo = torch.minimum(torch.maximum(depth - width / 2, t_start), t_end - width)
    return torch.where(valid, lo, t_start), torch.where(valid, lo + width, t_end)
