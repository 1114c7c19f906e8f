"""dataset_tool.py: conversions, labels round trip, and one-line errors that leave no output."""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner

import dataset_tool
from training.dataset import ImageFolderDataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _label(i):
    return [i * 0.1 + k * 1e-3 for k in range(25)]    # not float32-exact: the tool must copy them exactly


def _mixed_folder(root):
    """Mixed sizes, modes and formats; returns the relative names in sorted order."""
    os.makedirs(root / 'sub', exist_ok=True)
    PIL.Image.new('RGB', (20, 10), (200, 10, 10)).save(root / 'a_rgb.png')
    PIL.Image.new('L', (12, 12), 90).save(root / 'b_gray.jpg', quality=95)
    rgba = PIL.Image.new('RGBA', (9, 15), (255, 0, 0, 0))    # fully transparent red -> white
    rgba.save(root / 'sub' / 'c_rgba.png')
    pal = PIL.Image.new('RGB', (16, 16), (0, 0, 255)).convert('P')
    pal.save(root / 'sub' / 'd_pal.png')
    (root / 'readme.txt').write_text('ignored')
    return ['a_rgb.png', 'b_gray.jpg', 'sub/c_rgba.png', 'sub/d_pal.png']


def _write_labels(path, names, drop=None):
    entries = [[n, _label(i)] for i, n in enumerate(names) if n != drop]
    path.write_text(json.dumps({'labels': entries}))
    return path


def _run(*args):
    return CliRunner().invoke(dataset_tool.main, [str(a) for a in args])


def _leftovers(folder):
    return [f for f in os.listdir(folder) if f.endswith('.tmp')]


def _assert_fails(result, dest, *fragments):
    """Exit != 0, handled (no traceback), exactly one 'Error:' line holding the fragments, no output."""
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert 'Traceback' not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith('Error')]
    assert len(errors) == 1, result.output
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert not os.path.exists(dest)
    assert not _leftovers(os.path.dirname(str(dest)))


def test_mixed_folder_converts_to_rgb_zip_with_exact_labels(tmp_path):
    names = _mixed_folder(tmp_path / 'src')
    labels = _write_labels(tmp_path / 'labels.json', names + ['not/here.png'])   # extra entries are fine
    dest = tmp_path / 'out' / 'ds.zip'
    result = _run('--source', tmp_path / 'src', '--dest', dest, '--resolution', 8, '--labels', labels)
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(dest) as zf:
        assert sorted(zf.namelist()) == [f'00000/img{i:08d}.png' for i in range(4)] + ['dataset.json']
        meta = json.loads(zf.read('dataset.json'))
        for name in zf.namelist()[:-1]:
            img = PIL.Image.open(zf.open(name))
            assert img.mode == 'RGB' and img.size == (8, 8)
    assert meta['labels'] == [[f'00000/img{i:08d}.png', _label(i)] for i in range(4)]   # exact JSON values
    ds = ImageFolderDataset(dest, use_labels=True)
    assert len(ds) == 4 and ds.image_shape == [3, 8, 8] and ds.label_dim == 25
    for i in range(4):
        np.testing.assert_array_equal(ds.get_label(i), np.array(_label(i), dtype=np.float32))
    images = [ds[i][0] for i in range(4)]
    assert (abs(images[0][:, 4, 4].astype(int) - [200, 10, 10]) <= 2).all()   # RGB kept
    assert (abs(images[1].astype(int) - 90) <= 2).all()                       # gray replicated (JPEG)
    assert (images[2] == 255).all()                                           # transparent over white
    assert (images[3][:, 4, 4] == [0, 0, 255]).all()                          # palette expanded
    assert not _leftovers(tmp_path / 'out')


