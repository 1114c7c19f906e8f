"""view_gain: do G's images turn with its camera? (issue 15: the camera against the turned object)

JS and pose_err compare G's *camera* with the data, or with what one image shows; neither asks
whether moving the camera moves what the image shows. A generator that turns the object inside
its frame (or renders an object that looks the same from every side) can match the data's images
with any camera law; its cameras are then not a pose at all.

view_gain: for each of num_gen z (random z and dataset label c, as pose_err), G renders the same
  object (same z, c and an identically seeded torch generator) from `num_views` cameras: its own
  camera yawed by δ_k, k = 1..K, evenly spaced in [−sweep_deg, +sweep_deg], about the vertical
  world line through its look-at point (metrics/reprojection_error.py `yaw_camera`: h -> h + δ).
  The pose estimator trained on the labeled real images (metrics/estimators.py, the one of
  pose_err) reads the yaw ĥ_k of each quantized image. Per z, the least-squares slope of ĥ on δ
  (`sweep_slopes`; the ĥ_k are unwrapped around the view at δ = 0):
    slope  1: the image turns with the camera as the data's views do;
    slope −1: the same, in a mirrored frame (the learned frame may be the data's mirror);
    slope  0: the image does not depend on the camera (a rotation-invariant object, or one
              turned in its frame): the camera law is not identifiable from the images.
  value = mean slope over z (signed); also abs (mean |slope|), std (over z) and
  estimator_slope: the estimator's own yaw slope on the held-out real images against their true
  yaw (its regression to the mean; value / estimator_slope corrects for it).
  Across z, at G's own cameras (δ = 0): camera_share = the squared correlation between G's camera
  yaw and the estimated yaw of its image (1: the camera explains every view G shows; 0: the views
  come from turning the object), camera_std and image_std (degrees): the spread of G's camera
  yaws and of the yaws its images show; data_std: the spread of the dataset's true yaws (its camera
  labels, metrics/pose_metrics.py `reference_poses`).
Caveat: the estimator only knows the data's views. A sweep that leaves the data's yaw range
(cameras near its edge, or between the modes of a multimodal law) reads a smaller slope, so a
wide camera law scores a lower value than a narrow one with the same field. inner is the mean
slope over the latents whose whole sweep stays inside the data's yaw range (the view at δ = 0,
as the estimator reads it, at least sweep_deg inside the 2.5-97.5 % quantiles of the data's true
yaws; NaN when none does), inner_frac their share. It still counts sweeps between the modes of a
multimodal law.
"""

import math

import numpy as np
import torch

from metrics import metric_utils, pose_depth_error, pose_metrics
from metrics.reprojection_error import look_at_point, yaw_camera
from training.cameras import cam2world_to_pose


def sweep_slopes(deltas, yaws) -> np.ndarray:
    """Least-squares slope of yaw on the camera offset, per row.

    deltas [K] radians (the camera's yaw offsets, K >= 2, not all equal); yaws [N, K] radians
    (estimated yaw of each view, any branch of the angle). Each row is unwrapped around its view
    nearest to δ = 0 (differences wrapped to [−π, π)), so a sweep that crosses 0 / 2π is one
    line. -> [N] float64."""
    d = np.asarray(deltas, dtype=np.float64)
    y = np.asarray(yaws, dtype=np.float64)
    if d.ndim != 1 or d.size < 2 or np.ptp(d) == 0 or y.ndim != 2 or y.shape[1] != d.size:
        raise ValueError(f'sweep_slopes: need deltas [K >= 2] (not all equal) and yaws [N, K], '
                         f'got {d.shape}, {y.shape}')
    y = pose_metrics.wrap_around(y, y[:, [int(np.argmin(np.abs(d)))]])
    dc = d - d.mean()
    return ((y - y.mean(1, keepdims=True)) * dc).sum(1) / (dc ** 2).sum()


def sweep_offsets(num_views: int, sweep_deg: float) -> np.ndarray:
    """[K] yaw offsets in radians, evenly spaced in [−sweep_deg, +sweep_deg] (K >= 2, sweep > 0)."""
    if num_views < 2 or not sweep_deg > 0:
        raise ValueError(f'view_gain needs num_views >= 2 and sweep_deg > 0, got {num_views}, {sweep_deg}')
    return np.radians(np.linspace(-sweep_deg, sweep_deg, num_views))


