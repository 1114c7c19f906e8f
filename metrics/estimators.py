"""Pose and depth estimators for pose_err / depth_err (SPEC §10.2, reconstruction).

The paper measures FFHQ pose and depth with a pretrained face reconstruction model
(Deep3DFaceRecon). That model is not bundled; instead:

- Built-in estimators: tiny CNNs trained on a *labeled* dataset (the synthetic sets of
  make_synthetic.py: camera labels or the GT poses, and the GT depth + mask, from the npz of
  `metric_utils.ground_truth_file`), at S = min(dataset resolution, 64) pixels (images are
  area-resampled to S x S).
  - 'pose':  4 stride-2 convs -> global mean -> linear to (sin h, cos h, v - pi/2), MSE loss;
             h = atan2(sin, cos) wrapped to [0, 2pi), v in radians (SPEC §3.2 convention).
  - 'depth': a 3-level U-Net -> (depth, foreground logit) per pixel; loss = L1 on the
             foreground of the globally standardized GT ray distance + BCE on the GT mask.
  Items whose index i has i % 10 == 9 are held out (never trained on): `*_gt` metrics
  evaluate there. Defaults train in ~10-30 s ('pose') and ~25-105 s ('depth') at 32-64 px
  on a 2-core CPU (DEFAULT_STEPS). Training is deterministic for a seed; the result is cached as
  `<cache>/pof3d-estimators/{kind}-{dataset}-{md5}.pt` (atomic write), md5 over the dataset
  file(s), the GT sidecar and the hyper-parameters, so a set is trained on once.
- External estimators (e.g. the FFHQ face model): `register_estimator(name, fn)` and pass
  `estimator=name` to the metric. fn(images uint8 [N, 3, H, W] on the metric device) returns
  a dict with 'pose' [N, 2] (h, v radians in the dataset's frame) and/or 'depth' [N, S, S]
  (any consistent scale: the metric fits scale and shift) with 'mask' [N, S, S] bool.

Estimator call: est(images uint8 [N, C, H, W]) -> {'pose': [N, 2]} or {'depth': [N, S, S]
float32 ray distance in the training set's units, 'mask': [N, S, S] bool (p > 0.5)}.
"""

import dataclasses
import hashlib
import io
import json
import math
import os
from typing import Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

import dnnlib
from metrics import metric_utils, pose_metrics
from torch_utils import safe_pickle
from training.dataset import ImageFolderDataset
from training.dataset_gt import load_ground_truth

KINDS = ('pose', 'depth')
MAX_RESOLUTION = 64
HOLDOUT_EVERY = 10        # item i is held out when i % 10 == 9
ARCH_VERSION = 2          # bump when the networks or the training change (invalidates caches)

_registry: Dict[str, Callable] = {}


def register_estimator(name: str, fn: Callable) -> None:
    """Make an external estimator available as `estimator=name` (see the module docstring)."""
    if name in KINDS or not isinstance(name, str):
        raise ValueError(f'estimator name must be a string other than {KINDS}, got {name!r}')
    _registry[name] = fn


def get_registered_estimator(name: str) -> Callable:
    if name not in _registry:
        raise ValueError(f'no estimator registered as {name!r} (registered: {sorted(_registry) or "none"})')
    return _registry[name]


