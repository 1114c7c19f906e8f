"""The fast StyleGAN2 layer formulations (torch_utils/fastpath.py) against the reference port:
weight modulation, the one-addmm fully connected layer, the lean fused SynthesisLayer / ToRGB
and conv2d_gradfix's no-grad bypass. float64, so 1e-10: the fast forms only move the gains
onto products and regroup the adds (tests/test_fastpath.py states the tolerance policy).
"""

import pytest
import torch

from fastpath_helpers import F64, assert_all_close, both
from torch_utils import fastpath
from torch_utils.ops import conv2d_gradfix

pytestmark = pytest.mark.usefixtures('single_thread')


def test_modulation_unchanged():
    # The flattened weight modulation multiplies the same numbers: bit for bit.
    from training.networks_stylegan2 import modulated_conv2d
    g = torch.Generator().manual_seed(0)
    x, w, s = (torch.randn(*shape, generator=g) for shape in ([3, 8, 6, 6], [5, 8, 3, 3], [3, 8]))
    for fused in (False, True):
        ref, fast = both(lambda f=fused: modulated_conv2d(x, w, s, padding=1, fused_modconv=f))
        assert torch.equal(ref, fast)


def _layer_run(layer, inputs, call):
    """(output, grads of the inputs and parameters) of call(*inputs) under a fixed RNG."""
    params = [p for p in layer.parameters()]
    for t in inputs + params:
        t.grad = None
    torch.manual_seed(3)
    y = call(*inputs)
    grads = torch.autograd.grad((y * torch.linspace(-1, 2, y.numel(), dtype=F64).reshape(y.shape)).sum(),
                                inputs + params, allow_unused=True)
    return [y.detach()] + [g if g is not None else torch.zeros(()) for g in grads]


@pytest.mark.parametrize('act, lr_mul', [('linear', 1), ('lrelu', 0.01)])
def test_fully_connected_fast_matches(act, lr_mul):
    from training.networks_stylegan2 import FullyConnectedLayer
    torch.manual_seed(0)
    layer = FullyConnectedLayer(7, 5, activation=act, lr_multiplier=lr_mul, bias_init=0.3).double()
    x = torch.randn(4, 7, dtype=F64, requires_grad=True)
    assert_all_close(*both(lambda: _layer_run(layer, [x], layer)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('batch, up, noise_mode, clamp', [(1, 1, 'const', None), (3, 1, 'random', 2.0),
                                                          (1, 2, 'random', None), (2, 2, 'none', 0.5)])
def test_synthesis_layer_fused_fast_matches(batch, up, noise_mode, clamp, monkeypatch):
    from training.networks_stylegan2 import SynthesisLayer
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)   # its Function's outputs are then changed in place
    torch.manual_seed(0)
    layer = SynthesisLayer(6, 5, w_dim=8, resolution=8, up=up, conv_clamp=clamp).double()
    with torch.no_grad():
        layer.noise_strength.fill_(0.7)
        layer.bias.normal_()
    x = torch.randn(batch, 6, 8 // up, 8 // up, dtype=F64, requires_grad=True)
    w = torch.randn(batch, 8, dtype=F64, requires_grad=True)
    call = lambda x, w: layer(x, w, noise_mode=noise_mode, fused_modconv=True, gain=0.8)  # noqa: E731
    assert_all_close(*both(lambda: _layer_run(layer, [x, w], call)), rtol=1e-10, atol=1e-12)
    with torch.no_grad():   # the no-grad epilogue runs in place
        assert_all_close(*both(lambda: [torch.manual_seed(3) and call(x, w)]), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('fused, clamp', [(True, None), (False, 0.5)])
def test_torgb_fast_matches(fused, clamp):
    from training.networks_stylegan2 import ToRGBLayer
    torch.manual_seed(0)
    layer = ToRGBLayer(6, 3, w_dim=8, conv_clamp=clamp).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 6, 5, 5, dtype=F64, requires_grad=True)
    w = torch.randn(2, 8, dtype=F64, requires_grad=True)
    call = lambda x, w: layer(x, w, fused_modconv=fused)  # noqa: E731
    assert_all_close(*both(lambda: _layer_run(layer, [x, w], call)), rtol=1e-10, atol=1e-12)


def test_conv2d_gradfix_skips_the_function_only_without_grad(monkeypatch):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)
    x, w = torch.randn(2, 4, 6, 6), torch.randn(3, 4, 3, 3)
    with torch.no_grad():
        ref, fast = both(lambda: [conv2d_gradfix.conv2d(x, w, padding=1),
                                  conv2d_gradfix.conv_transpose2d(x, w.transpose(0, 1), stride=2)])
    assert all(torch.equal(a, b) for a, b in zip(ref, fast))
    with fastpath.override(True):   # with a gradient to compute, the custom Function still runs
        y = conv2d_gradfix.conv2d(x, w.requires_grad_(True))
    assert type(y.grad_fn).__name__ == '_Conv2dBackward'
