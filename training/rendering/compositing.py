"""Alpha compositing along rays: EG3D's `MipRayMarcher2` (SPEC §4.5) and its density alpha rule,
and the per-sample alpha rules of the pi-GAN family (SEEDS_SPEC §1.5, §3.2) with their marcher
`march_samples`.

Shapes: N batch, M rays, S samples per ray (sorted by depth), C feature channels.
The plain formulation (interval colours, then a reduction) is kept beside the tests
(tests/reference/rendering.py); this one regroups the same sum per sample.
"""

from typing import NamedTuple, Tuple

import torch
import torch.nn.functional as F


class MarchResult(NamedTuple):
    """Output of `march_rays` (unpacks like the reference's 4-tuple)."""
    features: torch.Tensor               # [N, M, C]  composite features, mapped to 2*f - 1
    depth: torch.Tensor                  # [N, M, 1]  expected ray distance (march_samples: raw sum w t)
    weights: torch.Tensor                # [N, M, S-1, 1]  w_i = alpha_i * T_i per interval ([N, M, S, 1]
                                         # per sample, sorted, for march_samples)
    final_transmittance: torch.Tensor    # [N, M, 1]  T after the last interval ("bg_lambda")


def density_alpha(densities_mid: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """The alpha rule of NeRF / EG3D: raw density at the interval midpoints [N, M, S-1, 1] ->
    sigma = softplus(raw - 1) (the -1 helps initialization) -> alpha = 1 - exp(-sigma delta).
    Another rule (e.g. occupancy, alpha = the field's value) is a sibling of this function
    (docs/architecture.md)."""
    return 1 - torch.exp(-F.softplus(densities_mid - 1) * deltas)


def sample_delta_alpha(densities: torch.Tensor, depths: torch.Tensor, activation: str = 'relu') -> torch.Tensor:
    """pi-GAN's per-sample alpha (SEEDS_SPEC §1.5): raw sigma [N, M, S, 1] at the samples
    themselves (no midpoints), depths [N, M, S, 1] sorted -> alpha [N, M, S, 1],
    alpha_i = 1 - exp(-act(sigma_i) delta_i), delta_i = t_{i+1} - t_i, delta_{S-1} = 1e10 (the last
    sample is nearly opaque unless act(sigma) = 0); act = 'relu' | 'softplus'. Density noise is
    added to sigma by the query, before act."""
    deltas = torch.cat([depths[:, :, 1:] - depths[:, :, :-1], torch.full_like(depths[:, :, :1], 1e10)], dim=-2)
    act = F.relu if activation == 'relu' else F.softplus
    return 1 - torch.exp(-act(densities) * deltas)


def occupancy_alpha(densities: torch.Tensor) -> torch.Tensor:
    """GOF's alpha (SEEDS_SPEC §3.1, §3.2 item 5): sigma is an occupancy logit, alpha = sigmoid(sigma),
    no delta: [N, M, S, 1] -> [N, M, S, 1]."""
    return torch.sigmoid(densities)


def _alpha_weights(alpha: torch.Tensor):
    """alpha [N, M, K, 1] -> (w_i = alpha_i T_i [N, M, K, 1], final transmittance T_K [N, M, 1]),
    T_i = prod_{j<i} (1 - alpha_j + 1e-10): the 1e-10 keeps T > 0 behind opaque samples (EG3D and
    pi-GAN alike)."""
    survive = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2)
    transmittance = torch.cumprod(survive, dim=-2)                       # [N, M, K+1, 1]
    return alpha * transmittance[:, :, :-1], transmittance[:, :, -1]


def _interval_weights(densities: torch.Tensor, depths: torch.Tensor):
    """(weights w_i [N, M, S-1, 1], final transmittance [N, M, 1]) of `march_rays`."""
    deltas = depths[:, :, 1:] - depths[:, :, :-1]                        # [N, M, S-1, 1]
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    return _alpha_weights(density_alpha(densities_mid, deltas))