# Per-kind defaults of TrainOptions.steps / .batch. Measured on a loaded 2-core CPU, one thread
# (torch.set_num_threads(1); two threads were slower under load): 'pose' ~7 ms/step at 32 px,
# ~19 ms at 64 px (~10-30 s); 'depth' ~25 ms/step at 32 px, ~105 ms at 64 px (~25-105 s).
# Held-out errors on 1000 (32 px) / 300 (64 px) make_synthetic.py cars with uniform yaw:
# pose_err_gt 3.8 degrees (32 px); depth_err_gt 0.25 (32 px) / 0.29 (64 px).
DEFAULT_STEPS = {'pose': 1500, 'depth': 1000}
DEFAULT_BATCH = {'pose': 32, 'depth': 8}


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Hyper-parameters of the built-in estimators (all enter the cache key)."""
    steps: Optional[int] = None   # Adam steps; None: DEFAULT_STEPS[kind]
    batch: Optional[int] = None   # minibatch; None: DEFAULT_BATCH[kind]
    lr: float = 2e-3
    max_items: int = 10000        # training images kept in memory (the first ones, after the holdout)
    seed: int = 0

    def resolved(self, kind: str, steps: Optional[int] = None) -> 'TrainOptions':
        """The options with per-kind defaults filled in and `steps` (when given) applied."""
        steps = steps if steps is not None else self.steps if self.steps is not None else DEFAULT_STEPS[kind]
        return dataclasses.replace(self, steps=int(steps),
                                   batch=self.batch if self.batch is not None else DEFAULT_BATCH[kind])

# ----------------------------------------------------------------------------
# Networks.


def _conv(cin, cout, stride=1):
    return torch.nn.Sequential(torch.nn.Conv2d(cin, cout, 3, stride, 1), torch.nn.ReLU())


class PoseNet(torch.nn.Module):
    """[N, 3, S, S] in [-1, 1] -> [N, 3] = (sin h, cos h, v - pi/2)."""

    def __init__(self):
        super().__init__()
        self.features = torch.nn.Sequential(_conv(3, 16, 2), _conv(16, 32, 2), _conv(32, 64, 2), _conv(64, 64, 2))
        self.head = torch.nn.Linear(64, 3)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))


class DepthNet(torch.nn.Module):
    """[N, 3, S, S] in [-1, 1] (S divisible by 4) -> [N, 2, S, S] = (standardized depth, logit)."""

    def __init__(self):
        super().__init__()
        self.e1 = _conv(3, 16)
        self.e2 = torch.nn.Sequential(_conv(16, 32, 2), _conv(32, 32))
        self.e3 = torch.nn.Sequential(_conv(32, 64, 2), _conv(64, 64))
        self.d2 = _conv(64 + 32, 32)
        self.d1 = torch.nn.Sequential(_conv(32 + 16, 16), torch.nn.Conv2d(16, 2, 3, 1, 1))

    def forward(self, x):
        e1 = self.e1(x)
        e2 = self.e2(e1)
        e3 = self.e3(e2)
        d2 = self.d2(torch.cat([F.interpolate(e3, scale_factor=2.0, mode='nearest'), e2], dim=1))
        return self.d1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode='nearest'), e1], dim=1))


def _make_net(kind):
    return PoseNet() if kind == 'pose' else DepthNet()


def to_input(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 [N, C, H, W] -> float [N, 3, S, S] in [-1, 1] (grey repeated, area-resampled)."""
    x = images.float() / 127.5 - 1
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if x.shape[-1] != resolution or x.shape[-2] != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode='area' if x.shape[-1] > resolution else 'bilinear')
    return x[:, :3]


class Estimator:
    """A trained built-in estimator: est(images uint8 [N, C, H, W]) -> dict (module docstring)."""

    def __init__(self, kind: str, net: torch.nn.Module, meta: dict):
        self.kind, self.net, self.meta = kind, net.eval().requires_grad_(False), meta
        self.resolution = int(meta['resolution'])

    def to(self, device):
        self.net.to(device)
        return self

    def __call__(self, images: torch.Tensor) -> dict:
        device = next(self.net.parameters()).device
        with torch.no_grad():
            y = self.net(to_input(images.to(device), self.resolution))
        if self.kind == 'pose':
            h = torch.remainder(torch.atan2(y[:, 0], y[:, 1]), 2 * math.pi)
            return {'pose': torch.stack([h, y[:, 2] + math.pi / 2], dim=1)}
        depth = y[:, 0] * self.meta['depth_std'] + self.meta['depth_mean']
        return {'depth': depth, 'mask': y[:, 1] > 0}

# ----------------------------------------------------------------------------
# Data.


def is_holdout(index) -> np.ndarray:
    return np.asarray(index) % HOLDOUT_EVERY == HOLDOUT_EVERY - 1


def open_labeled_dataset(dataset_kwargs: dict) -> ImageFolderDataset:
    """The dataset of `dataset_kwargs` in raw item order: no xflip, no max_size, with labels."""
    kwargs = {k: v for k, v in dataset_kwargs.items() if k not in ('class_name', 'xflip', 'max_size', 'use_labels')}
    return ImageFolderDataset(use_labels=True, **kwargs)


def estimator_resolution(dataset) -> int:
    return min(int(dataset.resolution), MAX_RESOLUTION) // 4 * 4


def _resize_maps(x: np.ndarray, resolution: int) -> torch.Tensor:
    """[N, R, R] maps (depth with inf, or mask) -> [N, S, S] float by nearest sampling."""
    t = torch.as_tensor(np.asarray(x, np.float32))[:, None]
    return F.interpolate(t, size=(resolution, resolution), mode='nearest')[:, 0]


