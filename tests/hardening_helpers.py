"""Helpers shared by the hardening tests (tests/test_safe_loading.py, tests/test_crash_recovery.py):
a tiny train.py command line and a module fixture with a 16-image dataset and a one-tick run."""

import json
import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONUNBUFFERED='1')
TINY = ['--cfg', 'synthetic', '--metrics', 'none', '--tick', '0.008', '--snap', '1', '--workers', '0',
        '--dataset_resolution', '16', '--neural_rendering_resolution_initial', '16',
        '--override', 'plane_resolution=16', '--override', 'plane_channels=8', '--override', 'cbase=256',
        '--override', 'cmax=16', '--override', 'z_dim=16', '--override', 'w_dim=16',
        '--override', 'depth_resolution=4', '--override', 'depth_resolution_importance=4',
        '--override', 'pose_head_channels=32', '--override', 'image_grid=[2,2]']


def run_py(script, *args, timeout=300):
    return subprocess.run([sys.executable, script, *map(str, args)], cwd=REPO, env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def train(outdir, data, kimg, *extra):
    return run_py('train.py', '--outdir', outdir, '--data', data, '--kimg', kimg, *TINY, *extra)


def make_cars(root, num=16, kind='unlabeled'):
    """make_synthetic.py's 16 px cars in `root`; returns the path of the `kind` zip (labeled | unlabeled)."""
    proc = run_py('make_synthetic.py', '--outdir', root, '--num', num, '--resolution', '16', '--seed', '0')
    assert proc.returncode == 0, proc.stderr
    return root / f'car16_{kind}.zip'


@pytest.fixture(scope='module')
def data_and_run(tmp_path_factory):
    """(dataset zip, outdir) with one finished one-tick run (a real snapshot and training state at 8 images)."""
    root = tmp_path_factory.mktemp('hard')
    data = make_cars(root)
    proc = train(root / 'runs', data, '0.008')
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return data, root / 'runs'


def copy_runs(runs, tmp_path):
    """A private copy of the fixture's outdir -> (outdir, run_dir)."""
    out = tmp_path / 'runs'
    shutil.copytree(runs, out)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    return out, run_dir


def run_config(run_dir):
    """(description, config dict) of a run, as plan_run takes them."""
    return run_dir.name.split('-', 1)[1], json.loads((run_dir / 'training_options.json').read_text())['config']


def write_tiny_snapshot(path) -> str:
    """A network pickle of test_inference's tiny G (G = G_ema, no D) at `path`; returns it as str."""
    import pickle
    from test_inference import tiny_G
    G = tiny_G().eval().requires_grad_(False)
    with open(path, 'wb') as f:
        pickle.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs=dict(path='x')), f)
    return str(path)
