"""pi-GAN's top-k G loss and gradient clipping (SEEDS_SPEC §1.7): the schedule against hand values,
the loss on hand-picked scores, the gradient only through the kept fakes, the clipped step of the
training loop, the config plumbing for both pose sources, and a tiny CLI run."""

import json
import math
from types import SimpleNamespace

import pytest
import torch

import dnnlib
from seed_helpers import make_heads, train_tiny   # tests/seed_helpers.py
from training import config as config_lib, schedules
from training.losses.adversarial import GeneratorAdversarial
from training.training_loop import build_phases, loss_class_for, run_phase

pytestmark = pytest.mark.usefixtures('single_thread')   # tests/conftest.py


def test_topk_fraction_schedule_against_hand_values():
    assert schedules.topk_fraction(1e9, 8, 0, 0.6) == 1.0                       # off
    assert schedules.topk_fraction(0, 8, 2000, 0.6) == 1.0                      # step 0: every fake
    assert schedules.topk_fraction(8 * 2000 * 10, 8, 2000, 0.6) == pytest.approx(0.99 ** 10)   # 0.904382
    assert schedules.topk_fraction(8 * 2000 * 10, 8, 2000, 0.95) == 0.95        # the floor
    # pi-GAN CelebA reaches its 0.6 floor at step 2000 ln 0.6 / ln 0.99 = 101 653 (SEEDS_SPEC §2.2)
    assert schedules.topk_fraction(28 * 101_000, 28, 2000, 0.6) > 0.6
    assert schedules.topk_fraction(28 * 102_000, 28, 2000, 0.6) == 0.6


def _loss(scores, frac):
    term = GeneratorAdversarial(d_input=None, fakes=None)
    out = SimpleNamespace(pose=None, clamped_frac=None)
    leaf = torch.tensor(scores, dtype=torch.float64, requires_grad=True)
    return term._loss(out, leaf.reshape(-1, 1), frac), leaf


@pytest.mark.parametrize('frac, kept', [(1.0, (-1, 0, 2, 5)), (0.5, (5, 2)), (0.6, (5, 2, 0)), (0.01, (5,))])
def test_topk_keeps_the_most_real_scores(frac, kept):
    loss, _ = _loss([2.0, -1.0, 5.0, 0.0], frac)        # k = ceil(frac * 4): 4, 2, 3 (2.4 up), 1 (at least one)
    hand = sum(math.log1p(math.exp(-s)) for s in kept) / len(kept)
    assert loss.item() == pytest.approx(hand, rel=1e-12)


def test_topk_gradient_reaches_only_the_kept_fakes():
    loss, score = _loss([2.0, -1.0, 5.0, 0.0], 0.5)
    loss.backward()
    grad = score.grad.flatten()
    assert grad[1] == 0 and grad[3] == 0                # the two least-real fakes: no gradient
    assert grad[0].item() == pytest.approx(-torch.sigmoid(torch.tensor(-2.0)).item() / 2)   # d sp(-s)/ds / k
    assert grad[2].item() == pytest.approx(-torch.sigmoid(torch.tensor(-5.0)).item() / 2)


class _KnownGradient:
    """accumulate_gradients that leaves the gradient g on the module's one weight."""

    def __init__(self, module, g):
        self.module, self.g = module, g

    def accumulate_gradients(self, **kwargs):
        (self.module.weight * self.g).sum().backward()


@pytest.mark.parametrize('clip, expected_norm', [(0.0, 5.0), (1.0, 1.0), (10.0, 5.0)])
def test_run_phase_clips_the_step_gradient(clip, expected_norm):
    module = torch.nn.Linear(2, 1, bias=False)
    before = module.weight.detach().clone()
    g = torch.tensor([[3.0, 4.0]])                      # norm 5
    phase = SimpleNamespace(name='Dmain', module=module, opt=torch.optim.SGD(module.parameters(), lr=1.0),
                            interval=1)
    ctx = SimpleNamespace(rank=0, all_reduce_mean_=lambda x: x)
    config = SimpleNamespace(seed=0, optim=SimpleNamespace(grad_clip=clip, lr_stages=()))
    counters = SimpleNamespace(batch_idx=0, cur_nimg=0)
    one = [torch.zeros(1)]
    run_phase(ctx, config, phase, 0, _KnownGradient(module, g), (one, one), (one, one), counters)
    step = before - module.weight.detach()              # SGD lr 1: the (clipped) gradient itself
    assert step.norm().item() == pytest.approx(expected_norm, rel=1e-6)
    assert torch.allclose(step / step.norm(), g / 5.0)   # the direction is kept


