"""The reprojection error (VolumeGAN protocol, SEEDS_SPEC §6.5-6.6 `reproj_err`): the yawed camera
and the warp against hand-computed cases (a fronto-parallel plane), an analytic consistent /
inconsistent view pair, and the registered metric on tiny generators (identity at yaw 0, a
finite positive value at 10 degrees, an image resolution above the depth's)."""

import math

import numpy as np
import pytest
import torch

from metrics import metric_main
from metrics.reprojection_error import (image_at_resolution, look_at_point, masked_l1, reproject, warp_to_view,
                                       yaw_camera)
from tests.test_generator import make_G
from tests.test_metrics import camera_labels, write_zip
from training.cameras import LookAtPose
from training.rendering.rays import sample_rays

pytestmark = pytest.mark.usefixtures('single_thread')
F64 = torch.float64
RES, FOCAL = 8, 2.0
DELTA = math.radians(10)


def cam_a():
    """By hand: at (0, 0, 2) looking down -z at the origin; right +x, down -y, forward -z."""
    return torch.tensor([[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2], [0, 0, 0, 1]], dtype=F64)[None]


def cam_b(delta=DELTA):
    """By hand: camera A yawed by delta about the y axis: at (2 sin, 0, 2 cos), forward
    -(sin, 0, cos), right (cos, 0, -sin), down -y."""
    c, s = math.cos(delta), math.sin(delta)
    return torch.tensor([[c, 0, -s, 2 * s], [0, -1, 0, 0], [-s, 0, -c, 2 * c], [0, 0, 0, 1]], dtype=F64)[None]


def intrinsics(f=FOCAL):
    return torch.tensor([[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]], dtype=F64)[None]


def plane_depth_a(res=RES, f=FOCAL):
    """Camera A's ray distance to the plane z = 0 by hand: the pixel-centre ray has camera
    direction (x, y, 1), x = ((j + 1/2)/R - 1/2)/f, y likewise, and meets the plane at camera
    z = 2: distance 2 sqrt(x^2 + y^2 + 1). Also returns x, y [R, R] (rows i, cols j)."""
    centres = ((torch.arange(res, dtype=F64) + 0.5) / res - 0.5) / f
    y, x = torch.meshgrid(centres, centres, indexing='ij')
    return (2 * torch.sqrt(x ** 2 + y ** 2 + 1))[None, None], x, y


def render_plane(cam2world, K, res, texture):
    """An analytic render of the plane z = 0 textured by texture(X [.., 3]) -> [.., C]: (image
    [1, C, R, R], ray distance [1, 1, R, R]); a ray that misses the plane gets depth inf."""
    origins, dirs = sample_rays(cam2world, K, res)
    t = -origins[..., 2:] / dirs[..., 2:]
    t = torch.where(t > 0, t, torch.full_like(t, math.inf))
    points = origins + torch.nan_to_num(t, posinf=0.0) * dirs
    image = texture(points).permute(0, 2, 1).reshape(1, -1, res, res)
    return image, t.permute(0, 2, 1).reshape(1, 1, res, res)


def stripes(shift=0.0):
    """A smooth grey-level texture of the world point (values in [0, 1])."""
    return lambda p: (0.5 + 0.4 * torch.sin(6 * (p[..., :1] + shift)) * torch.cos(4 * p[..., 1:2]))

# ----------------------------------------------------------------------------------------
# Camera math.


def test_yaw_camera_is_the_hand_built_camera_and_h_plus_yaw():
    torch.testing.assert_close(yaw_camera(cam_a(), DELTA, [0, 0, 0]), cam_b())
    torch.testing.assert_close(yaw_camera(cam_a(), 0.0, [0.3, -0.2, 0.1]), cam_a(), rtol=0, atol=0)
    # a look-at camera about the origin: yaw = h -> h + yaw, v unchanged
    h, v = torch.tensor([[1.2]], dtype=F64), torch.tensor([[1.4]], dtype=F64)
    torch.testing.assert_close(yaw_camera(LookAtPose(h, v, [0, 0, 0], 2.7), DELTA, [0, 0, 0]),
                               LookAtPose(h + DELTA, v, [0, 0, 0], 2.7))
    # about a pivot off the origin: the yawed camera still looks at the pivot, same distance
    pivot = torch.tensor([0.0, 0.0, 0.2], dtype=F64)
    cam = LookAtPose(h, v, pivot, 2.7)
    torch.testing.assert_close(look_at_point(cam, pivot), pivot[None])
    yawed = yaw_camera(cam, DELTA, look_at_point(cam, pivot))
    torch.testing.assert_close(look_at_point(yawed, pivot), pivot[None])
    assert (yawed[0, :3, 3] - pivot).norm().item() == pytest.approx((cam[0, :3, 3] - pivot).norm().item())
    assert yawed[0, 1, 0].abs().item() < 1e-12                    # still roll-free (right axis horizontal)


