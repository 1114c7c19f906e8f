"""Shared machinery of the metrics (SPEC §10): options, the feature detector, feature statistics
of the real dataset (cached) and of the generator, and the multi-rank split.

Multi-rank protocol (StyleGAN2/EG3D): rank r of `num_gpus` handles items r, r + num_gpus, ...;
each batch's features are all-gathered (when torch.distributed is initialized) and interleaved
back into item order, so every rank accumulates the same statistics. Only rank 0 writes
caches and computes the final numbers (the others return NaN).

Generated images (SPEC §10.1): z ~ N(0, I), c = a random dataset label, image = G(z, c,
**G_kwargs)['image'] quantized as clamp(x * 127.5 + 128, 0, 255) -> uint8. Unlike EG3D, z and
the label indices come from a numpy RNG seeded with (opts.seed, rank), and G's own noise from
a torch generator seeded from it, so a metric is reproducible call to call.
"""

import copy
import dataclasses
import hashlib
import inspect
import io
import json
import os
import pickle
from typing import Any, Callable, Optional

import numpy as np
import torch

import dnnlib
from torch_utils import safe_pickle
from training.dataset_gt import ground_truth_path, load_ground_truth

DEFAULT_DETECTOR_URL = ('https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan3/versions/1/files/'
                        'metrics/inception-2015-12-05.pkl')   # TorchScript Inception-v3, SPEC §10.1
DETECTOR_ENV = 'POF3D_DETECTOR'   # a local detector file (or URL) used instead of the default


