"""pi-GAN's position loss (SEEDS_SPEC §1.7, §6.1 `PositionLoss`): the hand value, the gradients of
the D step (D's pose head only) and of the G step (G through D's pose head), the D it needs (a pose
head on an unconditioned D), `--pos_weight` and its usage error, and a 2-iteration `--cfg pigan`
run that logs the term on both steps."""

import dnnlib
import pytest
import torch
from click.testing import CliRunner

import train
from seed_helpers import label, make_heads, train_tiny   # tests/seed_helpers.py
from torch_utils import training_stats
from training import config as config_lib
from training.losses import loss_class_for
from training.losses.position import position_mse

pytestmark = pytest.mark.usefixtures('single_thread')
TINY = dict(dataset_resolution=16, neural_rendering_resolution_initial=16, siren_hidden=16, siren_layers=2, z_dim=16,
            w_dim=16, cbase=256, cmax=16, pose_head_channels=16)


def test_position_mse_by_hand():
    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    target = torch.tensor([[0.0, 2.0], [3.0, 2.0]], requires_grad=True)
    loss = position_mse(pred, target)
    assert loss.item() == 1.25                                   # (1 + 0 + 0 + 4) / 4
    loss.backward()
    torch.testing.assert_close(pred.grad, torch.tensor([[0.5, 0.0], [0.0, 1.0]]))   # 2 (p - t) / 4
    assert target.grad is None                                   # the prior draw is a constant


def _setup(monkeypatch, pos_weight=3.0):
    config = config_lib.build_config('pigan', pos_weight=pos_weight, **TINY)
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**config.G_kwargs())
    D = dnnlib.util.construct_class_by_name(**config.D_kwargs())
    loss = loss_class_for('prior')(device=torch.device('cpu'), G=G, D=D, seed=0, **config.loss_kwargs())
    seen, renders = {}, []
    monkeypatch.setattr(training_stats, 'report', lambda name, value: seen.setdefault(name, value))
    fakes = loss.fakes.__call__

    def recording_fakes(*args, **kwargs):
        out, lab = fakes(*args, **kwargs)
        renders.append(out.pose.detach())
        return out, lab
    monkeypatch.setattr(loss.fakes, '__call__', recording_fakes)
    loss.pos.fakes = recording_fakes
    return G, D, loss, seen, renders


def test_d_has_a_pose_head_only_with_the_position_loss():
    D_kwargs = config_lib.build_config('pigan', **TINY).D_kwargs()
    assert D_kwargs['pose_head'] is False and D_kwargs['c_dim'] == 0       # the preset: unchanged
    with_pos = config_lib.build_config('pigan', pos_weight=15.0, **TINY).D_kwargs()
    assert with_pos['pose_head'] is True and with_pos['self_condition'] is False and with_pos['c_dim'] == 0
    assert 'pos_weight' not in config_lib.build_config('pigan', **TINY).loss_kwargs()


def test_d_step_trains_the_pose_head_to_the_prior_draw(monkeypatch):
    G, D, loss, seen, renders = _setup(monkeypatch)
    with torch.no_grad():          # D_pos = 0: the term is λ mean(pose^2) of the drawn poses
        D.pose_head.out.weight.zero_()
        D.pose_head.out.bias.zero_()
    loss.accumulate_gradients('Dmain', torch.zeros(4, 3, 16, 16), label(4), torch.randn(4, 16), label(4),
                              gain=1, cur_nimg=0)
    (pose,) = renders
    assert seen['Loss/D/pos'].item() == pytest.approx(pose.square().mean().item(), rel=1e-5)
    assert 1.0 < pose[:, 1].mean().item() < 2.2                  # v ~ pi/2: the prior's (h, v)
    assert D.pose_head.out.bias.grad.abs().sum() > 0             # the head learns
    assert all(p.grad is None for p in G.parameters())           # D step: no gradient into G


def test_g_step_reaches_g_through_the_pose_head(monkeypatch):
    G, D, loss, seen, _ = _setup(monkeypatch)
    loss.G_adv.weight = 0          # the position term alone
    loss.accumulate_gradients('Gmain', torch.zeros(4, 3, 16, 16), label(4), torch.randn(4, 16), label(4),
                              gain=1, cur_nimg=0)
    assert 'Loss/G/pos' in seen and 'Loss/G/loss' not in seen
    grads = [p.grad for p in G.parameters() if p.grad is not None]
    assert grads and sum(g.abs().sum() for g in grads) > 0


@pytest.fixture(scope='module')
def heads(tmp_path_factory):
    return make_heads(tmp_path_factory.mktemp('heads'))


def test_pos_weight_without_the_prior_source_is_a_usage_error(heads, tmp_path):
    res = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', str(heads), '--cfg', 'pigan',
                                          '--metrics', 'none', '--pos_weight', '15', '--pose_source', 'prior_residual'])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and '--pos_weight' in errors[0] and 'prior' in errors[0], res.output
    assert not (tmp_path / 'runs').exists()


def test_pigan_run_logs_the_position_loss(heads, tmp_path):
    run_dir = train_tiny('pigan', heads, tmp_path / 'runs', '--pos_weight', '15', '--override',
                         'pose_head_channels=16')
    stats = (run_dir / 'stats.jsonl').read_text()
    assert 'Loss/G/pos' in stats and 'Loss/D/pos' in stats