def test_reproject_plane_hand_computed():
    """Plane z = 0 seen by A; pixel (i, j) is X = (a, b, 0) with a = 2x, b = -2y. In B
    (hand-derived): x_B = a cos, y_B = -b, z_B = 2 - a sin, u_B = f x_B/z_B + 1/2,
    v_B = f y_B/z_B + 1/2, dist = sqrt((a - 2 sin)^2 + b^2 + 4 cos^2)."""
    depth, x, y = plane_depth_a()
    a, b = 2 * x, -2 * y
    c, s = math.cos(DELTA), math.sin(DELTA)
    uv, z, dist = reproject(depth, cam_a(), intrinsics(), cam_b(), intrinsics())
    z_b = 2 - a * s
    torch.testing.assert_close(z[0], z_b)
    torch.testing.assert_close(uv[0, ..., 0], FOCAL * a * c / z_b + 0.5)
    torch.testing.assert_close(uv[0, ..., 1], FOCAL * (-b) / z_b + 0.5)
    torch.testing.assert_close(dist[0], torch.sqrt((a - 2 * s) ** 2 + b ** 2 + 4 * c ** 2))
    # pixel (row 3, col 6): a = 0.3125, b = 0.0625 -> B's pixel (row 2.98606, col 6.03068)
    col, row = uv[0, 3, 6] * RES - 0.5
    assert col.item() == pytest.approx(6.030683, abs=1e-5) and row.item() == pytest.approx(2.986055, abs=1e-5)
    # a centre-column point (a = 0) keeps its pixel in B: u_B = 1/2, v_B = f y + 1/2 = v_A
    depth_odd, _, _ = plane_depth_a(res=9, f=1.0)
    uv_odd, _, _ = reproject(depth_odd, cam_a(), intrinsics(1.0), cam_b(), intrinsics(1.0))
    torch.testing.assert_close(uv_odd[0, :, 4] * 9 - 0.5,
                               torch.stack([torch.full([9], 4.0, dtype=F64), torch.arange(9, dtype=F64)], -1))


def test_warp_samples_the_hand_computed_coordinate_and_masks():
    """A ramp image (value = column index) warped from B into A shows, at every masked pixel,
    the hand-computed source column 8 u_B - 1/2 (bilinear is exact on a ramp): the
    grid_sample convention matches the pixel-centre rays."""
    depth_a, x, _ = plane_depth_a()
    _, depth_b = render_plane(cam_b(), intrinsics(), RES, stripes())
    ramp = torch.arange(RES, dtype=F64).expand(1, 1, RES, RES).contiguous()
    warped, mask = warp_to_view(ramp, depth_b, depth_a, cam_a(), intrinsics(), cam_b(), intrinsics())
    a, c, s = 2 * x, math.cos(DELTA), math.sin(DELTA)
    expected = (FOCAL * a * c / (2 - a * s) + 0.5) * RES - 0.5
    assert mask.sum().item() >= RES * (RES - 2)                  # all but columns leaving B's hull
    torch.testing.assert_close(warped[0, 0][mask[0, 0]], expected[mask[0, 0]])
    # the pixels that reproject beyond B's last pixel centre (column > 7) are out of the mask
    outside = (expected > RES - 1 + 1e-3) | (expected < -1e-3)
    assert outside.any() and not mask[0, 0][outside].any()
    # a depth test that fails: B's depth 10 % too far everywhere -> nothing is consistent
    _, mask_far = warp_to_view(ramp, depth_b * 1.1, depth_a, cam_a(), intrinsics(), cam_b(), intrinsics())
    assert not mask_far.any()
    # ... and within a looser tolerance it passes again
    _, mask_loose = warp_to_view(ramp, depth_b * 1.1, depth_a, cam_a(), intrinsics(), cam_b(), intrinsics(),
                                 depth_tol=0.2)
    assert torch.equal(mask_loose, mask)
    assert math.isnan(masked_l1(ramp, warped, mask_far).item())