@pytest.mark.parametrize('cfg, extra', [('pigan', {}), ('synthetic', dict(pose_source='learned'))])
def test_config_carries_topk_into_both_losses(cfg, extra):
    c = config_lib.build_config(cfg, data='x.zip', topk_interval=10.0, topk_floor=0.7, grad_clip=3.0, **extra)
    torch.manual_seed(0)
    G, D = (dnnlib.util.construct_class_by_name(**kw) for kw in (c.G_kwargs(), c.D_kwargs()))
    loss = loss_class_for(c.model.pose_source)(device='cpu', G=G, D=D, seed=0, **c.loss_kwargs())
    assert loss.step(0).topk_frac == 1.0
    assert loss.step(c.batch * 10 * 5).topk_frac == pytest.approx(0.99 ** 5)
    assert loss.step(1e12).topk_frac == 0.7
    off = config_lib.build_config(cfg, data='x.zip', **extra)
    assert 'topk' not in off.loss_kwargs() and off.optim.grad_clip == 0.0
    assert c.optim.grad_clip == 3.0


def test_pigan_trains_with_topk_and_clipping_and_records_them(tmp_path):
    heads = make_heads(tmp_path)
    run_dir = train_tiny('pigan', heads, tmp_path / 'runs', '--topk_interval', '1', '--topk_floor', '0.5',
                         '--grad_clip', '0.5', '--lr_stages', '0:2e-3:2e-3,1:5e-4:5e-4')
    options = json.loads((run_dir / 'training_options.json').read_text())
    assert json.dumps(options).count('"grad_clip": 0.5') == 1
    assert json.dumps(options).count('"topk_interval": 1.0') == 1
    assert options['config']['optim']['lr_stages'] == [[0, 2e-3, 2e-3], [1, 5e-4, 5e-4]]
    stats = [json.loads(line) for line in (run_dir / 'stats.jsonl').read_text().splitlines()]
    assert all(math.isfinite(s['Loss/G/loss']['mean']) for s in stats if 'Loss/G/loss' in s)


def test_d_reg_interval_0_is_one_d_step_with_r1_at_the_full_lr():
    """The paper recipes' R1 'every step' (SEEDS_SPEC §1.7): one D phase, lr and betas unscaled;
    interval 1 would be EG3D's lazy form (a second Adam step, lr x 1/2, betas ** 1/2)."""
    def d_phases(interval):
        c = config_lib.build_config('pigan', data='x.zip', d_reg_interval=interval)
        torch.manual_seed(0)
        G, D = (dnnlib.util.construct_class_by_name(**kw) for kw in (c.G_kwargs(), c.D_kwargs()))
        return [(p.name, p.opt.param_groups[0]['lr'], p.opt.param_groups[0]['betas']) for p in build_phases(c, G, D)
                if p.name.startswith('D')]
    assert d_phases(0) == [('Dboth', 1e-3, (0.0, 0.9))]
    (main, lr, betas), (reg, _, _) = d_phases(1)
    assert (main, reg) == ('Dmain', 'Dreg') and lr == pytest.approx(5e-4) and betas[1] == pytest.approx(0.9 ** 0.5)


# ---------------------------------------------------------------------------------------------
# --lr_stages: a curriculum's learning rates (SEEDS_SPEC §1.8, the lrs only).

