"""D's pose-head exploration term (training/losses/pose_explore.py, issue 15 after run 5): its
cameras (uniform yaws around h_mean, G's own v), its gradient (D's head only), off at weight 0
(nothing rendered, the default Dmain unchanged), the option's config round trip and usage error,
and a bit-exact resume of its generator."""

import json
import math

import pytest
import torch

import train as train_cli
from training import config as config_lib
from training.losses import PoF3DLoss
from training.losses.common import DInput, Step
from training.losses.pose_explore import PoseHeadExplore

from test_losses import Z_DIM, make_D, make_G, make_labels
from test_train import assert_one_line_usage_error, dataset   # noqa: F401 (fixture)

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)
STEP = Step(blur_sigma=0, resolution=16)


class CountingG:
    """Wraps G, counting its forward (render) calls."""

    def __init__(self, G):
        self.G, self.calls = G, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.G(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.G, name)


def test_cameras_explore_the_yaw_uniformly_and_keep_g_s_pitch():
    G, R = make_G(), 0.8
    term = PoseHeadExplore(DInput(), 1.0, R, seed=3)
    z, c = torch.randn(2000, Z_DIM), make_labels(2000)
    pose, cam2world = term.cameras(G, z, c)
    h_mean = G.pose_source.h_mean
    assert h_mean == pytest.approx(math.pi / 2)
    assert (pose[:, 0] >= h_mean - R).all() and (pose[:, 0] <= h_mean + R).all()
    hist = torch.histc(pose[:, 0], bins=4, min=h_mean - R, max=h_mean + R) / 2000
    assert (hist - 0.25).abs().max() < 0.05, hist                      # roughly uniform
    torch.testing.assert_close(pose[:, 1], G.pose(z, c).pose[:, 1].detach())
    from training.pose_sources import pose_to_camera
    src = G.pose_source
    torch.testing.assert_close(cam2world, pose_to_camera(pose, src.radius, src.pivot, src.safe_pose_clamp)[0])


def test_only_d_gets_gradient_through_the_pose_head():
    G, D = make_G(), make_D()
    z, c = torch.randn(4, Z_DIM), make_labels(4)
    loss = PoseHeadExplore(DInput(), 2.0)(G, D, z, c, STEP)
    loss.backward()
    assert loss.item() > 0
    assert all(p.grad is None for p in G.parameters())
    touched = {n for n, p in D.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any('pose_head' in n for n in touched), touched


def _dmain_grads(loss, G, D, reals, z, c):
    for p in D.parameters():
        p.grad = None
    loss.accumulate_gradients('Dmain', reals, c, z, c, 1, 0)
    return [None if p.grad is None else p.grad.clone() for p in D.parameters()]


def test_weight_zero_renders_nothing_and_leaves_dmain_unchanged():
    z, c, reals = torch.randn(4, Z_DIM), make_labels(4), torch.rand(4, 3, 32, 32) * 2 - 1
    runs = {}
    for weight in (0.0, 1.0):
        G, D = CountingG(make_G()), make_D()
        loss = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_explore_weight=weight)
        before = loss.D_explore.generator.get_state()
        torch.manual_seed(0)
        grads = _dmain_grads(loss, G, D, reals, z, c)
        runs[weight] = (G.calls, grads)
        assert torch.equal(loss.D_explore.generator.get_state(), before) == (weight == 0)
    assert runs[1.0][0] == runs[0.0][0] + 1                             # one extra render when on
    G, D = make_G(), make_D()
    torch.manual_seed(0)
    plain = _dmain_grads(PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16), G, D, reals, z, c)
    assert all((a is None and b is None) or torch.equal(a, b) for a, b in zip(plain, runs[0.0][1]))


def test_the_option_round_trips_to_the_loss():
    c = config_lib.build_config('synthetic')
    assert c.loss.pose_explore_weight == 0 and c.loss_kwargs()['pose_explore_weight'] == 0
    on = config_lib.build_config('synthetic', pose_explore_weight=1.0, pose_explore_range=0.5)
    assert config_lib.TrainConfig.from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert on.loss_kwargs()['pose_explore_weight'] == 1.0 and on.loss_kwargs()['pose_explore_range'] == 0.5
    assert 'pose_explore_weight' not in config_lib.build_config('synthetic', pose_source='dataset').loss_kwargs()
    base = ['--outdir', 'o', '--cfg', 'synthetic', '--data', 'd.zip']
    ctx = train_cli.main.make_context('train', base + ['--pose_explore_weight', '2', '--pose_explore_range', '1'])
    cfg = train_cli.make_config(ctx.params)
    assert (cfg.loss.pose_explore_weight, cfg.loss.pose_explore_range) == (2.0, 1.0)


@pytest.mark.parametrize('extra', [['--pose_source', 'prior', '--dis_pose_cond', 'false'],
                                   ['--dis_pose_cond', 'false', '--dis_cam_weight', '0', '--pose_gd_weight', '0']])
def test_usage_error(extra, dataset, tmp_path):   # noqa: F811
    assert_one_line_usage_error(['--pose_explore_weight', '1'] + extra, '--pose_explore_weight > 0 needs',
                                dataset.unlabeled, tmp_path)


def test_resume_restores_the_generator_bit_exactly():
    G, D = make_G(), make_D()
    z, c = torch.randn(4, Z_DIM), make_labels(4)
    a = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_explore_weight=1.0, seed=5)
    a.D_explore.cameras(G, z, c)                                        # advance the draws
    state = a.state_dict()
    assert 'pose_explore' in state
    b = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_explore_weight=1.0, seed=5)
    b.load_state_dict(state)
    assert torch.equal(a.D_explore.cameras(G, z, c)[0], b.D_explore.cameras(G, z, c)[0])
    fresh = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_explore_weight=1.0, seed=5)
    old = {k: v for k, v in state.items() if k != 'pose_explore'}       # saved before the option existed
    fresh.load_state_dict(old)
