"""view_gain (metrics/view_gain.py): the per-sweep slope by hand (wrapping, a mirrored frame), and
the registered metric on generators whose images encode a known function of the camera, read by
a registered estimator: images that turn with the camera (1), in a mirror frame (−1), at half
the rate (0.5), an object that ignores the camera (0); and the camera's share of the views G
shows, with and without an object turned in its frame."""

import math

import numpy as np
import pytest
import torch

from metrics import estimators, metric_main
from metrics.view_gain import sweep_offsets, sweep_slopes
from tests.test_metrics import camera_labels, write_zip
from training.cameras import Camera, cam2world_to_pose

pytestmark = pytest.mark.usefixtures('single_thread')
AMP = 0.9   # image = AMP·(cos θ, sin θ, 0): θ survives uint8 quantization to ~0.01 rad


def test_sweep_slopes_by_hand():
    d = np.radians([-10.0, 0.0, 10.0])
    base = np.array([[1.0], [2 * math.pi - 0.05], [0.3]])           # row 2 crosses 0 / 2π
    yaws = base + np.array([[1.0], [1.0], [-1.0]]) * d * np.array([[0.5], [1.0], [1.0]])
    yaws = np.remainder(yaws, 2 * math.pi)
    np.testing.assert_allclose(sweep_slopes(d, yaws), [0.5, 1.0, -1.0], atol=1e-12)
    np.testing.assert_allclose(sweep_slopes(d, np.full((2, 3), 4.0)), [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(sweep_offsets(5, 15.0), np.radians([-15, -7.5, 0, 7.5, 15]))
    for bad in (lambda: sweep_slopes([0.0, 0.0], np.zeros((1, 2))), lambda: sweep_slopes(d, np.zeros((1, 2))),
                lambda: sweep_offsets(1, 15.0), lambda: sweep_offsets(5, 0.0)):
        with pytest.raises(ValueError):
            bad()


def encode(theta: torch.Tensor, res: int = 8) -> torch.Tensor:
    """[N] angles -> images [N, 3, res, res] in [-1, 1] holding AMP·(cos, sin, 0)."""
    chans = torch.stack([theta.cos(), theta.sin(), torch.zeros_like(theta)], dim=1) * AMP
    return chans[:, :, None, None].expand(-1, -1, res, res).float()


def decode(images: torch.Tensor) -> dict:
    """The registered estimator: uint8 images -> pose (θ, π/2)."""
    x = images.float().mean(dim=[2, 3]) / 127.5 - 1
    h = torch.remainder(torch.atan2(x[:, 1], x[:, 0]), 2 * math.pi)
    return {'pose': torch.stack([h, torch.full_like(h, math.pi / 2)], dim=1)}


class CameraImageG(torch.nn.Module):
    """Renders θ = π/2 + gain·(h − π/2) + turn·z₀ for the camera h it is given (the label c's when
    none is, or always c's with follow=False: the sweep does not move the object), turned by
    turn·z₀ in its frame; the offset from π/2 clamped to ±limit (views that stop at the data's edge,
    as an estimator that knows only the data's range reads them)."""

    z_dim, c_dim, rendering_kwargs = 4, 25, {}

    def __init__(self, gain: float, follow: bool = True, turn: float = 0.0, limit: float = math.inf):
        super().__init__()
        self.gain, self.follow, self.turn, self.limit = gain, follow, turn, limit

    def forward(self, z, c, cam2world=None, generator=None):
        own = Camera.from_label(c).cam2world
        cam = cam2world if (cam2world is not None and self.follow) else own
        h = cam2world_to_pose(cam)[0][:, 0]
        theta = math.pi / 2 + (self.gain * (h - math.pi / 2) + self.turn * z[:, 0]).clamp(-self.limit, self.limit)
        return {'image': encode(theta), 'cam2world': own if cam2world is None else cam2world}


@pytest.fixture(scope='module')
def coded_zip(tmp_path_factory):
    """20 'real' images whose pixels encode their true yaw (so the estimator's own slope is 1)."""
    h = np.pi / 2 + np.linspace(-0.6, 0.6, 20)
    images = ((encode(torch.tensor(h)) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return write_zip(tmp_path_factory.mktemp('view_gain') / 'coded.zip', images.permute(0, 2, 3, 1).numpy(),
                     camera_labels(h, np.full(20, np.pi / 2)))


@pytest.mark.parametrize('gain, follow, expected', [(1.0, True, 1.0), (-1.0, True, -1.0), (0.5, True, 0.5),
                                                    (1.0, False, 0.0)])
def test_metric_reads_how_far_the_image_turns(coded_zip, tmp_path, gain, follow, expected):
    res = view_gain(coded_zip, tmp_path, CameraImageG(gain, follow), num_gen=6)
    assert set(res) == {'view_gain', 'view_gain_abs', 'view_gain_std', 'view_gain_estimator_slope',
                        'view_gain_camera_share', 'view_gain_camera_std', 'view_gain_image_std', 'view_gain_data_std',
                        'view_gain_inner', 'view_gain_inner_frac'}
    assert res.view_gain == pytest.approx(expected, abs=0.03)
    assert res.view_gain_inner == pytest.approx(expected, abs=0.03)
    assert res.view_gain_inner_frac == (1.0 if abs(gain) < 1 else pytest.approx(0.5, abs=0.3))
    assert res.view_gain_abs == pytest.approx(abs(expected), abs=0.03) and res.view_gain_std < 0.03
    assert res.view_gain_estimator_slope == pytest.approx(1.0, abs=0.03)
    assert res.view_gain_data_std == pytest.approx(np.degrees(np.linspace(-0.6, 0.6, 20).std()), rel=1e-4)
    # At G's own cameras the image shows π/2 + gain·(h − π/2): the camera explains all of it.
    assert res.view_gain_camera_share == pytest.approx(1.0, abs=1e-3)
    assert res.view_gain_image_std == pytest.approx(abs(gain) * res.view_gain_camera_std, rel=0.03)
    with pytest.raises(ValueError, match='num_views >= 2'):
        view_gain(coded_zip, tmp_path, CameraImageG(gain, follow), num_views=1)


def test_an_object_turned_in_its_frame_lowers_the_camera_share(coded_zip, tmp_path):
    """Cameras spread ~20° (the labels), each object turned by 0.6·z₀ (~34°) on top: the camera
    explains about a quarter of the views' variance; the sweep still turns the image (gain 1)."""
    res = view_gain(coded_zip, tmp_path, CameraImageG(1.0, turn=0.6), num_gen=60)
    assert res.view_gain == pytest.approx(1.0, abs=0.03)
    assert res.view_gain_camera_share < 0.6 and res.view_gain_image_std > 1.4 * res.view_gain_camera_std


def test_sweeps_past_the_data_edge_read_low_and_inner_keeps_the_rest(coded_zip, tmp_path):
    """Views that stop at the data's edge (±0.6 rad): sweeps from cameras near it read a slope
    below 1, the mean falls; inner keeps the latents whose view is >= 15° inside the data's
    2.5-97.5 % range, |θ0 − π/2| <= 0.57 − 0.26 rad here, where the slope is exactly 1."""
    res = view_gain(coded_zip, tmp_path, CameraImageG(1.0, limit=0.6), num_gen=40)
    assert res.view_gain < 0.9
    assert res.view_gain_inner == pytest.approx(1.0, abs=0.03)
    lo, hi = np.quantile(np.linspace(-0.6, 0.6, 20), [0.025, 0.975])
    # cameras from the labels, uniform over ±0.6: the share inside ±((hi − lo)/2 − 15°) is ~0.52
    assert res.view_gain_inner_frac == pytest.approx(((hi - lo) / 2 - math.radians(15)) / 0.6, abs=0.2)


def view_gain(zip_path, tmp_path, G, **metric_kwargs):
    estimators.register_estimator('angle_code', decode)
    kwargs = dict(G=G, dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=zip_path,
                                           use_labels=True), cache_dir=str(tmp_path), num_workers=0, device='cpu')
    return metric_main.calc_metric('view_gain', metric_kwargs=dict(batch=3, estimator='angle_code', **metric_kwargs),
                                   **kwargs).results
