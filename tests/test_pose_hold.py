"""The pose hold (--pose_hold_kimg, training/losses/pof3d.py, issue 15): until the hold ends no loss term
moves G's camera (the renders use the detached camera; L3 and the distribution term wait), the renders
themselves are unchanged, and afterwards the adversarial terms reach the pose learner again; the pose
freeze (--pose_freeze_kimg): from then on, the same; the options' config round trip and usage errors."""

import json

import pytest
import torch

import train as train_cli
from torch_utils import training_stats
from training import config as config_lib
from training.losses import PoF3DLoss
from training.losses.common import Step
from training.losses.fakes import MirrorCamera, PoF3DFakes

from test_losses import Z_DIM, make_D, make_G, make_labels
from test_train import assert_one_line_usage_error, dataset   # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)


def _gmain_grads(G, D, cur_nimg, **loss_kwargs):
    """{'pose': summed |grad| of the pose learner, 'rest': of the other G parameters} after Gmain."""
    loss = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, **loss_kwargs)
    G.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    z, c, reals = torch.randn(4, Z_DIM), make_labels(4), torch.rand(4, 3, 32, 32) * 2 - 1
    loss.accumulate_gradients('Gmain', reals, c, z, c, 1, cur_nimg)
    total = {'pose': 0.0, 'rest': 0.0}
    for name, p in G.named_parameters():
        if p.grad is not None:
            total['pose' if name.startswith('pose_source.') else 'rest'] += p.grad.abs().sum().item()
    return total


def test_no_term_moves_the_camera_during_the_hold_and_all_do_after():
    G, D = make_G(), make_D()
    assert any(n.startswith('pose_source.') for n, _ in G.named_parameters())
    held = _gmain_grads(G, D, 999, pose_hold_kimg=1.0, pose_gd_weight=1.0)
    assert held['pose'] == 0 and held['rest'] > 0
    after = _gmain_grads(G, D, 1000, pose_hold_kimg=1.0, pose_gd_weight=1.0)
    assert after['pose'] > 0 and after['rest'] > 0
    never = _gmain_grads(G, D, 999, pose_gd_weight=0.0)     # no hold, no L3: L1/L2 alone move the camera
    assert never['pose'] > 0


@pytest.mark.parametrize('mirror', [False, True])
def test_the_held_render_is_the_same_image(mirror):
    G = make_G()
    z, c = torch.randn(2, Z_DIM), make_labels(2)
    fakes = PoF3DFakes(MirrorCamera('flip_both', seed=3) if mirror else None)
    images = []
    for hold in (False, True):
        if mirror:
            fakes.mirror = MirrorCamera('flip_both', seed=3)
        torch.manual_seed(0)
        out, _ = fakes(G, z, c, Step(blur_sigma=0, resolution=16, pose_hold=hold))
        images.append(out['image'])
        assert out['image'].requires_grad
    torch.testing.assert_close(images[0], images[1], rtol=0, atol=1e-6)


def test_l3_and_the_distribution_term_wait_for_the_hold():
    G, D = make_G(), make_D()
    loss = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_hold_kimg=2.0, pose_gd_start_kimg=1.0,
                     pose_dist_weight=1.0, pose_dist_start_kimg=0.5)
    assert loss.step(1999).pose_hold and not loss.step(1999).pose_gd_on
    assert not loss.step(2000).pose_hold and loss.step(2000).pose_gd_on
    assert loss.G_pose_dist.start_kimg == 2.0


def test_the_option_round_trips_and_needs_the_learned_pose(dataset, tmp_path):   # noqa: F811
    on = config_lib.build_config('synthetic', pose_hold_kimg=3.0)
    assert config_lib.TrainConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert on.loss_kwargs()['pose_hold_kimg'] == 3.0
    assert config_lib.build_config('synthetic').loss_kwargs()['pose_hold_kimg'] == 0
    base = ['--outdir', 'o', '--cfg', 'synthetic', '--data', 'd.zip', '--pose_hold_kimg', '4']
    assert train_cli.make_config(train_cli.main.make_context('train', base).params).loss.pose_hold_kimg == 4.0
    assert_one_line_usage_error(['--pose_hold_kimg', '1', '--pose_source', 'prior', '--dis_pose_cond', 'false'],
                                '--pose_hold_kimg > 0 needs', dataset.unlabeled, tmp_path)


def test_the_freeze_stops_every_term_from_moving_the_camera():
    G, D = make_G(), make_D()
    before = _gmain_grads(G, D, 1999, pose_freeze_kimg=2.0, pose_gd_weight=1.0)
    assert before['pose'] > 0 and before['rest'] > 0
    frozen = _gmain_grads(G, D, 2000, pose_freeze_kimg=2.0, pose_gd_weight=1.0)
    assert frozen['pose'] == 0 and frozen['rest'] > 0
    loss = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_hold_kimg=0.5, pose_freeze_kimg=2.0,
                     pose_dist_weight=1.0)
    assert [loss.step(n).pose_hold for n in (499, 500, 1999, 2000)] == [True, False, False, True]
    assert [loss.step(n).pose_gd_on for n in (499, 500, 1999, 2000)] == [False, True, True, False]


