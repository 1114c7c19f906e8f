"""Pose and depth errors of generated images (SPEC §10.2, a reconstruction of the EG3D/PoF3D
protocol with our own estimators; see metrics/estimators.py for the estimators).

pose_err: num_gen images G(z, c)['image'] (random z, random dataset label c, quantized to
  uint8 like FID). Their rendered camera out['cam2world'] -> (h, v) (SPEC §3.2 inverse) is
  mapped into the dataset's frame with the pose_js yaw alignment (metrics/pose_metrics.py:
  offset + optional mirror found from the pose *distributions* of `num_align` z vs the
  dataset), then compared with the estimator's (h, v) of the image:
    h error   = |h_est - h_render| wrapped to [0, 180] degrees,
    v error   = |v_est - v_render| in degrees of the v parameter (SPEC §3.2; not the polar angle),
    dir error = angle in degrees between the unit directions from the world origin to the two
                camera positions (pose_to_origin(h, v, 1)), i.e. between the viewing directions
                of cameras aimed at the origin.
  value = mean dir error (aligned); also h_deg, v_deg (aligned, means), raw (dir error
  without alignment), yaw_offset (radians), mirror (1/0), and view_js / view_js_yaw: the JS
  (joint / yaw, nats, pose_js's bins, no alignment: the estimator reads in the data's frame) of
  the estimated poses of G's images against the dataset's poses; other_mirror: the mean dir error
  with the other mirror's best alignment, and other_mirror_js_gap its yaw JS minus the chosen one's.
  The mirror is the JS's choice unless the two mirrors' yaw JS lie within MIRROR_JS_TOL (a
  mirror-symmetric law cannot orient the frame): then the one under which G's images agree with its
  cameras (`choose_mirror`; the gap may then be slightly negative). pose_js asks whether G's
  *cameras* follow the data's law; view_js whether the *views its images show* do (what D sees).
  From num_gen images, so biased up by about (bins - 1) / (4 num_gen): ~0.009 for the yaw at 1000.
depth_err: the estimator's depth map of each generated image vs G's rendered depth
  out['image_depth'] (ray distance) bilinearly resampled to the estimator's S x S. On the mask
  M = the estimator's foreground (p > 0.5; the whole image when M has < 16 pixels), the
  estimate is fitted to G's depth per image by least squares, a * d_est + b, and the error is
    mean_M |a d_est + b - d_G| / std_M(d_G)
  (scale-free: 0 = identical shape, ~0.8 = unrelated). value = mean over images; also rmse
  (sqrt(mean_M r^2) / std_M(d_G), averaged), mask_frac (mean fraction of pixels in M) and relief:
  the median over images of std_M(d_G) / std_M(d_est), the depth relief G rendered against the one
  its image shows (1 = as deep as it looks; depth_err_gt's relief is the estimator's own ratio).
pose_err_gt / depth_err_gt: the same measures of the estimator itself on the held-out real
  images (item i with i % 10 == 9, never trained on) against the ground truth (GT pose /
  labels; GT depth on M = estimator mask AND GT mask, GT mask when < 16 pixels): the error
  floor of pose_err / depth_err. No alignment (same frame).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from metrics import estimators, metric_utils, pose_metrics
from training.cameras import pose_to_origin

MIN_MASK_PIXELS = 16

# ----------------------------------------------------------------------------
# Pure measures.


def angular_errors(pred, target) -> dict:
    """Per-sample errors in degrees of poses pred, target [N, 2] (h, v radians): h, v, dir."""
    pred = torch.as_tensor(np.asarray(pred), dtype=torch.float64)
    target = torch.as_tensor(np.asarray(target), dtype=torch.float64)
    dh = torch.remainder(pred[:, 0] - target[:, 0] + math.pi, 2 * math.pi) - math.pi
    u = pose_to_origin(pred[:, :1], pred[:, 1:].clamp(0, math.pi))
    w = pose_to_origin(target[:, :1], target[:, 1:].clamp(0, math.pi))
    cos = (u * w).sum(-1).clamp(-1, 1)
    return {'h': torch.rad2deg(dh.abs()).numpy(), 'v': torch.rad2deg((pred[:, 1] - target[:, 1]).abs()).numpy(),
            'dir': torch.rad2deg(torch.arccos(cos)).numpy()}


def _masked_mean(mask: torch.Tensor):
    """mean(x [N, P]) -> [N]: the per-row mean over mask [N, S, S] (flattened; a row whose mask has
    fewer than MIN_MASK_PIXELS pixels averages all of them)."""
    m = mask.flatten(1)
    m = torch.where(m.sum(1, keepdim=True) < MIN_MASK_PIXELS, torch.ones_like(m), m).double()
    n = m.sum(1)
    return lambda x: (x * m).sum(1) / n


def depth_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor):
    """Per-image normalized errors of depth maps pred, target [N, S, S] on mask [N, S, S] bool
    after the least-squares fit a * pred + b ~ target. Returns (mae [N], rmse [N]), both
    divided by the masked std of target; an image whose mask has < 16 pixels uses all pixels."""
    pred, target = pred.double().flatten(1), target.double().flatten(1)
    mean = _masked_mean(mask)
    mp, mt = mean(pred), mean(target)
    cov = mean((pred - mp[:, None]) * (target - mt[:, None]))
    var_p = mean((pred - mp[:, None]) ** 2)
    a = cov / var_p.clamp_min(1e-12)
    residual = a[:, None] * (pred - mp[:, None]) + mt[:, None] - target
    std_t = mean((target - mt[:, None]) ** 2).sqrt().clamp_min(1e-12)
    return (mean(residual.abs()) / std_t).numpy(), (mean(residual ** 2).sqrt() / std_t).numpy()


def depth_relief(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Per-image std of target over std of pred on mask (pred, target [N, S, S]; mask [N, S, S]
    bool; an image whose mask has < 16 pixels uses all pixels) -> [N] float64 (NaN where pred is flat)."""
    pred, target = pred.double().flatten(1), target.double().flatten(1)
    mean = _masked_mean(mask)

    def std(x):
        return mean((x - mean(x)[:, None]) ** 2).sqrt()
    sp = std(pred)
    return torch.where(sp > 1e-12, std(target) / sp.clamp_min(1e-12), torch.full_like(sp, float('nan'))).numpy()

