"""Metrics (SPEC §10): FID/KID against independent implementations, the pose JS divergence and
its alignment, pose/depth errors, the detector/statistics cache and the calc_metrics CLI.

Everything is local: the feature detector is a tiny TorchScript net built here (uint8 NCHW
in, `return_features=True`, like the Inception detector), the dataset a zip of 16-32 px
images written here (or by make_synthetic.py when present), G a tiny tri-plane generator.
"""

import json
import math
import os
import subprocess
import sys
import zipfile

import click.testing
import numpy as np
import PIL.Image
import pytest
import torch

from metrics import estimators, metric_main, metric_utils, pose_depth_error, pose_metrics
from metrics.frechet_inception_distance import compute_fid, fid_from_stats
from metrics.kernel_inception_distance import compute_kid, kid_from_features
from metrics.pose_metrics import find_yaw_alignment, js_divergence, pose_js_from_poses, wrap_h, yaw_alignments
from training.cameras import FOV_to_intrinsics, LookAtPose
from training.generator import TriPlaneGenerator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.usefixtures('single_thread'),
              pytest.mark.filterwarnings('ignore:`torch.jit.*` is deprecated:DeprecationWarning')]

# ----------------------------------------------------------------------------------------
# Fixtures: a detector, a dataset, a generator.


class TinyDetector(torch.nn.Module):
    """uint8 [N, 3, H, W] -> 16 features (or softmax 'logits'); counts its calls in a buffer."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)
        self.register_buffer('calls', torch.zeros([], dtype=torch.int64))

    def forward(self, img: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        self.calls.add_(1)
        x = torch.nn.functional.interpolate(img.float() / 127.5 - 1, size=(16, 16), mode='bilinear')
        x = self.conv(x)
        features = torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)
        return features if return_features else features.softmax(dim=1)


@pytest.fixture(scope='module')
def detector_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('detector') / 'tiny-detector.pt')
    torch.jit.script(TinyDetector()).save(path)
    return path


def camera_labels(h, v):
    """Labels [N, 25]: look-at cameras of (h, v) [N] at radius 2.7, FFHQ intrinsics."""
    h, v = torch.as_tensor(h, dtype=torch.float64)[:, None], torch.as_tensor(v, dtype=torch.float64)[:, None]
    cam2world = LookAtPose(h, v, [0, 0, 0], 2.7).float().reshape(-1, 16)
    return torch.cat([cam2world, FOV_to_intrinsics(18.837).reshape(1, 9).expand(len(h), 9)], dim=1).numpy()


def write_zip(path, images, labels, gt=None):
    """A dataset zip of uint8 HWC images with dataset.json labels (+ `<stem>_gt.npz`)."""
    names = [f'img{i:05d}.png' for i in range(len(images))]
    with zipfile.ZipFile(path, 'w') as zf:
        for name, img in zip(names, images):
            buf = __import__('io').BytesIO()
            PIL.Image.fromarray(img).save(buf, format='png')
            zf.writestr(name, buf.getvalue())
        zf.writestr('dataset.json', json.dumps({'labels': [[n, [float(x) for x in lab]] for n, lab in
                                                           zip(names, labels)]}))
    if gt is not None:
        np.savez(os.path.splitext(path)[0] + '_gt.npz', **gt)
    return str(path)


def toy_synthetic(n=64, res=32, seed=0):
    """A labeled set with GT: a shaded disc whose position follows the camera (h, v), depth a
    paraboloid in front of a far (inf) background. (images [n, R, R, 3], labels, gt)."""
    rng = np.random.default_rng(seed)
    h = np.pi / 2 + 0.4 * rng.standard_normal(n)
    v = np.pi / 2 + 0.15 * rng.standard_normal(n)
    yy, xx = np.meshgrid(np.linspace(-1, 1, res), np.linspace(-1, 1, res), indexing='ij')
    cx, cy = (h - np.pi / 2)[:, None, None], (v - np.pi / 2)[:, None, None] * 2
    r2 = (xx - cx) ** 2 + (yy - cy) ** 2
    mask = r2 < 0.35
    depth = np.where(mask, 2.3 + r2, np.inf).astype(np.float32)
    shade = np.where(mask, 200 - 300 * r2, 255)
    images = np.stack([shade, shade * 0.7 + 40 * xx, np.full_like(shade, 90)], axis=-1).clip(0, 255).astype(np.uint8)
    labels = camera_labels(wrap_h(h), v)
    gt = dict(pose=np.stack([h, v], 1), cam2world=labels[:, :16].reshape(-1, 4, 4),
              intrinsics=labels[:, 16:].reshape(-1, 3, 3), depth=depth, mask=mask)
    return images, labels, gt


@pytest.fixture(scope='module')
def small_zip(tmp_path_factory):
    """24 random 16 px images with camera labels (for FID/KID/pose_js)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(24, 16, 16, 3), dtype=np.uint8)
    labels = camera_labels(np.pi / 2 + 0.3 * rng.standard_normal(24), np.full(24, np.pi / 2))
    return write_zip(tmp_path_factory.mktemp('small') / 'small.zip', images, labels)


