"""bench/pose_head_probe.py helpers against hand-computed values (the end-to-end run is in
tests/test_pose_learning_smoke.py, on the smoke benchmark's snapshots)."""

import math
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench'))
import pose_head_probe  # noqa: E402


def test_fit_slope_and_correlation():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    slope, corr = pose_head_probe.fit(x, 0.5 * x + 1.0)
    assert math.isclose(slope, 0.5) and math.isclose(corr, 1.0)
    slope, corr = pose_head_probe.fit(x, np.array([1.0, 0.0, 1.0, 0.0]))   # cov -1/3, var 5/3
    assert math.isclose(slope, -0.2) and math.isclose(corr, -0.4472135954999579)
    assert all(math.isnan(v) for v in pose_head_probe.fit(x, np.ones(4)))


def test_snapshot_kimg():
    assert pose_head_probe.snapshot_kimg('/r/network-snapshot-000012.504.pkl') == 12.504
    assert pose_head_probe.snapshot_kimg('network-snapshot-000040.pkl') == 40


def test_split_means_put_each_half_of_the_truth_at_its_mean_estimate():
    true = np.array([-0.8, -0.7, 0.7, 0.9])                 # median 0: two items each side
    est = np.array([0.3, 0.1, -0.2, -0.4])                  # a mirrored, compressed reading
    assert pose_head_probe.split_means(true, est) == pytest.approx((0.2, -0.3))
