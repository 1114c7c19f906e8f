"""Jensen-Shannon divergence between the generator's pose distribution and the dataset's
(SPEC §10.2, a reconstruction: the paper's bins and alignment are unknown).

Protocol of `pose_js`:
- Generated poses: num_gen z ~ N(0, I) (c = random dataset labels, for the intrinsics and for
  EG3D's label-driven cameras), camera = G.pose(z, c).cam2world (the camera G renders, after
  the safety clamp), (h, v) = cam2world_to_pose (SPEC §3.2 inverse; h wrapped to [0, 2pi)).
- Reference poses ('auto': the dataset's camera labels, else the ground-truth 'pose' of
  `metric_utils.ground_truth_file`, i.e. `<stem>_gt.npz`):
  labels go through the same cam2world_to_pose; every dataset item counts once.
- Histograms: h over [0, 2pi) in 36 bins of 10 degrees (circular), v over [0, pi] in 18 bins
  of 10 degrees (v is the uniform-on-sphere parameter, in radians); 1-D yaw, 1-D pitch and the
  2-D joint (36 x 18) histogram, each normalized to a probability vector.
- JS(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M), M = (P + Q) / 2, natural logarithm: in nats,
  between 0 (same histogram) and ln 2 = 0.693 (disjoint supports). The plug-in estimate from
  finite samples is biased upwards (roughly by (#occupied bins) / (8 N) per distribution).
- Alignment (the learned frame is fixed only up to a yaw rotation and a mirror): generated h
  is mapped to s*h + delta with s in {+1, -1} (s = -1 is the mirror h -> 2*h0 - h, h0 =
  delta/2) and delta on a 0.25-degree grid over [0, 2pi); the (s, delta) minimizing the
  *yaw* JS is kept (ties: no mirror, smallest delta). v is not aligned. When the reference
  yaw distribution is itself mirror symmetric, s is not identifiable (both give the same JS).
- Reported (metric_main prefixes 'pose_js'): value = aligned joint JS (raw joint JS when
  align=False), yaw / pitch (aligned 1-D), raw / raw_yaw / raw_pitch (no alignment),
  yaw_offset (delta, radians), mirror (1 or 0).
"""

import math

import numpy as np
import torch

from metrics import metric_utils
from training.cameras import cam2world_to_pose, mirror_coin as coin_mirror
from training.symmetry import mirror_flip_type

H_BINS = 36           # 10-degree bins of h over [0, 2pi)
V_BINS = 18           # 10-degree bins of v over [0, pi]
FINE_PER_BIN = 40     # the alignment grid: 36 * 40 = 1440 offsets, 0.25 degrees apart
TWO_PI = 2 * math.pi


def wrap_h(h):
    """h modulo 2pi, in [0, 2pi)."""
    return np.mod(np.asarray(h, np.float64), TWO_PI) % TWO_PI   # second mod: -1e-17 % 2pi == 2pi


def wrap_around(h, center):
    """h (radians, any shape) on the branch [center - pi, center + pi), float64."""
    return np.remainder(np.asarray(h, np.float64) - center + np.pi, TWO_PI) + center - np.pi


def _bin_index(x, lo, hi, bins):
    return np.clip(np.floor((np.asarray(x, np.float64) - lo) / (hi - lo) * bins), 0, bins - 1).astype(np.int64)


def pose_histograms(poses):
    """poses [N, 2] (h, v) radians -> (yaw [36], pitch [18], joint [36, 18]) probabilities."""
    poses = np.asarray(poses, np.float64)
    if poses.ndim != 2 or poses.shape[1] != 2 or poses.shape[0] == 0:
        raise ValueError(f'poses must be a non-empty [N, 2] array of (h, v), got {poses.shape}')
    hi = _bin_index(wrap_h(poses[:, 0]), 0, TWO_PI, H_BINS)
    vi = _bin_index(poses[:, 1], 0, math.pi, V_BINS)
    joint = np.bincount(hi * V_BINS + vi, minlength=H_BINS * V_BINS).reshape(H_BINS, V_BINS) / len(poses)
    return joint.sum(axis=1), joint.sum(axis=0), joint


