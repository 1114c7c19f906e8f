"""Pickles that carry their own source code (the StyleGAN2/EG3D network-pickle format).

A class decorated with `@persistent_class` pickles its instances together with the full
source of the module that defined the class. Unpickling executes that source into a fresh
module (`_imported_module_<uuid>`) and rebuilds the object from it, so a snapshot loads
without the training code that wrote it, even after that code has changed.

The on-disk format is the one StyleGAN2/EG3D snapshots use: the reducer is
`torch_utils.persistence._reconstruct_persistent_obj` called with
`dict(type='class', version=6, module_src=..., class_name=..., state=...)`.
Executing embedded source runs code from the pickle: only load pickles you trust
(issue 5's `legacy` loader reads foreign pickles without executing them).
"""

import copy
import inspect
import io
import pickle
import sys
import types
import uuid
from typing import Any, Callable, Dict, List

import dnnlib

_version = 6  # format version written into every pickle; matches StyleGAN2/EG3D

_decorators: set = set()                         # every class made by persistent_class
_import_hooks: List[Callable[[Any], Any]] = []   # called on meta before reconstruction
_module_to_src_dict: Dict[types.ModuleType, str] = {}
_src_to_module_dict: Dict[str, types.ModuleType] = {}


def persistent_class(orig_class: type) -> type:
    """Class decorator: instances pickle with their defining module's source.

    The returned subclass keeps the original name and module, records the constructor
    arguments (`init_args`, `init_kwargs`: deep copies) and overrides `__reduce__`.
    """
    if not isinstance(orig_class, type):
        raise TypeError('persistent_class expects a class')
    if is_persistent(orig_class):
        return orig_class
    orig_module = sys.modules[orig_class.__module__]
    orig_module_src = _module_to_src(orig_module)

    class Decorator(orig_class):
        _orig_module_src = orig_module_src
        _orig_class_name = orig_class.__name__

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # Stored as private attributes so the base class's state holds them too.
            self._init_args = copy.deepcopy(args)
            self._init_kwargs = copy.deepcopy(kwargs)
            if orig_class.__name__ not in orig_module.__dict__:
                raise ValueError(f'persistent_class: {orig_class.__name__} must be a top-level class '
                                 f'of {orig_module.__name__}')

        @property
        def init_args(self):
            return copy.deepcopy(self._init_args)

        @property
        def init_kwargs(self):
            return dnnlib.EasyDict(copy.deepcopy(self._init_kwargs))

        def __reduce__(self):
            fields = list(super().__reduce__())
            fields += [None] * max(3 - len(fields), 0)
            if fields[0] is not _reconstruct_persistent_obj:
                meta = dict(type='class', version=_version, module_src=self._orig_module_src,
                            class_name=self._orig_class_name, state=fields[2])
                fields[0] = _reconstruct_persistent_obj
                fields[1] = (meta,)
                fields[2] = None  # the state travels inside meta
            return tuple(fields)

    Decorator.__name__ = orig_class.__name__
    Decorator.__qualname__ = orig_class.__qualname__
    Decorator.__module__ = orig_class.__module__
    Decorator.__doc__ = orig_class.__doc__
    _decorators.add(Decorator)
    return Decorator


def is_persistent(obj: Any) -> bool:
    """True for a class made by persistent_class, or an instance of one."""
    try:
        if obj in _decorators:
            return True
    except TypeError:  # unhashable objects are never decorator classes
        pass
    return type(obj) in _decorators


def import_hook(hook: Callable[[Any], Any]) -> None:
    """Register `hook(meta) -> meta`, run on every persistent object before it is rebuilt
    (to patch the source of old pickles, as StyleGAN2's hooks do)."""
    if not callable(hook):
        raise TypeError('import_hook expects a callable')
    _import_hooks.append(hook)


def _reconstruct_persistent_obj(meta: dict) -> Any:
    """Unpickling entry point: exec the embedded source, then restore the object's state."""
    meta = dnnlib.EasyDict(meta)
    meta.state = dnnlib.EasyDict(meta.state)
    for hook in _import_hooks:
        meta = hook(meta)
        if meta is None:
            raise ValueError('persistence import hook returned None')
    if meta.version != _version:
        raise ValueError(f'unsupported persistent-object version {meta.version} (expected {_version})')
    if meta.type != 'class':
        raise ValueError(f'unsupported persistent-object type {meta.type!r}')

    module = _src_to_module(meta.module_src)
    orig_class = module.__dict__[meta.class_name]
    decorator_class = persistent_class(orig_class)
    obj = decorator_class.__new__(decorator_class)
    setstate = getattr(obj, '__setstate__', None)
    if callable(setstate):
        setstate(meta.state)
    else:
        obj.__dict__.update(meta.state)
    return obj


def _module_to_src(module: types.ModuleType) -> str:
    """Source text of a module (cached; modules made from pickles map back to their source)."""
    src = _module_to_src_dict.get(module, None)
    if src is None:
        src = inspect.getsource(module)
        _module_to_src_dict[module] = src
        _src_to_module_dict[src] = module
    return src


def _src_to_module(src: str) -> types.ModuleType:
    """Execute `src` once into a new uniquely named module; identical source reuses it."""
    module = _src_to_module_dict.get(src, None)
    if module is None:
        module_name = '_imported_module_' + uuid.uuid4().hex
        module = types.ModuleType(module_name)
        sys.modules[module_name] = module
        _module_to_src_dict[module] = src
        _src_to_module_dict[src] = module
        exec(src, module.__dict__)  # noqa: S102 - this is the documented purpose of the format
    return module


def _check_pickleable(obj: Any) -> None:
    """Raise a clear error if `obj` holds something that pickles badly (e.g. a lambda).

    Tensors and numpy arrays are treated as leaves; persistent objects as opaque.
    """
    def recurse(o):
        if isinstance(o, (list, tuple, set)):
            return [recurse(x) for x in o]
        if isinstance(o, dict):
            return [[recurse(k), recurse(v)] for k, v in o.items()]
        if isinstance(o, (str, int, float, bool, bytes, bytearray)) or o is None:
            return None
        module = f'{type(o).__module__}.{type(o).__name__}'
        if module in ('numpy.ndarray', 'torch.Tensor', 'torch.nn.parameter.Parameter'):
            return None
        if is_persistent(o):
            return None
        return o
    with io.BytesIO() as f:
        pickle.dump(recurse(obj), f)
