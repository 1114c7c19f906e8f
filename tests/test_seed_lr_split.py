"""GOF's / ShadeGAN's mapping learning-rate split (`unique_lr`, SEEDS_SPEC §1.7, §3.5 q3, §4.6 q2):
fixed by default (the mapping at lr_G x 0.05), the official behaviour behind --mapping_lr_legacy
(one group at the full lr_G), recorded in the config; training/optim_groups.py."""

import json

import pytest
import torch
from click.testing import CliRunner

import dnnlib
import train
from training import config as config_lib
from training.optim_groups import MAPPING_PREFIXES, param_groups
from training.training_loop import build_phases

pytestmark = pytest.mark.usefixtures('single_thread')   # tests/conftest.py


def optimizers(cfg, **overrides):
    """{phase name: Adam} of the training loop for the preset, and G."""
    c = config_lib.build_config(cfg, data='x.zip', **overrides)
    torch.manual_seed(0)
    G, D = (dnnlib.util.construct_class_by_name(**kw) for kw in (c.G_kwargs(), c.D_kwargs()))
    return {p.name: p.opt for p in build_phases(c, G, D)}, G


def mapping_ids(G):
    return {id(p) for n, p in G.named_parameters() if n.startswith(MAPPING_PREFIXES)}


@pytest.mark.parametrize('cfg', ['gof', 'shadegan'])
def test_fixed_split_puts_the_mapping_at_a_twentieth_of_glr(cfg):
    opts, G = optimizers(cfg)
    groups = opts['Gboth'].param_groups
    assert [g['name'] for g in groups] == ['main', 'mapping']
    assert groups[0]['lr'] == pytest.approx(1e-3) and groups[1]['lr'] == pytest.approx(1e-3 * 0.05)
    assert {id(p) for p in groups[1]['params']} == mapping_ids(G) and len(mapping_ids(G)) == 8   # 3 + 1 Linear
    assert not mapping_ids(G) & {id(p) for p in groups[0]['params']}
    assert sum(len(g['params']) for g in groups) == len(list(G.parameters()))
    assert len(opts['Dmain'].param_groups) == 1                                   # D: one group


@pytest.mark.parametrize('cfg, overrides', [('gof', dict(mapping_lr_legacy=True)), ('pigan', {})])
def test_legacy_flag_and_pigan_train_the_mapping_at_the_full_glr(cfg, overrides):
    opts, G = optimizers(cfg, **overrides)
    (group,) = opts['Gboth'].param_groups
    assert group['lr'] == pytest.approx(1e-3) and len(group['params']) == len(list(G.parameters()))


def test_param_groups_refuse_a_split_without_the_mapping():
    with pytest.raises(ValueError, match='no film_siren mapping'):
        param_groups(torch.nn.Linear(2, 2), 1e-3, mapping_lr_mul=0.05)
    assert len(param_groups(torch.nn.Linear(2, 2), 1e-3, mapping_lr_mul=0.05, legacy=True)) == 1


def test_the_flag_is_a_recorded_option(tmp_path):
    data = tmp_path / 'x.zip'
    data.write_bytes(b'')
    ctx = train.main.make_context('train.py', ['--outdir', str(tmp_path), '--cfg', 'gof', '--data', str(data),
                                               '--mapping_lr_legacy', 'true'])
    c = train.make_config(ctx.params)
    train.check_config(c)
    recorded = json.loads(json.dumps(c.to_dict()))['model']
    assert recorded['mapping_lr_legacy'] is True and recorded['mapping_lr_mul'] == 0.05
    assert config_lib.TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


@pytest.mark.parametrize('args', [['--mapping_lr_mul', '0.05'], ['--mapping_lr_legacy', 'true']])
def test_split_options_on_the_triplane_are_one_line_usage_errors(tmp_path, args):
    data = tmp_path / 'x.zip'
    data.write_bytes(b'')
    res = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--cfg', 'synthetic', '--data',
                                          str(data), '--metrics', 'none', *args])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and '--representation film_siren' in errors[0], res.output
