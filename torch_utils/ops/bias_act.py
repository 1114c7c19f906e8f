"""Fused bias + activation + gain + clamp (StyleGAN2 `bias_act` API, SPEC §11.1).

    y = clamp(act(x + b, alpha) * gain, -clamp, clamp)

`bias_act` validates and resolves its arguments, then runs either the Triton kernel
(`torch_utils/ops/_triton_bias_act.py`, chosen by `torch_utils.custom_ops`) or the
pure-PyTorch reference `_bias_act_ref`, which autograd differentiates to every order.
"""

import dataclasses
import importlib
import math
from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F

from torch_utils import custom_ops


@dataclasses.dataclass(frozen=True)
class ActivationSpec:
    """One row of the activation table.

    func:         f(x, alpha) -> tensor, the activation itself (alpha only matters for lrelu).
    def_alpha:    alpha used when the caller passes alpha=None.
    def_gain:     gain used when the caller passes gain=None (sqrt(2) keeps the second
                  moment of relu-like outputs at 1, the equalized-lr convention).
    cuda_idx:     the activation's index in the StyleGAN2 CUDA kernel (kept for lineage).
    ref:          which tensor the first derivative is expressed in: 'x' (input),
                  'y' (output) or '' (constant derivative).
    has_2nd_grad: whether the second derivative is non-zero somewhere.
    """
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    cuda_idx: int
    ref: str
    has_2nd_grad: bool


def _linear(x, alpha):
    return x


def _swish(x, alpha):
    return torch.sigmoid(x) * x


activation_funcs: Dict[str, ActivationSpec] = {
    'linear':   ActivationSpec(_linear, 0.0, 1.0, 1, '', False),
    'relu':     ActivationSpec(lambda x, alpha: F.relu(x), 0.0, math.sqrt(2), 2, 'y', False),
    'lrelu':    ActivationSpec(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, math.sqrt(2), 3, 'y', False),
    'tanh':     ActivationSpec(lambda x, alpha: torch.tanh(x), 0.0, 1.0, 4, 'y', True),
    'sigmoid':  ActivationSpec(lambda x, alpha: torch.sigmoid(x), 0.0, 1.0, 5, 'y', True),
    'elu':      ActivationSpec(lambda x, alpha: F.elu(x), 0.0, 1.0, 6, 'y', True),
    'selu':     ActivationSpec(lambda x, alpha: F.selu(x), 0.0, 1.0, 7, 'y', True),
    'softplus': ActivationSpec(lambda x, alpha: F.softplus(x), 0.0, 1.0, 8, 'y', True),
    'swish':    ActivationSpec(_swish, 0.0, math.sqrt(2), 9, 'x', True),
}


def _load_kernel():
    return importlib.import_module('torch_utils.ops._triton_bias_act')


def _bias_act_ref(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
                  alpha: float, gain: float, clamp: float) -> torch.Tensor:
    """Reference with RESOLVED arguments (the kernel contract; clamp < 0 means no clamp).

    x: [..] any shape; b: [x.shape[dim]] or None; returns a new tensor shaped like x.
    """
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = activation_funcs[act].func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _resolve(x, b, dim, act, alpha, gain, clamp):
    """Check the public arguments; return (dim, alpha, gain, clamp) resolved to plain numbers."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f'bias_act: x must be a torch.Tensor, got {type(x).__name__}')
    if act not in activation_funcs:
        raise ValueError(f'bias_act: unknown act {act!r}; expected one of {sorted(activation_funcs)}')
    if not isinstance(dim, int):
        raise ValueError(f'bias_act: dim must be an int, got {dim!r}')
    if -x.ndim <= dim < x.ndim:
        dim = dim % x.ndim
    elif b is not None:
        raise ValueError(f'bias_act: dim={dim} is not a dimension of a {x.ndim}-D tensor')
    else:
        dim = 0  # without a bias, dim is unused (StyleGAN2 accepts any dim then)
    if b is not None:
        if not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[dim]:
            raise ValueError(f'bias_act: b must be a 1-D tensor of length x.shape[{dim}]; '
                             f'got {getattr(b, "shape", b)} for x of shape {tuple(x.shape)}')
        if b.dtype != x.dtype:
            raise ValueError(f'bias_act: b.dtype ({b.dtype}) must equal x.dtype ({x.dtype})')
    if clamp is not None and not clamp >= 0:
        raise ValueError(f'bias_act: clamp must be None or >= 0, got {clamp!r}')
    spec = activation_funcs[act]
    alpha = float(alpha if alpha is not None else spec.def_alpha)
    gain = float(gain if gain is not None else spec.def_gain)
    clamp = float(clamp if clamp is not None else -1)
    return dim, alpha, gain, clamp


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = 'linear',
             alpha: Optional[float] = None, gain: Optional[float] = None,
             clamp: Optional[float] = None, impl: str = 'cuda') -> torch.Tensor:
    """Add bias `b` along `dim`, apply `act`, scale by `gain`, clamp to [-clamp, clamp].

    Args:
        x:     input tensor, any shape, e.g. [N, C, H, W] or [N, C].
        b:     bias [x.shape[dim]] (same dtype as x) or None.
        dim:   the dimension of x that `b` runs along.
        act:   a key of `activation_funcs`.
        alpha: activation parameter (lrelu slope); None = the table default (0.2 for lrelu).
        gain:  output scale; None = the table default (sqrt(2) for relu, lrelu, swish).
        clamp: None for no clamp, else a value >= 0 applied after the gain.
        impl:  'ref', 'cuda' (kernel when all tensors are on CUDA) or 'triton' (always try).

    Returns:
        Tensor shaped like x. Never modifies x or b.
    """
    dim, alpha, gain, clamp = _resolve(x, b, dim, act, alpha, gain, clamp)
    if custom_ops.wants_kernel(impl, x, b):
        kern = custom_ops.get_kernel('bias_act', _load_kernel)
        if kern is not None:
            return custom_ops.call('bias_act',
                                   lambda: kern.bias_act(x, b, dim, act, alpha, gain, clamp),
                                   lambda: _bias_act_ref(x, b, dim, act, alpha, gain, clamp))
    return _bias_act_ref(x, b, dim, act, alpha, gain, clamp)
