"""Fused multiply-add a * b + c with broadcasting (StyleGAN2 `fma` API).

Forward is one `torch.addcmul`, so the product a*b is never stored. The backward sums each
gradient back to its operand's shape and is built from differentiable ops, so higher
derivatives work.
"""

from typing import Sequence

import torch


def _unbroadcast(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Sum x over the dimensions that broadcasting added or expanded to reach x.shape."""
    shape = tuple(shape)
    lead = x.ndim - len(shape)
    dims = list(range(lead)) + [lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1]
    if dims:
        x = x.sum(dim=dims, keepdim=True)
    return x.reshape(shape)


class _FusedMultiplyAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, c):
        ctx.save_for_backward(a, b)
        ctx.c_shape = c.shape
        return torch.addcmul(c, a, b)

    @staticmethod
    def backward(ctx, dout):
        a, b = ctx.saved_tensors
        da = _unbroadcast(dout * b, a.shape) if ctx.needs_input_grad[0] else None
        db = _unbroadcast(dout * a, b.shape) if ctx.needs_input_grad[1] else None
        dc = _unbroadcast(dout, ctx.c_shape) if ctx.needs_input_grad[2] else None
        return da, db, dc


def fma(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """a * b + c; the three tensors broadcast together, the output has the broadcast shape."""
    for name, t in (('a', a), ('b', b), ('c', c)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f'fma: {name} must be a torch.Tensor, got {type(t).__name__}')
    try:
        torch.broadcast_shapes(a.shape, b.shape, c.shape)
    except RuntimeError as err:
        raise ValueError(f'fma: shapes {tuple(a.shape)}, {tuple(b.shape)}, {tuple(c.shape)} '
                         f'do not broadcast') from err
    return _FusedMultiplyAdd.apply(a, b, c)