def resolve_gt(dataset_path, gt=None) -> dict:
    """Ground truth {key: array in raw item order}: gt itself (a dict), the npz at path gt, or
    (None) the dataset's sidecar (`metric_utils.ground_truth_file`); {} when there is none."""
    if isinstance(gt, dict):
        return gt
    if gt is not None:
        if not os.path.isfile(gt):
            raise FileNotFoundError(f'no such ground-truth file: {gt}')
        return load_ground_truth(gt)
    return metric_utils.load_dataset_ground_truth(dataset_path)


def load_targets(kind: str, dataset, indices: np.ndarray, resolution: int, gt: dict) -> dict:
    """Training/evaluation targets of the items `indices`: 'pose' [n, 2] (h wrapped, v), or
    'depth' [n, S, S] (0 off the mask) and 'mask' [n, S, S] bool, from the ground truth gt
    (a `resolve_gt` dict; poses fall back to the camera labels)."""
    if kind == 'pose':
        if 'pose' in gt:
            pose = np.asarray(gt['pose'], np.float64)[indices]
            return {'pose': torch.as_tensor(np.stack([pose_metrics.wrap_h(pose[:, 0]), pose[:, 1]], 1),
                                            dtype=torch.float32)}
        labels = dataset.get_pose_labels()
        if labels is None or np.abs(labels[:, :16]).sum() == 0:
            raise ValueError(f'{dataset.name}: the pose estimator needs camera labels or a GT "pose"')
        return {'pose': torch.as_tensor(pose_metrics.poses_from_cam2world(labels[indices, :16]), dtype=torch.float32)}
    if 'depth' not in gt:
        raise ValueError(f'{dataset.name}: the depth estimator needs ground truth with "depth" '
                         '(a <stem>_gt.npz beside the dataset)')
    depth = np.asarray(gt['depth'], np.float32)[indices]
    mask = np.asarray(gt['mask'], bool)[indices] if 'mask' in gt else np.isfinite(depth)
    mask = _resize_maps(mask & np.isfinite(depth), resolution) > 0.5
    depth = torch.nan_to_num(_resize_maps(np.where(np.isfinite(depth), depth, 0), resolution)) * mask
    return {'depth': depth, 'mask': mask}


def load_images(dataset, indices, resolution: int) -> torch.Tensor:
    """uint8 [n, 3, S, S] of the items `indices` (area-resampled to S)."""
    images = [torch.from_numpy(dataset[int(i)][0]) for i in indices]
    out = [to_input(torch.stack(images[j:j + 256]), resolution) for j in range(0, len(images), 256)]
    return metric_utils.quantize(torch.cat(out))

# ----------------------------------------------------------------------------
# Training and the cache.


def _loss(kind: str, net, x, target: dict, meta: dict):
    y = net(x)
    if kind == 'pose':
        h, v = target['pose'][:, 0], target['pose'][:, 1]
        return F.mse_loss(y, torch.stack([torch.sin(h), torch.cos(h), v - math.pi / 2], dim=1))
    mask = target['mask'].float()
    depth = (target['depth'] - meta['depth_mean']) / meta['depth_std']
    l1 = ((y[:, 0] - depth).abs() * mask).sum() / mask.sum().clamp_min(1)
    return l1 + F.binary_cross_entropy_with_logits(y[:, 1], mask)


def train_estimator(kind: str, dataset_path=None, gt=None, steps: Optional[int] = None, cache_dir: Optional[str] = None,
                    dataset_kwargs: Optional[dict] = None, device='cpu', options: Optional[TrainOptions] = None,
                    progress: Optional[Callable] = None) -> Estimator:
    """Train a built-in estimator of `kind` on the non-held-out items of a labeled dataset.

    dataset_path (or dataset_kwargs, e.g. with resolution / create_label_fov): the dataset;
    gt: the ground truth (`resolve_gt`: None = the `<stem>_gt.npz` sidecar, an npz path, or a
    dict of arrays in raw item order); steps overrides options.steps; with cache_dir the
    result is written to the cache (atomically).
    """
    if kind not in KINDS:
        raise ValueError(f'estimator kind must be one of {KINDS}, got {kind!r}')
    dataset_kwargs = dict(dataset_kwargs or {}, **({'path': dataset_path} if dataset_path is not None else {}))
    options = (options or TrainOptions()).resolved(kind, steps)
    dataset = open_labeled_dataset(dataset_kwargs)
    resolution = estimator_resolution(dataset)
    train_idx = np.flatnonzero(~is_holdout(np.arange(len(dataset))))[:options.max_items]
    images = load_images(dataset, train_idx, resolution)
    target = load_targets(kind, dataset, train_idx, resolution, resolve_gt(dataset_kwargs['path'], gt))
    meta = dict(kind=kind, resolution=resolution, arch_version=ARCH_VERSION, options=dataclasses.asdict(options))
    if kind == 'depth':
        fg = target['depth'][target['mask']]
        meta.update(depth_mean=float(fg.mean()) if fg.numel() else 0.0,
                    depth_std=max(float(fg.std()), 1e-6) if fg.numel() > 1 else 1.0)
    net = _fit(kind, images, target, meta, options, torch.device(device), progress)
    estimator = Estimator(kind, net, meta)
    if cache_dir is not None:
        _save(estimator, _cache_file(kind, dataset_kwargs, gt, options, cache_dir))
    return estimator


