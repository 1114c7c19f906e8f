"""Load network pickles (StyleGAN2/EG3D/PoF3D format) without executing the code they carry.

A network pickle (`network-snapshot-*.pkl`) is dict(G, D, G_ema, augment_pipe,
training_set_kwargs). Its networks are `torch_utils.persistence` objects: each carries the
full source of its module, and a plain `pickle.load` *executes* that source (and whatever
else the pickle names). `load_network_pkl` never does:

1. A restricted unpickler resolves only a whitelist of globals (torch tensor rebuild functions,
   storages, dtypes, OrderedDict, numpy arrays/scalars/dtypes, EasyDict, set/frozenset/slice/
   complex); storage bytes go through `torch.load(..., weights_only=True)`. The persistence
   reducer returns an inert `Record` (class name, source text - never executed - and pickled
   state); instances of plain torch.nn / `training.*` / `torch_utils.*` classes (e.g.
   torch.nn.Sequential, EG3D's ImportanceRenderer) become inert records too, nothing imported.
   Any other global is a one-line `pickle.UnpicklingError` that names it.
2. Records are mapped onto *our* classes, built from the pickled constructor kwargs
   (`_init_kwargs`), and the tensors are copied by name:
   - our own snapshots (a record whose source is one of this project's modules): the class of
     the same name (TriPlaneGenerator, DualDiscriminator, networks_stylegan2.*, ...);
   - official EG3D `TriPlaneGenerator` / PoF3D `TriPlaneGeneratorPose` G pickles: our
     TriPlaneGenerator (pose source 'dataset' / 'learned') with EG3D's plane axes
     (plane_axes='legacy' unless the pickle says wrong=False), planes sized from the backbone,
     the mapping and pose learning-rate multipliers read from the stored layer gains, and
     PoF3D's `backbone.mapping.affine_layer{1,2}.*` renamed to `pose_source.affine_layer{1,2}.*`
     (training/pose_sources.py). A single-layer (`linear_pose`) or 3-output pose learner is an
     error;
   - official discriminators: EG3D's DualDiscriminator loads when every tensor maps by name;
     PoF3D's pose head has unknown parameter names, so its D is returned as None with a
     warning. Inference needs G_ema only.
   Every equalized-lr layer's weight_gain/bias_gain is checked against the pickle, so a wrong
   learning-rate multiplier is an error, not silently different outputs.

`allow_exec=True` is the EG3D behaviour: plain pickle, embedded source executed, objects
returned as they are. Use it only for files you trust.
"""

import collections
import functools
import hashlib
import inspect
import io
import math
import pickle
import warnings

import numpy as np
import torch

import dnnlib
from torch_utils import misc

_PERSISTENCE_REDUCER = ('torch_utils.persistence', '_reconstruct_persistent_obj')
_STUB_PREFIXES = ('torch.nn.modules.', 'training.', 'torch_utils.')  # instances become inert records
_OUR_SOURCE_MARKER = 'SPEC §'   # every module of this project cites the design spec; EG3D/PoF3D never do
_OFFICIAL_G = ('TriPlaneGenerator', 'TriPlaneGeneratorPose')


class Record:
    """An inert stand-in for a pickled object: class name, its module's source (text only) and
    the pickled state. For modules the state holds `_parameters`, `_buffers`, `_modules`."""

    def __init__(self, class_name, module_src=None, state=None, module=None, args=()):
        self.class_name, self.module_src, self.state, self.module, self.args = \
            class_name, module_src, state, module, args

    def __setstate__(self, state):      # BUILD opcode: store, never interpret
        self.state = state

    @property
    def src_hash(self):
        return None if self.module_src is None else hashlib.sha256(self.module_src.encode()).hexdigest()

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
        raise pickle.UnpicklingError(f"refusing global '{module}.{name}': not in legacy.py's list of safe globals "
                                     f"(load with allow_exec=True only if you trust the file)")


# ---------------------------------------------------------------------------------------------
# Records -> our classes.