def test_analytic_pair_inconsistent_view_has_the_larger_error():
    res, K = 32, intrinsics(1.5)
    image_a, depth_a = render_plane(cam_a(), K, res, stripes())
    image_b, depth_b = render_plane(cam_b(), K, res, stripes())
    moved, _ = render_plane(cam_b(), K, res, stripes(shift=0.15))     # texture slid along x in view 2 only
    warped, mask = warp_to_view(image_b, depth_b, depth_a, cam_a(), K, cam_b(), K)
    warped_bad, mask_bad = warp_to_view(moved, depth_b, depth_a, cam_a(), K, cam_b(), K)
    assert torch.equal(mask, mask_bad) and mask.double().mean().item() > 0.8
    good, bad = masked_l1(image_a, warped, mask).item(), masked_l1(image_a, warped_bad, mask_bad).item()
    assert good < 0.01 and bad > 0.05 and bad > 10 * good, (good, bad)
    # the unwarped view 2 (no reprojection) is far worse than the warp: the warp does the work
    assert masked_l1(image_a, image_b, mask).item() > 5 * good

def test_image_is_box_averaged_to_the_depth_resolution():
    image = torch.arange(2 * 3 * 8 * 8, dtype=F64).reshape(2, 3, 8, 8) ** 1.5      # not linear: point samples differ
    small = image_at_resolution(image, 4)
    torch.testing.assert_close(small, image.reshape(2, 3, 4, 2, 4, 2).mean(dim=(3, 5)))
    assert image_at_resolution(image, 8) is image

# ----------------------------------------------------------------------------------------
# The registered metric on tiny generators.


@pytest.fixture(scope='module')
def labeled_zip(tmp_path_factory):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8)
    labels = camera_labels(np.pi / 2 + 0.3 * rng.standard_normal(8), np.full(8, np.pi / 2))
    return write_zip(tmp_path_factory.mktemp('reproj') / 'labeled.zip', images, labels)


def _reproj(G, zip_path, tmp_path, **metric_kwargs):
    kwargs = dict(G=G, dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=zip_path,
                                           use_labels=True), cache_dir=str(tmp_path), num_workers=0, device='cpu')
    return metric_main.calc_metric('reproj_err', metric_kwargs=dict(num_gen=2, batch=2, **metric_kwargs),
                                   **kwargs).results


@pytest.mark.parametrize('pose_source', ['learned', 'prior', 'dataset'])
def test_metric_is_zero_at_yaw_0(labeled_zip, tmp_path, pose_source):
    G = make_G(pose_source=pose_source, sr='SuperresolutionHybrid2X')     # 32 px images, 16 px depth
    assert G.img_resolution == 32 and G.neural_rendering_resolution == 16
    res = _reproj(G, labeled_zip, tmp_path, yaw_deg=0.0)
    assert set(res) == {'reproj_err', 'reproj_err_mask_frac', 'reproj_err_images'}
    assert res.reproj_err < 1e-5 and res.reproj_err_mask_frac > 0.99 and res.reproj_err_images == 1.0


@pytest.fixture(scope='module')
def sr_G():
    return make_G(pose_source='prior', sr='SuperresolutionHybrid2X')


def test_metric_at_10_degrees_is_finite_and_positive(labeled_zip, tmp_path, sr_G):
    res = _reproj(sr_G, labeled_zip, tmp_path)
    assert math.isfinite(res.reproj_err) and res.reproj_err > 1e-4, res
    assert 0 < res.reproj_err_mask_frac <= 1
    assert _reproj(sr_G, labeled_zip, tmp_path) == pytest.approx(res)            # deterministic
    raw = _reproj(sr_G, labeled_zip, tmp_path, image='image_raw')                 # the render before SR
    assert math.isfinite(raw.reproj_err) and raw.reproj_err > 0 and raw.reproj_err != res.reproj_err
    with pytest.raises(ValueError, match='takes no option'):
        _reproj(sr_G, labeled_zip, tmp_path, yaw=10)
    with pytest.raises(ValueError, match="image must be 'image' or 'image_raw'"):
        _reproj(sr_G, labeled_zip, tmp_path, image='depth')
