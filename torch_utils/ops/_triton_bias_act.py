"""Triton kernels for `bias_act`: y = clamp(act(x + b) * gain, -clamp, clamp).

Loaded lazily by `torch_utils/ops/bias_act.py` through `custom_ops.get_kernel`; importing
this module raises when Triton cannot run here (no CUDA device and no TRITON_INTERPRET=1),
so the dispatcher falls back to the reference with one warning.

Two custom ops, registered with `torch.library`, make the kernel differentiable to any order:
    pof3d::bias_act       y  = clamp(act(z) * gain),          z = x + b (b along `dim`)
    pof3d::bias_act_grad  dx = dy * act'(z) * gain * [|act(z) * gain| <= clamp]
The backward of `bias_act` is `bias_act_grad`; the backward of `bias_act_grad` is
`bias_act_grad` again (w.r.t. dy, it is linear in dy) plus a PyTorch formula in act''(z)
w.r.t. x and b (zero for the piecewise-linear activations, so R1's double backward through
lrelu costs two kernel launches). A launch failure inside an op falls back to the PyTorch
formulas below through `custom_ops.call('bias_act', ...)`: one warning, never a crash.
"""

import math
import os
from typing import Optional

import torch
import triton  # an ImportError here is the loud failure custom_ops.get_kernel expects
import triton.language as tl

from torch_utils import custom_ops

if not (torch.cuda.is_available() or os.environ.get('TRITON_INTERPRET', '0') == '1'):
    raise custom_ops.KernelUnavailable('Triton kernels need a CUDA device (or TRITON_INTERPRET=1 on CPU)')

KERNEL_NAME = 'bias_act'  # the custom_ops name under which launch failures are reported
ACTIVATIONS = {'linear': 0, 'relu': 1, 'lrelu': 2, 'tanh': 3, 'sigmoid': 4,
               'elu': 5, 'selu': 6, 'softplus': 7, 'swish': 8}
SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805
BLOCK = 1024  # elementwise: 1024 elements = 4 warps x 32 threads x 8 per thread

# ----------------------------------------------------------------------------------------
# Device code. ACT is constexpr, so every activation compiles to straight-line code.


@triton.jit
def _sigmoid(z):
    return 1.0 / (1.0 + tl.exp(-z))


@triton.jit
def _act(z, alpha, ACT: tl.constexpr):
    if ACT == 1:
        z = tl.maximum(z, 0.0)
    elif ACT == 2:
        z = tl.where(z > 0, z, z * alpha)
    elif ACT == 3:
        z = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)  # tanh; saturates cleanly to +-1 at +-inf
    elif ACT == 4:
        z = _sigmoid(z)
    elif ACT == 5:
        z = tl.where(z > 0, z, tl.exp(tl.minimum(z, 0.0)) - 1.0)  # StyleGAN2's elu ignores alpha
    elif ACT == 6:
        z = 1.0507009873554805 * tl.where(z > 0, z, 1.6732632423543772 * (tl.exp(tl.minimum(z, 0.0)) - 1.0))
    elif ACT == 7:
        z = tl.maximum(z, 0.0) + tl.log(1.0 + tl.exp(-tl.abs(z)))  # softplus without overflow
    elif ACT == 8:
        z = z * _sigmoid(z)
    return z