@functools.lru_cache(maxsize=None)
def _our_classes():
    """({class name: class} of this project's network modules, {sha256 of their sources})."""
    from training import decoder, dual_discriminator, generator, networks_stylegan2, pose_head, pose_sources
    from training import superresolution
    modules = [networks_stylegan2, superresolution, decoder, pose_head, pose_sources, dual_discriminator, generator]
    try:
        from training import augment   # optional: only once the project has an augmentation pipeline
        modules.append(augment)
    except ImportError:
        pass
    classes = {}
    for mod in modules:
        for name, obj in vars(mod).items():
            if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == mod.__name__:
                classes[name] = obj
    return classes, {hashlib.sha256(inspect.getsource(m).encode()).hexdigest() for m in modules}


def is_our_record(rec: Record) -> bool:
    """True when the record's (never executed) source is one of this project's modules."""
    if rec.module_src is None:
        return False
    return rec.src_hash in _our_classes()[1] or _OUR_SOURCE_MARKER in rec.module_src


def _accepted(cls):
    """Constructor parameter names of cls (of the decorated class for persistent classes,
    whose own __init__ is (*args, **kwargs))."""
    for klass in cls.__mro__:
        if '__init__' in vars(klass):
            params = inspect.signature(klass.__init__).parameters
            if not any(p.kind == p.VAR_POSITIONAL for p in params.values()):
                return {n for n, p in params.items() if p.kind != p.VAR_KEYWORD} - {'self'}
    return set()


def _construct(cls, args, kwargs, what):
    with torch.random.fork_rng(devices=[]):   # random init of a module about to be overwritten
        try:
            return cls(*args, **kwargs)
        except (TypeError, ValueError, KeyError) as e:
            raise ValueError(f'{what}: cannot build {cls.__name__} from the pickled arguments: '
                             f'{" ".join(str(e).split())}') from e


def _copy_tensors(module, rec, what, rename=lambda n: n):
    """Copy rec's tensors into module by (renamed) name; returns the pickle's unused names.
    Raises ValueError for a tensor of ours missing from the pickle or with another shape."""
    src = rec.tensors()
    used = set()
    with torch.no_grad():
        for name, t in misc.named_params_and_buffers(module):
            key = rename(name)
            if key not in src:
                raise ValueError(f"{what}: the pickle has no tensor '{key}' for our '{name}'")
            if tuple(src[key].shape) != tuple(t.shape):
                raise ValueError(f"{what}: '{key}' has shape {list(src[key].shape)} in the pickle, "
                                 f"{list(t.shape)} here")
            t.copy_(src[key].detach())
            if isinstance(t, torch.nn.Parameter):
                t.requires_grad_(src[key].requires_grad)
            used.add(key)
    return sorted(set(src) - used)


def _check_gains(module, rec, what, rename=lambda n: n):
    """Equalized-lr gains (lr multipliers) must match the pickle's, layer by layer."""
    nodes = rec.nodes()
    for path, sub in module.named_modules():
        node = nodes.get(rename(path))
        for attr in ('weight_gain', 'bias_gain'):
            ours, theirs = getattr(sub, attr, None), node._get(attr, None) if node is not None else None
            if isinstance(ours, (int, float)) and isinstance(theirs, (int, float, np.floating)) \
                    and not math.isclose(float(ours), float(theirs), rel_tol=1e-6):
                raise ValueError(f'{what}: {path}.{attr} is {float(theirs):.6g} in the pickle but {float(ours):.6g} '
                                 f'here (a different lr multiplier)')


def _finish(module, rec, unused, what):
    if unused:
        warnings.warn(f'{what}: {len(unused)} pickled tensors have no counterpart here (e.g. {unused[0]!r})')
    module.train(bool(rec._get('training', False)))
    return module


def _build_ours(rec, what, force_fp16):
    classes, _ = _our_classes()
    cls = classes.get(rec.class_name)
    if cls is None:
        raise ValueError(f'{what}: unknown class {rec.class_name!r} in a snapshot of this project')
    kwargs = rec.init_kwargs
    if force_fp16 and rec.class_name in ('TriPlaneGenerator', 'DualDiscriminator'):
        kwargs.update(num_fp16_res=4, conv_clamp=256)
    module = _construct(cls, rec.init_args, kwargs, what)
    _check_gains(module, rec, what)
    unused = _copy_tensors(module, rec, what)
    if 'neural_rendering_resolution' in (rec.state or {}) and hasattr(module, 'neural_rendering_resolution'):
        module.neural_rendering_resolution = int(rec.state['neural_rendering_resolution'])
    return _finish(module, rec, unused, what)


