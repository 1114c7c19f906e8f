"""Triton kernel for `upfirdn2d`: upsample by zero insertion, pad/crop, FIR filter, downsample.

Loaded lazily by `torch_utils/ops/upfirdn2d.py` through `custom_ops.get_kernel`; importing
this module raises when Triton cannot run here (no CUDA device and no TRITON_INTERPRET=1).

One custom op, `pof3d::upfirdn2d`, registered with `torch.library`. The op is linear in x and
its adjoint is again an upfirdn2d (flipped filter, up and down swapped, new padding), so the
backward calls the same op and it is differentiable to any order. A launch failure falls back
to the PyTorch formula below through `custom_ops.call('upfirdn2d', ...)`: one warning.

Kernel idea (polyphase): the zero-inserted, padded image is never built. For output row oy
the filter window starts at upsampled row by = oy*down - pad0; only taps ky with
(by + ky) % up == 0 hit a real input row, i.e. ky = ky0 + j*up with ky0 = (-by) mod up,
so each output pixel does ceil(fh/up) * ceil(fw/up) multiply-adds instead of fh * fw.
"""

import os

import torch
import torch.nn.functional as F
import triton  # an ImportError here is the loud failure custom_ops.get_kernel expects
import triton.language as tl

from torch_utils import custom_ops

if not (torch.cuda.is_available() or os.environ.get('TRITON_INTERPRET', '0') == '1'):
    raise custom_ops.KernelUnavailable('Triton kernels need a CUDA device (or TRITON_INTERPRET=1 on CPU)')

KERNEL_NAME = 'upfirdn2d'  # the custom_ops name under which launch failures are reported
MAX_BLOCK_H = 16  # a 16 x 64 tile = 1024 outputs per program; rows of 64 keep loads coalesced
MAX_BLOCK_W = 64


@triton.jit
def _taps(o, pad0, UP: tl.constexpr, DOWN: tl.constexpr):
    """For output coordinates o [B]: first useful tap k0 [B] and matching input index i0 [B]."""
    base = o * DOWN - pad0                  # window start, in zero-inserted (upsampled) coords
    k0 = (UP - (base % UP + UP) % UP) % UP  # (-base) mod UP, whatever sign convention % has
    i0 = (base + k0) // UP                  # exact division: base + k0 is a multiple of UP
    return k0, i0


