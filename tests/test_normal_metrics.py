"""normal_err / normal_err_gt (normals from depth maps) and GOF's weighted depth variance
(SEEDS_SPEC §3.4, §6.6): golden values of the pure measures, the GT normals of make_synthetic.py
against the normals of its GT depth, and the registered metrics end to end."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from metrics import metric_main
from metrics.depth_variance import cut_alpha_in_front, depth_var_weighted, weighted_depth_variance
from metrics.normal_error import depth_to_normals, fit_depth, masked_image_means, normal_angles
from tests.test_metrics import make_G
from training.cameras import FOV_to_intrinsics, LookAtPose
from training.rendering.rays import sample_rays

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.usefixtures('single_thread')


def _frontal_camera(S=16, h=math.pi / 2, v=math.pi / 2):
    cam2world = LookAtPose(torch.tensor([[h]], dtype=torch.float64), torch.tensor([[v]], dtype=torch.float64),
                           [0, 0, 0], 2.7)
    return cam2world, FOV_to_intrinsics(30.0).to(torch.float64)[None]


def _plane_depth(cam2world, K, normal, S):
    """Ray distance to the plane through the origin with unit `normal`: t = n.(0 - o)/(n.d)."""
    o, d = sample_rays(cam2world, K, S)
    n = torch.tensor(normal, dtype=torch.float64)
    return ((-(o * n).sum(-1)) / (d * n).sum(-1)).reshape(1, S, S)


@pytest.mark.parametrize('normal', [(0.0, 0.0, 1.0), (0.3, 0.2, 1.0), (-0.5, 0.4, 0.8)])
def test_depth_to_normals_of_a_plane_is_its_normal(normal):
    S = 12
    cam2world, K = _frontal_camera(S, h=1.3, v=1.4)
    n0 = F.normalize(torch.tensor(normal, dtype=torch.float64), dim=0)
    depth = _plane_depth(cam2world, K, n0.tolist(), S)
    mask = torch.ones(1, S, S, dtype=torch.bool)
    mask[0, 0, 5] = False     # a hole: it and its 4 neighbours lose their normal
    normals, valid = depth_to_normals(depth, cam2world, K, mask)
    assert not valid[0, 0].any() and not valid[0, :, 0].any() and not valid[0, 1, 5]   # border, hole's neighbour
    assert valid.sum().item() == (S - 2) ** 2 - 1
    torch.testing.assert_close(normals[valid], n0.expand(int(valid.sum()), 3), rtol=0, atol=1e-9)
    assert (normals[~valid] == 0).all()


def test_normal_angles_fit_and_means_golden():
    a = torch.tensor([[0.0, 0, 1], [0, 0, 1], [1, 0, 0]])
    b = torch.tensor([[0.0, 1, 1], [0, 0, 2], [-1, 0, 0]])
    torch.testing.assert_close(normal_angles(a, b), torch.tensor([45.0, 0.0, 180.0], dtype=torch.float64))
    target = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 2
    mask = torch.ones(2, 5, 5, dtype=torch.bool)
    torch.testing.assert_close(fit_depth(3 * target - 1, target, mask), target)   # affine: recovered
    values = torch.arange(2 * 5 * 5, dtype=torch.float64).reshape(2, 5, 5)
    valid = torch.zeros(2, 5, 5, dtype=torch.bool)
    valid[0, :4] = True                  # 20 pixels: mean of 0..19 = 9.5
    valid[1, 0] = True                   # 5 pixels < 16: NaN
    means = masked_image_means(values, valid)
    assert means[0].item() == 9.5 and math.isnan(means[1].item())


def test_weighted_depth_variance_golden():
    # ray 0: w = (0.25, 0.5, 0.25) at t = (1, 2, 3): D = 2/(1 + 1e-5) ~ 2, sum w (t - D)^2 = 0.5,
    #        n = 3: var = 0.5 / ((1 + 1e-5) * 2/3) = 0.749993
    # ray 1: all weight at t = 2: var 0;  ray 2: sum w = 0.5 < 0.99, not counted.
    w = torch.tensor([[[0.25, 0.5, 0.25], [0, 1, 0], [0.25, 0, 0.25]]], dtype=torch.float64)[..., None]
    t = torch.tensor([1.0, 2, 3], dtype=torch.float64).expand(1, 3, 3)[..., None]
    var, w_sum = weighted_depth_variance(w, t)
    torch.testing.assert_close(var[0, :2], torch.tensor([0.749993, 0.0], dtype=torch.float64), rtol=0, atol=1e-6)
    torch.testing.assert_close(w_sum[0], torch.tensor([1.0, 1.0, 0.5], dtype=torch.float64))
    assert depth_var_weighted(w, t).item() == pytest.approx(0.749993 / 2, abs=1e-6)
    assert math.isnan(depth_var_weighted(w[:, 2:], t[:, 2:]).item())
    with pytest.raises(ValueError, match='>= 2 samples'):
        weighted_depth_variance(w[:, :, :1], t[:, :, :1])


def test_cut_alpha_in_front_golden():
    # surface at 2.0, margin 0.5: samples at t < 1.5 lose their alpha (t = 1.0 only)
    alpha = torch.full([1, 1, 3, 1], 0.4)
    t = torch.tensor([1.0, 1.5, 2.5]).reshape(1, 1, 3, 1)
    out = cut_alpha_in_front(alpha, t, torch.tensor([[[2.0]]]), 0.5)
    assert out.flatten().tolist() == pytest.approx([0.0, 0.4, 0.4]) and (alpha > 0.3).all()   # input kept


@pytest.fixture(scope='module')
def lit_zip(tmp_path_factory):
    """40 labeled 32 px heads under random lights, with GT normals in the npz."""
    out = tmp_path_factory.mktemp('lit')
    subprocess.run([sys.executable, 'make_synthetic.py', '--outdir', str(out), '--family', 'head', '--num', '40',
                    '--resolution', '32', '--light', 'mvn', '--seed', '0'], check=True, cwd=REPO, capture_output=True,
                   env=dict(os.environ, OMP_NUM_THREADS='1'))
    return str(out / 'head32_labeled.zip')


def test_gt_normals_agree_with_normals_of_gt_depth(lit_zip):
    """The renderer's normals (SDF gradient) and depth_to_normals of its depth describe one
    surface: a check of both (32 px heads, so finite differences cross curved parts)."""
    gt = np.load(lit_zip.replace('_labeled.zip', '_gt.npz'))
    mask = torch.as_tensor(gt['mask'])
    normals, valid = depth_to_normals(torch.as_tensor(gt['depth']), torch.as_tensor(gt['cam2world']),
                                      torch.as_tensor(gt['intrinsics']), mask)
    angles = normal_angles(normals, torch.as_tensor(gt['normals']))[valid]
    assert valid.sum() > 1000 and angles.median().item() < 5 and angles.mean().item() < 12


def test_normal_metrics_end_to_end(lit_zip, tmp_path):
    kwargs = dict(G=make_G(), dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=lit_zip,
                                                  use_labels=True), cache_dir=str(tmp_path), num_workers=0)
    res = metric_main.calc_metric('normal_err', metric_kwargs=dict(est_steps=20, num_gen=4), **kwargs).results
    assert set(res) == {'normal_err', 'normal_err_images'} and 0 <= res.normal_err_images <= 1
    assert math.isnan(res.normal_err) or 0 <= res.normal_err <= 180
    gt = metric_main.calc_metric('normal_err_gt', metric_kwargs=dict(est_steps=20), **kwargs).results
    assert 0 <= gt.normal_err_gt <= 180 and gt.normal_err_gt_images > 0
    assert len(os.listdir(tmp_path / 'pof3d-estimators')) == 1     # one depth estimator, cached and reused