def _official_g_kwargs(rec, force_fp16):
    """Our TriPlaneGenerator kwargs for an official EG3D/PoF3D G record."""
    from training.networks_stylegan2 import MappingNetwork, SynthesisBlock, SynthesisNetwork
    kw = dict(zip(('z_dim', 'c_dim', 'w_dim', 'img_resolution', 'img_channels'), rec.init_args))
    kw.update(rec.init_kwargs)
    nodes = rec.nodes()
    backbone = nodes.get('backbone')
    if backbone is None or 'backbone.mapping.fc0' not in nodes:
        raise ValueError(f'{rec.class_name}: no backbone.mapping.fc0 in the pickle; not an EG3D/PoF3D generator')
    rk = dict(kw.pop('rendering_kwargs', {}))
    wrong = rk.pop('wrong', None)
    rk['plane_axes'] = 'correct' if wrong is False else 'legacy'
    mapping_kwargs = {k: v for k, v in dict(kw.pop('mapping_kwargs', {}) or {}).items()
                      if k in _accepted(MappingNetwork) - {'z_dim', 'c_dim', 'w_dim', 'num_ws'}}
    mapping_kwargs['lr_multiplier'] = float(nodes['backbone.mapping.fc0']._get('bias_gain', 0.01))
    allowed = _accepted(SynthesisNetwork) | _accepted(SynthesisBlock)
    synthesis = {k: v for k, v in kw.items() if k in allowed and k not in ('w_dim', 'img_resolution', 'img_channels')}
    if force_fp16:
        synthesis.update(num_fp16_res=4, conv_clamp=256)
    out = dict(z_dim=kw['z_dim'], c_dim=kw['c_dim'], w_dim=kw['w_dim'], img_resolution=kw['img_resolution'],
               img_channels=kw['img_channels'], sr_num_fp16_res=kw.get('sr_num_fp16_res', 0),
               rendering_kwargs=rk, sr_kwargs=dict(kw.get('sr_kwargs', {}) or {}), mapping_kwargs=mapping_kwargs,
               plane_resolution=int(backbone.init_kwargs.get('img_resolution', 256)),
               plane_channels=int(backbone.init_kwargs.get('img_channels', 96)) // 3,
               neural_rendering_resolution=int(rec._get('neural_rendering_resolution', 64)), **synthesis)
    if rec.class_name == 'TriPlaneGeneratorPose':
        layer1, layer2 = nodes.get('backbone.mapping.affine_layer1'), nodes.get('backbone.mapping.affine_layer2')
        if layer1 is None or layer2 is None:
            raise ValueError('TriPlaneGeneratorPose: only the two-layer pose learner (affine_layer1/2) is supported '
                             '(linear_pose pickles are not)')
        if layer2.init_kwargs.get('out_features', 2) != 2:
            raise ValueError('TriPlaneGeneratorPose: only a 2-output (h, v) pose learner is supported (cam_dim=2)')
        out.update(pose_source='learned', pose_kwargs={'lr_multiplier_pose': float(layer1._get('bias_gain', 0.01))})
    else:
        out.update(pose_source='dataset')
    return out


def _official_g_name(name):
    """Our tensor/module name -> the official PoF3D one (pose learner inside the mapping)."""
    if name == 'pose_source' or name.startswith('pose_source.'):
        return 'backbone.mapping' + name[len('pose_source'):]
    return name


def _build_official_g(rec, what, force_fp16):
    from training.generator import TriPlaneGenerator
    G = _construct(TriPlaneGenerator, (), _official_g_kwargs(rec, force_fp16), what)
    _check_gains(G, rec, what, _official_g_name)
    unused = _copy_tensors(G, rec, what, _official_g_name)
    return _finish(G, rec, unused, what)


