"""dnnlib: EasyDict, objects by name, open_url (path, file://, cache, offline error), Logger."""

import hashlib
import io
import os
import pathlib

import pytest

import dnnlib
from dnnlib import util


def test_easydict_attribute_and_key_access():
    d = dnnlib.EasyDict(a=1)
    d.b = 2
    assert d['b'] == 2 and d.a == 1
    del d.a
    assert 'a' not in d
    with pytest.raises(AttributeError):
        _ = d.missing


def test_construct_and_get_by_name():
    layer = util.construct_class_by_name(class_name='torch.nn.Linear', in_features=2, out_features=3)
    assert tuple(layer.weight.shape) == (3, 2)
    assert util.get_obj_by_name('dnnlib.util.EasyDict') is dnnlib.EasyDict
    assert util.call_func_by_name(4, func_name='math.sqrt') == 2.0
    with pytest.raises(ImportError):
        util.get_obj_by_name('no_such_module_xyz.thing')


def test_format_time_units():
    assert util.format_time(7) == '7s'
    assert util.format_time(185) == '3m 05s'
    assert util.format_time(2 * 3600 + 3 * 60 + 4) == '2h 03m 04s'
    assert util.format_time(86400 + 2 * 3600 + 3 * 60) == '1d 02h 03m'
    assert util.format_time_brief(2 * 3600 + 3 * 60 + 4) == '2h 03m'


def test_open_url_local_path_and_file_url(tmp_path):
    f = tmp_path / 'blob.bin'
    f.write_bytes(b'abc')
    with util.open_url(str(f)) as stream:
        assert stream.read() == b'abc'
    url = pathlib.Path(f).as_uri()
    assert url.startswith('file://')
    with util.open_url(url) as stream:
        assert stream.read() == b'abc'
    assert util.open_url(url, return_filename=True) == str(f)
    with pytest.raises(FileNotFoundError, match='no such file'):
        util.open_url(str(tmp_path / 'missing.pkl'))


def test_open_url_uses_cache_without_network(tmp_path):
    url = 'https://example.invalid/models/net.pkl'
    md5 = hashlib.md5(url.encode()).hexdigest()
    (tmp_path / f'{md5}_net.pkl').write_bytes(b'cached')
    with util.open_url(url, cache_dir=str(tmp_path)) as stream:
        assert stream.read() == b'cached'


def test_open_url_offline_is_one_clear_error(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError('network is unreachable')
    monkeypatch.setattr(util.urllib.request, 'urlopen', no_network)
    with pytest.raises(IOError, match='could not download .*local file path'):
        util.open_url('https://example.invalid/x.pkl', cache_dir=str(tmp_path), num_attempts=2, verbose=False)
    assert os.listdir(tmp_path) == []  # nothing half-written in the cache


def test_open_url_download_is_cached_atomically(tmp_path, monkeypatch):
    calls = []

    class FakeResponse(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *args):
            return False

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        return FakeResponse(b'payload')
    monkeypatch.setattr(util.urllib.request, 'urlopen', fake_urlopen)
    url = 'https://example.invalid/a/b/weights.pkl'
    path = util.open_url(url, cache_dir=str(tmp_path), return_filename=True, verbose=False)
    assert open(path, 'rb').read() == b'payload' and path.endswith('_weights.pkl')
    util.open_url(url, cache_dir=str(tmp_path), verbose=False).close()
    assert len(calls) == 1  # second open served from the cache
    assert [p for p in os.listdir(tmp_path) if p.startswith('.tmp_')] == []


def test_logger_tees_to_file(tmp_path):
    log = tmp_path / 'log.txt'
    with dnnlib.util.Logger(file_name=str(log)):
        print('hello from the logger')
    assert 'hello from the logger' in log.read_text()


def test_make_cache_dir_path_respects_env(monkeypatch, tmp_path):
    monkeypatch.setenv('DNNLIB_CACHE_DIR', str(tmp_path))
    assert util.make_cache_dir_path('downloads') == os.path.join(str(tmp_path), 'downloads')
