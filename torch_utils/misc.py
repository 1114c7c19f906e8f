"""Miscellaneous PyTorch helpers with the StyleGAN2/EG3D `torch_utils.misc` API."""

import contextlib
import re
import warnings
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch

import dnnlib

# ----------------------------------------------------------------------------
# Cached constant tensors (avoid re-uploading the same small tensor every call)

_constant_cache: Dict[Any, torch.Tensor] = {}


def constant(value, shape=None, dtype=None, device=None, memory_format=None) -> torch.Tensor:
    """A cached, read-only-by-convention tensor holding `value`, broadcast to `shape`."""
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device('cpu')
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key, None)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor, _ = torch.broadcast_tensors(tensor, torch.empty(shape))
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None):
    """Kept for EG3D scripts; modern PyTorch has torch.nan_to_num."""
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf, out=out)


# ----------------------------------------------------------------------------
# Shape checks


@contextlib.contextmanager
def suppress_tracer_warnings():
    """Silence TracerWarnings from shape checks while a module is being traced."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        yield


def assert_shape(tensor: torch.Tensor, ref_shape: Sequence[Optional[int]]) -> None:
    """Raise AssertionError unless tensor.shape matches ref_shape (None = any size).

    Entries of ref_shape may also be tensors (symbolic sizes while tracing).
    """
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'Wrong number of dimensions: got {tensor.ndim}, expected {len(ref_shape)}')
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(torch.as_tensor(size), ref_size), f'Wrong size for dimension {idx}')
        elif isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(size, torch.as_tensor(ref_size)),
                              f'Wrong size for dimension {idx}: expected {ref_size}')
        elif size != ref_size:
            raise AssertionError(f'Wrong size for dimension {idx}: got {size}, expected {ref_size}')


def profiled_function(fn):
    """Decorator: run `fn` inside a torch.autograd.profiler.record_function named after it.
    The label is skipped while no profiler runs: entering and leaving it costs ~25 us per
    call on CPU, ~0.3 ms of a batch-1 generator forward."""
    def decorator(*args, **kwargs):
        if not torch.autograd._profiler_enabled():
            return fn(*args, **kwargs)
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)
    decorator.__name__ = fn.__name__
    decorator.__doc__ = fn.__doc__
    decorator.__wrapped__ = fn
    return decorator


# ----------------------------------------------------------------------------
# Sampler that loops over a dataset forever


class InfiniteSampler(torch.utils.data.Sampler):
    """Endless index stream over a dataset, split across ranks.

    With shuffle, the order is a random permutation that is slowly perturbed: at each step
    the current item is swapped with one up to `window_size * len(dataset)` items away, so
    successive epochs differ without a full reshuffle. Deterministic given `seed`.
    """

    def __init__(self, dataset, rank: int = 0, num_replicas: int = 1, shuffle: bool = True,
                 seed: int = 0, window_size: float = 0.5):
        if len(dataset) <= 0:
            raise ValueError('InfiniteSampler: the dataset is empty')
        if num_replicas <= 0 or not 0 <= rank < num_replicas:
            raise ValueError(f'InfiniteSampler: bad rank {rank} for num_replicas {num_replicas}')
        if not 0 <= window_size <= 1:
            raise ValueError('InfiniteSampler: window_size must be in [0, 1]')
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size

    def __iter__(self) -> Iterator[int]:
        order = np.arange(len(self.dataset))
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))
        step = 0
        while True:
            pos = step % order.size
            if step % self.num_replicas == self.rank:
                yield int(order[pos])
            if window >= 2:
                other = (pos - rnd.randint(window)) % order.size
                order[pos], order[other] = order[other], order[pos]
            step += 1


# ----------------------------------------------------------------------------
# Parameters and buffers


def params_and_buffers(module: torch.nn.Module) -> List[torch.Tensor]:
    if not isinstance(module, torch.nn.Module):
        raise TypeError('params_and_buffers expects a torch.nn.Module')
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module: torch.nn.Module) -> List[Tuple[str, torch.Tensor]]:
    if not isinstance(module, torch.nn.Module):
        raise TypeError('named_params_and_buffers expects a torch.nn.Module')
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module: torch.nn.Module, dst_module: torch.nn.Module,
                            require_all: bool = False) -> None:
    """Copy every tensor of src into the same-named tensor of dst (missing names are skipped
    unless require_all). requires_grad flags of dst are kept."""
    if not isinstance(src_module, torch.nn.Module) or not isinstance(dst_module, torch.nn.Module):
        raise TypeError('copy_params_and_buffers expects two torch.nn.Modules')
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name in src_tensors:
            tensor.copy_(src_tensors[name].detach())
        elif require_all:
            raise KeyError(f'copy_params_and_buffers: {name!r} missing in the source module')


# ----------------------------------------------------------------------------
# DDP helpers


@contextlib.contextmanager
def ddp_sync(module: torch.nn.Module, sync: bool):
    """Let a DistributedDataParallel module skip its gradient all-reduce when sync is False
    (accumulation rounds); a plain module is unaffected."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError('ddp_sync expects a torch.nn.Module')
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield


