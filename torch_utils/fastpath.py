"""The one switch for the PyTorch fast paths (issue "Speed and memory"; docs/performance.md).

Two layers make the code fast, and each has its own switch:
- Triton kernels (GPU): `torch_utils.custom_ops`, forced off by `POF3D_IMPL=ref`.
- Fast PyTorch formulations (any device, measured on CPU), switched by THIS module: the
  same math as the straightforward port of the reference, written with fewer wasted
  operations (grouped convolutions for FIR filters, a one-pass discriminator, cheaper
  plane averaging and sample merging, ...). Each call site asks `enabled()` at call time,
  so a process can run both paths side by side (bench/throughput.py does).

Resolution order of `enabled()`:
1. an active `override(on)` context (or `set_enabled(on)`);
2. the environment variable `POF3D_FASTPATH`: '0' / 'false' / 'off' / 'no' -> off,
   any other non-empty value -> on;
3. unset: on, unless `POF3D_IMPL=ref` asks for the reference everywhere.

Both paths are deterministic on CPU; tests/test_fastpath.py checks that they agree
(tolerances stated there). Lives in torch_utils (not training) because the ops and the
pickled network sources may import only torch_utils / dnnlib.
"""

import contextlib
import os
from typing import Iterator, Optional

ENV_VAR = 'POF3D_FASTPATH'
_OFF_VALUES = ('0', 'false', 'off', 'no')

_override: Optional[bool] = None   # set by override() / set_enabled(); None = read the environment


def _from_environment() -> bool:
    value = os.environ.get(ENV_VAR, '').strip().lower()
    if value:
        return value not in _OFF_VALUES
    return os.environ.get('POF3D_IMPL', '').strip().lower() != 'ref'


def enabled() -> bool:
    """True when the fast PyTorch formulations should run (see the module docstring)."""
    return _override if _override is not None else _from_environment()


def set_enabled(on: Optional[bool]) -> None:
    """Force the fast paths on (True) or off (False) for the process; None: back to the environment."""
    global _override
    _override = None if on is None else bool(on)


@contextlib.contextmanager
def override(on: bool) -> Iterator[None]:
    """Within the block the fast paths are on (True) or off (False); the previous setting
    is restored on exit. Not thread-safe (a process-wide flag, like conv2d_gradfix's)."""
    global _override
    old = _override
    _override = bool(on)
    try:
        yield
    finally:
        _override = old