def _fit(kind, images, target, meta, options: TrainOptions, device, progress):
    """Adam on random minibatches (seeded); returns the trained net on `device`."""
    torch.manual_seed(options.seed)
    net = _make_net(kind).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=options.lr)
    gen = torch.Generator().manual_seed(options.seed)
    for step in range(options.steps):
        idx = torch.randint(len(images), [min(options.batch, len(images))], generator=gen)
        x = to_input(images[idx].to(device), meta['resolution'])
        loss = _loss(kind, net, x, {k: v[idx].to(device) for k, v in target.items()}, meta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if progress is not None:
            progress(f'{kind} estimator training', step + 1, options.steps)
    return net


def _gt_md5(path, gt):
    """Content hash of the ground truth `resolve_gt` would use (None when there is none)."""
    if isinstance(gt, dict):
        md5 = hashlib.md5()
        for key in sorted(gt):
            md5.update(key.encode('utf-8') + np.ascontiguousarray(gt[key]).tobytes())
        return md5.hexdigest()
    gt_file = metric_utils.ground_truth_file(path) if gt is None else os.fspath(gt)
    return metric_utils.path_md5(gt_file) if gt_file is not None and os.path.isfile(gt_file) else None


def _cache_file(kind: str, dataset_kwargs: dict, gt, options: TrainOptions, cache_dir: str) -> str:
    path = dataset_kwargs['path']
    key = dict(kind=kind, data=metric_utils.path_md5(path), gt=_gt_md5(path, gt),
               dataset_kwargs={k: v for k, v in dataset_kwargs.items() if k in ('resolution', 'create_label_fov',
                                                                              'pad_long')},
               options=dataclasses.asdict(options), arch_version=ARCH_VERSION)
    md5 = hashlib.md5(json.dumps(key, sort_keys=True, default=repr).encode('utf-8')).hexdigest()
    name = os.path.splitext(os.path.basename(os.path.normpath(path)))[0]
    return os.path.join(cache_dir, 'pof3d-estimators', f'{kind}-{name}-{md5}.pt')


def _save(estimator: Estimator, path: str) -> None:
    buf = io.BytesIO()
    torch.save({'meta': estimator.meta, 'state_dict': estimator.net.state_dict()}, buf)
    metric_utils.write_atomic(path, buf.getvalue())


def _load(path: str) -> Estimator:
    data = safe_pickle.load_torch(path)   # the project's one safe loader (weights only)
    net = _make_net(data['meta']['kind'])
    net.load_state_dict(data['state_dict'])
    return Estimator(data['meta']['kind'], net, data['meta'])


def load_or_train(kind: str, dataset_path=None, gt=None, steps: Optional[int] = None, cache_dir: Optional[str] = None,
                  dataset_kwargs: Optional[dict] = None, device='cpu', options: Optional[TrainOptions] = None,
                  progress: Optional[Callable] = None) -> Estimator:
    """The cached estimator for (dataset, hyper-parameters) when present, else train and
    cache it (cache_dir None: dnnlib's cache folder). Returned on `device`."""
    cache_dir = cache_dir if cache_dir is not None else dnnlib.util.make_cache_dir_path()
    dataset_kwargs = dict(dataset_kwargs or {}, **({'path': dataset_path} if dataset_path is not None else {}))
    if kind not in KINDS:
        raise ValueError(f'estimator kind must be one of {KINDS}, got {kind!r}')
    resolved = (options or TrainOptions()).resolved(kind, steps)
    path = _cache_file(kind, dataset_kwargs, gt, resolved, cache_dir)
    if os.path.isfile(path):
        return _load(path).to(device)
    return train_estimator(kind, gt=gt, cache_dir=cache_dir, dataset_kwargs=dataset_kwargs, device=device,
                           options=resolved, progress=progress).to(device)