@dataclasses.dataclass
class MetricOptions:
    """Everything a metric function needs besides its own hyper-parameters."""
    G: Any = None                              # generator; deep-copied to `device`, eval mode, no grad
    G_kwargs: dict = dataclasses.field(default_factory=dict)        # extra kwargs of every G(z, c) call
    dataset_kwargs: dict = dataclasses.field(default_factory=dict)  # construct_class_by_name kwargs of the real set
    num_gpus: int = 1                          # number of ranks taking part
    rank: int = 0                              # this process's rank
    device: Optional[torch.device] = None      # None: cuda:rank when available, else cpu
    progress: Optional[Callable[[str, int, int], None]] = None  # progress(tag, done, total)
    cache: bool = True                         # cache real-data statistics and trained estimators
    cache_dir: Optional[str] = None            # None: dnnlib.make_cache_dir_path() (~/.cache/dnnlib)
    detector_url: Optional[str] = None         # URL or local path; None: $POF3D_DETECTOR, else the Inception URL
    num_workers: int = 3                       # DataLoader workers for the real images
    seed: int = 0                              # seed of z / label draws (combined with the rank)
    trust_pickle: bool = False                 # allow a pickled detector (its code runs); TorchScript needs none

    def __post_init__(self):
        if self.num_gpus < 1 or not 0 <= self.rank < self.num_gpus:
            raise ValueError(f'need 0 <= rank < num_gpus, got rank={self.rank}, num_gpus={self.num_gpus}')
        if self.device is None:
            self.device = torch.device('cuda', self.rank) if torch.cuda.is_available() else torch.device('cpu')
        self.device = torch.device(self.device)

    def cache_path(self, *paths: str) -> str:
        """A path under the metrics cache folder."""
        if self.cache_dir is not None:
            return os.path.join(self.cache_dir, *paths)
        return dnnlib.util.make_cache_dir_path(*paths)

    def report_progress(self, tag: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(tag, done, total)


def print_progress(tag: str, done: int, total: int) -> None:
    """A `MetricOptions.progress` that prints about every 10 % (and at the end)."""
    step = max(total // 10, 1)
    if done >= total or done // step != (done - 1) // step:
        print(f'{tag}: {min(done, total)}/{total}', flush=True)

# ----------------------------------------------------------------------------
# Files: atomic writes and content hashes.


write_atomic = dnnlib.util.write_atomic  # kept here for callers of metric_utils.write_atomic


def path_md5(path: str) -> str:
    """md5 of a file's bytes, or of a folder's files (sorted relative names and contents)."""
    md5 = hashlib.md5()
    if os.path.isdir(path):
        files = sorted(os.path.relpath(os.path.join(root, f), path) for root, _, fs in os.walk(path) for f in fs)
    else:
        files, path = [os.path.basename(path)], os.path.dirname(os.path.abspath(path))
    for rel in files:
        md5.update(rel.replace(os.sep, '/').encode('utf-8') + b'\0')
        with open(os.path.join(path, rel), 'rb') as f:
            for chunk in iter(lambda: f.read(1 << 20), b''):
                md5.update(chunk)
    return md5.hexdigest()


def ground_truth_file(dataset_path: str) -> Optional[str]:
    """The ground-truth sidecar of a dataset (training.dataset_gt.ground_truth_path), or None."""
    path = ground_truth_path(dataset_path)
    return path if os.path.isfile(path) else None


def load_dataset_ground_truth(dataset_path: str) -> dict:
    """{key: array in raw image order} of `ground_truth_file(dataset_path)`; {} when none."""
    path = ground_truth_file(dataset_path)
    return {} if path is None else load_ground_truth(path)

# ----------------------------------------------------------------------------
# Multi-rank helpers.


def _distributed(num_gpus: int) -> bool:
    return num_gpus > 1 and torch.distributed.is_available() and torch.distributed.is_initialized()


def barrier(num_gpus: int) -> None:
    if _distributed(num_gpus):
        torch.distributed.barrier()


def gather_rows(x: torch.Tensor, num_gpus: int) -> torch.Tensor:
    """All-gather x [B, ...] from every rank and interleave the rows (row i of rank r lands at
    i * num_gpus + r, the item order of the rank split). Identity on one rank. All ranks must
    pass the same B."""
    if not _distributed(num_gpus):
        return x
    parts = [torch.empty_like(x) for _ in range(num_gpus)]
    torch.distributed.all_gather(parts, x)
    return torch.stack(parts, dim=1).flatten(0, 1)


def rank_indices(num_items: int, num_gpus: int, rank: int) -> list:
    """Items of `rank`: r, r + num_gpus, ... padded by wrap-around so every rank has the same count."""
    per_rank = (num_items - 1) // num_gpus + 1
    return [(i * num_gpus + rank) % num_items for i in range(per_rank)]

# ----------------------------------------------------------------------------
# Feature detector.

_detector_cache: dict = {}


def resolve_detector_url(url_or_path: Optional[str] = None) -> str:
    """The detector to use: the argument, else $POF3D_DETECTOR, else the Inception URL (SPEC §10.1)."""
    return url_or_path or os.environ.get(DETECTOR_ENV) or DEFAULT_DETECTOR_URL


def get_feature_detector_name(url_or_path: str) -> str:
    """'.../inception-2015-12-05.pkl' -> 'inception-2015-12-05' (used in cache file names)."""
    return os.path.splitext(url_or_path.replace('\\', '/').split('/')[-1])[0]


def detector_needs_trust(url_or_path: str) -> bool:
    """True for a local detector file that is a pickle (not a TorchScript zip): loading it runs
    its code, so it needs allow_exec (--trust-pickle). URLs are checked once downloaded."""
    path = url_or_path[len('file://'):] if url_or_path.startswith('file://') else url_or_path
    if url_or_path == DEFAULT_DETECTOR_URL or not os.path.isfile(path):
        return False
    with open(path, 'rb') as f:
        return f.read(2) != b'PK'


def _load_detector(url_or_path: str, verbose: bool, allow_exec: bool = False) -> torch.nn.Module:
    """A TorchScript archive (zip bytes, torch.jit.save) or a pickle holding a module (the
    NVIDIA Inception .pkl at DEFAULT_DETECTOR_URL, a URL fixed here, not passed by a user; any
    other pickle only with allow_exec). Called as detector(uint8 [N, 3, H, W], return_features=True)."""
    try:
        with dnnlib.util.open_url(url_or_path, verbose=verbose) as f:
            data = f.read()
    except (OSError, ValueError) as err:
        raise IOError(f'cannot load the feature detector {url_or_path}: {" ".join(str(err).split())} '
                      f'(offline? pass a local TorchScript file with --detector or ${DETECTOR_ENV})') from err
    if data[:2] == b'PK':
        return torch.jit.load(io.BytesIO(data), map_location='cpu')
    if not (allow_exec or url_or_path == DEFAULT_DETECTOR_URL):
        raise safe_pickle.UnsafePickleError(f'detector {url_or_path}: a pickle, not a TorchScript archive: '
                                            f'{safe_pickle.TRUST_HINT}')
    return pickle.loads(data)


def get_feature_detector(url_or_path: Optional[str] = None, device=torch.device('cpu'), num_gpus: int = 1,
                         rank: int = 0, verbose: bool = False, allow_exec: bool = False) -> torch.nn.Module:
    """The detector module, loaded once per (source, device) and kept in memory. Rank 0 loads
    (and downloads) first; the other ranks wait and then read the cached download."""
    url_or_path = resolve_detector_url(url_or_path)
    key = (url_or_path, str(device))
    if key not in _detector_cache:
        if rank != 0:
            barrier(num_gpus)
        _detector_cache[key] = _load_detector(url_or_path, verbose and rank == 0, allow_exec).to(device).eval()
        if rank == 0:
            barrier(num_gpus)
    return _detector_cache[key]


def _detector_stamp(url_or_path: str) -> str:
    """Content hash of a local detector file (so a replaced file gets new cache entries)."""
    path = url_or_path[len('file://'):] if url_or_path.startswith('file://') else url_or_path
    return path_md5(path) if os.path.isfile(path) else url_or_path

# ----------------------------------------------------------------------------
# Feature statistics.


class FeatureStats:
    """Accumulates features [N, D]: all rows (capture_all) and/or the running sum and sum of
    outer products in float64 (capture_mean_cov), up to max_items rows."""

    def __init__(self, capture_all: bool = False, capture_mean_cov: bool = False, max_items: Optional[int] = None):
        self.capture_all, self.capture_mean_cov, self.max_items = capture_all, capture_mean_cov, max_items
        self.num_items, self.num_features = 0, None
        self.all_features, self.raw_mean, self.raw_cov = [], None, None

    def is_full(self) -> bool:
        return self.max_items is not None and self.num_items >= self.max_items

    def append(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or (self.num_features is not None and x.shape[1] != self.num_features):
            raise ValueError(f'features must be [N, {self.num_features or "D"}], got {list(x.shape)}')
        if self.max_items is not None:
            x = x[:max(self.max_items - self.num_items, 0)]
        if self.num_features is None:
            self.num_features = x.shape[1]
            self.raw_mean = np.zeros([x.shape[1]], dtype=np.float64)
            self.raw_cov = np.zeros([x.shape[1]] * 2, dtype=np.float64)
        self.num_items += x.shape[0]
        if self.capture_all:
            self.all_features.append(x)
        if self.capture_mean_cov:
            x64 = x.astype(np.float64)
            self.raw_mean += x64.sum(axis=0)
            self.raw_cov += x64.T @ x64

    def append_torch(self, x: torch.Tensor, num_gpus: int = 1) -> None:
        """Append x [B, D] of this rank after gathering the batch from every rank."""
        self.append(gather_rows(x, num_gpus).cpu().numpy())

    def get_all(self) -> np.ndarray:
        """float32 [N, D] (capture_all)."""
        if not self.capture_all:
            raise RuntimeError('FeatureStats: capture_all was off')
        return np.concatenate(self.all_features) if self.all_features else np.zeros([0, self.num_features or 0])

    def get_mean_cov(self):
        """(mu float64 [D], sigma float64 [D, D]): mean and population covariance (divided by N)."""
        if not self.capture_mean_cov or self.num_items == 0:
            raise RuntimeError('FeatureStats: no mean/cov captured')
        mean = self.raw_mean / self.num_items
        return mean, self.raw_cov / self.num_items - np.outer(mean, mean)

    def save(self, path: str) -> None:
        write_atomic(path, pickle.dumps(self.__dict__))

    @staticmethod
    def load(path: str) -> 'FeatureStats':
        # Our cache file, but anyone may drop a file there: numbers and arrays only (safe_pickle).
        state = safe_pickle.load_file(path)
        if not isinstance(state, dict) or not set(state) <= set(vars(FeatureStats())):
            raise pickle.UnpicklingError(f'{path}: not a FeatureStats cache file')
        obj = FeatureStats()
        obj.__dict__.update(state)
        return obj

# ----------------------------------------------------------------------------
# Real images.


def open_dataset(opts: MetricOptions, **overrides):
    return dnnlib.util.construct_class_by_name(**{**opts.dataset_kwargs, **overrides})


def _real_stats_cache_file(opts, dataset, detector_url, detector_kwargs, stats_kwargs, max_items) -> str:
    """`<cache>/gan-metrics/{dataset}-{detector}-{md5}.pkl` (SPEC §10.1); the md5 covers the
    dataset kwargs, the detector (content hash for a local file), the options, and the
    dataset file's size and mtime (so a rewritten dataset is not served stale statistics)."""
    path = opts.dataset_kwargs.get('path')
    stat = os.stat(path) if path is not None and os.path.exists(path) else None
    args = dict(dataset_kwargs=opts.dataset_kwargs, detector=_detector_stamp(detector_url),
                detector_kwargs=detector_kwargs, stats_kwargs=stats_kwargs, max_items=max_items,
                data_stamp=None if stat is None else [stat.st_size, stat.st_mtime_ns])
    md5 = hashlib.md5(json.dumps(args, sort_keys=True, default=repr).encode('utf-8')).hexdigest()
    name = f'{dataset.name}-{get_feature_detector_name(detector_url)}-{md5}.pkl'
    return opts.cache_path('gan-metrics', name)


def _cache_hit(opts: MetricOptions, cache_file: str) -> bool:
    """Rank 0 decides whether the cache file exists; the decision is broadcast."""
    flag = torch.as_tensor(os.path.isfile(cache_file), dtype=torch.float32, device=opts.device)
    if _distributed(opts.num_gpus):
        torch.distributed.broadcast(flag, src=0)
    return bool(flag.item() != 0)


def compute_feature_stats_for_dataset(opts: MetricOptions, detector_kwargs: dict, max_items: Optional[int] = None,
                                      batch_size: int = 64, **stats_kwargs) -> FeatureStats:
    """Detector features of the first `max_items` dataset items (all when None), batched and
    split across ranks, cached under `<cache>/gan-metrics/` (written atomically by rank 0)."""
    dataset = open_dataset(opts)
    detector_url = resolve_detector_url(opts.detector_url)
    num_items = len(dataset) if max_items is None else min(len(dataset), max_items)
    cache_file = None
    if opts.cache:
        cache_file = _real_stats_cache_file(opts, dataset, detector_url, detector_kwargs, stats_kwargs, max_items)
        if _cache_hit(opts, cache_file):
            try:
                return FeatureStats.load(cache_file)
            except pickle.UnpicklingError as err:   # corrupt or planted: recompute and overwrite
                print(f'Ignoring an unusable statistics cache: {err}')
    stats = FeatureStats(max_items=num_items, **stats_kwargs)
    detector = get_feature_detector(detector_url, opts.device, opts.num_gpus, opts.rank, opts.progress is not None,
                                    opts.trust_pickle)
    subset = rank_indices(num_items, opts.num_gpus, opts.rank)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, subset), batch_size=batch_size,
                                         num_workers=opts.num_workers, pin_memory=opts.device.type == 'cuda')
    for images, _labels in loader:
        if images.shape[1] == 1:
            images = images.repeat([1, 3, 1, 1])
        with torch.no_grad():
            features = detector(images.to(opts.device), **detector_kwargs)
        stats.append_torch(features, opts.num_gpus)
        opts.report_progress('dataset features', stats.num_items, num_items)
    if cache_file is not None and opts.rank == 0:
        stats.save(cache_file)
    return stats

# ----------------------------------------------------------------------------
# Generated images.


def quantize(images: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] in [-1, 1] -> uint8 via clamp(x * 127.5 + 128, 0, 255) (SPEC §10.1)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def prepare_generator(opts: MetricOptions) -> torch.nn.Module:
    """A private copy of opts.G on opts.device, in eval mode without gradients."""
    if opts.G is None:
        raise ValueError('this metric needs a generator (MetricOptions.G)')
    return copy.deepcopy(opts.G).eval().requires_grad_(False).to(opts.device)


def dataset_labels(opts: MetricOptions, c_dim: int) -> np.ndarray:
    """Labels float32 [M, c_dim] to draw c from: the dataset's (item order), or the 25-value
    camera labels when the dataset was opened without labels; zeros [1, 0] for c_dim = 0."""
    if c_dim == 0:
        return np.zeros([1, 0], dtype=np.float32)
    dataset = open_dataset(opts)
    if dataset.label_dim == c_dim:
        return np.stack([dataset.get_label(i) for i in range(len(dataset))]).astype(np.float32)
    pose_labels = dataset.get_pose_labels() if hasattr(dataset, 'get_pose_labels') else None
    if pose_labels is not None and pose_labels.shape[1] == c_dim:
        return pose_labels.astype(np.float32)
    raise ValueError(f'{dataset.name}: G needs labels c of {c_dim} values but the dataset has '
                     f'{dataset.label_dim}; give a labeled dataset (or create_label_fov)')


class LatentSampler:
    """Draws (z [B, z_dim], c [B, c_dim]) on opts.device from a numpy RNG seeded with
    (opts.seed, rank, stream), and a torch generator for G's own randomness."""

    def __init__(self, opts: MetricOptions, G, stream: int = 0):
        self.opts, self.z_dim = opts, G.z_dim
        self.labels = dataset_labels(opts, G.c_dim)
        self.rng = np.random.default_rng([opts.seed, opts.rank, stream])

    def sample(self, batch: int):
        z = torch.from_numpy(self.rng.standard_normal([batch, self.z_dim]).astype(np.float32))
        c = torch.from_numpy(self.labels[self.rng.integers(len(self.labels), size=batch)])
        return z.to(self.opts.device), c.to(self.opts.device)

    def torch_generator(self) -> torch.Generator:
        return torch.Generator(self.opts.device).manual_seed(int(self.rng.integers(1 << 62)))


def run_generator(opts: MetricOptions, G, sampler: LatentSampler, batch: int) -> dict:
    """One G(z, c, **G_kwargs) call on fresh (z, c); passes `generator` when G accepts it."""
    z, c = sampler.sample(batch)
    kwargs = dict(opts.G_kwargs)
    if 'generator' in inspect.signature(G.forward).parameters and 'generator' not in kwargs:
        kwargs['generator'] = sampler.torch_generator()
    with torch.no_grad():
        return G(z, c, **kwargs)


def seeded_renderer(G, z, c, seed: int, G_kwargs=None):
    """render(**extra) -> G(z, c, **G_kwargs, **extra) without gradients, with a torch generator
    seeded with `seed` at every call when G takes one: every random draw (prior pose, noise,
    stratified jitter) replays, so calls that differ only in cam2world show the same object."""
    kwargs = dict(G_kwargs or {})
    takes_generator = 'generator' in inspect.signature(G.forward).parameters and 'generator' not in kwargs

    def render(**extra):
        if takes_generator:
            extra['generator'] = torch.Generator(z.device).manual_seed(seed)
        with torch.no_grad():
            return G(z, c, **kwargs, **extra)
    return render


def seeded_sweep_rows(opts: MetricOptions, num_gen: int, batch: int, fn, tag: str) -> np.ndarray:
    """Rows of fn(G, z, c, seed, pivot) -> [B, K] tensor over this rank's share of num_gen latents
    (z, c from LatentSampler; one fresh seed per batch, for `seeded_renderer`; pivot = G's
    rendering_kwargs['avg_camera_pivot'], the origin when absent), gathered over ranks:
    [num_gen, K] numpy. The driver of the metrics that render one object from several cameras."""
    G = prepare_generator(opts)
    sampler = LatentSampler(opts, G)
    pivot = G.rendering_kwargs.get('avg_camera_pivot', (0.0, 0.0, 0.0))
    per_rank = -(-num_gen // opts.num_gpus)
    rows = []
    for done in range(0, per_rank, batch):
        z, c = sampler.sample(min(batch, per_rank - done))
        rows.append(fn(G, z, c, int(sampler.rng.integers(1 << 62)), pivot))
        opts.report_progress(tag, done + len(z), per_rank)
    return gather_rows(torch.cat(rows).to(opts.device), opts.num_gpus).cpu().numpy()[:num_gen]


def compute_feature_stats_for_generator(opts: MetricOptions, detector_kwargs: dict, num_gen: int,
                                        batch_size: int = 64, batch_gen: int = 4, **stats_kwargs) -> FeatureStats:
    """Detector features of num_gen generated images: G runs on batch_gen images at a time,
    the detector on batch_size; rank batches are gathered (num_gpus * batch_size per step)."""
    if batch_size % batch_gen != 0:
        raise ValueError(f'batch_size ({batch_size}) must be a multiple of batch_gen ({batch_gen})')
    G = prepare_generator(opts)
    sampler = LatentSampler(opts, G)
    stats = FeatureStats(max_items=num_gen, **stats_kwargs)
    detector = get_feature_detector(opts.detector_url, opts.device, opts.num_gpus, opts.rank,
                                    opts.progress is not None, opts.trust_pickle)
    while not stats.is_full():
        per_rank = -(-(num_gen - stats.num_items) // opts.num_gpus)      # ceil; the same on every rank
        num_calls = min(batch_size, per_rank + batch_gen - 1) // batch_gen
        images = torch.cat([quantize(run_generator(opts, G, sampler, batch_gen)['image']) for _ in range(num_calls)])
        if images.shape[1] == 1:
            images = images.repeat([1, 3, 1, 1])
        with torch.no_grad():
            features = detector(images, **detector_kwargs)
        stats.append_torch(features, opts.num_gpus)
        opts.report_progress('generator features', stats.num_items, num_gen)
    return stats