@pytest.fixture(scope='module')
def synthetic_zip(tmp_path_factory):
    """64 labeled 32 px images with `<stem>_gt.npz`: make_synthetic.py when the repo has it."""
    outdir = tmp_path_factory.mktemp('synthetic')
    script = os.path.join(REPO, 'make_synthetic.py')
    if os.path.isfile(script):
        subprocess.run([sys.executable, script, '--outdir', str(outdir), '--family', 'car', '--num', '64',
                        '--resolution', '32', '--pose', 'gaussian', '--seed', '0'], check=True, cwd=REPO,
                       capture_output=True)
        zips = sorted(str(p) for p in outdir.rglob('*_labeled.zip'))
        assert len(zips) == 1 and metric_utils.ground_truth_file(zips[0]) is not None, zips
        return zips[0]
    return write_zip(outdir / 'toy.zip', *toy_synthetic())


def make_G(img_resolution=16):
    """A tiny PoF3D generator (no SR: 16 px renders are the images)."""
    rk = dict(ray_start=2.25, ray_end=3.3, box_warp=1, depth_resolution=6, depth_resolution_importance=6,
              avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0])
    torch.manual_seed(0)
    return TriPlaneGenerator(16, 25, 16, img_resolution, 3, pose_source='learned', rendering_kwargs=rk,
                             plane_resolution=16, plane_channels=8, mapping_kwargs={'num_layers': 2},
                             channel_base=1024, channel_max=32, num_fp16_res=0, conv_clamp=None)


@pytest.fixture(scope='module')
def G():
    return make_G()


def options(G, zip_path, tmp_path, detector=None, **kwargs):
    dataset_kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=zip_path, use_labels=True)
    return metric_utils.MetricOptions(G=G, dataset_kwargs=dataset_kwargs, cache_dir=str(tmp_path / 'cache'),
                                      detector_url=detector, num_workers=0, device='cpu', **kwargs)

# ----------------------------------------------------------------------------------------
# FID and KID: pure functions against independent implementations.


def test_fid_of_a_set_with_itself_is_zero():
    x = np.random.default_rng(0).standard_normal([400, 8]) @ np.diag(np.arange(1, 9.0))
    mu, sigma = x.mean(0), np.cov(x, rowvar=False)
    assert abs(fid_from_stats(mu, sigma, mu, sigma)) < 1e-8


