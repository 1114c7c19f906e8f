"""No file a user passes runs code (issue 16 item 1): one planted pickle per entry point.

`Planted.__reduce__` asks the unpickler to call `open(marker, 'w')`, which creates an empty
marker file (harmless, but it proves code ran). Each entry point must refuse the file with
one line and the marker must never appear; `test_the_planted_pickle_really_runs_code` shows
that the same file does create the marker under plain pickle / --trust-pickle, so the refusal
tests cannot pass vacuously.
"""

import os
import pickle
import random
import shutil

import click.testing
import numpy as np
import pytest
import torch

import legacy
from metrics import metric_utils
from torch_utils import safe_pickle
from training import checkpoint

import hardening_helpers  # tests/hardening_helpers.py
from hardening_helpers import copy_runs, run_config, train

data_and_run = hardening_helpers.data_and_run   # the module fixture: dataset + one-tick run

class Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, 'w')


def planted_bytes(marker, shape='snapshot'):
    obj = Planted(str(marker))
    if shape == 'snapshot':   # a dict shaped like a network snapshot
        obj = dict(G=obj, D=None, G_ema=obj, augment_pipe=None, training_set_kwargs={})
    return pickle.dumps(obj)


def plant_state(path, marker):
    torch.save(dict(counters={}, optimizers={}, ranks=[], evil=Planted(str(marker))), str(path))


def one_line_error(output):
    lines = [ln for ln in output.strip().splitlines() if ln.strip()]
    assert 'Traceback' not in output, output
    return lines[-1] if lines and lines[-1].startswith('Error') else pytest.fail(output)


def test_the_planted_pickle_really_runs_code(tmp_path):
    marker = tmp_path / 'ran'
    pickle.loads(planted_bytes(marker))
    assert marker.exists()
    marker.unlink()
    path = tmp_path / 'evil.pkl'
    path.write_bytes(planted_bytes(marker))
    legacy.load_network_file(str(path), allow_exec=True)
    assert marker.exists()


def test_library_loaders_refuse(tmp_path):
    marker = tmp_path / 'ran'
    evil = tmp_path / 'evil.pkl'
    evil.write_bytes(planted_bytes(marker))
    state = tmp_path / 'training-state-000001.pt'
    plant_state(state, marker)
    stats = tmp_path / 'stats.pkl'
    stats.write_bytes(planted_bytes(marker, shape='object'))
    with pytest.raises(ValueError, match=r"evil\.pkl: .*open.*--trust-pickle"):
        legacy.load_network(str(evil))
    with pytest.raises(ValueError, match=r'evil\.pkl'):
        checkpoint.load_network_pickle(str(evil))
    with pytest.raises(safe_pickle.UnsafePickleError, match=r'training-state-000001\.pt: .*--trust-pickle'):
        checkpoint.load_training_state(str(state))
    with pytest.raises(safe_pickle.UnsafePickleError, match='stats.pkl'):
        metric_utils.FeatureStats.load(str(stats))
    with pytest.raises(safe_pickle.UnsafePickleError, match=r'detector .*evil\.pkl.*not a TorchScript'):
        metric_utils.get_feature_detector(str(evil))
    assert metric_utils.detector_needs_trust(str(evil))
    assert not marker.exists()


def test_training_state_loads_with_weights_only_and_old_numpy_form(tmp_path):
    np.random.seed(5)
    random.seed(5)
    state = dict(counters=dict(cur_nimg=8), optimizers={}, ranks=[dict(rng=checkpoint.rng_state())])
    checkpoint.save_training_state(str(tmp_path / 'new.pt'), state)
    expected = np.random.rand(3)
    old = dict(state, ranks=[dict(rng=dict(state['ranks'][0]['rng'], numpy=np.random.get_state()))])
    expected_old = np.random.rand(3)
    torch.save(old, str(tmp_path / 'old.pt'))           # numpy's tuple with an ndarray, as before
    for name, want in (('new.pt', expected), ('old.pt', expected_old)):
        np.random.seed(0)
        checkpoint.set_rng_state(checkpoint.load_training_state(str(tmp_path / name))['ranks'][0]['rng'])
        assert np.array_equal(np.random.rand(3), want), name
    raw = torch.load(str(tmp_path / 'new.pt'), weights_only=True)      # plain torch, no allow-list
    assert isinstance(raw['ranks'][0]['rng']['numpy']['keys'], torch.Tensor)


