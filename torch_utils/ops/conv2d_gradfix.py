"""conv2d / conv_transpose2d that can skip the weight gradient (StyleGAN2 `conv2d_gradfix` API).

StyleGAN2 needed a custom op because old PyTorch could not double-differentiate cuDNN
convolutions. Modern PyTorch can, so what remains useful is `no_weight_gradients()`: the R1
penalty differentiates D w.r.t. its input only, and computing dL/dweight there is wasted
work (SPEC §7: "conv2d_gradfix on").

With `enabled = True` every call goes through a small autograd Function whose backward
uses `aten.convolution_backward` (itself differentiable, so all orders work) and reads the
`weight_gradients_disabled` flag AT BACKWARD TIME, exactly when the gradient is computed.
With `enabled = False` (the StyleGAN2 default) the plain torch functions run.
"""

import contextlib
from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F

enabled = False                     # route convolutions through the custom Function
weight_gradients_disabled = False   # set by no_weight_gradients(); read during backward

IntPair = Union[int, Sequence[int]]


@contextlib.contextmanager
def no_weight_gradients(disable: bool = True):
    """Within this context, backward through conv2d/conv_transpose2d returns no weight
    gradient (weight.grad stays None). disable=False makes it a no-op."""
    global weight_gradients_disabled
    old = weight_gradients_disabled
    if disable:
        weight_gradients_disabled = True
    try:
        yield
    finally:
        weight_gradients_disabled = old


def _pair(v: IntPair, name: str) -> List[int]:
    v = [v, v] if isinstance(v, int) else list(v)
    if len(v) != 2 or not all(isinstance(i, int) for i in v):
        raise ValueError(f'conv2d_gradfix: {name} must be an int or a pair of ints, got {v!r}')
    return v


class _Conv2d(torch.autograd.Function):
    """Convolution whose backward may drop the weight gradient; differentiable backward."""

    @staticmethod
    def forward(ctx, input, weight, bias, transposed, stride, padding, output_padding, dilation, groups):
        ctx.save_for_backward(input, weight)
        ctx.conf = (transposed, stride, padding, output_padding, dilation, groups)
        ctx.bias_sizes = None if bias is None else [bias.shape[0]]
        if transposed:
            return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_output):
        input, weight = ctx.saved_tensors
        transposed, stride, padding, output_padding, dilation, groups = ctx.conf
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        need_weight = need_weight and not weight_gradients_disabled
        grads = [None, None, None]
        if need_input or need_weight or need_bias:
            grads = torch.ops.aten.convolution_backward(
                grad_output, input, weight, ctx.bias_sizes, stride, padding, dilation, transposed,
                output_padding, groups, [need_input, need_weight, need_bias])
        grad_input = grads[0] if need_input else None
        grad_weight = grads[1] if need_weight else None
        grad_bias = grads[2] if need_bias else None
        return grad_input, grad_weight, grad_bias, None, None, None, None, None, None


def _plain(input, weight, bias) -> bool:
    """True when the plain torch function can run even with `enabled`: the custom Function
    costs ~15 us per call, and when no gradient can flow `no_weight_gradients` has nothing
    to act on. Same convolution."""
    return not (torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad
                                             or (bias is not None and bias.requires_grad)))


def _check(input, weight, bias):
    if not isinstance(input, torch.Tensor) or input.ndim != 4:
        raise ValueError(f'conv2d_gradfix: input must be [N, C, H, W], got {getattr(input, "shape", input)}')
    if not isinstance(weight, torch.Tensor) or weight.ndim != 4:
        raise ValueError(f'conv2d_gradfix: weight must be 4-D, got {getattr(weight, "shape", weight)}')
    if bias is not None and (not isinstance(bias, torch.Tensor) or bias.ndim != 1):
        raise ValueError('conv2d_gradfix: bias must be None or a 1-D tensor')


def conv2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
           stride: IntPair = 1, padding: IntPair = 0, dilation: IntPair = 1,
           groups: int = 1) -> torch.Tensor:
    """Same as torch.nn.functional.conv2d (input [N, Cin, H, W], weight
    [Cout, Cin/groups, kh, kw], bias [Cout]), plus `no_weight_gradients` support."""
    _check(input, weight, bias)
    if not enabled or _plain(input, weight, bias):
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return _Conv2d.apply(input, weight, bias, False, _pair(stride, 'stride'), _pair(padding, 'padding'),
                         [0, 0], _pair(dilation, 'dilation'), int(groups))


def conv_transpose2d(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                     stride: IntPair = 1, padding: IntPair = 0, output_padding: IntPair = 0,
                     groups: int = 1, dilation: IntPair = 1) -> torch.Tensor:
    """Same as torch.nn.functional.conv_transpose2d (weight [Cin, Cout/groups, kh, kw]),
    plus `no_weight_gradients` support."""
    _check(input, weight, bias)
    if not enabled or _plain(input, weight, bias):
        return F.conv_transpose2d(input, weight, bias, stride, padding, output_padding, groups, dilation)
    return _Conv2d.apply(input, weight, bias, True, _pair(stride, 'stride'), _pair(padding, 'padding'),
                         _pair(output_padding, 'output_padding'), _pair(dilation, 'dilation'), int(groups))