def test_zip_source_and_source_dataset_json(tmp_path):
    names = _mixed_folder(tmp_path / 'src')
    _write_labels(tmp_path / 'src' / 'dataset.json', names)
    src_zip = tmp_path / 'src.zip'
    with zipfile.ZipFile(src_zip, 'w') as zf:
        for name in names + ['dataset.json']:
            zf.write(tmp_path / 'src' / name, name)
    dest = tmp_path / 'ds.zip'
    result = _run('--source', src_zip, '--dest', dest, '--resolution', 4, '--max-images', 3)
    assert result.exit_code == 0, result.output
    ds = ImageFolderDataset(dest, use_labels=True)
    assert len(ds) == 3 and ds[0][0].shape == (3, 4, 4)
    np.testing.assert_array_equal(ds.get_label(2), np.float32(_label(2)))


def test_no_labels_gives_null(tmp_path):
    PIL.Image.new('RGB', (4, 4)).save(tmp_path / 'x.png')
    dest = tmp_path / 'out.zip'
    assert _run('--source', tmp_path / 'x.png', '--dest', dest).exit_code != 0    # a single file is no source
    (tmp_path / 'src').mkdir()
    PIL.Image.new('RGB', (4, 4)).save(tmp_path / 'src' / 'x.png')
    assert _run('--source', tmp_path / 'src', '--dest', dest).exit_code == 0
    with zipfile.ZipFile(dest) as zf:
        assert json.loads(zf.read('dataset.json')) == {'labels': None}


def test_transforms():
    red = PIL.Image.new('RGB', (4, 2), (255, 0, 0))                     # 4 wide x 2 tall
    pad = np.asarray(dataset_tool.transform_image(red, 'pad'))
    assert pad.shape == (4, 4, 3) and (pad[[0, 3]] == 255).all() and (pad[1:3] == [255, 0, 0]).all()
    crop = np.asarray(dataset_tool.transform_image(red, 'center-crop'))
    assert crop.shape == (2, 2, 3)
    wide = np.asarray(dataset_tool.transform_image(PIL.Image.new('RGB', (8, 4), (0, 0, 0)), 'center-crop-wide', 8))
    assert wide.shape == (8, 8, 3) and (wide[[0, 1, 6, 7]] == 255).all() and (wide[2:6] == 0).all()
    tall = np.asarray(dataset_tool.transform_image(PIL.Image.new('RGB', (4, 8)), 'center-crop-wide'))
    assert tall.shape == (4, 4, 3) and (tall == 0).all()


def test_mode_conversions():
    cmyk = dataset_tool.to_rgb(PIL.Image.new('CMYK', (2, 2), (0, 0, 0, 0)))
    assert cmyk.mode == 'RGB' and (np.asarray(cmyk) == 255).all()
    la = dataset_tool.to_rgb(PIL.Image.new('LA', (2, 2), (0, 0)))
    assert (np.asarray(la) == 255).all()
    deep = dataset_tool.to_rgb(PIL.Image.fromarray(np.full((2, 2), 65535, dtype=np.uint16)))
    assert deep.mode == 'RGB' and (np.asarray(deep) == 255).all()


