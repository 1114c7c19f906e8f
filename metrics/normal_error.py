"""Normal error of generated and of held-out real images (SEEDS_SPEC §6.4, §6.6 `normal_err`).

Normals come from depth maps, the quantity every generator here renders: a depth map d [S, S]
(distance along the unit ray through each pixel centre) is back-projected with its camera,
x = o + d r, and the normal of pixel (i, j) is the cross product of the central differences
x[i+1, j] - x[i-1, j] and x[i, j+1] - x[i, j-1], normalized and turned to face the camera. It
is defined on the interior of the mask (the pixel and its 4 neighbours in the mask), so a
silhouette edge never mixes object and background depth.

normal_err: for num_gen images of G, the depth estimator of depth_err (metrics/estimators.py,
  trained on the labeled set's GT depth + mask) predicts a depth map and a mask M of the image;
  as in depth_err the prediction is fitted to G's depth on M (a d_est + b, least squares) and
  G's depth is resampled to the estimator's S x S. Both are turned into normals with G's own
  camera (cam2world of the output, intrinsics of the label c). The error is the angle in
  degrees between the two normals, averaged over the interior of M, then over images (an image
  with < 16 interior pixels is skipped). It measures whether G's geometry agrees with the shape
  its image shows to an estimator trained on true shapes: a proxy of "normal error vs the
  truth", since generated images have no ground truth; normal_err_gt is its floor.
  Also: images = the fraction of images counted.
normal_err_gt: the same on the held-out real images (item i with i % 10 == 9), against the
  ground truth: the estimator's depth fitted to the GT depth on (estimator mask AND GT mask),
  normals with the GT camera, compared with the GT normals of the npz (`make_synthetic.py
  --light mvn`: 'normals' [N, R, R, 3], unit world normals on the mask) resampled to S, or with
  the normals of the GT depth when the npz has none; on the interior of both masks.
"""

import numpy as np
import torch
import torch.nn.functional as F

from metrics import estimators, metric_utils
from metrics.pose_depth_error import MIN_MASK_PIXELS, get_estimator
from torch_utils import misc
from training.rendering.rays import sample_rays

# ----------------------------------------------------------------------------
# Pure measures.


def depth_to_normals(depth: torch.Tensor, cam2world: torch.Tensor, intrinsics: torch.Tensor, mask: torch.Tensor):
    """Unit world normals of a depth map, facing the camera (module docstring).

    depth [N, S, S] ray distance; cam2world [N, 4, 4] (OpenCV); intrinsics [N, 3, 3] normalized;
    mask [N, S, S] bool. Returns (normals [N, S, S, 3], valid [N, S, S] bool: the pixel and its
    4 neighbours in the mask, not on the border); normals are 0 where not valid.
    """
    N, S = depth.shape[0], depth.shape[-1]
    misc.assert_shape(depth, [N, S, S])
    misc.assert_shape(mask, [N, S, S])
    dtype = torch.float64
    origins, dirs = sample_rays(cam2world.to(dtype), intrinsics.to(dtype), S)      # [N, S*S, 3]
    dirs = dirs.reshape(N, S, S, 3)
    points = origins.reshape(N, S, S, 3) + torch.nan_to_num(depth.to(dtype), posinf=0.0)[..., None] * dirs
    du = torch.zeros_like(points)
    dv = torch.zeros_like(points)
    du[:, :, 1:-1] = points[:, :, 2:] - points[:, :, :-2]          # along columns (image right)
    dv[:, 1:-1, :] = points[:, 2:, :] - points[:, :-2, :]          # along rows (image down)
    n = F.normalize(torch.linalg.cross(du, dv, dim=-1), dim=-1)
    n = torch.where(((n * dirs).sum(-1, keepdim=True) > 0), -n, n)  # face the camera
    valid = torch.zeros_like(mask)
    m = mask
    valid[:, 1:-1, 1:-1] = (m[:, 1:-1, 1:-1] & m[:, :-2, 1:-1] & m[:, 2:, 1:-1] & m[:, 1:-1, :-2] & m[:, 1:-1, 2:])
    return torch.where(valid[..., None], n, torch.zeros_like(n)), valid


