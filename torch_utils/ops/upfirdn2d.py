"""Upsample, FIR-filter, downsample (StyleGAN2 `upfirdn2d` API, SPEC §11.1).

For each image channel, independently:
  1. upsample by inserting up-1 zeros after every sample (per axis);
  2. pad by [padx0, padx1, pady0, pady1] (negative values crop);
  3. convolve with the FIR filter f (a true convolution unless flip_filter=True), keeping
     only outputs where the filter fits entirely ("valid");
  4. keep every down-th sample (per axis), starting at the first.

Output size per axis: (in * up + pad0 + pad1 - (fsize - 1) + down - 1) // down.
The filter is scaled by gain ** (f.ndim / 2), so a separable (1-D) filter applied on both
axes contributes `gain` overall, as a 2-D filter does.

Dispatch: the Triton kernel (`_triton_upfirdn2d.py`) gets a 2-D correlation weight with the
flip and gain folded in (`_prepare_filter_2d`); a 1-D filter becomes two kernel passes.
`_upfirdn2d_torch_2d` is the pure-PyTorch version of that exact kernel contract, one grouped
convolution per pass, run when no kernel does. The straightforward port it replaced (channels
folded into the batch) lives in tests/reference/upfirdn2d.py for the equivalence tests.
"""

import importlib
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from torch_utils import custom_ops

Pad = Union[int, Sequence[int]]


def _parse_scaling(scaling: Union[int, Sequence[int]], name: str = 'scaling') -> Tuple[int, int]:
    """int s -> (s, s); [sx, sy] -> (sx, sy). Both must be ints >= 1."""
    if isinstance(scaling, int):
        scaling = [scaling, scaling]
    if (not isinstance(scaling, (list, tuple)) or len(scaling) != 2
            or not all(isinstance(s, int) and s >= 1 for s in scaling)):
        raise ValueError(f'{name} must be an int >= 1 or a pair [x, y] of them, got {scaling!r}')
    return int(scaling[0]), int(scaling[1])


def _parse_padding(padding: Pad) -> Tuple[int, int, int, int]:
    """int p -> (p, p, p, p); [px, py] -> (px, px, py, py); [x0, x1, y0, y1] as given."""
    if isinstance(padding, int):
        padding = [padding, padding]
    if not isinstance(padding, (list, tuple)) or not all(isinstance(p, int) for p in padding):
        raise ValueError(f'padding must be an int or a list of 2 or 4 ints, got {padding!r}')
    if len(padding) == 2:
        px, py = padding
        padding = [px, px, py, py]
    if len(padding) != 4:
        raise ValueError(f'padding must have 1, 2 or 4 entries, got {padding!r}')
    return int(padding[0]), int(padding[1]), int(padding[2]), int(padding[3])


