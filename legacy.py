"""Load network pickles (StyleGAN2/EG3D/PoF3D format) without executing the code they carry.

A network pickle (`network-snapshot-*.pkl`) is dict(G, D, G_ema, augment_pipe,
training_set_kwargs). Its networks are `torch_utils.persistence` objects: each carries the
full source of its module, and a plain `pickle.load` *executes* that source (and whatever
else the pickle names). `load_network_pkl` never does:

1. The restricted unpickler of torch_utils/safe_pickle.py (the project's one safe loading
   path) resolves only an allow-list of globals; storage bytes go through
   `torch.load(..., weights_only=True)`. Persistent objects and instances of plain torch.nn /
   `training.*` / `torch_utils.*` classes (e.g. EG3D's ImportanceRenderer) become inert
   `Record`s (class name, source text - never executed - and pickled state). Any other global
   is a one-line `safe_pickle.UnsafePickleError` (a pickle.UnpicklingError) that names it.
2. Records are mapped onto *our* classes, built from the pickled constructor kwargs
   (`_init_kwargs`), and the tensors are copied by name:
   - our own snapshots: the class of the same name (TriPlaneGenerator, DualDiscriminator,
     networks_stylegan2.*, ...). A record is ours when its module source (text, never
     executed) has the line `PROJECT_MODULE = 'pof3d-clean-room'` at the start of a line, which
     every network module of this project defines. Pickles written before that line existed
     are recognised by the fallback: their sources cite the design spec ('SPEC §'), which
     EG3D/PoF3D sources never do;
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

import functools
import inspect
import math
import pickle
import re
import warnings

import numpy as np
import torch

import dnnlib
from torch_utils import misc, safe_pickle
from torch_utils.safe_pickle import Record

_OUR_SOURCE_LINE = re.compile(r"^PROJECT_MODULE = 'pof3d-clean-room'", re.MULTILINE)   # see the docstring
_PRE_MARKER_CITATION = 'SPEC §'   # fallback for pickles whose sources predate PROJECT_MODULE
_OFFICIAL_G = ('TriPlaneGenerator', 'TriPlaneGeneratorPose')


# ---------------------------------------------------------------------------------------------
# Records -> our classes.

def _our_modules():
    """This project's network modules: the ones whose classes a snapshot of ours holds."""
    from training import dual_discriminator, film_siren, generator, networks_stylegan2, pose_head, pose_sources
    from training.rendering import decoder
    from training import feature_volume, neural_renderer, point_mlp, superresolution
    modules = [networks_stylegan2, superresolution, decoder, pose_head, pose_sources, dual_discriminator, film_siren,
               generator, feature_volume, point_mlp, neural_renderer]
    try:
        from training import augment   # optional: only once the project has an augmentation pipeline
        modules.append(augment)
    except ImportError:
        pass
    return modules


@functools.lru_cache(maxsize=None)
def _our_classes():
    """{class name: class} of this project's network modules."""
    classes = {}
    for mod in _our_modules():
        for name, obj in vars(mod).items():
            if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and obj.__module__ == mod.__name__:
                classes[name] = obj
    return classes


def is_our_record(rec: Record) -> bool:
    """True when the record's (never executed) source is one of this project's modules (the
    rule: see the module docstring)."""
    if rec.module_src is None:
        return False
    return bool(_OUR_SOURCE_LINE.search(rec.module_src)) or _PRE_MARKER_CITATION in rec.module_src


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
    cls = _our_classes().get(rec.class_name)
    if cls is None:
        raise ValueError(f'{what}: unknown class {rec.class_name!r} in a snapshot of this project')
    kwargs = rec.init_kwargs
    if force_fp16 and rec.class_name in ('TriPlaneGenerator', 'DualDiscriminator') \
            and kwargs.get('representation', 'triplane') == 'triplane':   # the others have no fp16 layers
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
    data = safe_pickle.load(f, allow_exec)
    if allow_exec:
        return data
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


def load_network_file(network, allow_exec=False, force_fp16=False) -> dict:
    """load_network_pkl of a path/URL. ValueError with a one-line message naming `network`
    (unreadable, truncated, refused global, not a network pickle)."""
    try:
        with dnnlib.util.open_url(network, verbose=False) as f:
            return load_network_pkl(f, force_fp16=force_fp16, allow_exec=allow_exec)
    except (OSError, ValueError, pickle.UnpicklingError) as e:
        raise ValueError(f'{network}: {" ".join(str(e).split())}') from None


def load_network(network, key='G_ema', device='cpu', allow_exec=False):
    """The network `key` of a pickle path/URL (a tuple of keys: a tuple of networks, the file read
    once), on `device`, eval mode, requires_grad False. ValueError with a one-line message naming
    `network` when it cannot be read or lacks the network."""
    data = load_network_file(network, allow_exec)
    keys = (key,) if isinstance(key, str) else tuple(key)
    for k in keys:
        if not isinstance(data.get(k), torch.nn.Module):
            raise ValueError(f'{network}: the pickle has no usable {k!r}')
    nets = tuple(data[k].eval().requires_grad_(False).to(device) for k in keys)
    return nets[0] if isinstance(key, str) else nets
