"""Benchmark the fused ops: PyTorch reference vs Triton kernel, forward and forward+backward.

    python bench/bench_ops.py --size small                  # CPU: reference timings only
    python bench/bench_ops.py --device cuda --size large    # GPU: ref vs triton table

Ops timed (the shapes a StyleGAN2/EG3D synthesis block sees):
    bias_act      lrelu, bias along C, clamp 256 (the conv_clamp of the generator)
    upsample2d    2x with the [1,3,3,1] filter
    downsample2d  2x with the [1,3,3,1] filter
Triton on a CPU tensor only runs under the interpreter, whose timings mean nothing, so on a
machine without CUDA the script times the reference and says so.
"""

import argparse
import os
import sys
import time
from typing import Callable, List, Optional

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_utils import custom_ops  # noqa: E402
from torch_utils.ops import bias_act, upfirdn2d  # noqa: E402

SIZES = {  # [N, C, H, W] per size preset
    'small': [[2, 32, 32, 32]],
    'medium': [[4, 128, 64, 64], [4, 64, 128, 128]],
    'large': [[8, 512, 32, 32], [8, 256, 128, 128], [8, 128, 256, 256]],
}


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], None], device: torch.device, min_time: float = 0.2, warmup: int = 2) -> float:
    """Median wall time of fn() in ms over repeats totalling ~min_time seconds (after warmup,
    which also pays for Triton compilation)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times: List[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < min_time or len(times) < 3:
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def _ops(device: torch.device):
    """name -> op(x [N,C,H,W], b [C] or None, impl) -> Tensor; b is only read by bias_act."""
    f = upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    return {
        'bias_act': lambda x, b, impl: bias_act.bias_act(x, b, act='lrelu', clamp=256, impl=impl),
        'upsample2d': lambda x, b, impl: upfirdn2d.upsample2d(x, f, up=2, impl=impl),
        'downsample2d': lambda x, b, impl: upfirdn2d.downsample2d(x, f, down=2, impl=impl),
    }


def bench_one(op: Callable, x: torch.Tensor, b: Optional[torch.Tensor], impl: str, device: torch.device):
    """(forward ms, forward+backward ms) for one op/impl."""
    def fwd():
        with torch.no_grad():
            op(x, b, impl)

    def fwd_bwd():
        xg = x.detach().requires_grad_()
        y = op(xg, b, impl)
        y.backward(torch.ones_like(y))
    return time_ms(fwd, device), time_ms(fwd_bwd, device)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--impl', choices=['both', 'ref', 'triton'], default='both')
    parser.add_argument('--size', choices=list(SIZES), default='small')
    parser.add_argument('--dtype', choices=['float32', 'float16'], default='float32')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    impls = ['ref', 'triton'] if args.impl == 'both' else [args.impl]
    if device.type != 'cuda' and 'triton' in impls:
        print('note: the Triton kernels need a CUDA device (CPU runs only under the interpreter, '
              'whose timings are meaningless); timing the reference only.')
        impls = ['ref']
    print(f'device={device} dtype={args.dtype} size={args.size} torch={torch.__version__}')
    print(f'{"op":<13} {"shape [N,C,H,W]":<20} {"impl":<7} {"fwd ms":>9} {"fwd+bwd ms":>11}')
    for name, op in _ops(device).items():
        for shape in SIZES[args.size]:
            x = torch.randn(shape, device=device, dtype=dtype)
            b = torch.randn(shape[1], device=device, dtype=dtype) if name == 'bias_act' else None
            for impl in impls:
                fwd, fwd_bwd = bench_one(op, x, b, impl, device)
                kernel = name if name == 'bias_act' else 'upfirdn2d'
                note = '  (fell back to ref)' if impl == 'triton' and custom_ops.is_disabled(kernel) else ''
                print(f'{name:<13} {str(shape):<20} {impl:<7} {fwd:9.3f} {fwd_bwd:11.3f}{note}')


if __name__ == '__main__':
    main()
