"""GOF's weighted depth variance (SEEDS_SPEC §3.2 step 5, §3.4 "Metric"; §6.6 `depth_var_weighted`).

How concentrated each ray's compositing weights are along the ray: a surface-like field puts
its weight in a thin shell (variance -> 0), a foggy one spreads it. GOF's protocol, which the
caller runs to get the inputs: 36 uniform coarse samples per ray (no importance or surface
samples), psi = 0.7, 128 px, alpha set to 0 in front of (surface depth - Delta_max/2)
(`cut_alpha_in_front`), 1000 seeds; the value is reported x 1e4. Only rays with sum(w) > 0.99
count. This module holds the pure measures and the registered metric:

depth_var_weighted: num_gen images of G (seeds of the metric options, psi = 0.7, the pose
  source's camera, `resolution` px; GOF's 128 px is the registry default) rendered by
  G.render_geometry through a copy of its renderer set to the 'uniform' depth sampler with
  `samples` (36) samples and no fine samples. Under alpha_rule 'occupancy' the secant surface
  depth of those samples gives the cut (margin = window_init / 2, GOF's Delta_max / 2; rays
  without a crossing keep their alpha) and the weights are recomposited from the cut alpha;
  other per-sample rules have no surface and are not cut. Value: the mean over images of
  `depth_var_weighted` x 1e4 (images with no opaque ray are skipped); also: images = the
  fraction counted, rays = the mean fraction of opaque rays. G's alpha_rule 'eg3d' (interval
  weights) has no per-sample weights: a ValueError.

Reading of the source formula [unverified]: var = sum w (t - D)^2 / ((sum w + 1e-5)(n - 1)/n),
D = sum w t / (sum w + 1e-5), with n the number of samples per ray (the unbiased-variance
factor n/(n - 1)).
"""

import dataclasses

import numpy as np
import torch

from metrics import metric_utils
from torch_utils import misc
from training.rendering.compositing import sample_weights
from training.rendering.renderer import ImportanceRenderer

EPS = 1e-5            # GOF's guard in both denominators
MIN_WEIGHT_SUM = 0.99  # GOF counts only rays that are (almost) opaque
SCALE = 1e4            # GOF's tables show the variance x 1e4 (SEEDS_SPEC §3.4)


def weighted_depth_variance(weights: torch.Tensor, depths: torch.Tensor):
    """Per-ray weighted variance of the sample depths.

    weights, depths: [N, M, S, 1] (N images, M rays, S samples; depth = distance along the
    unit ray). Returns (variance [N, M], weight_sum [N, M]); S must be >= 2.
    """
    misc.assert_shape(weights, [None, None, None, 1])
    misc.assert_shape(depths, list(weights.shape))
    n = weights.shape[2]
    if n < 2:
        raise ValueError(f'the weighted depth variance needs >= 2 samples per ray, got {n}')
    w, t = weights[..., 0], depths[..., 0]
    w_sum = w.sum(-1)
    mean = (w * t).sum(-1) / (w_sum + EPS)
    var = (w * (t - mean[..., None]) ** 2).sum(-1) / ((w_sum + EPS) * (n - 1) / n)
    return var, w_sum


def depth_var_weighted(weights: torch.Tensor, depths: torch.Tensor,
                       min_weight_sum: float = MIN_WEIGHT_SUM) -> torch.Tensor:
    """GOF's metric on one batch: the mean `weighted_depth_variance` over the rays whose weight
    sum exceeds min_weight_sum (a scalar tensor; NaN when no ray does). weights, depths:
    [N, M, S, 1]. Not scaled: GOF's tables show this value x 1e4."""
    var, w_sum = weighted_depth_variance(weights, depths)
    keep = w_sum > min_weight_sum
    return var[keep].mean() if keep.any() else torch.tensor(float('nan'), dtype=var.dtype)


def cut_alpha_in_front(alpha: torch.Tensor, depths: torch.Tensor, surface_depth: torch.Tensor,
                       margin: float) -> torch.Tensor:
    """alpha [N, M, S, 1] with the samples in front of the surface window zeroed: alpha = 0
    where t < surface_depth - margin (GOF's protocol: margin = Delta_max/2, SEEDS_SPEC §3.4), so
    floaters between the camera and the surface do not enter the variance. depths [N, M, S, 1],
    surface_depth [N, M, 1]. A new tensor; the input is not modified."""
    misc.assert_shape(depths, list(alpha.shape))
    misc.assert_shape(surface_depth, [alpha.shape[0], alpha.shape[1], 1])
    return torch.where(depths < (surface_depth - margin)[..., None], torch.zeros_like(alpha), alpha)


def recorded_variance(record, alpha_rule: str, margin: float):
    """GOF's metric on each image of one `RecordedRender`: the alpha cut in front of the surface
    (on the rays with a surface depth) and recomposited, then per image (depth_var_weighted,
    fraction of opaque rays) -> [N, 2] float64."""
    depths, weights = record.samples.depths, record.samples.weights
    if record.surface_depth is not None:
        surface = torch.where(torch.isfinite(record.surface_depth), record.surface_depth,
                              torch.full_like(record.surface_depth, -np.inf))
        cut = cut_alpha_in_front(record.samples.alpha, depths, surface, margin)
        weights = sample_weights(None, depths, alpha_rule, alpha=cut)[0]
    rows = [[depth_var_weighted(weights[i:i + 1], depths[i:i + 1]).item(),
             (weights[i].sum(dim=1) > MIN_WEIGHT_SUM).double().mean().item()] for i in range(len(weights))]
    return torch.tensor(rows, dtype=torch.float64)


def evaluation_renderer(options, samples: int) -> ImportanceRenderer:
    """A renderer of G's options with GOF's evaluation sampling (module docstring)."""
    if options.alpha_rule == 'eg3d':
        raise ValueError("depth_var_weighted needs per-sample weights: G's alpha_rule is 'eg3d' (interval "
                         "weights); use a per-sample rule ('sample_delta', 'occupancy')")
    return ImportanceRenderer(dataclasses.replace(options, depth_sampler='uniform', depth_resolution=int(samples),
                                                  depth_resolution_importance=0, density_noise=0.0))


def compute_depth_var_weighted(opts: metric_utils.MetricOptions, num_gen: int = 1000, resolution: int = 128,
                               samples: int = 36, truncation_psi: float = 0.7, batch: int = 4) -> dict:
    """depth_var_weighted (module docstring); NaN on ranks other than 0."""
    G = metric_utils.prepare_generator(opts)
    options = G.renderer.options
    G.renderer = evaluation_renderer(options, samples)
    sampler = metric_utils.LatentSampler(opts, G)
    per_rank = -(-num_gen // opts.num_gpus)
    rows = []
    for done in range(0, per_rank, batch):
        z, c = sampler.sample(min(batch, per_rank - done))
        with torch.no_grad():
            geo = G.render_geometry(z, c, resolution, generator=sampler.torch_generator(),
                                    truncation_psi=truncation_psi)
        rows.append(recorded_variance(geo.render, options.alpha_rule, options.window_init / 2))
        opts.report_progress('generated images', done + len(z), per_rank)
    rows = metric_utils.gather_rows(torch.cat(rows).to(opts.device), opts.num_gpus).cpu().numpy()[:num_gen]
    if opts.rank != 0:
        return dict(value=float('nan'))
    counted = np.isfinite(rows[:, 0])
    value = float(rows[counted, 0].mean() * SCALE) if counted.any() else float('nan')
    return dict(value=value, images=float(counted.mean()), rays=float(rows[:, 1].mean()))