def test_interrupt_leaves_nothing(tmp_path, monkeypatch):
    _mixed_folder(tmp_path / 'src')
    dest = tmp_path / 'ds.zip'
    calls = []

    def failing_encode(img):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_encode(img)

    real_encode = dataset_tool.encode_png
    monkeypatch.setattr(dataset_tool, 'encode_png', failing_encode)
    result = _run('--source', tmp_path / 'src', '--dest', dest, '--resolution', 8)
    assert result.exit_code != 0 and 'Aborted' in result.output
    assert not dest.exists() and not _leftovers(tmp_path)
    monkeypatch.setattr(dataset_tool, 'encode_png', lambda img: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        dataset_tool.convert_dataset(str(tmp_path / 'src'), str(dest), resolution=8)
    assert not dest.exists() and not _leftovers(tmp_path)


def _bad_cases(tmp_path):
    """(name, extra args, expected fragments) for each bad input; builds the files it needs."""
    good = tmp_path / 'good'
    names = _mixed_folder(good)
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'noimg').mkdir()
    (tmp_path / 'noimg' / 'a.txt').write_text('x')
    (tmp_path / 'corrupt').mkdir()
    PIL.Image.new('RGB', (4, 4)).save(tmp_path / 'corrupt' / 'a.png')
    (tmp_path / 'corrupt' / 'b.jpg').write_bytes(b'\xff\xd8\xff garbage')
    (tmp_path / 'badzip.zip').write_bytes(b'garbage')
    (tmp_path / 'notjson.json').write_text('{"labels": [')
    _write_labels(tmp_path / 'missing.json', names, drop='sub/c_rgba.png')
    (tmp_path / 'short.json').write_text(json.dumps({'labels': [[n, [0.0] * 16] for n in names]}))
    (tmp_path / 'exists.zip').write_bytes(b'keep me')
    src = ['--source', good, '--resolution', 8]
    return [
        ('src missing', ['--source', tmp_path / 'nope'], ['nope', 'no such file']),
        ('empty folder', ['--source', tmp_path / 'empty'], ['empty', 'no image files']),
        ('no images', ['--source', tmp_path / 'noimg'], ['noimg', 'no image files']),
        ('corrupt image', ['--source', tmp_path / 'corrupt'], ["cannot read image 'b.jpg'"]),
        ('corrupt zip', ['--source', tmp_path / 'badzip.zip'], ['badzip.zip', 'cannot open zip']),
        ('labels missing', src + ['--labels', tmp_path / 'nolabels.json'], ['nolabels.json', 'cannot read']),
        ('labels unreadable', src + ['--labels', tmp_path / 'empty'], ['empty', 'cannot read']),
        ('labels not JSON', src + ['--labels', tmp_path / 'notjson.json'], ['notjson.json', 'not valid JSON']),
        ('labels shape', src + ['--labels', tmp_path / 'short.json'], ["'a_rgb.png' must be 25 numbers, got 16"]),
        ('labels entries', src + ['--labels', tmp_path / 'missing.json'], ["no label for image 'sub/c_rgba.png'"]),
        ('sizes differ', ['--source', good], ["'b_gray.jpg' is 12x12", "'a_rgb.png' is 10x10", '--resolution']),
        ('bad resolution', src + ['--resolution', 0], ['--resolution']),
        ('bad transform', src + ['--transform', 'zoom'], ['--transform']),
    ]


def test_bad_inputs_fail_with_one_line_and_no_output(tmp_path):
    for name, args, fragments in _bad_cases(tmp_path):
        dest = tmp_path / f'{name.replace(" ", "_")}.zip'
        result = _run(*args, '--dest', dest)
        try:
            _assert_fails(result, dest, *fragments)
        except AssertionError as e:
            raise AssertionError(f'{name}: {e}') from e


def test_dest_checks(tmp_path):
    _mixed_folder(tmp_path / 'src')
    dest = tmp_path / 'ds.zip'
    dest.write_bytes(b'keep me')
    result = _run('--source', tmp_path / 'src', '--dest', dest, '--resolution', 8)
    assert result.exit_code != 0 and 'already exists' in result.output and '--overwrite' in result.output
    assert dest.read_bytes() == b'keep me'
    _assert_fails(_run('--source', tmp_path / 'src', '--dest', tmp_path / 'ds.tar'), tmp_path / 'ds.tar',
                  'must end in .zip')
    result = _run('--source', tmp_path / 'src', '--dest', dest, '--resolution', 8, '--overwrite')
    assert result.exit_code == 0, result.output
    assert len(ImageFolderDataset(dest)) == 4
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(dest).st_mode & 0o777 == 0o666 & ~umask      # a normal file's mode, not mkstemp's 0600


def test_cli_subprocess_error_is_one_line(tmp_path):
    dest = tmp_path / 'ds.zip'
    res = subprocess.run([sys.executable, os.path.join(REPO, 'dataset_tool.py'), '--source', str(tmp_path / 'nope'),
                          '--dest', str(dest)], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode != 0 and 'Traceback' not in res.stderr
    assert [line for line in res.stderr.splitlines() if line.startswith('Error')] == [
        f"Error: --source '{tmp_path / 'nope'}': no such file or folder"]
    assert not dest.exists()