def test_calc_metrics_refuses_network_and_detector(tmp_path):
    import calc_metrics
    marker = tmp_path / 'ran'
    evil = tmp_path / 'evil.pkl'
    evil.write_bytes(planted_bytes(marker))
    runner = click.testing.CliRunner()
    res = runner.invoke(calc_metrics.main, ['--network', str(evil), '--metrics', 'fid2k'])
    assert res.exit_code == 1 and 'evil.pkl' in one_line_error(res.output) and '--trust-pickle' in res.output
    det = tmp_path / 'det.pkl'
    det.write_bytes(planted_bytes(marker, shape='object'))
    res = runner.invoke(calc_metrics.main, ['--network', str(evil), '--metrics', 'fid2k', '--detector', str(det)])
    assert res.exit_code == 1 and 'det.pkl' in one_line_error(res.output) and 'not a TorchScript' in res.output
    assert not marker.exists()


def test_inference_scripts_refuse(tmp_path):
    import gen_samples_pose
    marker = tmp_path / 'ran'
    evil = tmp_path / 'evil.pkl'
    evil.write_bytes(planted_bytes(marker))
    res = click.testing.CliRunner().invoke(gen_samples_pose.main, ['--network', str(evil), '--seeds', '0',
                                                                    '--outdir', str(tmp_path / 'out')])
    assert res.exit_code == 2 and 'evil.pkl' in one_line_error(res.output)
    assert not marker.exists() and not (tmp_path / 'out').exists()


@pytest.mark.parametrize('how', ['pkl', 'auto', 'run_dir', 'state'])
def test_train_resume_refuses_planted_files(data_and_run, tmp_path, how):
    data, runs = data_and_run
    outdir, run_dir = copy_runs(runs, tmp_path)
    marker = tmp_path / 'ran'
    before = sorted(os.listdir(outdir))
    if how == 'pkl':
        target = tmp_path / 'evil.pkl'
        target.write_bytes(planted_bytes(marker))
    else:   # a newer state (with its pickle, so resume picks it) in the matching run directory
        target = run_dir / 'training-state-000009.pt'
        plant_state(target, marker)
        shutil.copy(next(run_dir.glob('network-snapshot-*.pkl')), run_dir / 'network-snapshot-000009.pkl')
    resume = dict(pkl=target, auto='auto', run_dir=run_dir, state=target)[how]
    proc = train(outdir, data, '0.016', '--resume', resume)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = one_line_error(proc.stderr)
    assert target.name in line and '--trust-pickle' in line, line
    assert not marker.exists() and sorted(os.listdir(outdir)) == before


def test_truncated_newest_state_falls_back_to_previous(data_and_run, tmp_path):
    data, runs = data_and_run
    outdir, run_dir = copy_runs(runs, tmp_path)
    (state,) = run_dir.glob('training-state-*.pt')
    newer = run_dir / 'training-state-000009.pt'
    newer.write_bytes(state.read_bytes()[:1000])          # a copy cut short
    shutil.copy(next(run_dir.glob('network-snapshot-*.pkl')), run_dir / 'network-snapshot-000009.pkl')
    assert checkpoint.find_latest(str(run_dir)) == str(newer)
    assert checkpoint.latest_loadable(str(run_dir)) == str(state)
    plan = checkpoint.plan_run(str(outdir), *run_config(run_dir), 'auto')
    assert plan.state == str(state) and plan.run_dir == str(run_dir)