def _build_official_d(rec, what, force_fp16):
    """EG3D's DualDiscriminator -> ours without pose head; None (with a warning) when the pickle
    has tensors we cannot place (PoF3D's pose head: its names are unknown)."""
    from training.dual_discriminator import DualDiscriminator
    kw = dict(zip(('c_dim', 'img_resolution', 'img_channels'), rec.init_args))
    kw.update(rec.init_kwargs)
    kw = {k: v for k, v in kw.items() if k in _accepted(DualDiscriminator)}
    kw.update(pose_head=False, self_condition=False)
    if force_fp16:
        kw.update(num_fp16_res=4, conv_clamp=256)
    try:
        D = _construct(DualDiscriminator, (), kw, what)
        _check_gains(D, rec, what)
        unused = _copy_tensors(D, rec, what)
    except ValueError as e:
        warnings.warn(f'{what}: not loaded ({e}); G_ema is what inference needs')
        return None
    if unused:
        warnings.warn(f'{what}: not loaded: {len(unused)} tensors have no counterpart here (e.g. {unused[0]!r}; '
                      f'official PoF3D pose-head names are unknown); G_ema is what inference needs')
        return None
    return _finish(D, rec, unused, what)


def convert_record(rec: Record, what='network', force_fp16=False):
    """A Record -> a module of our classes (see the module docstring), or None for an official
    D that cannot be mapped. ValueError with a one-line message for anything unknown."""
    if is_our_record(rec):
        return _build_ours(rec, what, force_fp16)
    if rec.class_name in _OFFICIAL_G:
        return _build_official_g(rec, what, force_fp16)
    if rec.class_name == 'DualDiscriminator':
        return _build_official_d(rec, what, force_fp16)
    raise ValueError(f'{what}: unknown network class {rec.class_name!r} (neither this project\'s nor an official '
                     f'EG3D/PoF3D generator)')


def load_network_pkl(f, force_fp16=False, allow_exec=False):
    """Load a network pickle from a binary file object -> dict(G, D, G_ema, augment_pipe, ...).

    Safe by default (nothing in the file is executed; see the module docstring); networks come
    back as our classes on the CPU. force_fp16: rebuild G/D with num_fp16_res=4, conv_clamp=256
    (EG3D's option). allow_exec: plain pickle.load, the file's embedded code runs (trusted files
    only) and objects are returned unconverted. Errors: pickle.UnpicklingError (forbidden
    global, corrupt file) or ValueError, with one-line messages.
    """
    if allow_exec:
        return pickle.load(f)
    try:
        data = RestrictedUnpickler(f).load()
    except pickle.UnpicklingError:
        raise
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, RuntimeError) as e:
        raise pickle.UnpicklingError(f'not a readable network pickle: {type(e).__name__}: '
                                     f'{" ".join(str(e).split())}') from e
    if not isinstance(data, dict) or not any(isinstance(data.get(k), Record) for k in ('G', 'D', 'G_ema')):
        raise ValueError('not a network pickle: expected a dict with G, D and G_ema networks '
                         '(TensorFlow StyleGAN pickles are not supported)')
    out = dict(data)
    for key, value in data.items():
        if isinstance(value, Record):
            try:
                out[key] = convert_record(value, key, force_fp16)
            except ValueError as e:
                if key != 'augment_pipe':
                    raise
                warnings.warn(f'{e}; set to None (not needed for inference)')
                out[key] = None
    return out


def load_network(network, key='G_ema', device='cpu'):
    """The network `key` of a pickle path/URL (a tuple of keys: a tuple of networks, the file read
    once), on `device`, eval mode, requires_grad False. ValueError with a one-line message naming
    `network` when it cannot be read or lacks the network."""
    try:
        with dnnlib.util.open_url(network, verbose=False) as f:
            data = load_network_pkl(f)
    except (OSError, ValueError, pickle.UnpicklingError) as e:
        raise ValueError(f'{network}: {" ".join(str(e).split())}') from e
    keys = (key,) if isinstance(key, str) else tuple(key)
    for k in keys:
        if not isinstance(data.get(k), torch.nn.Module):
            raise ValueError(f'{network}: the pickle has no usable {k!r}')
    nets = tuple(data[k].eval().requires_grad_(False).to(device) for k in keys)
    return nets[0] if isinstance(key, str) else nets
