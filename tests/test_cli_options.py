"""Command-line options (issue 16 items 2 and 6): every float option of every CLI is finite and
bounded (one shared click type, dnnlib/cli.py), a bad value is a one-line usage error before
anything is created, and boolean options take a value as the reference's documented commands
write it (`--shapes true`, `--shapes=true`) as well as the bare flag."""

import argparse
import os

import click
import pytest
from click.testing import CliRunner

import calc_metrics
import dataset_tool
import gen_samples_pose
import gen_videos
import make_synthetic
import plot_pose_distribution
import train
from dnnlib import cli
from hardening_helpers import make_cars, write_tiny_snapshot   # tests/ is on sys.path

COMMANDS = dict(train=train.main, gen_samples_pose=gen_samples_pose.main, gen_videos=gen_videos.main,
                calc_metrics=calc_metrics.main, make_synthetic=make_synthetic.main, dataset_tool=dataset_tool.main,
                plot_pose_distribution=plot_pose_distribution.main)
FLOAT_OPTIONS = [(name, p.opts[0]) for name, cmd in COMMANDS.items() for p in cmd.params
                 if isinstance(p.type, click.types.FloatParamType)]


def test_float_options_are_found_and_all_use_the_shared_type():
    assert len(FLOAT_OPTIONS) >= 39 and ('train', '--kimg') in FLOAT_OPTIONS
    assert ('make_synthetic', '--fov') in FLOAT_OPTIONS and ('gen_samples_pose', '--fov-deg') in FLOAT_OPTIONS
    for name, cmd in COMMANDS.items():
        for opt, kind in cli.float_params(cmd).items():
            assert isinstance(kind, cli.Float), f'{name} --{opt}: {kind!r}'