# ----------------------------------------------------------------------------
# Plumbing.


def get_estimator(opts: metric_utils.MetricOptions, kind: str, estimator=None, est_steps=None):
    """The registered estimator `estimator`, or the built-in one of `kind` for the dataset
    (loaded from / trained into the cache when opts.cache; rank 0 trains, others wait)."""
    if estimator is not None:
        return estimators.get_registered_estimator(estimator)
    kwargs = dict(steps=est_steps, dataset_kwargs=opts.dataset_kwargs, device=opts.device, progress=opts.progress)
    if not opts.cache:
        return estimators.train_estimator(kind, **kwargs).to(opts.device)
    if opts.rank != 0:
        metric_utils.barrier(opts.num_gpus)
    est = estimators.load_or_train(kind, cache_dir=opts.cache_path(), **kwargs)
    if opts.rank == 0:
        metric_utils.barrier(opts.num_gpus)
    return est


def _generate(opts, num_gen: int, batch: int, fn):
    """fn(G output dict) -> [B, K] float tensor for this rank's share of num_gen images; the
    rows of all ranks gathered (rank order interleaved), [num_gen, K] numpy."""
    G = metric_utils.prepare_generator(opts)
    sampler = metric_utils.LatentSampler(opts, G)
    per_rank = -(-num_gen // opts.num_gpus)
    rows = []
    for done in range(0, per_rank, batch):
        rows.append(fn(metric_utils.run_generator(opts, G, sampler, min(batch, per_rank - done))).double().cpu())
        opts.report_progress('generated images', done + len(rows[-1]), per_rank)
    gathered = metric_utils.gather_rows(torch.cat(rows).to(opts.device), opts.num_gpus)
    return gathered.cpu().numpy()[:num_gen]

# ----------------------------------------------------------------------------
# Metrics.


# Yaw JS differences below this (nats) do not orient the frame: the finite-sample bias alone is ~0.009.
MIRROR_JS_TOL = 0.005


def choose_mirror(found: dict, dir_err: dict) -> bool:
    """The mirror of the frame: the yaw JS's choice (`pose_metrics.best_alignment`) unless the two
    mirrors' JS lie within MIRROR_JS_TOL, as they do for every mirror-symmetric law (a bell, a uniform
    arc, two equal clusters); then the one in which G's images agree with its cameras (lower mean dir
    error `dir_err[m]`): the handedness is how G's views turn with its camera, not the law's shape."""
    _, mirror, _ = pose_metrics.best_alignment(found)
    if len(found) == 2 and abs(found[True][1] - found[False][1]) < MIRROR_JS_TOL:
        mirror = min(found, key=lambda m: (dir_err[m], m))
    return mirror


def compute_pose_err(opts: metric_utils.MetricOptions, num_gen: int = 1000, estimator=None, est_steps=None,
                     reference: str = 'auto', align: bool = True, num_align: int = 50000, batch: int = 4) -> dict:
    """pose_err (module docstring); NaN on ranks other than 0."""
    est = get_estimator(opts, 'pose', estimator, est_steps)

    def fn(out):
        pred = est(metric_utils.quantize(out['image']))['pose'].to(opts.device)
        rendered = torch.as_tensor(pose_metrics.poses_from_cam2world(out['cam2world'].cpu()), device=opts.device)
        return torch.cat([pred.double(), rendered], dim=1)
    rows = _generate(opts, num_gen, batch, fn)
    gen_h = pose_metrics.generator_poses(opts, num_align)[:, 0] if align else None   # every rank draws
    if opts.rank != 0:
        return dict(value=float('nan'))
    ref = pose_metrics.reference_poses(opts, reference)
    found = pose_metrics.yaw_alignments(gen_h, ref[:, 0]) if align else {False: (0.0, 0.0)}
    dirs = {m: angular_errors(rows[:, :2], np.stack([pose_metrics.apply_alignment(rows[:, 2], found[m][0], m),
                                                      rows[:, 3]], axis=1)) for m in found}
    mirror = choose_mirror(found, {m: float(d['dir'].mean()) for m, d in dirs.items()})
    err, raw = dirs[mirror], angular_errors(rows[:, :2], rows[:, 2:])
    views = pose_metrics.pose_js_from_poses(rows[:, :2], ref, align=False)
    result = dict(value=float(err['dir'].mean()), h_deg=float(err['h'].mean()), v_deg=float(err['v'].mean()),
                  raw=float(raw['dir'].mean()), yaw_offset=found[mirror][0], mirror=int(mirror),
                  view_js=views['raw'], view_js_yaw=views['raw_yaw'])
    if len(found) == 2:   # a near mirror-symmetric law: the yaw JS can hardly tell the two frames apart
        result.update(other_mirror=float(dirs[not mirror]['dir'].mean()),
                      other_mirror_js_gap=found[not mirror][1] - found[mirror][1])
    return result


def compute_depth_err(opts: metric_utils.MetricOptions, num_gen: int = 1000, estimator=None, est_steps=None,
                      batch: int = 4) -> dict:
    """depth_err (module docstring); NaN on ranks other than 0."""
    est = get_estimator(opts, 'depth', estimator, est_steps)

    def fn(out):
        pred = est(metric_utils.quantize(out['image']))
        size = pred['depth'].shape[-2:]
        rendered = F.interpolate(out['image_depth'].float(), size=size, mode='bilinear', align_corners=False)[:, 0]
        mae, rmse = depth_errors(pred['depth'].cpu(), rendered.cpu(), pred['mask'].cpu())
        frac = pred['mask'].float().flatten(1).mean(1).cpu().numpy()
        relief = depth_relief(pred['depth'].cpu(), rendered.cpu(), pred['mask'].cpu())
        return torch.as_tensor(np.stack([mae, rmse, frac, relief], axis=1), device=opts.device)
    rows = _generate(opts, num_gen, batch, fn)
    if opts.rank != 0:
        return dict(value=float('nan'))
    return dict(value=float(rows[:, 0].mean()), rmse=float(rows[:, 1].mean()), mask_frac=float(rows[:, 2].mean()),
                relief=float(np.nanmedian(rows[:, 3])))


def _holdout_data(opts, max_items):
    """(dataset, holdout indices, estimator resolution, ground truth) for *_gt."""
    dataset = estimators.open_labeled_dataset(opts.dataset_kwargs)
    idx = np.flatnonzero(estimators.is_holdout(np.arange(len(dataset))))[:max_items]
    if len(idx) == 0:
        raise ValueError(f'{dataset.name}: too few images for a held-out set (item i with i % 10 == 9)')
    gt = estimators.resolve_gt(opts.dataset_kwargs['path'])
    return dataset, idx, estimators.estimator_resolution(dataset), gt


def holdout_poses(opts: metric_utils.MetricOptions, est, max_items=None, batch: int = 64):
    """(the pose estimator `est`'s (h, v) [N, 2], the true (h, v) [N, 2]) on the held-out real images."""
    dataset, idx, res, gt = _holdout_data(opts, max_items)
    target = estimators.load_targets('pose', dataset, idx, res, gt)['pose']
    pred = torch.cat([est(estimators.load_images(dataset, idx[i:i + batch], res).to(opts.device))['pose'].cpu()
                      for i in range(0, len(idx), batch)])
    return pred, target


def compute_pose_err_gt(opts: metric_utils.MetricOptions, estimator=None, est_steps=None, max_items=None,
                        batch: int = 64) -> dict:
    """pose_err_gt: the pose estimator's error on held-out real images (rank 0 only)."""
    est = get_estimator(opts, 'pose', estimator, est_steps)
    if opts.rank != 0:
        return dict(value=float('nan'))
    pred, target = holdout_poses(opts, est, max_items, batch)
    err = angular_errors(pred, target)
    return dict(value=float(err['dir'].mean()), h_deg=float(err['h'].mean()), v_deg=float(err['v'].mean()))


def compute_depth_err_gt(opts: metric_utils.MetricOptions, estimator=None, est_steps=None, max_items=None,
                         batch: int = 64) -> dict:
    """depth_err_gt: the depth estimator's error on held-out real images vs GT depth (rank 0 only)."""
    est = get_estimator(opts, 'depth', estimator, est_steps)
    if opts.rank != 0:
        return dict(value=float('nan'))
    dataset, idx, res, gt = _holdout_data(opts, max_items)
    maes, rmses, reliefs = [], [], []
    for i in range(0, len(idx), batch):
        target = estimators.load_targets('depth', dataset, idx[i:i + batch], res, gt)
        pred = est(estimators.load_images(dataset, idx[i:i + batch], res).to(opts.device))
        both = pred['mask'].cpu() & target['mask']
        few = both.flatten(1).sum(1) < MIN_MASK_PIXELS
        mask = torch.where(few[:, None, None], target['mask'], both)
        mae, rmse = depth_errors(pred['depth'].cpu(), target['depth'], mask)
        maes.append(mae)
        rmses.append(rmse)
        reliefs.append(depth_relief(pred['depth'].cpu(), target['depth'], mask))
    return dict(value=float(np.concatenate(maes).mean()), rmse=float(np.concatenate(rmses).mean()),
                relief=float(np.nanmedian(np.concatenate(reliefs))))