@triton.jit
def _act_grad(z, alpha, ACT: tl.constexpr):
    """d act / dz. At z == 0, relu/lrelu/elu/selu take the left branch, like torch."""
    if ACT == 0:
        d = tl.full(z.shape, 1.0, z.dtype)
    elif ACT == 1:
        d = tl.where(z > 0, 1.0, 0.0).to(z.dtype)
    elif ACT == 2:
        d = tl.where(z > 0, 1.0, alpha).to(z.dtype)
    elif ACT == 3:
        t = 1.0 - 2.0 / (tl.exp(2.0 * z) + 1.0)
        d = 1.0 - t * t
    elif ACT == 4:
        s = _sigmoid(z)
        d = s * (1.0 - s)
    elif ACT == 5:
        d = tl.where(z > 0, 1.0, tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 6:
        d = 1.0507009873554805 * tl.where(z > 0, 1.0, 1.6732632423543772 * tl.exp(tl.minimum(z, 0.0)))
    elif ACT == 7:
        d = _sigmoid(z)
    else:
        s = _sigmoid(z)
        d = s * (1.0 + z * (1.0 - s))
    return d


@triton.jit
def _load_z(x_ptr, b_ptr, offs, mask, inner, C, HAS_B: tl.constexpr, F64: tl.constexpr):
    """z = x + b in the compute dtype (fp32, or fp64 for fp64 inputs)."""
    z = tl.load(x_ptr + offs, mask=mask, other=0)
    if F64:
        z = z.to(tl.float64)
    else:
        z = z.to(tl.float32)
    if HAS_B:
        # A dense layout maps memory offset o to coordinate (o // stride[dim]) % C along dim.
        b = tl.load(b_ptr + (offs // inner) % C, mask=mask, other=0)
        z += b.to(z.dtype)
    return z


@triton.jit
def _bias_act_fwd_kernel(x_ptr, b_ptr, y_ptr, numel, inner, C, alpha, gain, clamp,
                         ACT: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr,
                         F64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)  # int64: >2^31 elements
    mask = offs < numel
    z = _load_z(x_ptr, b_ptr, offs, mask, inner, C, HAS_B, F64)
    y = _act(z, alpha, ACT) * gain
    if HAS_CLAMP:
        y = tl.minimum(tl.maximum(y, -clamp), clamp)
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bias_act_grad_kernel(dy_ptr, x_ptr, b_ptr, dx_ptr, numel, inner, C, alpha, gain, clamp,
                          ACT: tl.constexpr, HAS_B: tl.constexpr, HAS_CLAMP: tl.constexpr,
                          F64: tl.constexpr, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    z = _load_z(x_ptr, b_ptr, offs, mask, inner, C, HAS_B, F64)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0).to(z.dtype)
    dx = dy * _act_grad(z, alpha, ACT) * gain
    if HAS_CLAMP:
        # torch.clamp's gradient: passes where -clamp <= y <= clamp, zero where y was clipped.
        y = _act(z, alpha, ACT) * gain
        dx = tl.where(tl.abs(y) <= clamp, dx, 0.0)
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)

# ----------------------------------------------------------------------------------------
# PyTorch formulas: the launch-failure fallback and the second derivative.


def _torch_act(z: torch.Tensor, act: str, alpha: float) -> torch.Tensor:
    funcs = {
        'linear': lambda: z, 'relu': lambda: torch.relu(z),
        'lrelu': lambda: torch.where(z > 0, z, z * alpha), 'tanh': lambda: torch.tanh(z),
        'sigmoid': lambda: torch.sigmoid(z),
        'elu': lambda: torch.where(z > 0, z, torch.expm1(z.clamp(max=0))),
        'selu': lambda: SELU_SCALE * torch.where(z > 0, z, SELU_ALPHA * torch.expm1(z.clamp(max=0))),
        'softplus': lambda: torch.nn.functional.softplus(z), 'swish': lambda: z * torch.sigmoid(z)}
    return funcs[act]()


def _torch_act_grad(z: torch.Tensor, act: str, alpha: float, order: int) -> Optional[torch.Tensor]:
    """d^order act / dz^order for order 1 or 2; None where it is zero (piecewise-linear acts)."""
    pos = z > 0
    if act in ('linear', 'relu', 'lrelu'):
        if order == 2:
            return None
        return torch.where(pos, 1.0, {'linear': 1.0, 'relu': 0.0, 'lrelu': alpha}[act]).to(z.dtype)
    if act in ('elu', 'selu'):
        a, scale = (1.0, 1.0) if act == 'elu' else (SELU_ALPHA, SELU_SCALE)
        neg = a * torch.exp(z.clamp(max=0))
        return scale * torch.where(pos, torch.ones_like(z) if order == 1 else torch.zeros_like(z), neg)
    s = torch.sigmoid(z)
    ds = s * (1 - s)
    if act == 'tanh':
        t = torch.tanh(z)
        return 1 - t * t if order == 1 else -2 * t * (1 - t * t)
    if act == 'sigmoid':
        return ds if order == 1 else ds * (1 - 2 * s)
    if act == 'softplus':
        return s if order == 1 else ds
    return s + z * ds if order == 1 else ds * (2 + z * (1 - 2 * s))  # swish


def _add_bias(x: torch.Tensor, b: Optional[torch.Tensor], dim: int) -> torch.Tensor:
    """z = x + b broadcast along `dim`, in fp32 for half inputs."""
    z = x if x.dtype == torch.float64 else x.float()
    if b is not None:
        z = z + b.to(z.dtype).reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    return z


def _clamp_mask(z: torch.Tensor, act: str, alpha: float, gain: float, clamp: float):
    return None if clamp < 0 else (_torch_act(z, act, alpha) * gain).abs() <= clamp

# ----------------------------------------------------------------------------------------
# Host side.


def _dense(x: torch.Tensor) -> bool:
    """Layouts the kernel reads in place: the output copies x's strides (empty_like)."""
    return x.is_contiguous() or (x.ndim == 4 and x.is_contiguous(memory_format=torch.channels_last))


def _alloc_like(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x) if _dense(x) else torch.empty(x.shape, dtype=x.dtype, device=x.device)


def _launch(kernel, inputs, out, x, b, dim, act, alpha, gain, clamp) -> None:
    """Launch `kernel` elementwise over `out` (same strides as every tensor in `inputs`)."""
    numel = x.numel()
    C = x.shape[dim] if x.ndim > 0 else 1
    inner = x.stride(dim) if C > 1 else 1  # size-1 dims may carry any stride
    b_arg = b.contiguous() if b is not None else x  # dummy pointer, never read when HAS_B=False
    grid = (triton.cdiv(numel, BLOCK),)
    kernel[grid](*inputs, b_arg, out, numel, inner, C, float(alpha), float(gain), float(clamp),
                 ACT=ACTIVATIONS[act], HAS_B=b is not None, HAS_CLAMP=clamp >= 0,
                 F64=x.dtype == torch.float64, BLOCK=BLOCK)


@torch.library.custom_op('pof3d::bias_act', mutates_args=())
def _bias_act_op(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
                 alpha: float, gain: float, clamp: float) -> torch.Tensor:
    x = x if _dense(x) else x.contiguous()
    y = _alloc_like(x)
    if x.numel() == 0:
        return y

    def ref():
        out = _torch_act(_add_bias(x, b, dim), act, alpha) * gain
        return y.copy_(out.clamp(-clamp, clamp) if clamp >= 0 else out)

    def kernel():
        _launch(_bias_act_fwd_kernel, (x,), y, x, b, dim, act, alpha, gain, clamp)
        return y
    return custom_ops.call(KERNEL_NAME, kernel, ref)


@torch.library.custom_op('pof3d::bias_act_grad', mutates_args=())
def _bias_act_grad_op(dy: torch.Tensor, x: torch.Tensor, b: Optional[torch.Tensor], dim: int,
                      act: str, alpha: float, gain: float, clamp: float) -> torch.Tensor:
    if not (_dense(x) and dy.stride() == x.stride()):
        dy, x = dy.contiguous(), x.contiguous()  # the kernel walks both with one linear index
    dx = _alloc_like(x)
    if x.numel() == 0:
        return dx

    def ref():
        z = _add_bias(x, b, dim)
        out = dy.to(z.dtype) * _torch_act_grad(z, act, alpha, 1) * gain
        mask = _clamp_mask(z, act, alpha, gain, clamp)
        return dx.copy_(out if mask is None else out * mask)

    def kernel():
        _launch(_bias_act_grad_kernel, (dy, x), dx, x, b, dim, act, alpha, gain, clamp)
        return dx
    return custom_ops.call(KERNEL_NAME, kernel, ref)


@_bias_act_op.register_fake
def _(x, b, dim, act, alpha, gain, clamp):
    return _alloc_like(x)


@_bias_act_grad_op.register_fake
def _(dy, x, b, dim, act, alpha, gain, clamp):
    return _alloc_like(x) if (_dense(x) and dy.stride() == x.stride()) else torch.empty_like(
        x, memory_format=torch.contiguous_format)


def _sum_to_bias(dx: torch.Tensor, dim: int) -> torch.Tensor:
    """db [C] = sum of dx over every dim but `dim`."""
    return dx.sum(dim=[i for i in range(dx.ndim) if i != dim])


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:-5])  # the tensors (x, b) or (dy, x, b); b may be None
    ctx.args = inputs[-5:]               # (dim, act, alpha, gain, clamp)