@triton.jit
def _upfirdn2d_kernel(x_ptr, f_ptr, y_ptr, C, H, W, outH, outW, sxn, sxc, sxh, sxw, padx0, pady0,
                      UPX: tl.constexpr, UPY: tl.constexpr, DOWNX: tl.constexpr, DOWNY: tl.constexpr,
                      FH: tl.constexpr, FW: tl.constexpr, F64: tl.constexpr,
                      BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr):
    plane = tl.program_id(0)  # n * C + c on axis 0: the only grid axis allowed > 65535 programs
    n = (plane // C).to(tl.int64)
    c = (plane % C).to(tl.int64)
    oy = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    ox = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)
    ky0, iy0 = _taps(oy, pady0, UPY, DOWNY)
    kx0, ix0 = _taps(ox, padx0, UPX, DOWNX)
    x_base = x_ptr + n * sxn + c * sxc
    if F64:
        acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float64)
    else:
        acc = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    for j in tl.static_range((FH + UPY - 1) // UPY):
        ky = ky0 + j * UPY  # tap row; input row advances by one per UPY taps
        iy = iy0 + j
        ok_y = (ky < FH) & (iy >= 0) & (iy < H)
        for i in tl.static_range((FW + UPX - 1) // UPX):
            kx = kx0 + i * UPX
            ix = ix0 + i
            ok_x = (kx < FW) & (ix >= 0) & (ix < W)
            m = ok_y[:, None] & ok_x[None, :]
            v = tl.load(x_base + iy[:, None] * sxh + ix[None, :] * sxw, mask=m, other=0)
            # At most UPY*UPX distinct taps per tile: a cached gather, not a memory stream.
            w = tl.load(f_ptr + ky[:, None] * FW + kx[None, :], mask=m, other=0)
            acc += v.to(acc.dtype) * w
    y_base = y_ptr + plane.to(tl.int64) * outH * outW
    m_out = (oy < outH)[:, None] & (ox < outW)[None, :]
    tl.store(y_base + oy[:, None] * outW + ox[None, :], acc.to(y_ptr.dtype.element_ty), mask=m_out)


def _out_size(size: int, up: int, pad0: int, pad1: int, taps: int, down: int) -> int:
    return (size * up + pad0 + pad1 - taps) // down + 1


def _upfirdn2d_torch(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1) -> torch.Tensor:
    """The same contract with PyTorch ops (launch-failure fallback). Contiguous output."""
    N, C, H, W = x.shape
    if upx > 1 or upy > 1:
        z = x.new_zeros([N, C, H * upy, W * upx])
        z[:, :, ::upy, ::upx] = x
        x = z
    x = F.pad(x, [padx0, padx1, pady0, pady1])  # negative pads crop
    w = f.to(x.dtype)[None, None].expand(C, 1, *f.shape)  # conv2d is a correlation, as f expects
    return F.conv2d(x, w, groups=C)[:, :, ::downy, ::downx].contiguous()


def _launch(x, f, y, upx, upy, downx, downy, padx0, pady0) -> None:
    N, C, H, W = x.shape
    outH, outW = y.shape[2:]
    f = f.to(device=x.device, dtype=torch.float64 if x.dtype == torch.float64 else torch.float32)
    f = f.contiguous()
    block_w = min(MAX_BLOCK_W, triton.next_power_of_2(outW))
    block_h = min(MAX_BLOCK_H, triton.next_power_of_2(outH))
    grid = (N * C, triton.cdiv(outH, block_h), triton.cdiv(outW, block_w))
    _upfirdn2d_kernel[grid](x, f, y, C, H, W, outH, outW, *x.stride(), padx0, pady0,
                            UPX=upx, UPY=upy, DOWNX=downx, DOWNY=downy, FH=f.shape[0], FW=f.shape[1],
                            F64=x.dtype == torch.float64, BLOCK_H=block_h, BLOCK_W=block_w)


@torch.library.custom_op('pof3d::upfirdn2d', mutates_args=())
def _upfirdn2d_op(x: torch.Tensor, f: torch.Tensor, upx: int, upy: int, downx: int, downy: int,
                  padx0: int, padx1: int, pady0: int, pady1: int) -> torch.Tensor:
    N, C, H, W = x.shape
    outH = _out_size(H, upy, pady0, pady1, f.shape[0], downy)
    outW = _out_size(W, upx, padx0, padx1, f.shape[1], downx)
    y = x.new_empty([N, C, outH, outW])  # contiguous; x itself is read through its strides
    if y.numel() == 0:
        return y

    def kernel():
        _launch(x, f, y, upx, upy, downx, downy, padx0, pady0)
        return y

    def ref():
        return y.copy_(_upfirdn2d_torch(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1))
    return custom_ops.call(KERNEL_NAME, kernel, ref)


@_upfirdn2d_op.register_fake
def _(x, f, upx, upy, downx, downy, padx0, padx1, pady0, pady1):
    N, C, H, W = x.shape
    outH = _out_size(H, upy, pady0, pady1, f.shape[0], downy)
    outW = _out_size(W, upx, padx0, padx1, f.shape[1], downx)
    return x.new_empty([N, C, outH, outW])


def _setup(ctx, inputs, output):
    x, f = inputs[:2]
    ctx.save_for_backward(f)
    ctx.in_hw = x.shape[2:]
    ctx.args = inputs[2:]


def _backward(ctx, dy):
    """Adjoint of upfirdn2d: zero-insert dy by `down`, correlate with the flipped filter
    (= convolve), crop the forward padding, keep every `up`-th sample. Pads chosen so the
    result is exactly [N, C, H, W]: the left pad aligns tap 0 of the flipped filter with the
    first input sample; the right pad is whatever makes the length come out to W."""
    (f,) = ctx.saved_tensors
    H, W = ctx.in_hw
    upx, upy, downx, downy, padx0, padx1, pady0, pady1 = ctx.args
    if not ctx.needs_input_grad[0]:
        return (None,) * 10
    fh, fw = f.shape
    outH, outW = dy.shape[2:]
    px0, py0 = fw - padx0 - 1, fh - pady0 - 1
    px1 = W * upx - outW * downx + padx0 - upx + 1
    py1 = H * upy - outH * downy + pady0 - upy + 1
    dx = torch.ops.pof3d.upfirdn2d(dy, f.flip([0, 1]), downx, downy, upx, upy, px0, px1, py0, py1)
    return (dx,) + (None,) * 9  # f is a constant (no gradient), the rest are ints


_upfirdn2d_op.register_autograd(_backward, setup_context=_setup)


def upfirdn2d(x: torch.Tensor, f2d: torch.Tensor, upx: int, upy: int, downx: int, downy: int,
              padx0: int, padx1: int, pady0: int, pady1: int) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-correlate, downsample (StyleGAN2 semantics).

    x:   [N, C, H, W], any float dtype (accumulated in fp32, or fp64 for fp64 inputs).
    f2d: [fh, fw] correlation weights, already flipped and gain-scaled; a constant (no grad).
    The image x is placed at every up-th sample of an [H*upy, W*upx] zero image, padded by
    (padx0, padx1, pady0, pady1) (negative values crop), valid-correlated with f2d and sampled
    at every down-th position from 0. Returns [N, C, outH, outW] with
    outH = (H*upy + pady0 + pady1 - fh) // downy + 1 (same for W), contiguous, x's dtype.
    """
    if x.ndim != 4 or f2d.ndim != 2:
        raise ValueError(f'upfirdn2d: expected x [N,C,H,W] and f2d [fh,fw], got {list(x.shape)}, {list(f2d.shape)}')
    if min(upx, upy, downx, downy) < 1:
        raise ValueError(f'upfirdn2d: up/down factors must be >= 1, got up={upx, upy} down={downx, downy}')
    outH = _out_size(x.shape[2], upy, pady0, pady1, f2d.shape[0], downy)
    outW = _out_size(x.shape[3], upx, padx0, padx1, f2d.shape[1], downx)
    if outH < 1 or outW < 1:
        raise ValueError(f'upfirdn2d: padding {padx0, padx1, pady0, pady1} leaves an empty output '
                         f'for x {list(x.shape)} and filter {list(f2d.shape)}')
    return torch.ops.pof3d.upfirdn2d(x, f2d.detach(), int(upx), int(upy), int(downx), int(downy),
                                     int(padx0), int(padx1), int(pady0), int(pady1))
