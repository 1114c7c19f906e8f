"""Generic helpers kept under their StyleGAN2/EG3D names so that users' scripts keep working:
EasyDict, Logger, format_time, construct_class_by_name / get_obj_by_name, open_url with a
download cache."""

import contextlib
import glob
import hashlib
import importlib
import io
import os
import re
import shutil
import sys
import tempfile
import time
import types
import urllib.parse
import urllib.request
from typing import Any, List, Optional, Tuple

# ----------------------------------------------------------------------------
# EasyDict


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes (`d.key`)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


# ----------------------------------------------------------------------------
# Logger: tee stdout/stderr into a file


class Logger:
    """Copy everything written to stdout/stderr into `file_name` (if given) as well.

    Used as a context manager or kept alive for the whole run; `close()` restores the
    original streams.
    """

    def __init__(self, file_name: Optional[str] = None, file_mode: str = 'w', should_flush: bool = True):
        self.file = open(file_name, file_mode) if file_name is not None else None
        self.should_flush = should_flush
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        sys.stdout = self
        sys.stderr = self

    def __enter__(self) -> 'Logger':
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self.close()

    def write(self, text: str) -> None:
        if isinstance(text, bytes):
            text = text.decode()
        if len(text) == 0:  # print() writes '' on some paths; skip so flush stays cheap
            return
        if self.file is not None:
            self.file.write(text)
        self.stdout.write(text)
        if self.should_flush:
            self.flush()

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
        self.stdout.flush()

    def close(self) -> None:
        self.flush()
        if sys.stdout is self:
            sys.stdout = self.stdout
        if sys.stderr is self:
            sys.stderr = self.stderr
        if self.file is not None:
            self.file.close()
            self.file = None


# ----------------------------------------------------------------------------
# Cache directory

_dnnlib_cache_dir: Optional[str] = None


def set_cache_dir(path: str) -> None:
    global _dnnlib_cache_dir
    _dnnlib_cache_dir = path


def make_cache_dir_path(*paths: str) -> str:
    """Path under the download cache: set_cache_dir(), $DNNLIB_CACHE_DIR, ~/.cache/dnnlib."""
    if _dnnlib_cache_dir is not None:
        return os.path.join(_dnnlib_cache_dir, *paths)
    if 'DNNLIB_CACHE_DIR' in os.environ:
        return os.path.join(os.environ['DNNLIB_CACHE_DIR'], *paths)
    if 'HOME' in os.environ:
        return os.path.join(os.environ['HOME'], '.cache', 'dnnlib', *paths)
    if 'USERPROFILE' in os.environ:
        return os.path.join(os.environ['USERPROFILE'], '.cache', 'dnnlib', *paths)
    return os.path.join(tempfile.gettempdir(), '.cache', 'dnnlib', *paths)


# ----------------------------------------------------------------------------
# Small formatting helpers


