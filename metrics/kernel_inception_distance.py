"""Kernel Inception Distance (SPEC §10.1; Bińkowski et al. 2018).

Protocol: the same Inception features as FID (real: the first `max_real` items; generated:
`num_gen` images). KID is the unbiased estimate of the squared MMD with the cubic polynomial
kernel k(x, y) = (x . y / d + 1)^3 (d = feature dimension, 2048 for Inception), averaged
over `num_subsets` random subsets of m = min(n_real, n_gen, max_subset_size) rows of each
set (drawn without replacement, independently per subset):

    MMD^2_u = 1/(m(m-1)) sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] - 2/m^2 sum_{i, j} k(x_i, y_j).

It can be slightly negative (unbiased). Registered: kid50k_full (max_real 1e6, 50k
generated, 100 subsets of <= 1000) and kid2k (2k real, 2k generated, same subsets; quick).
"""

import numpy as np

from metrics import metric_utils


def kid_from_features(real, gen, num_subsets: int = 100, max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID of feature sets real [N_r, D] and gen [N_g, D]. Pure function (seeded subsets)."""
    real, gen = np.asarray(real, np.float64), np.asarray(gen, np.float64)
    if real.ndim != 2 or gen.ndim != 2 or real.shape[1] != gen.shape[1]:
        raise ValueError(f'kid_from_features: need [N, D] sets with equal D, got {real.shape} and {gen.shape}')
    d = real.shape[1]
    m = min(real.shape[0], gen.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f'kid_from_features: need at least 2 rows per set, got {m}')
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = gen[rng.choice(gen.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        k_xx = (x @ x.T / d + 1) ** 3
        k_yy = (y @ y.T / d + 1) ** 3
        k_xy = (x @ y.T / d + 1) ** 3
        within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        total += within - 2 * k_xy.sum() / (m * m)
    return float(total / num_subsets)


def compute_kid(opts: metric_utils.MetricOptions, max_real, num_gen: int, num_subsets: int = 100,
                max_subset_size: int = 1000, batch_size: int = 64, batch_gen: int = 4) -> float:
    """KID between the real set and num_gen generated images; NaN on ranks other than 0."""
    detector_kwargs = dict(return_features=True)
    real = metric_utils.compute_feature_stats_for_dataset(
        opts, detector_kwargs, max_items=max_real, batch_size=batch_size, capture_all=True).get_all()
    gen = metric_utils.compute_feature_stats_for_generator(
        opts, detector_kwargs, num_gen=num_gen, batch_size=batch_size, batch_gen=batch_gen,
        capture_all=True).get_all()
    if opts.rank != 0:
        return float('nan')
    return kid_from_features(real, gen, num_subsets, max_subset_size, seed=opts.seed)
