"""A crash leaves no debris and resume finds the last good state (issue 16 item 4).

The fixture run (tests/hardening_helpers.py) has one snapshot at 8 images. Each test copies it
and plants what a kill or a full disk leaves: snapshot temp files, a truncated
training_options.json, stats rows and TensorBoard steps of an attempt that died before its
next snapshot, an orphan run folder. (A truncated newest training state: tests/test_safe_loading.py.)
"""

import json
import os
import time

import pytest

import hardening_helpers  # tests/hardening_helpers.py
from hardening_helpers import copy_runs, run_config, train
from training import checkpoint, reporting

data_and_run = hardening_helpers.data_and_run   # the module fixture: dataset + one-tick run


def test_snapshot_temp_files_are_removed_when_the_run_continues(data_and_run, tmp_path):
    _, runs = data_and_run
    outdir, run_dir = copy_runs(runs, tmp_path)
    debris = [run_dir / '.tmp-training-state-000000.016-k2j4.pt', run_dir / '.tmp-network-snapshot-000000.016-x9.pkl']
    for path in debris:
        path.write_bytes(b'\0' * 1000)
    other = tmp_path / 'runs' / '00007-another-run'     # not the run being continued: left alone
    other.mkdir()
    (other / '.tmp-training-state-000001-a.pt').write_bytes(b'')
    plan = checkpoint.plan_run(str(outdir), *run_config(run_dir), 'auto')
    assert plan.run_dir == str(run_dir) and plan.state is not None
    assert not any(p.exists() for p in debris)
    assert (other / '.tmp-training-state-000001-a.pt').exists()


def test_write_options_is_atomic(tmp_path):
    reporting.write_options(str(tmp_path), dict(config=dict(a=1)))
    with pytest.raises(TypeError):
        reporting.write_options(str(tmp_path), dict(config=dict(a=object())))   # fails while serializing
    assert json.loads((tmp_path / 'training_options.json').read_text()) == dict(config=dict(a=1))
    assert os.listdir(tmp_path) == ['training_options.json']


@pytest.mark.parametrize('damage', ['truncated', 'missing'])
def test_unreadable_options_file_still_resumes_from_the_state_config(data_and_run, tmp_path, damage):
    _, runs = data_and_run
    outdir, run_dir = copy_runs(runs, tmp_path)
    desc, config = run_config(run_dir)
    options = run_dir / 'training_options.json'
    if damage == 'truncated':
        options.write_text(options.read_text()[:100])
    else:
        options.unlink()
    plan = checkpoint.plan_run(str(outdir), desc, config, 'auto')
    assert plan.run_dir == str(run_dir) and plan.state.endswith('training-state-000000.008.pt')
    other = dict(config, optim=dict(config['optim'], glr=0.5))       # another config is still not resumed
    assert checkpoint.plan_run(str(outdir), desc, other, 'auto').state is None


def test_truncate_stats_keeps_rows_up_to_the_resumed_images(tmp_path):
    path = tmp_path / 'stats.jsonl'
    rows = [{'Progress/kimg': {'mean': k}, 'timestamp': 1} for k in (0.008, 0.016, 0.024)]
    path.write_text(''.join(json.dumps(r) + '\n' for r in rows) + '{"Progress/kimg": {"me')   # cut mid-line
    assert reporting.truncate_stats(str(path), 16) == 2
    assert [json.loads(x)['Progress/kimg']['mean'] for x in path.read_text().splitlines()] == [0.008, 0.016]
    assert reporting.tb_step(0.008) == 8 and reporting.tb_step(2.5) == 2500


def test_resume_gives_one_stats_curve_and_one_tensorboard_curve(data_and_run, tmp_path):
    """An attempt killed after logging its tick at 16 images but before the snapshot left a stats
    row and TensorBoard points at 16 (value 99); resuming from 8 replaces them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from torch.utils.tensorboard import SummaryWriter
    data, runs = data_and_run
    outdir, run_dir = copy_runs(runs, tmp_path)
    with open(run_dir / 'stats.jsonl', 'at') as f:
        f.write(json.dumps({'Progress/kimg': {'num': 1, 'mean': 0.016, 'std': 0}, 'timestamp': 0}) + '\n')
    time.sleep(1.1)   # event file names carry the second: keep the stale one distinct
    with SummaryWriter(str(run_dir)) as writer:
        writer.add_scalar('Progress/kimg', 99.0, global_step=16)
    proc = train(outdir, data, '0.016', '--resume', 'auto')
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [json.loads(x) for x in (run_dir / 'stats.jsonl').read_text().splitlines()]
    assert [r['Progress/kimg']['mean'] for r in rows] == pytest.approx([0.008, 0.016])
    assert rows[-1]['timestamp'] > 0 and 'Loss/G/loss' in rows[-1]     # the new row, not the planted one
    acc = EventAccumulator(str(run_dir), size_guidance={'scalars': 0})
    acc.Reload()
    points = [(e.step, e.value) for e in acc.Scalars('Progress/kimg')]
    assert points == [(8, pytest.approx(0.008)), (16, pytest.approx(0.016))]


def test_orphan_run_folder_is_reused(data_and_run, tmp_path):
    _, runs = data_and_run
    _, run_dir = copy_runs(runs, tmp_path)
    desc, config = run_config(run_dir)
    outdir = tmp_path / 'fresh'
    orphan = outdir / f'00000-{desc}'
    orphan.mkdir(parents=True)
    (orphan / 'training_options.json').write_text(json.dumps(dict(config=config)))
    (orphan / 'log.txt').write_text('killed in the first second\n')
    for name in ('stats.jsonl', 'reals.png', 'events.out.tfevents.1.host'):   # the Reporter had started
        (orphan / name).write_bytes(b'' if name == 'stats.jsonl' else b'x')
    assert checkpoint.plan_run(str(outdir), desc, config, 'auto').run_dir.endswith(f'00001-{desc}')  # too recent
    (outdir / f'00001-{desc}').rmdir()
    old = time.time() - 600
    for path in list(orphan.iterdir()) + [orphan]:
        os.utime(path, (old, old))
    plan = checkpoint.plan_run(str(outdir), desc, config, 'auto')
    assert plan == checkpoint.RunPlan(str(orphan)) and sorted(os.listdir(outdir)) == [f'00000-{desc}']
    assert sorted(os.listdir(orphan)) == ['log.txt', 'training_options.json']     # stale files removed
    (orphan / 'stats.jsonl').write_text('{"Progress/kimg": {"mean": 0.008}}\n')  # it had ticked: not an orphan
    os.utime(orphan / 'stats.jsonl', (old, old))
    os.utime(orphan, (old, old))
    assert checkpoint.plan_run(str(outdir), desc, config, 'auto').run_dir.endswith(f'00001-{desc}')


def test_resume_pickle_of_another_configuration_names_the_tensor(data_and_run, tmp_path):
    from click.testing import CliRunner

    import train as train_cli
    data, runs = data_and_run
    _, run_dir = copy_runs(runs, tmp_path)
    (pkl,) = run_dir.glob('network-snapshot-*.pkl')
    outdir = tmp_path / 'new'
    args = ['--outdir', str(outdir), '--data', str(data), '--kimg', '0.016', '--resume', str(pkl)]
    res = CliRunner().invoke(train_cli.main, args + hardening_helpers.TINY + ['--override', 'plane_channels=4'])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and 'Traceback' not in res.output, res.output
    assert pkl.name in errors[0] and 'has shape' in errors[0] and 'plane_channels' in errors[0], errors[0]
    assert not outdir.exists()
