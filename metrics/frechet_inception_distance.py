"""Fréchet Inception Distance (SPEC §10.1; Heusel et al. 2017).

Protocol: Inception-v3 pool features (2048-d; the TorchScript detector called with
return_features=True on uint8 images) of the real set (the first `max_real` items, all when
None; statistics cached) and of `num_gen` generated images (metric_utils: z ~ N(0, I), c = a
random dataset label, quantized G(z, c)['image']). With (mu, Sigma) the mean and population
covariance of each set,

    FID = ||mu_r - mu_g||^2 + Tr(Sigma_r + Sigma_g - 2 sqrtm(Sigma_r Sigma_g)),

keeping the real part of the matrix square root (scipy.linalg.sqrtm). Registered variants:
fid50k_full (all real images, 50k generated) and fid2k (2k real, 2k generated: a quick,
higher-variance and upward-biased estimate, not comparable to fid50k_full).
"""

import numpy as np
import scipy.linalg

from metrics import metric_utils


def fid_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """FID of two Gaussians: mu [D], sigma [D, D] (float64 recommended). Pure function."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f'fid_from_stats: shapes {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape} disagree')
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    mean_term = np.square(mu1 - mu2).sum()
    return float(np.real(mean_term + np.trace(sigma1 + sigma2 - 2 * covmean)))


def compute_fid(opts: metric_utils.MetricOptions, max_real, num_gen: int, batch_size: int = 64,
                batch_gen: int = 4) -> float:
    """FID between the real set and num_gen generated images; NaN on ranks other than 0."""
    detector_kwargs = dict(return_features=True)
    mu_real, sigma_real = metric_utils.compute_feature_stats_for_dataset(
        opts, detector_kwargs, max_items=max_real, batch_size=batch_size, capture_mean_cov=True).get_mean_cov()
    mu_gen, sigma_gen = metric_utils.compute_feature_stats_for_generator(
        opts, detector_kwargs, num_gen=num_gen, batch_size=batch_size, batch_gen=batch_gen,
        capture_mean_cov=True).get_mean_cov()
    if opts.rank != 0:
        return float('nan')
    return fid_from_stats(mu_gen, sigma_gen, mu_real, sigma_real)
