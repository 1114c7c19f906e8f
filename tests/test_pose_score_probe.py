"""bench/pose_score_probe.py: the score's yaw derivatives against the two compositions they stand
for on tiny networks, and its helpers against hand values (the end-to-end run is in
tests/test_pose_learning_smoke.py, on the smoke benchmark's snapshots)."""

import math
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench'))
import pose_score_probe  # noqa: E402

from test_losses import Z_DIM, make_D, make_G, make_labels  # noqa: E402

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)


def test_yaw_derivatives_are_those_of_the_two_compositions():
    """Full: d/dh of score_given(x(h), pose_only(x(h))); image path: the same with the label
    detached, both by autograd through the camera leaf. (A central difference agrees to ~1e-2 here,
    not better: EG3D's renderer places its importance samples without a graph.)"""
    G, D = make_G(), make_D()
    z, c = torch.randn(3, Z_DIM), make_labels(3)
    pose = torch.tensor([[1.3, 1.5], [1.6, 1.6], [1.9, 1.45]])
    yaw, image, full = pose_score_probe.camera_gradients(G, D, z, c, pose, 16)
    np.testing.assert_array_equal(yaw, pose[:, 0].numpy())
    want = []
    for detach in (False, True):
        leaf = pose.clone().requires_grad_(True)
        x = pose_score_probe.render_at(G, z, c, leaf, 16)
        label = D.pose_only(x)
        score = D.score_given(x, label.detach() if detach else label)
        want.append(torch.autograd.grad(score.sum(), leaf)[0][:, 0].numpy())
    np.testing.assert_allclose(full, want[0], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(image, want[1], rtol=1e-4, atol=1e-7)
    assert np.abs(full - image).max() > 1e-2 * np.abs(image).max()   # the label path carries gradient


def test_yaw_sweep_keeps_pitch_and_reports_each_yaw():
    G, D = make_G(), make_D()
    z, c = torch.randn(2, Z_DIM), make_labels(2)
    pose = torch.tensor([[1.0, 1.4], [2.0, 1.7]])
    rows = pose_score_probe.yaw_sweep(G, D, z, c, pose, [0.9, 1.57], 16)
    assert [r[0] for r in rows] == [pytest.approx(0.9), pytest.approx(1.57)]
    moved = torch.tensor([[0.9, 1.4], [0.9, 1.7]])
    with torch.no_grad():
        want = D(pose_score_probe.render_at(G, z, c, moved, 16))['score'].mean().item()
    assert rows[0][1] == pytest.approx(want, rel=1e-5)


def test_spread_corr_and_bins_hand_values():
    yaw = np.radians([30.0, 50.0, 130.0, 150.0])
    hand = 200 / math.sqrt(10400 * 4)   # yaw - mean: -60, -40, 40, 60 deg against -1, -1, 1, 1
    assert pose_score_probe.spread_corr(yaw, np.array([-1.0, -1.0, 1.0, 1.0])) == pytest.approx(hand)
    assert pose_score_probe.spread_corr(yaw, -np.degrees(yaw - yaw.mean())) == pytest.approx(-1.0)
    assert math.isnan(pose_score_probe.spread_corr(yaw, np.zeros(4)))
    rows = pose_score_probe.binned(yaw, np.array([1.0, 2.0, 3.0, 5.0]))
    assert rows == [(0, 40, 1, 1.0), (40, 60, 1, 2.0), (120, 140, 1, 3.0), (140, 180, 1, 5.0)]
