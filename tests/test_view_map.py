"""bench/view_map.py: the renders it reads, the branch of the readings, the calibration bins and the
table against hand values on tiny networks (end to end on the smoke benchmark's snapshots in
tests/test_pose_learning_smoke.py)."""

import math
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench'))
import pose_score_probe  # noqa: E402
import view_map  # noqa: E402

from test_losses import Z_DIM, make_G, make_labels  # noqa: E402

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)


class RecordingEstimator:
    """Stands in for the pose estimator: records the uint8 images and reads every one at a fixed yaw."""

    def __init__(self, yaw: float):
        self.yaw, self.seen = yaw, []

    def __call__(self, images: torch.Tensor) -> dict:
        assert images.dtype == torch.uint8
        self.seen.append(images.clone())
        n = len(images)
        return {'pose': torch.stack([torch.full((n,), self.yaw), torch.full((n,), math.pi / 2)], dim=1)}


def test_view_map_reads_each_yaws_render_with_the_pitch_kept():
    G = make_G()
    z, c = torch.randn(2, Z_DIM), make_labels(2)
    pose = torch.tensor([[1.0, 1.4], [2.0, 1.7]])
    est = RecordingEstimator(math.radians(350.0))            # 350 deg = -10 deg: read near each camera yaw
    rows = view_map.view_map(G, est, z, c, pose, (30.0, 150.0), 16)
    assert [r[0] for r in rows] == [30.0, 150.0]
    np.testing.assert_allclose(rows[0][1], [-10.0, -10.0], atol=1e-4)     # the branch nearest 30 deg
    np.testing.assert_allclose(rows[1][1], [-10.0, -10.0], atol=1e-4)     # 350 - 360 is 160 deg from 150, 350 is 200
    moved = torch.tensor([[math.radians(150.0), 1.4], [math.radians(150.0), 1.7]])
    with torch.no_grad():
        want = pose_score_probe.render_at(G, z, c, moved, 16)['image']
    np.testing.assert_array_equal(est.seen[1].numpy(), (want * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy())
    assert not torch.equal(est.seen[0], est.seen[1])          # the camera moved the render


def test_readings_take_the_branch_nearest_the_camera():
    est = RecordingEstimator(math.radians(10.0))
    images = torch.zeros(3, 3, 4, 4)
    np.testing.assert_allclose(view_map.read_yaws(est, images, 350.0), [370.0] * 3, atol=1e-4)
    np.testing.assert_allclose(view_map.read_yaws(est, images, 90.0), [10.0] * 3, atol=1e-4)


def test_summary_and_calibration_hand_values():
    mean, std, p10, p50, p90 = view_map.summary(np.array([40.0, 50.0]))
    assert (mean, std, p50) == (45.0, 5.0, 45.0) and p10 == pytest.approx(41.0) and p90 == pytest.approx(49.0)
    assert all(math.isnan(x) for x in view_map.summary(np.array([])))
    true = np.array([28.0, 33.0, 36.0, 44.0, 50.0])
    read = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    rows = view_map.calibration(true, read, (30.0, 45.0), 5.0)
    assert [r[0] for r in rows] == [30.0, 45.0]
    np.testing.assert_array_equal(rows[0][1], [1.0, 2.0])      # 28 and 33 lie within 5 of 30, 36 does not
    np.testing.assert_array_equal(rows[1][1], [4.0, 5.0])      # 44 and 50 within 5 of 45


def test_report_columns(tmp_path):
    pkl = str(tmp_path / 'network-snapshot-000012.000.pkl')
    rows = [(45.0, np.array([40.0, 50.0])), (135.0, np.array([130.0, 140.0]))]
    text = view_map.report(pkl, rows, [(45.0, np.array([44.0, 46.0])), (135.0, np.array([]))])
    lines = [line for line in text.splitlines() if line.startswith('|')]
    assert lines[2] == '| 45 | 45.0 | 5.0 | 41.0 | 45.0 | 49.0 | 2 | 45.0 | 1.0 |'
    assert lines[3].endswith('| 0 | nan | nan |')
    assert len({len(line.split('|')) for line in lines}) == 1
    assert '(12 kimg), 2 objects' in text
    plain = view_map.report(pkl, rows).splitlines()
    assert plain[2].count('|') == 7 and plain[4] == '| 45 | 45.0 | 5.0 | 41.0 | 45.0 | 49.0 |'


def test_bad_yaws_is_one_line():
    import click
    with pytest.raises(click.BadParameter, match='--yaws|comma-separated'):
        view_map.parse_yaws('45,abc')