def test_fid_matches_an_eigenvalue_implementation():
    rng = np.random.default_rng(1)
    a = rng.standard_normal([300, 6]) @ rng.standard_normal([6, 6])
    b = rng.standard_normal([200, 6]) @ rng.standard_normal([6, 6]) + 0.5
    mu1, s1, mu2, s2 = a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)
    # Independent: Tr(sqrtm(S1 S2)) = sum of sqrt(eigenvalues of S1 S2) (real, >= 0 for PSD S1, S2).
    tr_covmean = np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real.sum()
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean
    assert fid_from_stats(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def naive_mmd2(x, y):
    """Unbiased MMD^2 with k(a, b) = (a.b/d + 1)^3, by explicit loops."""
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (float(np.dot(a, b)) / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_matches_a_double_loop_on_a_small_case():
    rng = np.random.default_rng(2)
    real, gen = rng.standard_normal([7, 3]), rng.standard_normal([7, 3]) + 0.3
    # Subsets of all 7 rows are permutations: every subset gives the full-set estimate.
    assert kid_from_features(real, gen, num_subsets=3, max_subset_size=100) == pytest.approx(naive_mmd2(gen, real))


def test_kid_of_a_set_with_itself_is_near_zero():
    # Unbiased, so ~0 +- noise; subsets small against the set so that the two subsets rarely
    # share rows (shared rows bias a set-vs-itself estimate downwards).
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal([2000, 16]), rng.standard_normal([2000, 16])
    shifted = kid_from_features(x, x + 0.5, num_subsets=50, max_subset_size=100)
    assert shifted > 0.9
    assert abs(kid_from_features(x, x, num_subsets=50, max_subset_size=100)) < 0.01 * shifted
    assert abs(kid_from_features(x, y, num_subsets=50, max_subset_size=100)) < 0.01 * shifted


# ----------------------------------------------------------------------------------------
# Pose JS divergence.


def test_js_divergence_values():
    p, q = np.array([1.0, 0.0]), np.array([0.5, 0.5])
    m = (p + q) / 2
    expected = 0.5 * np.log(1 / m[0]) + 0.5 * (0.5 * np.log(0.5 / m[0]) + 0.5 * np.log(0.5 / m[1]))
    assert js_divergence(p, q) == pytest.approx(expected)
    assert js_divergence([0, 3, 1], [0, 6, 2]) == pytest.approx(0)


def test_pose_js_self_zero_and_disjoint_ln2():
    rng = np.random.default_rng(4)
    poses = np.stack([rng.uniform(0, 2 * np.pi, 5000), rng.uniform(0.5, 2.5, 5000)], 1)
    same = pose_js_from_poses(poses, poses)
    assert same['value'] == same['raw'] == same['yaw'] == same['raw_pitch'] == 0
    assert same['yaw_offset'] == 0 and same['mirror'] == 0
    a = np.stack([rng.uniform(0, 1, 1000), rng.uniform(0, 1, 1000)], 1)
    b = np.stack([rng.uniform(3, 4, 1000), rng.uniform(2, 3, 1000)], 1)
    disjoint = pose_js_from_poses(a, b, align=False)
    for key in ('value', 'raw', 'raw_yaw', 'raw_pitch'):
        assert disjoint[key] == pytest.approx(math.log(2)), key


def _asymmetric_yaw(rng, n):
    """A two-mode yaw sample (weights 0.7 / 0.3): not mirror symmetric."""
    major = rng.random(n) < 0.7
    return np.where(major, 1.2 + 0.25 * rng.standard_normal(n), 2.6 + 0.15 * rng.standard_normal(n))


def test_alignment_recovers_offset_and_mirror():
    rng = np.random.default_rng(5)
    ref = _asymmetric_yaw(rng, 40000)
    offset, mirror, js = find_yaw_alignment(wrap_h(_asymmetric_yaw(rng, 40000) - 0.7), ref)
    assert not mirror and abs(offset - 0.7) < 0.03 and js < 0.01
    mirrored = wrap_h(2 * 1.0 - _asymmetric_yaw(rng, 40000))     # h -> 2 h0 - h, h0 = 1
    offset, mirror, js = find_yaw_alignment(mirrored, ref)
    assert mirror and abs(offset - 2.0) < 0.03 and js < 0.01
    both = yaw_alignments(mirrored, ref)      # each mirror choice with its own best offset
    assert both[True] == (offset, js) and both[False][1] > js + 0.05
    symmetric = wrap_h(np.pi / 2 + rng.uniform(-0.8, 0.8, 40000))
    both = yaw_alignments(wrap_h(symmetric + 0.3), symmetric)    # a symmetric law: the JS cannot orient
    assert abs(both[True][1] - both[False][1]) < 0.005 and abs(both[False][0] - (2 * np.pi - 0.3)) < 0.03
    # Full result: raw (unaligned) JS is large, aligned small; v is untouched.
    v = np.full(40000, np.pi / 2)
    res = pose_js_from_poses(np.stack([mirrored, v], 1), np.stack([ref, v], 1))
    assert res['mirror'] == 1 and res['raw_yaw'] > 0.3 and res['yaw'] < 0.01 and res['pitch'] == 0

# ----------------------------------------------------------------------------------------
# Pose / depth error measures.


def test_angular_and_depth_errors_golden():
    # h 350 deg vs 10 deg: 20 deg apart across the wrap; same v -> on the equator dir = 20 deg.
    pred = np.array([[np.deg2rad(350), np.pi / 2], [1.0, 1.0]])
    target = np.array([[np.deg2rad(10), np.pi / 2], [1.0, 1.5]])
    err = pose_depth_error.angular_errors(pred, target)
    assert err['h'] == pytest.approx([20, 0]) and err['v'] == pytest.approx([0, np.rad2deg(0.5)])
    assert err['dir'][0] == pytest.approx(20)
    target_depth = torch.rand(2, 8, 8) + 2
    mask = torch.ones(2, 8, 8, dtype=torch.bool)
    mae, rmse = pose_depth_error.depth_errors(3 * target_depth - 1, target_depth, mask)   # affine: error 0
    assert np.abs(mae).max() < 1e-6 and np.abs(rmse).max() < 1e-6     # float32 rounding of 3t - 1
    # A constant estimate: the residual is target - mean, error = mean |t - mean| / std.
    mae, _ = pose_depth_error.depth_errors(torch.ones(2, 8, 8), target_depth, mask)
    t = target_depth.double().flatten(1)
    expected = (t - t.mean(1, keepdim=True)).abs().mean(1) / t.std(1, unbiased=False)
    assert mae == pytest.approx(expected.numpy())
    # Relief: G's depth 3x as deep as the estimate (inverted depth too: std ratios are unsigned);
    # on a half mask only the masked pixels count; a flat estimate has no relief (NaN).
    relief = pose_depth_error.depth_relief(target_depth, 3 * target_depth - 1, mask)
    assert relief == pytest.approx([3, 3], rel=1e-5)
    assert pose_depth_error.depth_relief(target_depth, 5 - target_depth, mask) == pytest.approx([1, 1], rel=1e-5)
    half = torch.zeros(2, 8, 8, dtype=torch.bool)
    half[:, :, :4] = True
    bumped = torch.where(half, target_depth, target_depth * 7)                    # outside the mask: ignored
    assert pose_depth_error.depth_relief(target_depth, bumped, half) == pytest.approx([1, 1], rel=1e-5)
    assert np.isnan(pose_depth_error.depth_relief(torch.ones(2, 8, 8), target_depth, mask)).all()

# ----------------------------------------------------------------------------------------
# End to end: detector, statistics cache, FID/KID with a generator.


def test_detector_loads_from_a_local_file(detector_path, monkeypatch):
    det = metric_utils.get_feature_detector(detector_path)
    assert det(torch.zeros(2, 3, 20, 20, dtype=torch.uint8), return_features=True).shape == (2, 16)
    monkeypatch.setenv(metric_utils.DETECTOR_ENV, detector_path)
    assert metric_utils.resolve_detector_url(None) == detector_path
    assert metric_utils.get_feature_detector_name(detector_path) == 'tiny-detector'


def test_compute_fid_end_to_end_and_cache_reuse(G, small_zip, detector_path, tmp_path):
    opts = options(G, small_zip, tmp_path, detector_path)
    det = metric_utils.get_feature_detector(detector_path)
    calls = int(det.calls)
    fid1 = compute_fid(opts, max_real=None, num_gen=8, batch_size=8, batch_gen=4)
    first = int(det.calls) - calls        # 24 real / 8 per batch + 8 generated / 8 per batch
    fid2 = compute_fid(opts, max_real=None, num_gen=8, batch_size=8, batch_gen=4)
    second = int(det.calls) - calls - first
    assert first == 4 and second == 1     # the real statistics came from the cache
    cached = os.listdir(tmp_path / 'cache' / 'gan-metrics')
    assert len(cached) == 1 and cached[0].startswith('small-tiny-detector-') and cached[0].endswith('.pkl')
    assert np.isfinite(fid1) and fid1 > 0 and fid1 == fid2           # seeded: reproducible
    kid = compute_kid(opts, max_real=None, num_gen=8, num_subsets=5, max_subset_size=8, batch_size=8)
    assert np.isfinite(kid)


def _rank_features(rank, init_file, zip_path, detector, out_dir):
    """One of two gloo ranks: dataset features of the first 23 items, split and gathered."""
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        opts = metric_utils.MetricOptions(dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset',
                                                              path=zip_path), num_gpus=2, rank=rank, device='cpu',
                                          cache=False, detector_url=detector, num_workers=0)
        stats = metric_utils.compute_feature_stats_for_dataset(opts, dict(return_features=True), max_items=23,
                                                               batch_size=5, capture_all=True)
        np.save(os.path.join(out_dir, f'rank{rank}.npy'), stats.get_all())
    finally:
        torch.distributed.destroy_process_group()


def test_two_ranks_gather_the_single_process_features(small_zip, detector_path, tmp_path):
    """Rank r takes items r, r + 2, ... (the last one wraps to item 0 and is dropped); the
    gathered rows come back in item order on every rank."""
    torch.multiprocessing.spawn(_rank_features, args=(str(tmp_path / 'init'), small_zip, detector_path,
                                                      str(tmp_path)), nprocs=2)
    opts = metric_utils.MetricOptions(dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset',
                                                          path=small_zip), cache=False, detector_url=detector_path,
                                      num_workers=0, device='cpu')
    single = metric_utils.compute_feature_stats_for_dataset(opts, dict(return_features=True), max_items=23,
                                                            capture_all=True).get_all()
    assert single.shape == (23, 16)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f'rank{rank}.npy'), single, rtol=1e-5, atol=1e-6)


