"""Bad data is caught before training starts, or named when met (issue 16 item 3).

From one 16-image zip (make_synthetic.py) the fixture derives a zip with a garbage member (the
header check at start-up refuses it), one whose images 1..15 are cut in half (headers are
fine, so training starts and the first batch fails to decode: a one-line error naming the
member, also through a DataLoader worker or a spawned rank), and `dataset_tool.py --check`
reports both.
"""

import io
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
import train
from hardening_helpers import TINY, make_cars, train as run_train
from training.dataset import ImageFolderDataset
from training.dataset_check import bad_image_line, check_images


def rewrite_zip(src, dst, change):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, 'w') as zout:
        for name in sorted(zin.namelist()):
            data = zin.read(name)
            zout.writestr(name, change(name, data) if name.endswith('.png') else data)


@pytest.fixture(scope='module')
def zips(tmp_path_factory):
    root = tmp_path_factory.mktemp('bad')
    good = make_cars(root)
    garbage, truncated = root / 'garbage.zip', root / 'truncated.zip'
    names = sorted(n for n in zipfile.ZipFile(good).namelist() if n.endswith('.png'))
    rewrite_zip(good, garbage, lambda n, d: b'not an image at all' if n == names[5] else d)
    rewrite_zip(good, truncated, lambda n, d: d if n == names[0] else d[:len(d) // 2])
    return dict(good=good, garbage=garbage, truncated=truncated, names=names)


def test_header_check_finds_garbage_not_truncation(zips):
    assert check_images(ImageFolderDataset(str(zips['good']))) == []
    bad = check_images(ImageFolderDataset(str(zips['garbage'])))
    assert len(bad) == 1 and f"'{zips['names'][5]}'" in bad[0] and 'garbage.zip' in bad[0]
    assert check_images(ImageFolderDataset(str(zips['truncated']))) == []        # headers are intact
    assert len(check_images(ImageFolderDataset(str(zips['truncated'])), full=True)) == 15


def test_header_check_mode_and_channels(tmp_path):
    folder = tmp_path / 'imgs'
    folder.mkdir()
    PIL.Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / 'a.png')
    PIL.Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / 'b.png')                # 1 channel
    PIL.Image.new('I;16', (8, 8)).save(folder / 'c.png')                                  # 16 bits
    bad = check_images(ImageFolderDataset(str(folder)))
    assert len(bad) == 2 and "'b.png': 1 channels, image 0 has 3" in bad[0] and "'c.png': mode I" in bad[1]


def test_train_refuses_a_garbage_image_at_start(zips, tmp_path):
    res = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', str(zips['garbage']),
                                          '--dry-run', *TINY])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and zips['names'][5] in errors[0] and 'Traceback' not in res.output
    assert not (tmp_path / 'runs').exists()


@pytest.mark.parametrize('extra', [['--workers', '0'], ['--workers', '1'], ['--gpus', '2', '--batch-gpu', '4']])
def test_truncated_image_mid_run_is_one_line_naming_the_member(zips, tmp_path, extra):
    """In the process, re-raised from a DataLoader worker, or from a spawned rank."""
    proc = run_train(tmp_path / 'runs', zips['truncated'], '0.016', *extra)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith('Error: ') and 'truncated.zip' in last and "cannot read image '" in last, last
    assert 'BadImageError' not in last and 'Caught' not in last
    assert any(name in last for name in zips['names'][1:])


def test_bad_image_line_from_worker_text():
    text = ("Caught BadImageError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
            "  File \"x.py\", line 1\ntraining.dataset.BadImageError: d.zip: cannot read image '00000/img1.png': "
            "image file is truncated")
    assert bad_image_line(RuntimeError(text)) == "d.zip: cannot read image '00000/img1.png': image file is truncated"
    assert bad_image_line(RuntimeError('something else')) is None


def test_dataset_tool_check(zips):
    res = CliRunner().invoke(dataset_tool.main, ['--check', str(zips['good'])])
    assert res.exit_code == 0 and 'OK, 16 images, 16x16, 3 channels' in res.output, res.output
    res = CliRunner().invoke(dataset_tool.main, ['--check', str(zips['truncated'])])
    assert res.exit_code == 1 and 'Traceback' not in res.output
    lines = res.output.strip().splitlines()
    assert lines[-1] == '15 of 16 images are bad' and sum("cannot" in ln or 'truncated' in ln for ln in lines) >= 15
    res = CliRunner().invoke(dataset_tool.main, ['--check', str(zips['good']) + '.missing'])
    assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1
    res = CliRunner().invoke(dataset_tool.main, ['--source', str(zips['good'])])
    assert res.exit_code == 2 and "Missing option '--dest'" in res.output


def test_truncated_member_bytes_really_fail_to_decode(zips):
    with zipfile.ZipFile(zips['truncated']) as z:
        data = z.read(zips['names'][1])
    with pytest.raises(OSError):
        PIL.Image.open(io.BytesIO(data)).load()


def test_skip_bad_images_opt_in(zips, tmp_path):
    proc = run_train(tmp_path / 'runs', zips['truncated'], '0.016', '--skip-bad-images')
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    output = proc.stdout + proc.stderr     # the run's Logger sends stderr to stdout and log.txt
    skipped = [ln for ln in output.splitlines() if ln.startswith('warning: skipping a bad image: ')]
    assert skipped and all("truncated.zip: cannot read image '" in ln for ln in skipped)
    assert 'Traceback' not in proc.stderr and list((tmp_path / 'runs').glob('*/network-snapshot-*.pkl'))
    res = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'dry'), '--data', str(zips['garbage']),
                                          '--dry-run', '--skip-bad-images', 'true', *TINY])
    assert res.exit_code == 0 and 'warning: 1 bad images will be skipped' in res.output, res.output