def swept_yaws(G, est, z, c, seed: int, deltas, pivot, G_kwargs=None) -> torch.Tensor:
    """[N, 1 + K] (radians): G's own camera yaw h (training/cameras.py `cam2world_to_pose`), then the
    estimated yaw of the K views of each (z, c): G's own camera yawed by deltas[k]; every render
    uses a torch generator seeded with `seed` (same object in every view)."""
    render = metric_utils.seeded_renderer(G, z, c, seed, G_kwargs)
    cam = render()['cam2world']
    center = look_at_point(cam, pivot)
    yaws = [cam2world_to_pose(cam.float())[0][:, 0].double().cpu()]
    for delta in deltas:
        out = render(cam2world=yaw_camera(cam, float(delta), center))
        yaws.append(est(metric_utils.quantize(out['image']))['pose'][:, 0].double().cpu())
    return torch.stack(yaws, dim=1)


def estimator_slope(opts, est) -> float:
    """The estimator's least-squares yaw slope against the true yaw on the held-out real images."""
    pred, target = pose_depth_error.holdout_poses(opts, est)
    true = target[:, 0].double().numpy()
    pred = pose_metrics.wrap_around(pred[:, 0].double().numpy(), true)     # same branch as the truth
    if np.ptp(true) == 0:
        return float('nan')
    return float(np.cov(true, pred)[0, 1] / np.var(true, ddof=1))


def compute_view_gain(opts: metric_utils.MetricOptions, num_gen: int = 200, num_views: int = 5,
                      sweep_deg: float = 15.0, estimator=None, est_steps=None, batch: int = 4) -> dict:
    """view_gain (module docstring); NaN on ranks other than 0."""
    deltas = sweep_offsets(num_views, sweep_deg)
    est = pose_depth_error.get_estimator(opts, 'pose', estimator, est_steps)
    rows = metric_utils.seeded_sweep_rows(
        opts, num_gen, batch, lambda G, z, c, seed, pivot: swept_yaws(G, est, z, c, seed, deltas, pivot, opts.G_kwargs),
        'generated view sweeps')
    if opts.rank != 0:
        return dict(value=float('nan'))
    slopes = sweep_slopes(deltas, rows[:, 1:])
    ref = estimator_slope(opts, est)
    data_yaw = pose_metrics.reference_poses(opts)[:, 0]
    centre = rows[:, 1 + int(np.argmin(np.abs(deltas)))]
    return dict(value=float(slopes.mean()), abs=float(np.abs(slopes).mean()), std=float(slopes.std()),
                estimator_slope=ref, **camera_share(rows[:, 0], centre),
                data_std=float(np.degrees(unwrap(data_yaw).std())),
                **inner_gain(slopes, centre, data_yaw, math.radians(sweep_deg)))


def inner_gain(slopes, view_yaw, data_yaw, sweep: float, tail: float = 0.025) -> dict:
    """slopes [N], view_yaw [N] (the estimated yaw of each latent's view at δ = 0), data_yaw [M]
    (the data's true yaws), radians -> {inner: mean slope over the latents with view_yaw in
    [q_tail + sweep, q_(1 - tail) - sweep] of the data's yaws (NaN when none), inner_frac}."""
    mean = circular_mean(data_yaw)
    lo, hi = np.quantile(pose_metrics.wrap_around(data_yaw, mean), [tail, 1 - tail])
    view = pose_metrics.wrap_around(np.asarray(view_yaw, dtype=np.float64), mean)
    keep = (view >= lo + sweep) & (view <= hi - sweep)
    return dict(inner=float(np.asarray(slopes)[keep].mean()) if keep.any() else float('nan'),
                inner_frac=float(keep.mean()))


def circular_mean(x) -> float:
    """The circular mean of angles x [N] (radians)."""
    x = np.asarray(x, dtype=np.float64)
    return math.atan2(np.sin(x).mean(), np.cos(x).mean())


def unwrap(x) -> np.ndarray:
    """Angles [N] (radians) on the branch around their circular mean, float64."""
    return pose_metrics.wrap_around(x, circular_mean(x))


def camera_share(camera, image) -> dict:
    """camera [N] (G's camera yaw), image [N] (the estimated yaw of its image at that camera),
    radians -> {camera_share: squared correlation (NaN when either is constant), camera_std,
    image_std (degrees)}. Both are unwrapped around their circular mean first."""
    cam, img = unwrap(camera), unwrap(image)
    share = float(np.corrcoef(cam, img)[0, 1] ** 2) if cam.std() > 0 and img.std() > 0 else float('nan')
    return dict(camera_share=share, camera_std=float(np.degrees(cam.std())), image_std=float(np.degrees(img.std())))