def _per_sample_weights(weights: torch.Tensor) -> torch.Tensor:
    """Interval weights [N, M, S-1, 1] -> per-sample weights [N, M, S, 1], (w_{j-1} + w_j) / 2
    with w_{-1} = w_{S-1} = 0: sum_i w_i (c_i + c_{i+1}) / 2 = sum_j c_j (w_{j-1} + w_j) / 2."""
    padded = F.pad(weights, [0, 0, 1, 1])                                # [N, M, S+1, 1]
    return (padded[:, :, :-1] + padded[:, :, 1:]) * 0.5


class _WeightedSum(torch.autograd.Function):
    """features = sum_j per_sample_j * colors_j, forward as one `embedding_bag` over the
    colour rows (each ray a bag of its S rows; ~10x faster on CPU than the batched mat-vec
    w^T C, whose per-ray GEMM calls dominate), backward dC = w g^T (the colour gradient,
    needed anyway) and dw = C g. Autograd of the elementwise form (multiply, reduce)
    materializes two more [N, M, S, C] products; this saves that traffic."""

    @staticmethod
    def forward(ctx, colors, per_sample):
        ctx.save_for_backward(colors, per_sample)
        *lead, S, C = colors.shape
        bags = torch.arange(colors.numel() // C, device=colors.device).reshape(-1, S)
        out = F.embedding_bag(bags, colors.reshape(-1, C), mode='sum', per_sample_weights=per_sample.reshape(-1, S))
        return out.reshape(*lead, C)

    @staticmethod
    def backward(ctx, grad):
        colors, per_sample = ctx.saved_tensors
        grad = grad.unsqueeze(-2)
        g_colors = per_sample * grad if ctx.needs_input_grad[0] else None
        g_weights = (colors * grad).sum(-1, keepdim=True) if ctx.needs_input_grad[1] else None
        return g_colors, g_weights


def _weighted_sum(colors: torch.Tensor, per_sample: torch.Tensor) -> torch.Tensor:
    """sum_j colors[..., j, :] * per_sample[..., j, :]: [N, M, S, C], [N, M, S, 1] -> [N, M, C]
    (`_WeightedSum`)."""
    return _WeightedSum.apply(colors, per_sample)


def _composite(colors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_i w_i (c_i + c_{i+1}) / 2 over the S-1 intervals -> [N, M, C], regrouped per sample
    (`_per_sample_weights`) so the interval colours [N, M, S-1, C] never exist (~2.5x faster
    forward + backward than building them; float rounding differs only)."""
    return _weighted_sum(colors, _per_sample_weights(weights))


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
    return _finish(march_sums(colors, densities, depths), depths, white_back)


def finish_rays(features, depth_sum, weight_total, depths, white_back):
    """The marcher's epilogue, shared with the fused kernel's raw sums: (features [N, M, C],
    depth_sum = sum w t_mid [N, M, 1], weight_total = sum w [N, M, 1], depths [N, M, S, 1])
    -> (features mapped to 2f - 1, white background added when asked; depth [N, M, 1])."""
    # Empty rays give 0/0: send them to the far end, then clip to the sampled range.
    depth = torch.nan_to_num(depth_sum / weight_total, nan=float('inf'))
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    return finish_features(features, weight_total, white_back), depth


def finish_features(features, weight_total, white_back):
    """features [N, M, C] = sum w c -> 2 (features + (1 - sum w if white_back)) - 1, every channel."""
    if white_back:
        features = features + 1 - weight_total
    return features * 2 - 1


def unfinish_features(features, weight_sum, white_back):
    """The inverse of `finish_features`: features [N, M, C] in the mapped range, sum w [N, M, 1] ->
    the raw composite sum w c (what the shading stage reads, training/rendering/shading.py)."""
    raw = (features + 1) * 0.5
    return raw - (1 - weight_sum) if white_back else raw


class RaySums(NamedTuple):
    """The raw per-ray sums of a march (what the fused kernel computes), before `finish_rays`."""
    features: torch.Tensor               # [N, M, C]  sum_i w_i c_mid_i
    depth_sum: torch.Tensor              # [N, M, 1]  sum_i w_i t_mid_i
    weight_sum: torch.Tensor             # [N, M, 1]  sum_i w_i
    final_transmittance: torch.Tensor    # [N, M, 1]
    weights: torch.Tensor                # [N, M, S-1, 1]


def march_sums(colors: torch.Tensor, densities: torch.Tensor, depths: torch.Tensor) -> RaySums:
    """The sums of `march_rays` before its epilogue (shapes as there)."""
    weights, final_transmittance = _interval_weights(densities, depths)
    return _sums(_composite(colors, weights), weights, final_transmittance, depths)


def _sums(features, weights, final_transmittance, depths) -> RaySums:
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    return RaySums(features, torch.sum(weights * depths_mid, dim=-2), weights.sum(dim=-2), final_transmittance,
                   weights)


def _finish(sums: RaySums, depths, white_back) -> MarchResult:
    """Depth, white background and the 2f - 1 mapping of `march_rays` (depths sorted)."""
    features, depth = finish_rays(sums.features, sums.depth_sum, sums.weight_sum, depths, white_back)
    return MarchResult(features, depth, sums.weights, sums.final_transmittance)


def march_importance(depths1, colors1, densities1, depths2, colors2, densities2,
                     white_back: bool = False) -> MarchResult:
    """`march_rays` over the union of the coarse samples (depths1 [N, M, S1, 1] sorted,
    colors1 [N, M, S1, C], densities1 [N, M, S1, 1]) and the fine ones (set 2, any order).

    Only t and sigma ([.., 1]) are merged and sorted; the per-sample weights are scattered
    back to each set's own order and each set's colours are summed where they lie, so the
    [N, M, S1+S2, C] merged colours (and their gather and its backward) never exist. Same
    weights as merging everything first; the colour sum runs in another order.
    """
    depths, densities, order = sort_union([depths1, depths2], [densities1, densities2])
    weights, final_transmittance = _interval_weights(densities, depths)
    features = composite_union([colors1, colors2], _per_sample_weights(weights), order)
    return _finish(_sums(features, weights, final_transmittance, depths), depths, white_back)


def sort_union(depth_sets, density_sets):
    """Merge sample sets along S: depths [N, M, S_k, 1] and raw sigma [N, M, S_k, 1] per set (any
    order) -> (depths sorted [N, M, S, 1], sigma in that order, order [N, M, S, 1] int64: sorted
    sample i is sample order[i] of the concatenated sets)."""
    depths, order = torch.sort(torch.cat(depth_sets, dim=-2), dim=-2)
    return depths, torch.gather(torch.cat(density_sets, dim=-2), -2, order), order


def composite_union(color_sets, per_sample, order):
    """sum over every sample of every set of w c -> [N, M, C]: per_sample [N, M, S, 1] weights in
    the sorted order of `sort_union`, color_sets [N, M, S_k, C] in their own order. The weights are
    scattered back (a permutation, so no sums) and each set's colours summed where they lie: the
    merged [N, M, S, C] colours never exist."""
    unsorted = torch.zeros_like(per_sample).scatter(-2, order, per_sample)
    parts = unsorted.split([c.shape[-2] for c in color_sets], dim=-2)
    features = _weighted_sum(color_sets[0], parts[0])
    for colors, part in zip(color_sets[1:], parts[1:]):
        features = features + _weighted_sum(colors, part)
    return features


def coarse_weights(densities: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """The compositing weights [N, M, S-1, 1] of `march_rays` (what importance sampling reads),
    without compositing the colours: densities [N, M, S, 1] raw, depths [N, M, S, 1] sorted."""
    return _interval_weights(densities, depths)[0]


def sample_alpha(densities: torch.Tensor, depths: torch.Tensor, alpha_rule: str, activation: str = 'relu'):
    """Per-sample alpha [N, M, S, 1] of the pi-GAN family's rules (SEEDS_SPEC §1.5, §3.2 item 5):
    'sample_delta' (`sample_delta_alpha`, act = activation) or 'occupancy' (`occupancy_alpha`: the
    occupancy o = sigmoid(sigma), GOF)."""
    if alpha_rule == 'occupancy':
        return occupancy_alpha(densities)
    if alpha_rule == 'sample_delta':
        return sample_delta_alpha(densities, depths, activation)
    raise ValueError(f"alpha_rule={alpha_rule!r} is not a per-sample rule ('sample_delta', 'occupancy')")


def sample_weights(densities: torch.Tensor, depths: torch.Tensor, alpha_rule: str, activation: str = 'relu',
                   last_back: bool = False, alpha: torch.Tensor = None):
    """Per-sample weights of the pi-GAN family (SEEDS_SPEC §1.5, §3.2 item 5): raw sigma and depths
    [N, M, S, 1] (sorted) -> (w [N, M, S, 1], final transmittance [N, M, 1]);
    w_i = alpha_i prod_{j<i} (1 - alpha_j + 1e-10), alpha = `sample_alpha` (or the one given).
    last_back: the last sample also takes 1 - sum w (pi-GAN's eval_last_back)."""
    if alpha is None:
        alpha = sample_alpha(densities, depths, alpha_rule, activation)
    weights, final_transmittance = _alpha_weights(alpha)
    if last_back:
        rest = 1 - weights.sum(dim=-2, keepdim=True)
        weights = torch.cat([weights[:, :, :-1], weights[:, :, -1:] + rest], dim=-2)
    return weights, final_transmittance


class MarchedSamples(NamedTuple):
    """The composited samples of `march_samples`, sorted by depth, each [N, M, S, 1] (what the
    GOF regularizers and the weighted depth variance read, SEEDS_SPEC §3.3, §3.4)."""
    depths: torch.Tensor
    alpha: torch.Tensor                  # the occupancy o = sigmoid(sigma) under alpha_rule 'occupancy'
    weights: torch.Tensor


def march_samples(depth_sets, color_sets, density_sets, alpha_rule: str, activation: str = 'relu',
                  white_back: bool = False, last_back: bool = False) -> MarchResult:
    """Composite the union of sample sets with a per-sample alpha rule (`sample_weights`).

    depth_sets, density_sets: [N, M, S_k, 1] per set; color_sets [N, M, S_k, C] (any channels:
    normals or other extras appended to the features are composited alike); sets and samples in
    any order (merged and sorted by `sort_union`, colours summed in place by `composite_union`).
    Returns features = 2 (sum w c [+ 1 - sum w if white_back]) - 1, depth = sum w t (raw, not
    normalized, as pi-GAN; GOF's normalized depth is depth / (weight_sum + 1e-5), SEEDS_SPEC
    §3.2 item 5), weights [N, M, S, 1] sorted, final transmittance.
    """
    return march_samples_recorded(depth_sets, color_sets, density_sets, alpha_rule, activation, white_back,
                                  last_back)[0]


def march_samples_recorded(depth_sets, color_sets, density_sets, alpha_rule: str, activation: str = 'relu',
                           white_back: bool = False, last_back: bool = False) -> Tuple[MarchResult, MarchedSamples]:
    """`march_samples` and the composited samples it read (`MarchedSamples`, sorted)."""
    depths, densities, order = sort_union(depth_sets, density_sets)
    alpha = sample_alpha(densities, depths, alpha_rule, activation)
    weights, final_transmittance = sample_weights(densities, depths, alpha_rule, activation, last_back, alpha)
    features = composite_union(color_sets, weights, order)
    weight_sum = weights.sum(dim=-2)
    result = MarchResult(finish_features(features, weight_sum, white_back), torch.sum(weights * depths, dim=-2),
                         weights, final_transmittance)
    return result, MarchedSamples(depths, alpha, weights)