def js_divergence(p, q) -> np.ndarray:
    """JS divergence in nats over the last axis of histograms p [..., B] and q [..., B]
    (normalized here; broadcasting), with 0 ln 0 = 0. In [0, ln 2]."""
    p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    m = (p + q) / 2

    def kl(a):
        ratio = np.where(a > 0, a / np.where(m > 0, m, 1), 1)
        return (a * np.log(ratio)).sum(axis=-1)
    return 0.5 * kl(p) + 0.5 * kl(q)


def apply_alignment(h, offset: float, mirror: bool):
    """The aligned yaw wrap(s * h + offset), s = -1 when mirror."""
    return wrap_h((-1.0 if mirror else 1.0) * np.asarray(h, np.float64) + offset)


def find_yaw_alignment(h_gen, h_ref, allow_mirror: bool = True):
    """(offset, mirror, yaw JS) minimizing JS(yaw hist(s * h_gen + offset), yaw hist(h_ref)).

    Exact search over the 1440-step grid: h_gen is binned once at 0.25 degrees; a shift by k
    steps is a roll of that fine histogram, and the mirror -h its reversal (fine bin j of h
    holds -h in bin 1439 - j).
    """
    return best_alignment(yaw_alignments(h_gen, h_ref, allow_mirror))


def best_alignment(found: dict):
    """(offset, mirror, yaw JS) of the lowest yaw JS in `yaw_alignments`' result; ties: no mirror."""
    mirror = min(found, key=lambda m: (found[m][1], m))
    return found[mirror][0], mirror, found[mirror][1]


def yaw_alignments(h_gen, h_ref, allow_mirror: bool = True) -> dict:
    """{mirror: (offset, yaw JS)}: the best offset for each mirror choice (`find_yaw_alignment`)."""
    fine = H_BINS * FINE_PER_BIN
    counts = np.bincount(_bin_index(wrap_h(h_gen), 0, TWO_PI, fine), minlength=fine).astype(np.float64)
    ref = np.bincount(_bin_index(wrap_h(h_ref), 0, TWO_PI, H_BINS), minlength=H_BINS).astype(np.float64)
    shifts = (np.arange(fine)[None, :] - np.arange(fine)[:, None]) % fine    # row k: roll by k
    found = {}
    for mirror in ([False, True] if allow_mirror else [False]):
        rolled = (counts[::-1] if mirror else counts)[shifts]                      # [1440, 1440]
        js = js_divergence(rolled.reshape(fine, H_BINS, FINE_PER_BIN).sum(-1), ref)
        k = int(np.argmin(js))
        found[mirror] = (k * TWO_PI / fine, float(js[k]))
    return found


def pose_js_from_poses(gen, ref, align: bool = True, allow_mirror: bool = True) -> dict:
    """All pose_js numbers from pose arrays gen [N, 2], ref [M, 2] (h, v radians). Pure."""
    gen, ref = np.asarray(gen, np.float64), np.asarray(ref, np.float64)
    ref_hists = pose_histograms(ref)
    raw = [float(js_divergence(a.ravel(), b.ravel())) for a, b in zip(pose_histograms(gen), ref_hists)]
    offset, mirror = 0.0, False
    if align:
        offset, mirror, _ = find_yaw_alignment(gen[:, 0], ref[:, 0], allow_mirror)
    aligned_gen = np.stack([apply_alignment(gen[:, 0], offset, mirror), gen[:, 1]], axis=1)
    yaw, pitch, joint = [float(js_divergence(a.ravel(), b.ravel()))
                         for a, b in zip(pose_histograms(aligned_gen), ref_hists)]
    return dict(value=joint, yaw=yaw, pitch=pitch, raw=raw[2], raw_yaw=raw[0], raw_pitch=raw[1],
                yaw_offset=offset, mirror=int(mirror))

# ----------------------------------------------------------------------------
# Pose sources.