@pytest.mark.parametrize('name,value', [('pose_freeze_kimg', 12.0), ('pose_freeze_slope', 0.5)])
def test_the_freeze_options_round_trip_and_are_checked(name, value, dataset, tmp_path):   # noqa: F811
    on = config_lib.build_config('synthetic', **{name: value})
    assert config_lib.TrainConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert on.loss_kwargs()[name] == value
    assert config_lib.build_config('synthetic').loss_kwargs()[name] == 0
    assert_one_line_usage_error([f'--{name}', f'{value:g}', '--pose_source', 'prior', '--dis_pose_cond', 'false'],
                                f'--{name} > 0 needs', dataset.unlabeled, tmp_path)


def test_a_freeze_before_the_hold_ends_is_refused(dataset, tmp_path):   # noqa: F811
    assert_one_line_usage_error(['--pose_freeze_kimg', '1', '--pose_hold_kimg', '2'], 'must be past --pose_hold_kimg',
                                dataset.unlabeled, tmp_path)


def _calibrate(loss, slope, updates=200):
    """Feed the head's running fit `updates` batches of fakes read at `slope` (est = slope * true)."""
    gen = torch.Generator().manual_seed(1)
    for _ in range(updates):
        true = torch.randn(8, 2, generator=gen)
        loss.calibration.update(true, slope * true)


def test_the_slope_freeze_latches_once_the_head_reads_the_yaw():
    G, D = make_G(), make_D()
    loss = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_freeze_slope=0.5, pose_hold_kimg=1.0,
                     pose_gd_weight=1.0)
    z, c, reals = torch.randn(2, Z_DIM), make_labels(2), torch.rand(2, 3, 32, 32) * 2 - 1
    _calibrate(loss, 0.3)
    loss.accumulate_gradients('Greg', reals, c, z, c, 1, 1500)
    assert loss.frozen_since is None and loss.step(1500).pose_gd_on          # slope 0.3 < 0.5
    _calibrate(loss, 0.9)
    loss.accumulate_gradients('Greg', reals, c, z, c, 1, 500)
    assert loss.frozen_since is None                                          # still in the hold: no latch
    loss.accumulate_gradients('Greg', reals, c, z, c, 1, 1600)
    assert loss.frozen_since == 1600
    _calibrate(loss, 0.0)                                                     # latched for good
    loss.accumulate_gradients('Greg', reals, c, z, c, 1, 1700)
    step = loss.step(1700)
    assert loss.frozen_since == 1600 and step.pose_hold and not step.pose_gd_on
    stats = training_stats.Collector(regex='Pose/(frozen|head_slope_h)')
    loss.accumulate_gradients('Dmain', reals, c, z, c, 1, 1700)       # reports the fit and the freeze
    stats.update()
    assert stats.mean('Pose/frozen') == 1 and abs(stats.mean('Pose/head_slope_h')) < 0.1
    saved = loss.state_dict()
    fresh = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_freeze_slope=0.5)
    fresh.load_state_dict(saved)
    assert fresh.frozen_since == 1600 and fresh.step(1700).pose_hold


def test_the_slope_freeze_stops_the_camera_gradient():
    G, D = make_G(), make_D()
    loss = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_freeze_slope=0.5, pose_gd_weight=1.0)
    z, c, reals = torch.randn(4, Z_DIM), make_labels(4), torch.rand(4, 3, 32, 32) * 2 - 1
    grads = []
    for slope in (0.2, 0.8):
        _calibrate(loss, slope)
        G.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        loss.accumulate_gradients('Gmain', reals, c, z, c, 1, 3000)
        grads.append(sum(p.grad.abs().sum().item() for n, p in G.named_parameters()
                         if n.startswith('pose_source.') and p.grad is not None))
    assert grads[0] > 0 and grads[1] == 0 and loss.frozen_since == 3000


def _latch_on_rank(rank, init_file, results):
    torch.distributed.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    try:
        loss = PoF3DLoss('cpu', make_G(), make_D(), neural_rendering_resolution_initial=16, pose_freeze_slope=0.5)
        _calibrate(loss, 0.9 if rank == 0 else 0.1)     # only rank 0's head reads the yaw
        loss._latch_freeze(2500)
        results[rank] = loss.frozen_since
    finally:
        torch.distributed.destroy_process_group()


def test_the_ranks_latch_the_freeze_together(tmp_path):
    results = torch.multiprocessing.Manager().dict()
    torch.multiprocessing.spawn(_latch_on_rank, args=(str(tmp_path / 'init'), results), nprocs=2)
    assert dict(results) == {0: 2500.0, 1: 2500.0}
