"""Helpers shared by the seed-method tests (tests/test_film_siren.py, test_gof.py, test_shading.py)."""

import math

import torch

from hardening_helpers import run_py   # tests/hardening_helpers.py


def label(n):
    """c [n, 25]: identity cam2world (unused by the prior sources), intrinsics of a 30° FOV."""
    c = torch.zeros(n, 25)
    c[:, :16] = torch.eye(4).flatten()
    c[:, 16] = c[:, 20] = 1 / (2 * math.tan(math.radians(15)))
    c[:, 18] = c[:, 21] = 0.5
    c[:, 24] = 1
    return c


def make_heads(root, *extra):
    """make_synthetic.py's 8 heads at 16 px, poses N(h_std 0.3, v_std 0.15), in `root`; `extra`
    options (e.g. '--light', 'mvn'). Returns the unlabeled zip."""
    proc = run_py('make_synthetic.py', '--outdir', root, '--family', 'head', '--num', 8, '--resolution', 16,
                  '--seed', 0, '--pose', 'gaussian:h_std=0.3,v_std=0.15', *extra)
    assert proc.returncode == 0, proc.stderr
    return root / 'head16_unlabeled.zip'


# A seed-method preset shrunk to seconds per iteration (16 px, a 2 x 16 FiLM-SIREN, tiny D).
TINY_SEED = ['--metrics', 'none', '--tick', '0.008', '--snap', '1', '--workers', '0',
             '--dataset_resolution', '16', '--neural_rendering_resolution_initial', '16',
             '--siren_hidden', '16', '--siren_layers', '2', '--override', 'z_dim=16', '--override', 'w_dim=16',
             '--override', 'cbase=256', '--override', 'cmax=16', '--override', 'image_grid=[2,2]']
TINY_SAMPLES = ['--override', 'depth_resolution=4', '--override', 'depth_resolution_importance=4']


def train_tiny(cfg, data, outdir, *extra):
    """train.py --cfg cfg for 0.016 kimg with TINY_SEED on `data` into outdir; returns the run dir."""
    proc = run_py('train.py', '--outdir', outdir, '--data', data, '--kimg', '0.016', '--cfg', cfg, *TINY_SEED, *extra)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (run_dir,) = outdir.iterdir()
    return run_dir


def safe_round_trip(G):
    """G pickled as a snapshot dict and loaded back through the safe loader (legacy.py): the G_ema."""
    import io
    import pickle
    import legacy
    buf = io.BytesIO()
    pickle.dump(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs={}), buf)
    buf.seek(0)
    return legacy.load_network_pkl(buf)['G_ema']


def assert_renders_alike(G, loaded, z_dim):
    """Two generators render the same image and depth for the same z, label and seed."""
    z, c = torch.randn(2, z_dim), label(2)
    a = G(z, c, generator=torch.Generator().manual_seed(1))
    b = loaded(z, c, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.image, b.image) and torch.equal(a.image_depth, b.image_depth)


def assert_one_line_usage_error(heads, tmp_path, args, named):
    """train.py on `heads` with `args` exits 2 with one 'Error' line containing `named`, writing nothing."""
    from click.testing import CliRunner
    import train
    res = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', str(heads), '--metrics',
                                          'none', *args])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and named in errors[0], res.output
    assert not (tmp_path / 'runs').exists()


def load_snapshot_both_ways(snapshot):
    """(safe, trusted): a snapshot we just wrote, loaded through the safe loader and with code
    execution allowed (legacy.py), to compare the two."""
    import legacy
    with open(snapshot, 'rb') as f:
        safe = legacy.load_network_pkl(f)
    with open(snapshot, 'rb') as f:
        trusted = legacy.load_network_pkl(f, allow_exec=True)
    return safe, trusted
