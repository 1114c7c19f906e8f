"""2-D convolution with FIR up/down-sampling (StyleGAN2 `conv2d_resample` API, SPEC §11.1).

Definition (the "naive composition", `_conv2d_resample_ref`):
    x = upfirdn2d(x, f if up > 1 else None, up=up, padding=p, gain=up**2)   # pad, upsample
    x = conv2d(x, w, groups=groups)                                        # valid conv
    x = upfirdn2d(x, f, down=down)            if down > 1                  # filter, subsample
where p is `padding` grown so that up/down by 2 with a 4-tap filter keeps sizes exact
(H -> H*up/down for a kxk conv given padding k//2, like StyleGAN2).

`conv2d_resample` computes the same thing with fewer FLOPs: FIR filtering and the
convolution are both linear shift-invariant, so they commute; zero insertion followed by a
convolution is a strided transposed convolution; a convolution followed by subsampling is a
strided convolution; and a 1x1 convolution commutes with every spatial op.
"""

from typing import Optional, Sequence, Tuple, Union

import torch

from torch_utils.ops import conv2d_gradfix, upfirdn2d

Pad = Union[int, Sequence[int]]


def _resample_padding(padding: Pad, f: Optional[torch.Tensor], up: int, down: int
                      ) -> Tuple[int, int, int, int]:
    """User padding plus the filter's share, as upsample2d/downsample2d would add it."""
    px0, px1, py0, py1 = upfirdn2d._parse_padding(padding)
    fw, fh = upfirdn2d._get_filter_size(f)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return px0, px1, py0, py1


def _conv(x, w, stride=1, padding=0, groups=1, transpose=False, flip_weight=True):
    """conv2d (correlation when flip_weight=True, true convolution when False) or its transpose."""
    if not flip_weight and (w.shape[2] > 1 or w.shape[3] > 1):
        w = w.flip([2, 3])
    if transpose:
        return conv2d_gradfix.conv_transpose2d(x, w, stride=stride, padding=padding, groups=groups)
    return conv2d_gradfix.conv2d(x, w, stride=stride, padding=padding, groups=groups)


def _conv2d_resample_ref(x, w, f=None, up=1, down=1, padding=0, groups=1, flip_weight=True,
                         flip_filter=False, impl='ref'):
    """The naive composition (module docstring). Shapes as in `conv2d_resample`."""
    pads = list(_resample_padding(padding, f, up, down))
    x = upfirdn2d.upfirdn2d(x, f if up > 1 else None, up=up, padding=pads, gain=up ** 2,
                            flip_filter=flip_filter, impl=impl)
    x = _conv(x, w, groups=groups, flip_weight=flip_weight)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter, impl=impl)
    return x


def _check(x, w, f, up, down, groups):
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'conv2d_resample: x must be [N, C, H, W], got {getattr(x, "shape", x)}')
    if not isinstance(w, torch.Tensor) or w.ndim != 4 or w.dtype != x.dtype:
        raise ValueError('conv2d_resample: w must be a 4-D tensor [Cout, Cin/groups, kh, kw] '
                         f'with x.dtype ({x.dtype}); got {getattr(w, "shape", w)}, {getattr(w, "dtype", None)}')
    if f is not None and (not isinstance(f, torch.Tensor) or f.ndim not in (1, 2)):
        raise ValueError('conv2d_resample: f must be None or a 1-D/2-D filter tensor')
    for name, v in (('up', up), ('down', down), ('groups', groups)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f'conv2d_resample: {name} must be an int >= 1, got {v!r}')
    if x.shape[1] != w.shape[1] * groups or w.shape[0] % groups != 0:
        raise ValueError(f'conv2d_resample: x has {x.shape[1]} channels but w {tuple(w.shape)} '
                         f'with groups={groups} expects {w.shape[1] * groups}')


def _transpose_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """[Cout, Cin/g, kh, kw] conv weight -> [Cin, Cout/g, kh, kw] conv_transpose2d weight."""
    cout, cin_g, kh, kw = w.shape
    w = w.reshape(groups, cout // groups, cin_g, kh, kw).transpose(1, 2)
    return w.reshape(groups * cin_g, cout // groups, kh, kw)


def _up_path(x, w, f, up, down, pads, groups, flip_weight, flip_filter):
    """Zero insertion + conv as one strided transposed conv, then the FIR filter."""
    kh, kw = w.shape[2], w.shape[3]
    px0, px1, py0, py1 = pads
    # conv_transpose2d(stride=up) equals the zero-inserted image (H*up samples) padded by
    # (k-1, k-up) and correlated with the flipped weight; the rest of the padding is left over.
    px0, px1, py0, py1 = px0 - (kw - 1), px1 - (kw - up), py0 - (kh - 1), py1 - (kh - up)
    pxt, pyt = max(min(-px0, -px1), 0), max(min(-py0, -py1), 0)  # symmetric crop the conv can do
    x = _conv(x, _transpose_weight(w, groups), stride=up, padding=[pyt, pxt], groups=groups,
              transpose=True, flip_weight=not flip_weight)
    x = upfirdn2d.upfirdn2d(x, f, padding=[px0 + pxt, px1 + pxt, py0 + pyt, py1 + pyt],
                            gain=up ** 2, flip_filter=flip_filter)
    if down > 1:
        x = upfirdn2d.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding: Pad = 0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """Convolve [N, Cin, H, W] with w [Cout, Cin/groups, kh, kw], upsampling by `up` before
    and downsampling by `down` after, both with FIR filter f (from `upfirdn2d.setup_filter`).

    padding: int, [px, py] or [px0, px1, py0, py1], in the upsampled image; negative crops.
    flip_weight: True = correlation (torch.nn.functional.conv2d), False = true convolution.
    flip_filter: passed to upfirdn2d (False = the filter is applied as a convolution).
    Returns [N, Cout, H', W']; e.g. k=3, padding=1, up=2 -> [N, Cout, 2H, 2W].
    """
    _check(x, w, f, up, down, groups)
    kh, kw = w.shape[2], w.shape[3]
    pads = _resample_padding(padding, f, up, down)
    px0, px1, py0, py1 = pads
    if kh == 1 and kw == 1 and up == 1 and down > 1:  # 1x1 commutes: shrink first
        x = upfirdn2d.upfirdn2d(x, f, down=down, padding=list(pads), flip_filter=flip_filter)
        return _conv(x, w, groups=groups, flip_weight=flip_weight)
    if kh == 1 and kw == 1 and up > 1 and down == 1:  # 1x1 commutes: convolve before growing
        x = _conv(x, w, groups=groups, flip_weight=flip_weight)
        return upfirdn2d.upfirdn2d(x, f, up=up, padding=list(pads), gain=up ** 2, flip_filter=flip_filter)
    if up == 1 and down > 1:  # filter first, then conv + subsample as one strided conv
        x = upfirdn2d.upfirdn2d(x, f, padding=list(pads), flip_filter=flip_filter)
        return _conv(x, w, stride=down, groups=groups, flip_weight=flip_weight)
    if up > 1:
        return _up_path(x, w, f, up, down, pads, groups, flip_weight, flip_filter)
    if px0 == px1 and py0 == py1 and px0 >= 0 and py0 >= 0:  # plain conv, symmetric padding
        return _conv(x, w, padding=[py0, px0], groups=groups, flip_weight=flip_weight)
    return _conv2d_resample_ref(x, w, f, up, down, padding, groups, flip_weight, flip_filter, impl='cuda')
