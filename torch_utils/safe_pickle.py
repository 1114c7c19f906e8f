"""One safe way to read pickles and .pt files that come from outside the process (SPEC §7).

A plain `pickle.load` (or `torch.load(..., weights_only=False)`) runs whatever the file names:
a `__reduce__` calling `os.system`, or the module source that `torch_utils.persistence`
embeds in every network. Every reader of this project goes through here instead:

- `load(f)` / `load_file(path)`: a restricted unpickler that resolves only an allow-list of
  globals (torch tensor rebuild functions, storages, dtypes, OrderedDict, numpy arrays/scalars/
  dtypes, EasyDict, set/frozenset/slice/complex). Persistent objects and instances of plain
  torch.nn / `training.*` / `torch_utils.*` classes become inert `Record`s (class name, source
  as text, pickled state); nothing is imported or executed. legacy.py maps records onto our
  classes. Any other global raises `UnsafePickleError` naming it.
- `load_torch(path)`: `torch.load(weights_only=True)` plus numpy arrays of plain dtypes (older
  training states hold numpy's RNG state as an array).

`allow_exec=True` (the CLIs' `--trust-pickle`) is the only way to plain pickle: the file's code
runs. Errors are one line and name the file (`load_file`, `load_torch`).
"""

import collections
import functools
import io
import pickle
import re

import numpy as np
import torch

import dnnlib

_PERSISTENCE_REDUCER = ('torch_utils.persistence', '_reconstruct_persistent_obj')
_STUB_PREFIXES = ('torch.nn.modules.', 'training.', 'torch_utils.')  # instances become inert records
TRUST_HINT = 'refused to run code from it; pass --trust-pickle (allow_exec=True) only if you trust the file'
_CORRUPT = (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, RuntimeError, MemoryError,
            OverflowError, UnicodeDecodeError)


class UnsafePickleError(pickle.UnpicklingError):
    """The file names a global outside the allow-list; it was refused before anything ran."""


class Record:
    """An inert stand-in for a pickled object: class name, its module's source (text only) and
    the pickled state. For modules the state holds `_parameters`, `_buffers`, `_modules`."""

    def __init__(self, class_name, module_src=None, state=None, module=None, args=()):
        self.class_name, self.module_src, self.state, self.module, self.args = \
            class_name, module_src, state, module, args

    def __setstate__(self, state):      # BUILD opcode: store, never interpret
        self.state = state

    def _get(self, key, default):
        return self.state.get(key, default) if isinstance(self.state, dict) else default

    @property
    def init_args(self):
        return tuple(self._get('_init_args', ()))

    @property
    def init_kwargs(self):
        return dict(self._get('_init_kwargs', {}))

    def nodes(self, prefix=''):
        """{dotted path: Record} of this record and every sub-module record ('' = self)."""
        out = {prefix: self}
        for name, child in (self._get('_modules', None) or {}).items():
            if isinstance(child, Record):
                out.update(child.nodes(f'{prefix}.{name}' if prefix else name))
        return out

    def tensors(self):
        """{dotted name: tensor} of all parameters and buffers, like named_parameters()."""
        out = {}
        for path, node in self.nodes().items():
            for group in ('_parameters', '_buffers'):
                for name, t in (node._get(group, None) or {}).items():
                    if isinstance(t, torch.Tensor):
                        out[f'{path}.{name}' if path else name] = t
        return out

    def __repr__(self):
        return f'Record({self.module + "." if self.module else ""}{self.class_name})'


class _StubRecord(Record):
    """Record for an instance of a plain (non-persistent) class; created by NEWOBJ/REDUCE."""

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        Record.__init__(obj, cls._name, module=cls._module, args=args)
        return obj

    def __init__(self, *args, **kwargs):
        pass


@functools.lru_cache(maxsize=None)
def _stub_class(module, name):
    return type(name, (_StubRecord,), {'_module': module, '_name': name})


def _record_from_meta(meta):
    """Replacement for the persistence reducer: validate `meta`, return a Record."""
    if not isinstance(meta, dict) or meta.get('type') != 'class' or meta.get('version') != 6:
        kind = {k: meta.get(k) for k in ('type', 'version')} if isinstance(meta, dict) else type(meta).__name__
        raise pickle.UnpicklingError(f'unsupported persistent object {kind} (expected type class, version 6)')
    return Record(str(meta['class_name']), module_src=str(meta['module_src']), state=meta['state'])


def _load_storage(data):
    """torch.storage._load_from_bytes, but with torch's own weights-only unpickler."""
    return torch.load(io.BytesIO(data), map_location='cpu', weights_only=True)


