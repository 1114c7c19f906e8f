"""The straightforward upfirdn2d port (channels folded into the batch), kept as the test
reference for `torch_utils.ops.upfirdn2d`'s grouped-convolution implementation."""

import torch
import torch.nn.functional as F

from torch_utils.ops import upfirdn2d as ud


def upfirdn2d_2d(x: torch.Tensor, f2d: torch.Tensor, upx: int, upy: int, downx: int,
                 downy: int, padx0: int, padx1: int, pady0: int, pady1: int) -> torch.Tensor:
    """The kernel contract: x [N, C, H, W], f2d [fh, fw] correlation weight ->
    [N, C, (H*upy + pady0 + pady1 - fh + 1 + downy - 1) // downy, (same for x)]."""
    n, c, h, w = x.shape
    fh, fw = f2d.shape
    if upx > 1 or upy > 1:  # zero insertion: each sample followed by up-1 zeros
        x = F.pad(x.reshape(n, c, h, 1, w, 1), [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [padx0, padx1, pady0, pady1])  # negative pads crop
    hp, wp = x.shape[2], x.shape[3]
    if hp < fh or wp < fw:
        raise ValueError(f'upfirdn2d: padded input {hp}x{wp} is smaller than the {fh}x{fw} filter')
    weight = f2d.to(x.dtype).reshape(1, 1, fh, fw)
    y = F.conv2d(x.reshape(n * c, 1, hp, wp), weight, stride=(downy, downx))
    return y.reshape(n, c, y.shape[2], y.shape[3])


def upfirdn2d(x, f, up=1, down=1, padding=0, flip_filter=False, gain=1):
    """The public API's semantics, pass by pass (the package's `_plan`) with `upfirdn2d_2d`."""
    plan = ud._plan(x, f, ud._parse_scaling(up, 'up'), ud._parse_scaling(down, 'down'),
                    ud._parse_padding(padding), flip_filter, gain)
    for args in plan:
        x = upfirdn2d_2d(x, *args)
    return x