def check_ddp_consistency(module: torch.nn.Module, ignore_regex: Optional[str] = None) -> None:
    """Assert that every parameter and buffer is identical on all ranks (rank 0's copy)."""
    if not isinstance(module, torch.nn.Module):
        raise TypeError('check_ddp_consistency expects a torch.nn.Module')
    for name, tensor in named_params_and_buffers(module):
        full_name = type(module).__name__ + '.' + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, full_name):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = torch.nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        if not (tensor == other).all():
            raise AssertionError(f'check_ddp_consistency: {full_name} differs across ranks')


# ----------------------------------------------------------------------------
# Module summary table


def print_module_summary(module: torch.nn.Module, inputs: Sequence[Any], max_nesting: int = 3,
                         skip_redundant: bool = True) -> Any:
    """Run module(*inputs) once and print a table of submodules: parameters, buffers,
    output shapes and dtypes. Returns the module's outputs."""
    if not isinstance(module, torch.nn.Module) or isinstance(module, torch.jit.ScriptModule):
        raise TypeError('print_module_summary expects an eager torch.nn.Module')
    if not isinstance(inputs, (tuple, list)):
        raise TypeError('print_module_summary: inputs must be a tuple or list')
    entries = _trace_module_calls(module, inputs)
    outputs = entries.pop()
    rows = _summary_rows(module, entries, max_nesting, skip_redundant)
    widths = [max(len(cell) for cell in column) for column in zip(*rows)]
    print()
    for row in rows:
        print('  '.join(cell + ' ' * (width - len(cell)) for cell, width in zip(row, widths)))
    print()
    return outputs


def _trace_module_calls(module: torch.nn.Module, inputs: Sequence[Any]) -> List[Any]:
    """Record (submodule, output tensors) for every forward call, in call order.
    The module's own return value is appended last."""
    entries: List[Any] = []

    def post_hook(mod, _inputs, outputs):
        outs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
        outs = [t for t in outs if isinstance(t, torch.Tensor)]
        entries.append(dnnlib.EasyDict(mod=mod, outputs=outs))

    hooks = [m.register_forward_hook(post_hook) for m in module.modules()]
    try:
        outputs = module(*inputs)
    finally:
        for h in hooks:
            h.remove()
    entries.append(outputs)
    return entries


def _summary_rows(module: torch.nn.Module, entries: List[Any], max_nesting: int,
                  skip_redundant: bool) -> List[List[str]]:
    names = {mod: name for name, mod in module.named_modules()}
    seen = set()
    for e in entries:
        e.unique_params = [t for t in e.mod.parameters() if id(t) not in seen]
        e.unique_buffers = [t for t in e.mod.buffers() if id(t) not in seen]
        seen |= {id(t) for t in e.unique_params + e.unique_buffers}
    if skip_redundant:
        entries = [e for e in entries if len(e.unique_params) or len(e.unique_buffers) or len(e.outputs)]
    entries = [e for e in entries if names.get(e.mod, '').count('.') < max_nesting]

    rows = [[type(module).__name__, 'Parameters', 'Buffers', 'Output shape', 'Datatype'], ['---'] * 5]
    total_params = total_buffers = 0
    for e in entries:
        name = '<top-level>' if e.mod is module else names.get(e.mod, '?')
        n_params = sum(t.numel() for t in e.unique_params)
        n_buffers = sum(t.numel() for t in e.unique_buffers)
        shapes = [str(list(t.shape)) for t in e.outputs] or ['-']
        dtypes = [str(t.dtype).split('.')[-1] for t in e.outputs] or ['-']
        rows.append([name + (':0' if len(e.outputs) >= 2 else ''), str(n_params) if n_params else '-',
                     str(n_buffers) if n_buffers else '-', shapes[0], dtypes[0]])
        for idx in range(1, len(e.outputs)):
            rows.append([name + f':{idx}', '-', '-', shapes[idx], dtypes[idx]])
        total_params += n_params
        total_buffers += n_buffers
    rows += [['---'] * 5, ['Total', str(total_params), str(total_buffers), '-', '-']]
    return rows


@contextlib.contextmanager
def seeded_global_rng(generator, device):
    """Within the block the global RNG of `device` is seeded from `generator` (one int64
    draw); its previous state is restored on exit. No-op for generator=None."""
    if generator is None:
        yield
        return
    seed = int(torch.randint(0, 2 ** 62, [], generator=generator, device=generator.device))
    device = torch.device(device)
    if device.type == 'cuda':
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.random.fork_rng(devices=[index]), torch.cuda.device(index):
            torch.cuda.manual_seed(seed)
            yield
    else:
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            yield