def test_calc_metric_registry_and_report(G, small_zip, detector_path, tmp_path):
    assert {'fid50k_full', 'kid50k_full', 'fid2k', 'kid2k', 'pose_js', 'pose_err', 'depth_err'} <= set(
        metric_main.list_valid_metrics())
    kwargs = dict(G=G, dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=small_zip),
                  detector_url=detector_path, cache_dir=str(tmp_path), num_workers=0)
    result = metric_main.calc_metric('fid2k', metric_kwargs=dict(num_gen=4, batch_size=4), **kwargs)
    assert set(result.results) == {'fid2k'} and np.isfinite(result.results.fid2k)
    metric_main.report_metric(result, run_dir=str(tmp_path), snapshot_pkl=str(tmp_path / 'net.pkl'))
    line = json.loads((tmp_path / 'metric-fid2k.jsonl').read_text().strip())
    assert line['metric'] == 'fid2k' and line['snapshot_pkl'] == 'net.pkl' and 'timestamp' in line
    with pytest.raises(ValueError, match='unknown metric'):
        metric_main.calc_metric('fid_nope', **kwargs)
    with pytest.raises(ValueError, match='takes no option'):
        metric_main.calc_metric('fid2k', metric_kwargs=dict(num_images=3), **kwargs)

# ----------------------------------------------------------------------------------------
# Estimator-based metrics on a labeled synthetic set.


