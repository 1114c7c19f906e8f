"""Outputs that cannot be written give one line naming the path and the cause, and leave nothing
half-written (issue 16 item 3): a path under a regular file, an unknown video extension, a
full disk (simulated: the writer raises ENOSPC)."""

import errno
import os

import click
import pytest
from click.testing import CliRunner

import dataset_tool
import gen_videos
import make_synthetic
import plot_pose_distribution
import train
from dnnlib import cli
from hardening_helpers import make_cars, write_tiny_snapshot   # tests/ is on sys.path


@pytest.fixture(scope='module')
def snapshot(tmp_path_factory):
    return write_tiny_snapshot(tmp_path_factory.mktemp('snap') / 'snap.pkl')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return str(make_cars(tmp_path_factory.mktemp('data'), num=4, kind='labeled'))


def one_error(res, *needles):
    assert res.exit_code in (1, 2) and isinstance(res.exception, (SystemExit, type(None))), res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and 'Traceback' not in res.output, res.output
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def test_outputs_under_a_regular_file(snapshot, data, tmp_path):
    blocker = tmp_path / 'afile'
    blocker.write_text('x')
    under = str(blocker / 'sub')
    runner = CliRunner()
    one_error(runner.invoke(make_synthetic.main, ['--outdir', under, '--num', '2', '--resolution', '8']),
              '--outdir', under)
    one_error(runner.invoke(dataset_tool.main, ['--source', data, '--dest', under + '.zip']), '--dest')
    one_error(runner.invoke(train.main, ['--outdir', under, '--cfg', 'synthetic', '--data', data, '--metrics', 'none',
                                         '--kimg', '0.004']), '--outdir', under)
    one_error(runner.invoke(plot_pose_distribution.main, ['--network', snapshot, '--num', '4', '--out',
                                                          under + '/p.png']), '--out')
    one_error(runner.invoke(gen_videos.main, ['--network', snapshot, '--seeds', '0', '--grid', '1x1', '--frames', '2',
                                              '--output', under + '/v.mp4']), '--output')
    assert sorted(os.listdir(tmp_path)) == ['afile']


def test_unknown_video_extension_is_refused_before_rendering(snapshot, tmp_path):
    res = CliRunner().invoke(gen_videos.main, ['--network', snapshot, '--seeds', '0', '--grid', '1x1', '--frames',
                                               '2', '--output', str(tmp_path / 'v.xyz')])
    one_error(res, '--output', 'v.xyz', '.mp4')
    assert os.listdir(tmp_path) == []


def test_full_disk_while_writing_is_one_line_and_leaves_nothing(data, tmp_path, monkeypatch):
    dest = tmp_path / 'out.zip'

    def full_disk(zip_path, *args):
        with open(zip_path, 'wb') as f:
            f.write(b'partial')
        raise OSError(errno.ENOSPC, 'No space left on device', zip_path)

    monkeypatch.setattr(dataset_tool, 'write_dataset', full_disk)
    line = one_error(CliRunner().invoke(dataset_tool.main, ['--source', data, '--dest', str(dest)]),
                     'No space left on device', '--dest')
    assert str(dest) in line and os.listdir(tmp_path) == []     # the temp file is gone, no out.zip


def test_output_helpers():
    with pytest.raises(click.ClickException, match=r'^--out f\.png: cannot write \(Read-only file system\)$'):
        with cli.output_errors('--out', 'x'):
            raise OSError(errno.EROFS, 'Read-only file system', 'f.png')
    with pytest.raises(ValueError):      # not an output error: unchanged
        with cli.output_errors('--out', 'x'):
            raise ValueError('bug')


def test_train_run_error_line():
    err = OSError(errno.ENOSPC, 'No space left on device', '/runs/00000-x/.tmp-training-state-000001-a.pt')
    line = train.run_error_line(err)
    assert line.startswith('/runs/00000-x/.tmp-training-state-000001-a.pt: cannot write (No space left on device)')
    with pytest.raises(KeyError):
        train.run_error_line(KeyError('a bug keeps its traceback'))


def test_gen_samples_full_disk_is_one_line(snapshot, tmp_path, monkeypatch):
    import gen_samples_pose

    real_save, calls = gen_samples_pose.save_bytes, []

    def full_disk(path, data):   # seed 0 is written; seed 1 fails after its first file
        calls.append(path)
        if '0001' in os.path.basename(path) and len([p for p in calls if '0001' in p]) > 1:
            raise OSError(errno.ENOSPC, 'No space left on device', path)
        real_save(path, data)

    monkeypatch.setattr(gen_samples_pose, 'save_bytes', full_disk)
    out = tmp_path / 'out'
    res = CliRunner().invoke(gen_samples_pose.main, ['--network', snapshot, '--seeds', '0-1', '--outdir', str(out)])
    one_error(res, '--outdir', 'No space left on device')
    names = sorted(os.listdir(out))
    assert len([p for p in calls if '0001' in os.path.basename(p)]) == 2    # seed 1 had written one file
    assert 'seed0000.png' in names and not any('0001' in n for n in names), names   # ...which was removed