def _safe_globals():
    table = {
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('torch._utils', '_rebuild_tensor'): torch._utils._rebuild_tensor,
        ('torch._utils', '_rebuild_tensor_v2'): torch._utils._rebuild_tensor_v2,
        ('torch._utils', '_rebuild_parameter'): torch._utils._rebuild_parameter,
        ('torch._utils', '_rebuild_parameter_with_state'): getattr(torch._utils, '_rebuild_parameter_with_state', None),
        ('torch._tensor', '_rebuild_from_type_v2'): getattr(torch._tensor, '_rebuild_from_type_v2', None),
        ('torch.storage', '_load_from_bytes'): _load_storage,
        ('torch', 'Tensor'): torch.Tensor, ('torch', 'Size'): torch.Size, ('torch', 'device'): torch.device,
        ('torch.nn.parameter', 'Parameter'): torch.nn.Parameter,
        ('numpy', 'ndarray'): np.ndarray, ('numpy', 'dtype'): np.dtype,
        ('dnnlib', 'EasyDict'): dnnlib.EasyDict, ('dnnlib.util', 'EasyDict'): dnnlib.EasyDict,
        _PERSISTENCE_REDUCER: _record_from_meta,
    }
    for mod in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        table[(mod, '_reconstruct')] = _np_multiarray('_reconstruct')
        table[(mod, 'scalar')] = _np_multiarray('scalar')
    for mod in ('builtins', '__builtin__'):
        for name, obj in (('set', set), ('frozenset', frozenset), ('slice', slice), ('complex', complex)):
            table[(mod, name)] = obj
    for name in dir(torch):
        obj = getattr(torch, name, None)
        if isinstance(obj, torch.dtype) or (name.endswith('Storage') and isinstance(obj, type)):
            table[('torch', name)] = obj
    return {k: v for k, v in table.items() if v is not None}


def _np_multiarray(name):
    try:
        from numpy._core import multiarray     # numpy >= 2
    except ImportError:                        # numpy 1.x
        from numpy.core import multiarray
    return getattr(multiarray, name)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only `_safe_globals()` and stubs (see the module docstring)."""

    _table = None

    def find_class(self, module, name):
        if RestrictedUnpickler._table is None:
            RestrictedUnpickler._table = _safe_globals()
        obj = self._table.get((module, name))
        if obj is not None:
            return obj
        if module.startswith(_STUB_PREFIXES) and name.isidentifier():
            return _stub_class(module, name)
        raise UnsafePickleError(f"the file needs global '{module}.{name}', which is not in the list of safe "
                                f"globals: {TRUST_HINT}")


def _one_line(err) -> str:
    return ' '.join(str(err).split())


def load(f, allow_exec: bool = False):
    """Unpickle a binary file object with `RestrictedUnpickler` (allow_exec: plain pickle.load).
    Raises UnsafePickleError (forbidden global) or pickle.UnpicklingError (truncated, corrupt)."""
    if allow_exec:
        return pickle.load(f)
    try:
        return RestrictedUnpickler(f).load()
    except pickle.UnpicklingError:
        raise
    except _CORRUPT as e:
        raise pickle.UnpicklingError(f'truncated or corrupt pickle ({type(e).__name__}: {_one_line(e)})') from e


def load_file(path_or_url: str, allow_exec: bool = False):
    """load() of a local path or URL; the error message starts with the file name."""
    try:
        with dnnlib.util.open_url(path_or_url, verbose=False) as f:
            return load(f, allow_exec)
    except UnsafePickleError as e:
        raise UnsafePickleError(f'{path_or_url}: {_one_line(e)}') from None
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f'{path_or_url}: {_one_line(e)}') from None


def _numpy_globals():
    dtypes = {type(np.dtype(t)) for t in '?bhilqBHILQefdgFDG'}
    return [_np_multiarray('_reconstruct'), _np_multiarray('scalar'), np.ndarray, np.dtype, *dtypes]


def load_torch(path: str, allow_exec: bool = False):
    """torch.load of a .pt onto the CPU: tensors, containers, numbers, strings and plain numpy
    arrays only (allow_exec: weights_only=False). UnsafePickleError for anything else,
    pickle.UnpicklingError for a truncated or corrupt file; both one line naming `path`."""
    if allow_exec:
        return torch.load(path, map_location='cpu', weights_only=False)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        found = re.search(r'GLOBAL (\S+) was not an allowed global', text)
        if found or 'Unsupported' in text:
            what = f"global '{found.group(1)}'" if found else 'an object'
            raise UnsafePickleError(f'{path}: the file needs {what}, which weights-only loading does not allow: '
                                    f'{TRUST_HINT}') from None
        raise pickle.UnpicklingError(f'{path}: truncated or corrupt ({_one_line(text)[:200]})') from None
    except _CORRUPT as e:
        first = _one_line(e).split('. ')[0][:200]   # torch's zip errors run on for several sentences
        raise pickle.UnpicklingError(f'{path}: truncated or corrupt ({type(e).__name__}: {first})') from None