def normal_angles(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between normals pred, target [..., 3] (normalized here) -> [...]."""
    cos = (F.normalize(pred.double(), dim=-1) * F.normalize(target.double(), dim=-1)).sum(-1)
    return torch.rad2deg(torch.arccos(cos.clamp(-1, 1)))


def masked_image_means(values: torch.Tensor, valid: torch.Tensor, min_pixels: int = MIN_MASK_PIXELS):
    """Per-image mean of values [N, S, S] over valid [N, S, S] -> [N] (NaN for < min_pixels)."""
    count = valid.flatten(1).sum(1)
    total = torch.where(valid, values, torch.zeros_like(values)).flatten(1).sum(1)
    return torch.where(count >= min_pixels, total / count.clamp_min(1), torch.full_like(total, float('nan')))


def fit_depth(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """a pred + b, least squares to target on mask, per image (depth_err's fit): [N, S, S] each."""
    pred, target, m = pred.double(), torch.nan_to_num(target.double(), posinf=0.0), mask.double()
    n = m.flatten(1).sum(1).clamp_min(1)[:, None, None]
    mp, mt = (pred * m).sum((1, 2), keepdim=True) / n, (target * m).sum((1, 2), keepdim=True) / n
    cov = ((pred - mp) * (target - mt) * m).sum((1, 2), keepdim=True) / n
    var = ((pred - mp) ** 2 * m).sum((1, 2), keepdim=True) / n
    return cov / var.clamp_min(1e-12) * (pred - mp) + mt


def normal_errors(pred_depth, target_normals, cam2world, intrinsics, mask) -> torch.Tensor:
    """Per-image mean angle (degrees, [N]; NaN when < 16 interior pixels) between the normals of
    pred_depth [N, S, S] and target_normals [N, S, S, 3], on the interior of mask [N, S, S]."""
    pred_n, valid = depth_to_normals(pred_depth, cam2world, intrinsics, mask)
    valid = valid & (target_normals.abs().sum(-1) > 0)
    return masked_image_means(normal_angles(pred_n, target_normals), valid)

# ----------------------------------------------------------------------------
# Metrics.


class _KeepLabels:
    """A LatentSampler that remembers its last labels c (normal_err needs the intrinsics)."""

    def __init__(self, sampler):
        self.sampler, self.c = sampler, None

    def sample(self, batch):
        z, self.c = self.sampler.sample(batch)
        return z, self.c

    def torch_generator(self):
        return self.sampler.torch_generator()


def compute_normal_err(opts: metric_utils.MetricOptions, num_gen: int = 1000, estimator=None, est_steps=None,
                       batch: int = 4) -> dict:
    """normal_err (module docstring); NaN on ranks other than 0."""
    est = get_estimator(opts, 'depth', estimator, est_steps)
    G = metric_utils.prepare_generator(opts)
    sampler = _KeepLabels(metric_utils.LatentSampler(opts, G))
    per_rank = -(-num_gen // opts.num_gpus)
    rows = []
    for done in range(0, per_rank, batch):
        out = metric_utils.run_generator(opts, G, sampler, min(batch, per_rank - done))
        pred = est(metric_utils.quantize(out['image']))
        mask = pred['mask'].cpu()
        rendered = F.interpolate(out['image_depth'].float(), size=mask.shape[-2:], mode='bilinear',
                                 align_corners=False)[:, 0].cpu()
        cam2world, K = out['cam2world'].cpu(), sampler.c[:, 16:25].reshape(-1, 3, 3).cpu()
        g_normals, _ = depth_to_normals(rendered, cam2world, K, mask)
        err = normal_errors(fit_depth(pred['depth'].cpu(), rendered, mask), g_normals, cam2world, K, mask)
        rows.append(err[:, None])
        opts.report_progress('generated images', done + len(err), per_rank)
    err = metric_utils.gather_rows(torch.cat(rows).to(opts.device), opts.num_gpus).cpu().numpy()[:num_gen, 0]
    if opts.rank != 0:
        return dict(value=float('nan'))
    counted = np.isfinite(err)
    return dict(value=float(err[counted].mean()) if counted.any() else float('nan'), images=float(counted.mean()))


def _gt_normals(gt: dict, idx, resolution: int, cam2world, intrinsics, gt_depth, gt_mask) -> torch.Tensor:
    """GT normals [n, S, S, 3] of items idx: the npz's 'normals' (nearest-resampled, zero off
    gt_mask), else the normals of the GT depth."""
    if 'normals' not in gt:
        return depth_to_normals(gt_depth, cam2world, intrinsics, gt_mask)[0]
    n = torch.as_tensor(np.asarray(gt['normals'], np.float32)[idx]).permute(0, 3, 1, 2)
    n = F.interpolate(n, size=(resolution, resolution), mode='nearest').permute(0, 2, 3, 1)
    return F.normalize(n, dim=-1) * gt_mask[..., None]


def compute_normal_err_gt(opts: metric_utils.MetricOptions, estimator=None, est_steps=None, max_items=None,
                          batch: int = 64) -> dict:
    """normal_err_gt: the depth estimator's normal error on held-out real images (rank 0 only)."""
    est = get_estimator(opts, 'depth', estimator, est_steps)
    dataset = estimators.open_labeled_dataset(opts.dataset_kwargs)
    idx = np.flatnonzero(estimators.is_holdout(np.arange(len(dataset))))[:max_items]
    gt = estimators.resolve_gt(opts.dataset_kwargs['path'])
    if len(idx) == 0 or 'cam2world' not in gt or 'intrinsics' not in gt:
        raise ValueError(f'{dataset.name}: normal_err_gt needs held-out items and a GT npz with cameras')
    if opts.rank != 0:
        return dict(value=float('nan'))
    res, errs = estimators.estimator_resolution(dataset), []
    for i in range(0, len(idx), batch):
        part = idx[i:i + batch]
        target = estimators.load_targets('depth', dataset, part, res, gt)
        pred = est(estimators.load_images(dataset, part, res).to(opts.device))
        cam2world = torch.as_tensor(np.asarray(gt['cam2world'])[part])
        K = torch.as_tensor(np.asarray(gt['intrinsics'])[part])
        both = pred['mask'].cpu() & target['mask']
        normals = _gt_normals(gt, part, res, cam2world, K, target['depth'], target['mask'])
        errs.append(normal_errors(fit_depth(pred['depth'].cpu(), target['depth'], both), normals, cam2world, K,
                                  both))
    err = torch.cat(errs).numpy()
    counted = np.isfinite(err)
    return dict(value=float(err[counted].mean()) if counted.any() else float('nan'), images=float(counted.mean()))
