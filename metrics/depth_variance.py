"""GOF's weighted depth variance (SEEDS_SPEC §3.2 step 5, §3.4 "Metric"; §6.6 `depth_var_weighted`).

How concentrated each ray's compositing weights are along the ray: a surface-like field puts
its weight in a thin shell (variance -> 0), a foggy one spreads it. GOF's protocol, which the
caller runs to get the inputs: 36 uniform coarse samples per ray (no importance or surface
samples), psi = 0.7, 128 px, alpha set to 0 in front of (surface depth - Delta_max/2)
(`cut_alpha_in_front`), 1000 seeds; the value is reported x 1e4. Only rays with sum(w) > 0.99
count. This module holds the pure measures; they need G's per-sample weights, which the
generator does not return today (registration in metric_main is left to the renderer work).

Reading of the source formula [unverified]: var = sum w (t - D)^2 / ((sum w + 1e-5)(n - 1)/n),
D = sum w t / (sum w + 1e-5), with n the number of samples per ray (the unbiased-variance
factor n/(n - 1)).
"""

import torch

from torch_utils import misc

EPS = 1e-5            # GOF's guard in both denominators
MIN_WEIGHT_SUM = 0.99  # GOF counts only rays that are (almost) opaque


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