def test_estimator_metrics_end_to_end(G, synthetic_zip, tmp_path, monkeypatch):
    kwargs = dict(G=G, dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=synthetic_zip,
                                           use_labels=True), cache_dir=str(tmp_path), num_workers=0)
    small = dict(est_steps=3)
    pose = metric_main.calc_metric('pose_err', metric_kwargs=dict(small, num_gen=6, num_align=500), **kwargs).results
    depth = metric_main.calc_metric('depth_err', metric_kwargs=dict(small, num_gen=6), **kwargs).results
    for key in ('pose_err', 'pose_err_h_deg', 'pose_err_v_deg', 'pose_err_raw', 'depth_err', 'depth_err_rmse',
                'depth_err_relief'):
        assert np.isfinite((pose if key.startswith('pose') else depth)[key]), key
    assert 0 <= pose.pose_err <= 180 and pose.pose_err_mirror in (0, 1)
    gap = pose.pose_err_other_mirror_js_gap
    assert 0 <= pose.pose_err_other_mirror <= 180 and gap >= -pose_depth_error.MIRROR_JS_TOL
    if gap < pose_depth_error.MIRROR_JS_TOL:   # the images chose the frame
        assert pose.pose_err <= pose.pose_err_other_mirror
    trained = sorted(os.listdir(tmp_path / 'pof3d-estimators'))
    assert [name.split('-')[0] for name in trained] == ['depth', 'pose']
    # The *_gt metrics reuse the cached estimators: training again would fail here.
    monkeypatch.setattr(estimators, '_fit', lambda *a, **k: pytest.fail('estimator retrained'))
    assert np.isfinite(metric_main.calc_metric('pose_err_gt', metric_kwargs=small, **kwargs).results.pose_err_gt)
    depth_gt = metric_main.calc_metric('depth_err_gt', metric_kwargs=small, **kwargs).results
    assert np.isfinite(depth_gt.depth_err_gt) and np.isfinite(depth_gt.depth_err_gt_relief)
    pose_js = metric_main.calc_metric('pose_js', metric_kwargs=dict(num_gen=2000), **kwargs).results
    assert 0 <= pose_js.pose_js <= math.log(2) and 0 <= pose_js.pose_js_raw <= math.log(2)