def _bias_act_backward(ctx, dy):
    x, b = ctx.saved_tensors
    dim, act, alpha, gain, clamp = ctx.args
    dx = torch.ops.pof3d.bias_act_grad(dy, x, b, dim, act, alpha, gain, clamp)
    db = _sum_to_bias(dx, dim) if b is not None and ctx.needs_input_grad[1] else None
    return dx, db, None, None, None, None, None


def _bias_act_grad_backward(ctx, g):
    dy, x, b = ctx.saved_tensors
    dim, act, alpha, gain, clamp = ctx.args
    g_dy = g_x = g_b = None
    if ctx.needs_input_grad[0]:  # dx is linear in dy with the same per-element factor
        g_dy = torch.ops.pof3d.bias_act_grad(g, x, b, dim, act, alpha, gain, clamp)
    if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
        z = _add_bias(x, b, dim)
        d2 = _torch_act_grad(z, act, alpha, 2)
        if d2 is not None:  # act'' is zero a.e. for linear/relu/lrelu (and the clamp mask is flat)
            g_x = g * dy * d2 * gain
            mask = _clamp_mask(z, act, alpha, gain, clamp)
            g_x = (g_x if mask is None else g_x * mask).to(x.dtype)
            g_b = _sum_to_bias(g_x, dim) if b is not None else None
    return g_dy, g_x, g_b, None, None, None, None, None


