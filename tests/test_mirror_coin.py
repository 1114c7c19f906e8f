"""The mirror coin (issue 15 item 3): sampling G's cameras as D's fake stream sees them when the
mirrored renders are on. Each camera is kept or replaced by its exact yaw mirror, about half of
each; pose_js_mirror_coin scores that mixture."""

import math

import numpy as np
import pytest
import torch

from metrics import metric_main, pose_metrics
from training.cameras import LookAtPose, cam2world_to_pose, flip_camera, mirror_coin

from test_metrics import G, make_G, options, small_zip   # noqa: F401 (fixtures; tests/ is on sys.path)


@pytest.mark.parametrize('flip_type', ['flip_both', 'flip_both_shapenet'])
def test_each_camera_is_kept_or_mirrored_about_half_each(flip_type):
    g = torch.Generator().manual_seed(0)
    h, v = 0.3 + 2.5 * torch.rand(400, 1, generator=g), 1.2 + 0.6 * torch.rand(400, 1, generator=g)
    cams = LookAtPose(h, v, [0, 0, 0], 2.7)
    out = mirror_coin(cams, flip_type, torch.Generator().manual_seed(1))
    kept = (out == cams).flatten(1).all(1)
    mirrored = (out == flip_camera(cams, flip_type, True)).flatten(1).all(1)
    assert bool((kept ^ mirrored).all())                      # one or the other, exactly
    assert 150 < int(mirrored.sum()) < 250
    torch.testing.assert_close(out, mirror_coin(cams, flip_type, torch.Generator().manual_seed(1)))   # seeded
    h_out = cam2world_to_pose(out[mirrored])[0].flatten()     # the yaw mirror: h -> pi - h (x) or -h (z)
    expected = (math.pi - h[mirrored]) if flip_type == 'flip_both' else (2 * math.pi - h[mirrored])
    torch.testing.assert_close(h_out, expected.flatten(), atol=1e-4, rtol=0)


def test_generator_poses_with_the_coin_are_the_same_poses_some_mirrored(G, small_zip, tmp_path):   # noqa: F811
    opts = options(G, small_zip, tmp_path)
    plain = pose_metrics.generator_poses(opts, 300, batch=100)
    coin = pose_metrics.generator_poses(opts, 300, batch=100, mirror_coin=True)
    same = np.isclose(coin[:, 0], plain[:, 0], atol=1e-4)
    mirror = np.isclose(coin[:, 0], pose_metrics.wrap_h(np.pi - plain[:, 0]), atol=1e-4)
    assert (same | mirror).all() and 100 < mirror.sum() < 200
    np.testing.assert_allclose(coin[:, 1], plain[:, 1], atol=1e-5)   # the yaw mirror leaves v alone
    res = metric_main.calc_metric('pose_js_mirror_coin', metric_kwargs=dict(num_gen=500), G=G,
                                  dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset',
                                                      path=small_zip), cache_dir=str(tmp_path), num_workers=0)
    assert 0 <= res.results.pose_js_mirror_coin <= math.log(2) and 'pose_js_mirror_coin_yaw' in res.results