def test_registered_estimator_hook(G, synthetic_zip, tmp_path):
    """An external estimator (the FFHQ face-model hook) replaces the built-in one."""
    estimators.register_estimator('constant_front', lambda img: {'pose': torch.tensor([[math.pi / 2, math.pi / 2]])
                                                                 .expand(len(img), 2)})
    opts = options(G, synthetic_zip, tmp_path)
    res = pose_depth_error.compute_pose_err(opts, num_gen=4, estimator='constant_front', align=False)
    assert np.isfinite(res['value']) and not os.path.exists(tmp_path / 'cache' / 'pof3d-estimators')
    # Every view reads yaw π/2 (bin 9 of 36): JS of a point mass against the data's yaw law, where
    # q = the data's share in that bin, is ½ ln(2/(1+q)) + ½ (q ln(2q/(1+q)) + (1 − q) ln 2).
    ref_h = pose_metrics.wrap_h(pose_metrics.reference_poses(opts)[:, 0])
    q = float(np.mean(np.floor(ref_h / (2 * math.pi / 36)) == 9))
    q_term = q * math.log(2 * q / (1 + q)) if q > 0 else 0.0
    expected = 0.5 * math.log(2 / (1 + q)) + 0.5 * (q_term + (1 - q) * math.log(2))
    assert res['view_js_yaw'] == pytest.approx(expected, rel=1e-9) and 0 < res['view_js'] <= math.log(2)
    with pytest.raises(ValueError, match='no estimator registered'):
        pose_depth_error.compute_pose_err(opts, num_gen=4, estimator='missing')