def poses_from_cam2world(cam2world) -> np.ndarray:
    """cam2world [N, 4, 4] -> (h wrapped to [0, 2pi), v) [N, 2] float64 (SPEC §3.2 inverse)."""
    h, v, _ = cam2world_to_pose(torch.as_tensor(np.asarray(cam2world), dtype=torch.float64).reshape(-1, 4, 4))
    return np.stack([wrap_h(h[:, 0].numpy()), v[:, 0].numpy()], axis=1)


def reference_poses(opts: metric_utils.MetricOptions, reference: str = 'auto') -> np.ndarray:
    """Dataset poses [M, 2] (all items, no xflip): 'labels' (camera labels), 'gt' (the
    ground-truth 'pose', `metric_utils.ground_truth_file`) or 'auto' (labels when the dataset
    has camera labels, else gt)."""
    if reference not in ('auto', 'labels', 'gt'):
        raise ValueError(f"reference must be 'auto', 'labels' or 'gt', got {reference!r}")
    dataset = metric_utils.open_dataset(opts, xflip=False, max_size=None)
    labels = dataset.get_pose_labels() if hasattr(dataset, 'get_pose_labels') else None
    if labels is not None and np.abs(labels[:, :16]).sum() == 0:
        labels = None            # create_label_fov labels: intrinsics only, no camera
    if reference in ('auto', 'labels') and labels is not None:
        return poses_from_cam2world(labels[:, :16])
    gt = metric_utils.load_dataset_ground_truth(opts.dataset_kwargs['path']) if reference != 'labels' else {}
    if 'pose' in gt:
        pose = np.asarray(gt['pose'], np.float64).reshape(-1, 2)
        return np.stack([wrap_h(pose[:, 0]), pose[:, 1]], axis=1)
    raise ValueError(f'{dataset.name}: no reference poses for reference={reference!r} '
                     '(needs camera labels in dataset.json or a <stem>_gt.npz with "pose")')


def generator_poses(opts: metric_utils.MetricOptions, num_gen: int, batch: int = 1000, G=None,
                    mirror_coin: bool = False) -> np.ndarray:
    """(h, v) [num_gen, 2] of the cameras G renders for random (z, c); uses G.pose (cheap: no
    rendering) when G has it, else a full forward. Split across ranks and gathered.
    mirror_coin: each camera yaw-mirrored with probability 1/2 (`training.cameras.mirror_coin`)."""
    G = metric_utils.prepare_generator(opts) if G is None else G
    coin = torch.Generator(opts.device).manual_seed(opts.rank) if mirror_coin else None
    sampler = metric_utils.LatentSampler(opts, G, stream=1)
    out = []
    per_rank = -(-num_gen // opts.num_gpus)
    while sum(len(x) for x in out) < per_rank * opts.num_gpus:
        z, c = sampler.sample(min(batch, per_rank))
        with torch.no_grad():
            if hasattr(G, 'pose'):
                cam2world = G.pose(z, c, generator=sampler.torch_generator()).cam2world
            else:
                cam2world = metric_utils.run_generator(opts, G, sampler, len(z))['cam2world']
            if coin is not None:
                cam2world = coin_mirror(cam2world, mirror_flip_type(G), coin)
        out.append(metric_utils.gather_rows(cam2world.float(), opts.num_gpus).cpu().numpy())
    return poses_from_cam2world(np.concatenate(out)[:num_gen])


def compute_pose_js(opts: metric_utils.MetricOptions, num_gen: int = 50000, reference: str = 'auto',
                    align: bool = True, allow_mirror: bool = True, mirror_coin: bool = False) -> dict:
    """pose_js (see the module docstring); NaN values on ranks other than 0. mirror_coin: G's
    cameras as D's fake stream sees them with the mirrored renders on (`generator_poses`)."""
    gen = generator_poses(opts, num_gen, mirror_coin=mirror_coin)
    if opts.rank != 0:
        return dict(value=float('nan'))
    return pose_js_from_poses(gen, reference_poses(opts, reference), align=align, allow_mirror=allow_mirror)