_bias_act_op.register_autograd(_bias_act_backward, setup_context=_setup)
_bias_act_grad_op.register_autograd(_bias_act_grad_backward, setup_context=_setup)


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str,
             alpha: float, gain: float, clamp: float) -> torch.Tensor:
    """Fused bias + activation + gain + clamp (StyleGAN2 semantics), differentiable to any order.

    x:     [..., C, ...] any shape; C = x.shape[dim]. fp16/bf16 are computed in fp32.
    b:     [C] or None, added along `dim`.
    act:   one of ACTIVATIONS. Only lrelu reads `alpha` (its negative slope); elu and selu
           use fixed constants (torch's F.elu / F.selu), as StyleGAN2's table does.
    clamp: clip the output to [-clamp, clamp]; negative means no clamp.
    Returns y with x's shape and dtype (and x's strides for contiguous/channels_last x).
    """
    if act not in ACTIVATIONS:
        raise ValueError(f'bias_act: unknown activation {act!r}; expected one of {sorted(ACTIVATIONS)}')
    dim = dim % x.ndim if x.ndim > 0 else 0
    if b is not None and (b.ndim != 1 or b.shape[0] != x.shape[dim]):
        raise ValueError(f'bias_act: b must have shape [{x.shape[dim]}] (x.shape[{dim}]), got {list(b.shape)}')
    if not (math.isfinite(alpha) and math.isfinite(gain)):
        raise ValueError(f'bias_act: alpha and gain must be finite, got {alpha}, {gain}')
    return torch.ops.pof3d.bias_act(x, b, dim, act, float(alpha), float(gain), float(clamp))