def test_stage_lrs_schedule_against_hand_values():
    stages = ((100, 2e-5, 2e-4), (300, 4e-6, 2e-5))
    assert schedules.stage_lrs(0, 8, 5e-5, 4e-4, ()) == (5e-5, 4e-4)
    assert schedules.stage_lrs(8 * 99, 8, 5e-5, 4e-4, stages) == (5e-5, 4e-4)     # step 99: the run's lrs
    assert schedules.stage_lrs(8 * 100, 8, 5e-5, 4e-4, stages) == (2e-5, 2e-4)    # step 100: stage 1
    assert schedules.stage_lrs(8 * 1000, 8, 5e-5, 4e-4, stages) == (4e-6, 2e-5)
    assert schedules.stage_lrs(0, 8, 5e-5, 4e-4, ((0, 1e-3, 1e-2),)) == (1e-3, 1e-2)


def test_set_stage_lr_keeps_each_groups_ratio():
    """G with the mapping split (x 0.05) and D with lazy R1 (x 16/17): the stage lr times each ratio."""
    from training.training_loop import set_stage_lr
    c = config_lib.build_config('gof', data='x.zip', d_reg_interval=16, lr_stages=((10, 1e-4, 3e-4),))
    torch.manual_seed(0)
    G, D = (dnnlib.util.construct_class_by_name(**kw) for kw in (c.G_kwargs(), c.D_kwargs()))
    phases = {p.name: p for p in build_phases(c, G, D)}
    assert [g['lr'] for g in phases['Gboth'].opt.param_groups] == pytest.approx([1e-3, 1e-3 * 0.05])
    for nimg, glr, dlr in ((c.batch * 9, 1e-3, 1e-3), (c.batch * 10, 1e-4, 3e-4)):
        for name in ('Gboth', 'Dmain'):
            set_stage_lr(c, phases[name], nimg)
        assert [g['lr'] for g in phases['Gboth'].opt.param_groups] == pytest.approx([glr, glr * 0.05])
        assert [g['lr'] for g in phases['Dreg'].opt.param_groups] == pytest.approx([dlr * 16 / 17])


@pytest.mark.parametrize('value, ok', [('0:1e-3:1e-3,5000:5e-4:5e-4', True), ('none', True),
                                       ('5000:5e-4', False), ('5000:5e-4:0', False), ('10:1:1,5:1:1', False),
                                       ('a:b:c', False), ('10:nan:1', False)])
def test_lr_stages_option(tmp_path, value, ok):
    import train
    from click.testing import CliRunner
    data = tmp_path / 'x.zip'
    data.write_bytes(b'')
    args = ['--outdir', str(tmp_path / 'runs'), '--cfg', 'pigan', '--data', str(data), '--lr_stages', value]
    if ok:
        c = train.make_config(train.main.make_context('train.py', args).params)
        assert c.optim.lr_stages == (() if value == 'none' else ((0, 1e-3, 1e-3), (5000, 5e-4, 5e-4)))
        assert config_lib.TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c   # JSON round trip
    else:
        res = CliRunner().invoke(train.main, args + ['--metrics', 'none'])
        assert res.exit_code == 2 and '--lr_stages' in res.output and 'Traceback' not in res.output, res.output
        assert not (tmp_path / 'runs').exists()


def test_run_phase_steps_at_the_stage_lr():
    """The training loop's step uses the stage's lr (here D's 0.25 from step 2; SGD: step = lr g)."""
    module = torch.nn.Linear(2, 1, bias=False)
    g = torch.tensor([[3.0, 4.0]])
    phase = SimpleNamespace(name='Dmain', module=module, opt=torch.optim.SGD(module.parameters(), lr=1.0),
                            interval=1, lr_ratios=(1.0,))
    ctx = SimpleNamespace(rank=0, all_reduce_mean_=lambda x: x)
    config = SimpleNamespace(seed=0, batch=4, optim=config_lib.OptimConfig(dlr=1.0, lr_stages=((2, 0.5, 0.25),)))
    one = [torch.zeros(1)]
    for nimg, lr in ((4, 1.0), (8, 0.25)):                 # step 1: the run's dlr; step 2: the stage's
        before = module.weight.detach().clone()
        run_phase(ctx, config, phase, 0, _KnownGradient(module, g), (one, one), (one, one),
                  SimpleNamespace(batch_idx=0, cur_nimg=nimg))
        torch.testing.assert_close(before - module.weight.detach(), lr * g)