# ----------------------------------------------------------------------------------------
# The calc_metrics.py CLI.


@pytest.fixture(scope='module')
def snapshot(G, small_zip, tmp_path_factory):
    path = tmp_path_factory.mktemp('run') / 'network-snapshot-000000.pkl'
    with open(path, 'wb') as f:
        __import__('pickle').dump({'G_ema': G, 'training_set_kwargs': None}, f)
    return str(path)


def test_cli_writes_metric_jsonl(snapshot, small_zip):
    subprocess.run([sys.executable, 'calc_metrics.py', '--network', snapshot, '--metrics', 'pose_js',
                    '--data', small_zip, '--verbose', 'false'], check=True, cwd=REPO, capture_output=True)
    lines = open(os.path.join(os.path.dirname(snapshot), 'metric-pose_js.jsonl')).read().splitlines()
    result = json.loads(lines[-1])
    assert result['metric'] == 'pose_js' and result['snapshot_pkl'] == os.path.basename(snapshot)
    assert 0 <= result['results']['pose_js'] <= math.log(2) and 'pose_js_yaw_offset' in result['results']


def test_cli_cache_option_is_where_estimators_are_looked_up(snapshot, small_zip, tmp_path, monkeypatch):
    """--cache DIR: the estimator is looked up (and would be trained) in DIR, e.g. a bench's cache/."""
    import calc_metrics
    seen = {}

    def no_training(kind, cache_dir=None, **kwargs):
        seen['cache_dir'] = cache_dir
        raise OSError('no training in this test')
    monkeypatch.setattr(estimators, 'train_estimator', no_training)
    result = click.testing.CliRunner().invoke(calc_metrics.main, [
        '--network', snapshot, '--metrics', 'pose_err', '--data', small_zip, '--cache', str(tmp_path / 'bench_cache'),
        '--verbose', 'false'])
    assert seen['cache_dir'] == str(tmp_path / 'bench_cache'), result.output
    assert result.exit_code == 1 and 'no training in this test' in result.output


@pytest.mark.parametrize('args, message', [
    (['--metrics', 'fid_nope'], 'unknown metric'),
    (['--metrics', 'fid2k', '--detector', '/nonexistent/det.pt'], 'no such file'),
    (['--metrics', 'pose_js'], 'pass --data'),
])
def test_cli_one_line_errors(snapshot, args, message):
    import calc_metrics
    result = click.testing.CliRunner().invoke(calc_metrics.main, ['--network', snapshot] + args)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and message in result.output, result.output
    result = click.testing.CliRunner().invoke(calc_metrics.main, ['--network', '/nonexistent.pkl'])
    assert result.exit_code == 1 and 'no such file' in result.output and len(result.output.strip().splitlines()) == 1


def test_choose_mirror_by_js_unless_the_law_cannot_orient_the_frame():
    tol = pose_depth_error.MIRROR_JS_TOL
    # {mirror: (offset, yaw JS)}; the images agree better with the mirrored frame (10 deg against 40).
    errs = {False: 40.0, True: 10.0}
    assert pose_depth_error.choose_mirror({False: (0.0, 0.1), True: (1.0, 0.1 + tol / 2)}, errs) is True
    assert pose_depth_error.choose_mirror({False: (0.0, 0.1 + tol / 2), True: (1.0, 0.1)}, errs) is True
    # A law that does orient it (a skewed one): the JS decides, whatever the images say.
    assert pose_depth_error.choose_mirror({False: (0.0, 0.1), True: (1.0, 0.1 + 2 * tol)}, errs) is False
    # Ties on both: no mirror; no mirror allowed: none.
    assert pose_depth_error.choose_mirror({False: (0.0, 0.1), True: (1.0, 0.1)}, {False: 5.0, True: 5.0}) is False
    assert pose_depth_error.choose_mirror({False: (0.0, 0.0)}, {False: 5.0}) is False
