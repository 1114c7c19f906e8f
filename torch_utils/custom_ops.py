"""The one place that decides whether a fast (Triton) kernel may run.

Every op in `torch_utils/ops` has a pure-PyTorch reference and, where it pays off, a
Triton kernel. Ops never import Triton themselves; they ask this module:

    kern = custom_ops.get_kernel('bias_act', loader)    # lazy, cached, None on failure
    out = custom_ops.call('bias_act', kernel_fn, ref_fn)  # kernel, or reference + 1 warning

Rules (DEVELOPERS.md, issue 2):
- Loading is lazy and cached per name: the first use imports/builds, later uses are free.
- Any failure (Triton missing, import error, compile error, launch error) prints a single
  one-line warning per kernel and the reference path is used from then on. Never a crash.
- `POF3D_IMPL=ref` in the environment forces the reference everywhere (debugging, A/B
  measurements).
- On CPU tensors a kernel runs only under the Triton interpreter (`TRITON_INTERPRET=1`),
  which is how CI checks the kernels without a GPU.
"""

import importlib
import os
import warnings
from typing import Any, Callable, Dict, Optional

import torch

# EG3D/StyleGAN2 keep a module-level verbosity knob; kept for scripts that set it.
verbosity = 'brief'  # 'none', 'brief' or 'full'

_kernels: Dict[str, Any] = {}     # name -> loaded kernel module/object, or None if unusable
_disabled: Dict[str, str] = {}    # name -> one-line reason the kernel was switched off


class KernelUnavailable(RuntimeError):
    """Raised by a loader to say 'no kernel here' without it counting as a bug."""


def _warn_once(name: str, reason: str) -> None:
    if name in _disabled:
        return
    _disabled[name] = reason
    if verbosity != 'none':
        warnings.warn(f'custom_ops: {name} kernel unavailable ({reason}); using the PyTorch reference',
                      RuntimeWarning, stacklevel=3)


def _one_line(err: BaseException) -> str:
    text = f'{type(err).__name__}: {err}'.strip().splitlines()
    return text[0][:200] if text else type(err).__name__


def force_reference() -> bool:
    """True when the environment asks for the reference everywhere (`POF3D_IMPL=ref`)."""
    return os.environ.get('POF3D_IMPL', '').strip().lower() == 'ref'


def interpreter_enabled() -> bool:
    """True when Triton kernels are interpreted on CPU (`TRITON_INTERPRET=1`)."""
    return os.environ.get('TRITON_INTERPRET', '0') == '1'


def triton_available() -> bool:
    """True when `import triton` works (cached by Python's import system)."""
    try:
        importlib.import_module('triton')
        return True
    except Exception:
        return False


def wants_kernel(impl: str, *tensors: Optional[torch.Tensor]) -> bool:
    """Should an op called with `impl` on these tensors try its kernel?

    impl='ref'    never.
    impl='cuda'   (the StyleGAN2 default) when every tensor is on a CUDA device.
    impl='triton' always; on CPU this only works under TRITON_INTERPRET=1, otherwise the
                  kernel fails to launch and `call` falls back with a warning.
    """
    if impl not in ('ref', 'cuda', 'triton'):
        raise ValueError(f"impl must be 'ref', 'cuda' or 'triton', got {impl!r}")
    if impl == 'ref' or force_reference():
        return False
    present = [t for t in tensors if t is not None]
    if impl == 'cuda':
        return len(present) > 0 and all(t.is_cuda for t in present)
    return True


def get_kernel(name: str, loader: Callable[[], Any]) -> Optional[Any]:
    """Load kernel `name` once with `loader()`; return it, or None (with one warning) on failure."""
    if name in _kernels:
        return _kernels[name]
    kern = None
    if name in _disabled:
        pass
    elif not triton_available():
        _warn_once(name, 'triton is not installed')
    else:
        try:
            kern = loader()
        except Exception as err:  # any failure means "use the reference", never a crash
            _warn_once(name, _one_line(err))
            kern = None
    _kernels[name] = kern
    return kern


def call(name: str, kernel_fn: Callable[[], Any], ref_fn: Callable[[], Any]) -> Any:
    """Run `kernel_fn()`; if it raises, switch kernel `name` off for good and run `ref_fn()`.

    Used around every kernel launch (forward and backward), so a compile error that only
    shows for one dtype or shape degrades to the reference instead of killing training.
    """
    if name in _disabled:
        return ref_fn()
    try:
        return kernel_fn()
    except Exception as err:
        _warn_once(name, _one_line(err))
        _kernels[name] = None
        return ref_fn()


def is_disabled(name: str) -> bool:
    """True once kernel `name` has failed and fallen back (tests and benchmarks read this)."""
    return name in _disabled


def reset(name: Optional[str] = None) -> None:
    """Forget cached load results and failures (for tests), for one kernel or all."""
    names = [name] if name is not None else list(set(_kernels) | set(_disabled))
    for n in names:
        _kernels.pop(n, None)
        _disabled.pop(n, None)


def get_plugin(module_name: str, *args, **kwargs):
    """StyleGAN2/EG3D API: built a C++/CUDA extension. This project ships Triton kernels
    instead, so there is nothing to compile; calling it is a clear error, not a build."""
    raise RuntimeError(f'custom_ops.get_plugin({module_name!r}): this codebase has no C++/CUDA '
                       'plugins; its fast kernels are Triton (see torch_utils/custom_ops.py)')