def _get_filter_size(f: Optional[torch.Tensor]) -> Tuple[int, int]:
    """(fw, fh) of a filter; None counts as 1x1, a 1-D filter is square."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError(f'filter must be None or a 1-D/2-D tensor, got {getattr(f, "shape", f)}')
    return int(f.shape[-1]), int(f.shape[0])


def setup_filter(f, device=torch.device('cpu'), normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """Turn filter taps into the float32 tensor the other functions expect.

    Args:
        f:         None (-> [1]), a number, or taps as a 1-D/2-D array-like.
        normalize: divide by the sum of the taps (after the 1-D -> 2-D outer product).
        separable: keep a 1-D filter 1-D; None = only when it has >= 8 taps (StyleGAN2).
        gain:      multiply by gain ** (f.ndim / 2).

    Returns:
        [fw] (separable) or [fh, fw] float32 tensor on `device`.
        Example: [1, 3, 3, 1] -> 4x4 outer product / 64 (sums to 1).
    """
    f = torch.as_tensor(1 if f is None else f, dtype=torch.float32)
    if f.ndim not in (0, 1, 2) or f.numel() == 0:
        raise ValueError(f'setup_filter: expected a non-empty scalar, 1-D or 2-D filter, got {tuple(f.shape)}')
    if f.ndim == 0:
        f = f.reshape(1)
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = torch.outer(f, f)
    if f.ndim != (1 if separable else 2):
        raise ValueError('setup_filter: separable=True needs a 1-D filter')
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def _prepare_filter_2d(f: Optional[torch.Tensor], flip_filter: bool, gain: float,
                       dtype: torch.dtype, device: torch.device) -> List[torch.Tensor]:
    """Kernel-ready CORRELATION weights: flip (unless flip_filter) and gain folded in.

    Returns [f2d [fh, fw]] for a 2-D (or None) filter, or [fx [1, fw], fy [fh, 1]] for a
    1-D filter (first the horizontal pass, then the vertical one), each scaled by gain**0.5.
    """
    if f is None:
        f = torch.ones([1, 1], dtype=dtype, device=device)
    f = f.to(dtype=dtype, device=device)
    if not flip_filter:  # conv2d correlates, so a true convolution needs the flipped taps
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    if f.ndim == 2:
        return [f]
    return [f.reshape(1, -1), f.reshape(-1, 1)]


def _plan(x, f, up, down, padding, flip_filter, gain):
    """The list of 2-D kernel passes (f2d, upx, upy, downx, downy, px0, px1, py0, py1)."""
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    weights = _prepare_filter_2d(f, flip_filter, gain, x.dtype, x.device)
    if len(weights) == 1:
        return [(weights[0], upx, upy, downx, downy, px0, px1, py0, py1)]
    fx, fy = weights  # the x and y passes commute, each pads/crops only its own axis
    return [(fx, upx, 1, downx, 1, px0, px1, 0, 0), (fy, 1, upy, 1, downy, 0, 0, py0, py1)]


def _crop_or_pad(y: torch.Tensor, dim: int, start: int, length: int) -> torch.Tensor:
    """y[start:start+length] along `dim` (3 = width, 2 = height), zeros where out of range."""
    size = y.shape[dim]
    if start >= 0 and start + length <= size:
        return y.narrow(dim, start, length)
    pad = [-start, start + length - size]
    return F.pad(y, pad if dim == 3 else [0, 0] + pad)


def _upfirdn2d_torch_2d(x: torch.Tensor, f2d: torch.Tensor, upx: int, upy: int, downx: int,
                        downy: int, padx0: int, padx1: int, pady0: int, pady1: int) -> torch.Tensor:
    """The kernel contract in PyTorch: x [N, C, H, W], f2d [fh, fw] correlation weight ->
    [N, C, (H*upy + pady0 + pady1 - fh + 1 + downy - 1) // downy, (same for x)].

    One grouped (depthwise) convolution: the straightforward port folds channels into the
    batch ([N*C, 1, H, W]), a shape for which the CPU convolution backends are 20-90x slower.
    Zero insertion followed by correlation with f is a strided transposed convolution with
    the flipped f: its full output T (length (H-1)*up + fh) relates to the reference's by
    out[o] = T[o + fh - 1 - pad0], so the padding becomes a crop (or zero pad) of T; the
    multiplications by the inserted zeros are skipped. Same sums per output sample.
    """
    c = x.shape[1]
    fh, fw = f2d.shape
    weight = f2d.to(x.dtype).reshape(1, 1, fh, fw)
    if upx == 1 and upy == 1:
        sx, sy = max(min(padx0, padx1), 0), max(min(pady0, pady1), 0)  # the conv pads symmetrically
        if (padx0, padx1, pady0, pady1) != (sx, sx, sy, sy):
            x = F.pad(x, [padx0 - sx, padx1 - sx, pady0 - sy, pady1 - sy])
        return F.conv2d(x, weight.expand(c, 1, fh, fw), stride=(downy, downx), padding=(sy, sx), groups=c)
    h, w = x.shape[2], x.shape[3]
    y = F.conv_transpose2d(x, weight.flip([2, 3]).expand(c, 1, fh, fw), stride=(upy, upx), groups=c)
    y = _crop_or_pad(y, 2, fh - 1 - pady0, h * upy + pady0 + pady1 - fh + 1)
    y = _crop_or_pad(y, 3, fw - 1 - padx0, w * upx + padx0 + padx1 - fw + 1)
    if downx > 1 or downy > 1:
        y = y[:, :, ::downy, ::downx]
    return y


def _upfirdn2d_torch(x, f, up, down, padding, flip_filter, gain):
    """Pure-PyTorch upfirdn2d (differentiable to all orders): the kernel's passes (`_plan`),
    each by `_upfirdn2d_torch_2d`. up, down, padding as parsed by `_parse_*`."""
    for args in _plan(x, f, up, down, padding, flip_filter, gain):
        x = _upfirdn2d_torch_2d(x, *args)
    return x


def _load_kernel():
    return importlib.import_module('torch_utils.ops._triton_upfirdn2d')


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Union[int, Sequence[int]] = 1,
              down: Union[int, Sequence[int]] = 1, padding: Pad = 0, flip_filter: bool = False,
              gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images (see the module docstring).

    Args:
        x:       [N, C, H, W].
        f:       [fh, fw] or separable [fw] filter (from `setup_filter`), or None (= [[1]]).
        up:      int or [upx, upy].  down: int or [downx, downy].
        padding: int, [px, py] or [px0, px1, py0, py1], in upsampled pixels; negative crops.
        flip_filter: False = convolution (filter flipped), True = correlation.
        gain:    overall gain, folded into the filter as gain ** (f.ndim / 2).
        impl:    'ref' (PyTorch only), 'cuda' (kernel when x is on CUDA) or 'triton'; without
                 a kernel the PyTorch implementation (`_upfirdn2d_torch`) runs.

    Returns:
        [N, C, H', W'], H' = (H*upy + py0 + py1 - fh + downy) // downy (same for W').
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'upfirdn2d: x must be a 4-D tensor [N, C, H, W], got {getattr(x, "shape", x)}')
    fw, fh = _get_filter_size(f)
    if f is not None and not f.is_floating_point():
        raise ValueError(f'upfirdn2d: the filter must be a floating-point tensor, got {f.dtype}')
    up, down, padding = _parse_scaling(up, 'up'), _parse_scaling(down, 'down'), _parse_padding(padding)
    out_h = (x.shape[2] * up[1] + padding[2] + padding[3] - fh) // down[1] + 1
    out_w = (x.shape[3] * up[0] + padding[0] + padding[1] - fw) // down[0] + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f'upfirdn2d: empty output ({out_h}x{out_w}) for x {tuple(x.shape)}, '
                         f'filter {fh}x{fw}, up {up}, down {down}, padding {padding}')
    torch_impl = lambda: _upfirdn2d_torch(x, f, up, down, padding, flip_filter, gain)  # noqa: E731
    # The kernel has no gradient w.r.t. the filter, so a trainable filter stays on PyTorch.
    if custom_ops.wants_kernel(impl, x) and (f is None or not f.requires_grad):
        kern = custom_ops.get_kernel('upfirdn2d', _load_kernel)
        if kern is not None:
            return custom_ops.call('upfirdn2d', lambda: _run_kernel(kern, x, f, up, down, padding,
                                                                    flip_filter, gain), torch_impl)
    return torch_impl()


def _run_kernel(kern, x, f, up, down, padding, flip_filter, gain):
    for args in _plan(x, f, up, down, padding, flip_filter, gain):
        x = kern.upfirdn2d(x, *args)
    return x


def filter2d(x: torch.Tensor, f: Optional[torch.Tensor], padding: Pad = 0, flip_filter: bool = False,
             gain: float = 1, impl: str = 'cuda') -> torch.Tensor:
    """FIR-filter [N, C, H, W] keeping the size (plus `padding`): the filter is centred,
    with the extra tap of an even-size filter on the leading side."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=p, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Union[int, Sequence[int]] = 2,
               padding: Pad = 0, flip_filter: bool = False, gain: float = 1,
               impl: str = 'cuda') -> torch.Tensor:
    """Upsample [N, C, H, W] -> [N, C, H*upy, W*upx] (plus `padding`) with FIR filter f.

    The gain is multiplied by upx*upy so that a normalized filter keeps a constant image
    constant (zero insertion leaves 1 sample in upx*upy).
    """
    upx, upy = _parse_scaling(up, 'up')
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2,
         py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=p, flip_filter=flip_filter,
                     gain=gain * upx * upy, impl=impl)


def downsample2d(x: torch.Tensor, f: Optional[torch.Tensor], down: Union[int, Sequence[int]] = 2,
                 padding: Pad = 0, flip_filter: bool = False, gain: float = 1,
                 impl: str = 'cuda') -> torch.Tensor:
    """FIR-filter then downsample [N, C, H, W] -> [N, C, H//downy, W//downx] (plus `padding`)."""
    downx, downy = _parse_scaling(down, 'down')
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    p = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2,
         py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=p, flip_filter=flip_filter,
                     gain=gain, impl=impl)