def test_truncated_state_is_a_one_line_error_naming_the_file(tmp_path):
    path = tmp_path / 'training-state-000001.pt'
    checkpoint.save_training_state(str(path), dict(counters={}, optimizers={}, ranks=[]))
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(pickle.UnpicklingError, match='truncated or corrupt') as info:
        checkpoint.load_training_state(str(path))
    assert not isinstance(info.value, safe_pickle.UnsafePickleError)
    assert str(info.value).startswith(str(path)) and '\n' not in str(info.value)


def test_calc_metrics_names_a_truncated_network_pickle(data_and_run, tmp_path):
    import calc_metrics
    _, runs = data_and_run
    (pkl,) = runs.glob('*/network-snapshot-*.pkl')
    cut = tmp_path / 'trunc.pkl'
    cut.write_bytes(pkl.read_bytes()[:5000])
    res = click.testing.CliRunner().invoke(calc_metrics.main, ['--network', str(cut), '--metrics', 'pose_js'])
    assert res.exit_code == 1
    line = one_line_error(res.output)
    assert line.startswith(f'Error: {cut}: ') and 'truncated' in line, line


def test_planted_statistics_cache_is_ignored_and_recomputed(tmp_path):
    from test_metrics import TinyDetector, camera_labels, write_zip   # tests/test_metrics.py helpers
    marker = tmp_path / 'ran'
    det = tmp_path / 'det.pt'
    torch.jit.script(TinyDetector()).save(str(det))
    images = np.random.default_rng(1).integers(0, 256, size=(8, 16, 16, 3), dtype=np.uint8)
    data = write_zip(tmp_path / 's.zip', images, camera_labels(np.full(8, np.pi / 2), np.full(8, np.pi / 2)))
    opts = metric_utils.MetricOptions(dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset',
                                                          path=str(data)),
                                      cache_dir=str(tmp_path / 'cache'), detector_url=str(det), num_workers=0,
                                      device='cpu')
    kwargs = dict(detector_kwargs=dict(return_features=True), batch_size=8, capture_mean_cov=True)
    first = metric_utils.compute_feature_stats_for_dataset(opts, **kwargs)
    (cache,) = (tmp_path / 'cache' / 'gan-metrics').iterdir()
    cache.write_bytes(planted_bytes(marker, shape='object'))
    again = metric_utils.compute_feature_stats_for_dataset(opts, **kwargs)
    assert not marker.exists()
    assert np.array_equal(first.get_mean_cov()[0], again.get_mean_cov()[0])
    assert metric_utils.FeatureStats.load(str(cache)).num_items == 8        # rewritten with real statistics


def test_override_refuses_nan():
    from click.testing import CliRunner

    import train
    res = CliRunner().invoke(train.main, ['--outdir', 'x', '--cfg', 'synthetic', '--data', 'x',
                                          '--override', 'gamma=NaN'])
    assert res.exit_code == 2 and "'gamma=NaN': NaN is not a finite number" in res.output, res.output


def test_torchrun_resume_refuses_planted_pickle(data_and_run, tmp_path):
    """Under torchrun rank 0 plans the run: every rank stops with the one line (torchrun then
    prints its own ChildFailedError report, which is the launcher's, not ours)."""
    import subprocess
    import sys
    data, _ = data_and_run
    marker, outdir = tmp_path / 'ran', tmp_path / 'runs'
    evil = tmp_path / 'evil.pkl'
    evil.write_bytes(planted_bytes(marker))
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py',
           '--gpus', '2', '--outdir', str(outdir), '--data', str(data), '--kimg', '0.016', '--resume', str(evil)]
    proc = subprocess.run(cmd + hardening_helpers.TINY, cwd=hardening_helpers.REPO, env=hardening_helpers.ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith('Error: ')]
    assert len(lines) == 2 and all(ln.startswith(f'Error: --resume {evil}: ') for ln in lines), proc.stderr[-3000:]
    assert not marker.exists() and not outdir.exists()