def _duration_parts(seconds: float) -> List[str]:
    """['1d', '02h', '03m', '04s'] from the largest non-zero unit down."""
    s = int(round(seconds))
    parts = [(s // 86400, 'd'), ((s // 3600) % 24, 'h'), ((s // 60) % 60, 'm'), (s % 60, 's')]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return [f'{v}{u}' if i == 0 else f'{v:02d}{u}' for i, (v, u) in enumerate(parts)]


def format_time(seconds: float) -> str:
    """Human-readable duration: '7s', '3m 05s', '2h 03m 04s', '1d 02h 03m'."""
    return ' '.join(_duration_parts(seconds)[:3])


def format_time_brief(seconds: float) -> str:
    """Two most significant units only: '7s', '3m 05s', '2h 03m', '1d 02h'."""
    return ' '.join(_duration_parts(seconds)[:2])


def ask_yes_no(question: str) -> bool:
    while True:
        answer = input(f'{question} [y/n]: ').strip().lower()
        if answer in ('y', 'yes', 'n', 'no'):
            return answer.startswith('y')


def tuple_product(t: Tuple) -> Any:
    result = 1
    for v in t:
        result *= v
    return result


# ----------------------------------------------------------------------------
# Objects by name: 'package.module.attr' -> object


def get_module_from_obj_name(obj_name: str) -> Tuple[types.ModuleType, str]:
    """Split 'a.b.c.attr' into the longest importable module prefix and the rest."""
    obj_name = re.sub('^np.', 'numpy.', obj_name)
    obj_name = re.sub('^tf.', 'tensorflow.', obj_name)
    parts = obj_name.split('.')
    # Try the longest module path first so 'pkg.mod.Class' wins over 'pkg' + 'mod.Class'.
    for i in range(len(parts), 0, -1):
        module_name = '.'.join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            # Re-raise an import error from *inside* an existing module; only a missing
            # module prefix means "try a shorter one".
            if not str(err).startswith('No module named') or not _is_missing(err, module_name):
                raise
            continue
        local = '.'.join(parts[i:])
        try:
            get_obj_from_module(module, local)
            return module, local
        except AttributeError:
            continue
    raise ImportError(f'cannot find an object named {obj_name!r}')


def _is_missing(err: ImportError, module_name: str) -> bool:
    missing = getattr(err, 'name', None)
    return missing is None or module_name == missing or module_name.startswith(missing + '.')


def get_obj_from_module(module: types.ModuleType, obj_name: str) -> Any:
    """Follow a dotted attribute path inside a module ('' returns the module)."""
    if obj_name == '':
        return module
    obj = module
    for part in obj_name.split('.'):
        obj = getattr(obj, part)
    return obj


def get_obj_by_name(name: str) -> Any:
    """Find a Python object by its fully qualified name, e.g. 'training.dataset.ImageFolderDataset'."""
    module, obj_name = get_module_from_obj_name(name)
    return get_obj_from_module(module, obj_name)


def call_func_by_name(*args, func_name: Optional[str] = None, **kwargs) -> Any:
    """Call the function named `func_name` with the given arguments."""
    if func_name is None:
        raise ValueError('call_func_by_name: func_name is required')
    func_obj = get_obj_by_name(func_name)
    if not callable(func_obj):
        raise TypeError(f'{func_name} is not callable')
    return func_obj(*args, **kwargs)


def construct_class_by_name(*args, class_name: Optional[str] = None, **kwargs) -> Any:
    """Instantiate the class named `class_name` with the given arguments."""
    return call_func_by_name(*args, func_name=class_name, **kwargs)


def get_module_dir_by_obj_name(obj_name: str) -> str:
    module, _ = get_module_from_obj_name(obj_name)
    return os.path.dirname(os.path.abspath(module.__file__))


def is_top_level_function(obj: Any) -> bool:
    return callable(obj) and obj.__name__ in sys.modules[obj.__module__].__dict__


def get_top_level_function_name(obj: Any) -> str:
    if not is_top_level_function(obj):
        raise ValueError(f'{obj!r} is not a top-level function')
    module = obj.__module__
    if module == '__main__':
        module = os.path.splitext(os.path.basename(sys.modules[module].__file__))[0]
    return module + '.' + obj.__name__


def is_pickleable(obj: Any) -> bool:
    import pickle
    try:
        with io.BytesIO() as stream:
            pickle.dump(obj, stream)
        return True
    except Exception:
        return False


# ----------------------------------------------------------------------------
# File-system helpers


def list_dir_recursively_with_ignore(dir_path: str, ignores: Optional[List[str]] = None,
                                     add_base_to_relative: bool = False) -> List[Tuple[str, str]]:
    """(absolute, relative) path pairs of every file under dir_path, skipping glob `ignores`."""
    import fnmatch
    ignores = ignores or []
    base_name = os.path.basename(dir_path)
    result = []
    for root, dirs, files in os.walk(dir_path, topdown=True):
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(d, p) for p in ignores)]
        for f in files:
            if any(fnmatch.fnmatch(f, p) for p in ignores):
                continue
            absolute = os.path.join(root, f)
            relative = os.path.relpath(absolute, dir_path)
            if add_base_to_relative:
                relative = os.path.join(base_name, relative)
            result.append((absolute, relative))
    return result


def copy_files_and_create_dirs(files: List[Tuple[str, str]]) -> None:
    for src, dst in files:
        os.makedirs(os.path.dirname(dst) or '.', exist_ok=True)
        shutil.copyfile(src, dst)


# ----------------------------------------------------------------------------
# URLs with a download cache


def is_url(obj: Any, allow_file_urls: bool = False) -> bool:
    """True for 'scheme://host...' strings (and 'file://' ones when allowed)."""
    if not isinstance(obj, str) or '://' not in obj:
        return False
    if allow_file_urls and obj.startswith('file://'):
        return True
    try:
        res = urllib.parse.urlparse(obj)
        return bool(res.scheme and res.netloc and '.' in res.netloc)
    except ValueError:
        return False