@pytest.mark.parametrize('bad', ['nan', 'inf', '-inf'])
def test_every_float_option_refuses_non_finite_values(bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, opt in FLOAT_OPTIONS:
        res = CliRunner().invoke(COMMANDS[name], [opt, bad])
        assert res.exit_code == 2, (name, opt, res.output)
        assert f"Invalid value for '{opt}'" in res.output and 'Traceback' not in res.output, (name, opt, res.output)
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    return str(make_cars(tmp_path_factory.mktemp('data'), num=4, kind='labeled'))


@pytest.mark.parametrize('args', [['--kimg', 'nan'], ['--gamma', 'nan'], ['--glr', 'nan'], ['--kimg', '0'],
                                  ['--gamma', '-1'], ['--pose_init_gain', 'nan'], ['--pose_init_gain', '1,inf']])
def test_train_bad_numbers_are_one_line_and_create_nothing(args, tiny_data, tmp_path):
    outdir = tmp_path / 'runs'
    res = CliRunner().invoke(train.main, ['--outdir', str(outdir), '--cfg', 'synthetic', '--data', tiny_data,
                                          '--metrics', 'none'] + args)
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and args[0] in errors[0] and 'Traceback' not in res.output, res.output
    assert not outdir.exists()


def test_gen_samples_fov_nan_creates_nothing(tmp_path):
    res = CliRunner().invoke(gen_samples_pose.main, ['--network', 'x.pkl', '--seeds', '0', '--outdir',
                                                     str(tmp_path / 'out'), '--fov-deg', 'nan'])
    assert res.exit_code == 2 and "Invalid value for '--fov-deg'" in res.output, res.output
    assert not (tmp_path / 'out').exists()
    for bad in ('0', '180', '-5'):   # a field of view lies in (0, 180) degrees
        res = CliRunner().invoke(gen_samples_pose.main, ['--network', 'x.pkl', '--seeds', '0', '--outdir',
                                                         str(tmp_path / 'out'), '--fov-deg', bad])
        assert res.exit_code == 2 and '--fov-deg' in res.output, res.output


def test_bench_argparse_float():
    assert cli.finite_float('0.5') == 0.5
    for bad in ('nan', 'inf', 'x'):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.finite_float(bad)


def parsed(cmd, args):
    return cmd.make_context(cmd.name or 'cmd', list(args)).params


REFERENCE_INFERENCE = ['--outdir', 'OUT', '--trunc', '0.7', '--shapes', 'true', '--seeds', '0-100', '--network',
                       'PKL', '--shape-res', '128', '--dataset', 'ffhq']   # the PoF3D README command


@pytest.mark.parametrize('cmd, flag, base', [
    (gen_samples_pose.main, '--shapes', ['--network', 'n.pkl', '--seeds', '0', '--outdir', 'o']),
    (gen_videos.main, '--depth', ['--network', 'n.pkl', '--output', 'v.mp4']),
    (plot_pose_distribution.main, '--with-d', ['--network', 'n.pkl', '--out', 'p.png']),
    (dataset_tool.main, '--overwrite', ['--source', 's', '--dest', 'd.zip']),
])
def test_boolean_options_take_a_value_or_none(cmd, flag, base):
    key = [p.name for p in cmd.params if flag in p.opts][0]
    cases = [([], False), ([flag], True), ([flag, 'true'], True), ([f'{flag}=true'], True), ([flag, 'false'], False),
             ([f'{flag}=False'], False), ([flag, '1'], True), ([flag, 'no'], False)]
    for extra, want in cases:
        assert parsed(cmd, base + extra)[key] is want, extra
        assert parsed(cmd, extra + base)[key] is want, extra   # the flag before other options too
    with pytest.raises(click.BadParameter):
        parsed(cmd, base + [flag, 'maybe'])


def test_reference_readme_inference_command_parses():
    params = parsed(gen_samples_pose.main, REFERENCE_INFERENCE)
    assert params['do_shapes'] is True and params['truncation_psi'] == 0.7 and params['shape_res'] == 128
    assert params['seeds'] == list(range(101)) and params['dataset'] == 'ffhq'


@pytest.fixture(scope='module')
def snapshot(tmp_path_factory):
    return write_tiny_snapshot(tmp_path_factory.mktemp('snap') / 'network-snapshot-000000.pkl')


@pytest.mark.parametrize('shapes, made', [(['--shapes', 'true'], True), (['--shapes=true'], True),
                                          (['--shapes'], True), (['--shapes', 'false'], False)])
def test_gen_samples_shapes_values_end_to_end(snapshot, tmp_path, shapes, made):
    res = CliRunner().invoke(gen_samples_pose.main, ['--network', snapshot, '--seeds', '0', '--outdir',
                                                     str(tmp_path), '--shape-res', '8'] + shapes)
    assert res.exit_code == 0, res.output
    assert os.path.isfile(tmp_path / 'seed0000.png')
    assert os.path.isfile(tmp_path / 'seed0000.mrc') is made


def readme_commands():
    """Every `python X.py ...` line of README.md's ```bash blocks (continuations joined)."""
    import re
    import shlex
    text = open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')).read()
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', text, flags=re.S):
        for line in block.replace('\\\n', ' ').splitlines():
            words = shlex.split(line, comments=True)
            if len(words) > 1 and words[0] == 'python' and words[1].endswith('.py'):
                commands.append((words[1][:-3], words[2:]))
    return commands


def bench_commands() -> dict:
    """The bench/ scripts' click commands, by README name ('bench/seed_methods')."""
    import importlib
    import sys
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench')
    sys.path.insert(0, bench)
    return {f'bench/{m}': importlib.import_module(m).main for m in ('pose_learning', 'seed_methods')}


def test_readme_commands_parse():
    commands = readme_commands()
    assert {name for name, _ in commands} >= {'train', 'dataset_tool', 'gen_samples_pose', 'gen_videos',
                                               'plot_pose_distribution', 'calc_metrics', 'bench/seed_methods'}
    known = {**COMMANDS, **bench_commands()}
    for name, args in commands:
        parsed(known[name], args)     # raises click.UsageError/BadParameter on an unknown option or value


def test_reference_only_options_are_accepted_and_ignored(snapshot, tmp_path):
    res = CliRunner().invoke(gen_samples_pose.main, ['--network', snapshot, '--seeds', '0', '--outdir', str(tmp_path),
                                                     '--reload_modules=True', '--class', '0', '--self_pose', 'True'])
    assert res.exit_code == 0, res.output
    assert 'note: --reload_modules True is ignored' in res.output and 'note: --self_pose True is ignored' in res.output
    assert os.path.isfile(tmp_path / 'seed0000.png')
