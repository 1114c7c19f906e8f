"""Bilinear grid_sample that supports double backward (StyleGAN2/EG3D `grid_sample_gradfix` API).

Only the mode EG3D uses: bilinear, padding_mode='zeros', align_corners=False.
input [N, C, H, W]; grid [N, Ho, Wo, 2] holding (x, y) in [-1, 1] (x indexes W, y indexes H;
-1 and +1 are the outer edges of the border pixels); output [N, C, Ho, Wo].

Implementations (`impl=`):
  'ref'     `_grid_sample_ref`: gathers + arithmetic; autograd gives every order w.r.t. input
            AND grid. Several times slower and more memory than the native op.
  'native'  torch.nn.functional.grid_sample: forward and first backward only (PyTorch has no
            derivative for grid_sampler_2d_backward).
  'gradfix' native forward and native first backward; the SECOND order (w.r.t. grad_output,
            input and grid) is exact: the cheap common case (R1: only d/d grad_output of the
            input gradient) is one native grid_sample, anything else differentiates
            `_grid_sample_ref`. Third order is not supported (the double backward is
            once-differentiable).
  'auto'    (default) 'gradfix' when the module flag `enabled` is True, else 'native' — the
            EG3D training loop switches the gradfix off (SPEC §7), which means "plain op".
"""

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

enabled = True  # 'auto' -> 'gradfix' when True, plain torch.nn.functional.grid_sample when False

_BILINEAR, _ZEROS = 0, 0  # aten enums for interpolation_mode and padding_mode


def _native(input, grid):
    return F.grid_sample(input, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


def _grid_sample_ref(input: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Bilinear, zeros padding, align_corners=False, written with gathers.

    input [N, C, H, W], grid [N, Ho, Wo, 2] -> [N, C, Ho, Wo]. Differentiable to every order
    (floor() has zero derivative, so the result is piecewise bilinear in grid).
    """
    n, c, h, w = input.shape
    _, ho, wo, _ = grid.shape
    # align_corners=False: -1 is the left edge of pixel 0, so pixel centres sit at (2i+1)/W - 1.
    ix = ((grid[..., 0] + 1) * w - 1) / 2  # [N, Ho, Wo], in pixel units
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = torch.floor(ix).detach(), torch.floor(iy).detach()
    tx, ty = ix - x0, iy - y0  # fractional offsets in [0, 1)
    flat = input.reshape(n, c, h * w)
    out = 0
    for dy, wy in ((0, 1 - ty), (1, ty)):
        for dx, wx in ((0, 1 - tx), (1, tx)):
            xi, yi = x0 + dx, y0 + dy
            inside = (xi >= 0) & (xi <= w - 1) & (yi >= 0) & (yi <= h - 1)  # zeros padding
            idx = (yi.clamp(0, h - 1) * w + xi.clamp(0, w - 1)).long().reshape(n, 1, ho * wo)
            vals = torch.gather(flat, 2, idx.expand(n, c, ho * wo)).reshape(n, c, ho, wo)
            out = out + vals * (wx * wy * inside.to(wx.dtype)).unsqueeze(1)
    return out


class _GridSample(torch.autograd.Function):
    """Native forward; backward through `_GridSampleBackward` so it is differentiable."""

    @staticmethod
    def forward(ctx, input, grid):
        ctx.save_for_backward(input, grid)
        return _native(input, grid)

    @staticmethod
    def backward(ctx, grad_output):
        input, grid = ctx.saved_tensors
        need_input, need_grid = ctx.needs_input_grad
        if not (need_input or need_grid):
            return None, None
        grad_input, grad_grid = _GridSampleBackward.apply(grad_output, input, grid, need_input, need_grid)
        return grad_input if need_input else None, grad_grid if need_grid else None


class _GridSampleBackward(torch.autograd.Function):
    """(grad_output, input, grid) -> (grad_input, grad_grid) via the native kernel."""

    @staticmethod
    def forward(ctx, grad_output, input, grid, need_input, need_grid):
        ctx.save_for_backward(grad_output, input, grid)
        ctx.set_materialize_grads(False)
        grad_input, grad_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_output, input, grid, _BILINEAR, _ZEROS, False, [need_input, need_grid])
        return grad_input, grad_grid

    @staticmethod
    @once_differentiable
    def backward(ctx, gg_input, gg_grid):
        grad_output, input, grid = ctx.saved_tensors
        need_go, _, need_grid = ctx.needs_input_grad[:3]
        if gg_grid is None and not need_grid:
            # grad_input = S(grid)^T grad_output is linear in grad_output and independent of
            # input, so the only term left is d/d grad_output = S(grid) gg_input (native op).
            return (_native(gg_input, grid) if need_go and gg_input is not None else None,
                    None, None, None, None)
        return (*_second_order_ref(grad_output, input, grid, gg_input, gg_grid), None, None)


def _second_order_ref(grad_output, input, grid, gg_input, gg_grid):
    """Vector-Jacobian product of (grad_input, grad_grid) with (gg_input, gg_grid), by
    differentiating the gather-based reference twice. Returns grads for (grad_output, input, grid)."""
    with torch.enable_grad():
        go, inp, gr = (t.detach().requires_grad_(True) for t in (grad_output, input, grid))
        out = _grid_sample_ref(inp, gr)
        gi, gg = torch.autograd.grad(out, (inp, gr), go, create_graph=True)
        pairs = [(t, g) for t, g in ((gi, gg_input), (gg, gg_grid)) if g is not None]
        if not pairs:
            return None, None, None
        return torch.autograd.grad([t for t, _ in pairs], (go, inp, gr), [g for _, g in pairs],
                                   allow_unused=True)


def grid_sample(input: torch.Tensor, grid: torch.Tensor, impl: str = 'auto') -> torch.Tensor:
    """Bilinear sampling of input [N, C, H, W] at grid [N, Ho, Wo, 2] -> [N, C, Ho, Wo].

    Same result as F.grid_sample(mode='bilinear', padding_mode='zeros', align_corners=False);
    impl picks the implementation (module docstring) and so which derivative orders work.
    """
    if impl not in ('auto', 'gradfix', 'native', 'ref'):
        raise ValueError(f"grid_sample: impl must be 'auto', 'gradfix', 'native' or 'ref', got {impl!r}")
    if not isinstance(input, torch.Tensor) or input.ndim != 4:
        raise ValueError(f'grid_sample: input must be [N, C, H, W], got {getattr(input, "shape", input)}')
    if (not isinstance(grid, torch.Tensor) or grid.ndim != 4 or grid.shape[3] != 2
            or grid.shape[0] != input.shape[0]):
        raise ValueError(f'grid_sample: grid must be [N, Ho, Wo, 2] with N = {input.shape[0]}, '
                         f'got {getattr(grid, "shape", grid)}')
    if grid.dtype != input.dtype:
        raise ValueError(f'grid_sample: grid.dtype ({grid.dtype}) must equal input.dtype ({input.dtype})')
    if impl == 'auto':
        impl = 'gradfix' if enabled else 'native'
    if impl == 'ref':
        return _grid_sample_ref(input, grid)
    if impl == 'native':
        return _native(input, grid)
    return _GridSample.apply(input, grid)