def _file_url_to_path(url: str) -> str:
    parsed = urllib.parse.urlparse(url)
    path = urllib.request.url2pathname(parsed.path)
    if parsed.netloc and parsed.netloc != 'localhost':  # file://host/share/... on Windows
        path = '//' + parsed.netloc + path
    return path


def open_url(url: str, cache_dir: Optional[str] = None, num_attempts: int = 10, verbose: bool = True,
             return_filename: bool = False, cache: bool = True) -> Any:
    """Open a local path, a file:// URL, or an http(s) URL (downloaded once into a cache).

    Returns a binary file object, or the local file name with return_filename=True.
    Offline with nothing cached: an IOError that names the URL and says how to use a
    local file instead.
    """
    if num_attempts < 1:
        raise ValueError('open_url: num_attempts must be >= 1')
    if return_filename and not cache:
        raise ValueError('open_url: return_filename=True requires cache=True')

    if not re.match('^[a-z]+://', url):  # a plain local path
        if not os.path.isfile(url):
            raise FileNotFoundError(f'open_url: no such file: {url}')
        return url if return_filename else open(url, 'rb')
    if url.startswith('file://'):
        path = _file_url_to_path(url)
        if not os.path.isfile(path):
            raise FileNotFoundError(f'open_url: no such file: {path} (from {url})')
        return path if return_filename else open(path, 'rb')
    if not is_url(url):
        raise ValueError(f'open_url: not a URL or a path: {url!r}')

    if cache_dir is None:
        cache_dir = make_cache_dir_path('downloads')
    url_md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    if cache:
        hits = glob.glob(os.path.join(cache_dir, url_md5 + '_*'))
        if len(hits) == 1:
            return hits[0] if return_filename else open(hits[0], 'rb')

    data, url_name = _download(url, num_attempts, verbose)
    if cache:
        safe_name = re.sub(r'[^0-9a-zA-Z-._]', '_', url_name or 'download')[:128]
        cache_file = os.path.join(cache_dir, url_md5 + '_' + safe_name)
        write_atomic(cache_file, data)
        if return_filename:
            return cache_file
    return io.BytesIO(data)


def _download(url: str, num_attempts: int, verbose: bool) -> Tuple[bytes, str]:
    """Fetch `url` with retries. Returns (bytes, file name taken from the URL)."""
    url_name = os.path.basename(urllib.parse.urlparse(url).path)
    last_err: Optional[BaseException] = None
    for attempt in range(num_attempts):
        if verbose:
            print(f'Downloading {url} ...', end='', flush=True)
        try:
            with urllib.request.urlopen(url, timeout=60) as res:
                data = res.read()
            if len(data) == 0:
                raise IOError('no data received')
            if verbose:
                print(' done')
            return data, url_name
        except KeyboardInterrupt:
            raise
        except Exception as err:  # network errors of every kind: retry, then one clear error
            last_err = err
            if verbose:
                print(' failed')
            if attempt + 1 < num_attempts:
                time.sleep(min(2 ** attempt, 10) * 0.1)
    raise IOError(f'open_url: could not download {url} ({type(last_err).__name__}: {last_err}); '
                  'if this machine is offline, pass a local file path instead')


@contextlib.contextmanager
def atomic_output(path: str):
    """Yield a temporary path beside `path` (same folder, same extension, so tools that infer
    the format from the name still work). On success it is flushed to disk and renamed onto
    `path`; on any error, KeyboardInterrupt included, it is removed: readers never see a
    half-written file. The folder is created if missing."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f'.tmp-{stem}-', suffix=ext, dir=folder)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, 'rb+') as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; give it a normal file's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_atomic(path: str, data: bytes) -> None:
    """Write `data` to `path` atomically (see atomic_output)."""
    with atomic_output(path) as tmp, open(tmp, 'wb') as f:
        f.write(data)


def one_line(err: BaseException) -> str:
    """An exception's message squeezed onto one line (for one-line user-facing errors)."""
    if type(err).__name__ == 'UnidentifiedImageError':  # PIL's message is the repr of a BytesIO
        return 'not an image PIL can decode (corrupt or unknown format)'
    return ' '.join(str(err).split()) or type(err).__name__
