"""The lean StyleGAN2 layer formulations and upfirdn2d's grouped convolutions against the
straightforward port they replaced (tests/reference/): weight modulation, the one-addmm
fully connected layer, the lean fused SynthesisLayer / ToRGB, conv2d_gradfix's no-grad bypass
and the FIR filter as grouped convolutions. float64, so 1e-10..1e-12: these forms only move
the gains onto products and regroup the adds (tolerance policy: tests/test_model_equivalence.py).
"""

import itertools

import pytest
import torch

from reference import stylegan2_layers as ref_layers
from reference import upfirdn2d as ref_upfirdn2d
from torch_utils.ops import conv2d_gradfix, upfirdn2d
from training import networks_stylegan2 as nets

pytestmark = pytest.mark.usefixtures('single_thread')

F64 = torch.float64


def assert_all_close(expected, got, **tol):
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, **tol)


def test_modulation_unchanged():
    # The flattened weight modulation multiplies the same numbers: bit for bit.
    g = torch.Generator().manual_seed(0)
    x, w, s = (torch.randn(*shape, generator=g) for shape in ([3, 8, 6, 6], [5, 8, 3, 3], [3, 8]))
    assert torch.equal(nets._modulate(w, s), ref_layers.modulate(w, s))
    for fused in (False, True):
        got = nets.modulated_conv2d(x, w, s, padding=1, fused_modconv=fused)
        assert torch.equal(got, ref_layers.modulated_conv2d(x, w, s, padding=1, fused_modconv=fused))


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


def _both(layer, inputs, call, ref_call):
    """(reference run, package run)."""
    return _layer_run(layer, inputs, ref_call), _layer_run(layer, inputs, call)


@pytest.mark.parametrize('act, lr_mul', [('linear', 1), ('lrelu', 0.01)])
def test_fully_connected_matches_reference(act, lr_mul):
    torch.manual_seed(0)
    layer = nets.FullyConnectedLayer(7, 5, activation=act, lr_multiplier=lr_mul, bias_init=0.3).double()
    x = torch.randn(4, 7, dtype=F64, requires_grad=True)
    runs = _both(layer, [x], layer, lambda x: ref_layers.fully_connected(layer, x))
    assert_all_close(*runs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('batch, up, noise_mode, clamp', [(1, 1, 'const', None), (3, 1, 'random', 2.0),
                                                          (1, 2, 'random', None), (2, 2, 'none', 0.5)])
def test_synthesis_layer_fused_matches_reference(batch, up, noise_mode, clamp, monkeypatch):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)   # its Function's outputs are then changed in place
    torch.manual_seed(0)
    layer = nets.SynthesisLayer(6, 5, w_dim=8, resolution=8, up=up, conv_clamp=clamp).double()
    with torch.no_grad():
        layer.noise_strength.fill_(0.7)
        layer.bias.normal_()
    x = torch.randn(batch, 6, 8 // up, 8 // up, dtype=F64, requires_grad=True)
    w = torch.randn(batch, 8, dtype=F64, requires_grad=True)
    call = lambda x, w: layer(x, w, noise_mode=noise_mode, fused_modconv=True, gain=0.8)  # noqa: E731
    ref_call = lambda x, w: ref_layers.synthesis_layer(layer, x, w, noise_mode, gain=0.8)  # noqa: E731
    assert_all_close(*_both(layer, [x, w], call, ref_call), rtol=1e-10, atol=1e-12)
    with torch.no_grad():   # the no-grad epilogue runs in place
        ref, got = ([torch.manual_seed(3) and fn(x, w)] for fn in (ref_call, call))
        assert_all_close(ref, got, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize('fused, clamp', [(True, None), (False, 0.5)])
def test_torgb_matches_reference(fused, clamp):
    torch.manual_seed(0)
    layer = nets.ToRGBLayer(6, 3, w_dim=8, conv_clamp=clamp).double()
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(2, 6, 5, 5, dtype=F64, requires_grad=True)
    w = torch.randn(2, 8, dtype=F64, requires_grad=True)
    call = lambda x, w: layer(x, w, fused_modconv=fused)  # noqa: E731
    ref_call = lambda x, w: ref_layers.to_rgb(layer, x, w, fused_modconv=fused)  # noqa: E731
    assert_all_close(*_both(layer, [x, w], call, ref_call), rtol=1e-10, atol=1e-12)


def test_conv2d_gradfix_skips_the_function_only_without_grad(monkeypatch):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)
    x, w = torch.randn(2, 4, 6, 6), torch.randn(3, 4, 3, 3)
    wt = w.transpose(0, 1)
    with torch.no_grad():   # the reference routes every call through the custom Function
        got = [conv2d_gradfix.conv2d(x, w, padding=1), conv2d_gradfix.conv_transpose2d(x, wt, stride=2)]
        ref = [conv2d_gradfix._Conv2d.apply(x, w, None, False, [1, 1], [1, 1], [0, 0], [1, 1], 1),
               conv2d_gradfix._Conv2d.apply(x, wt, None, True, [2, 2], [0, 0], [0, 0], [1, 1], 1)]
    assert all(torch.equal(a, b) for a, b in zip(ref, got))
    y = conv2d_gradfix.conv2d(x, w.requires_grad_(True))   # a gradient to compute: the Function runs
    assert type(y.grad_fn).__name__ == '_Conv2dBackward'


# ---------------------------------------------------------------------------------------------
# upfirdn2d as grouped convolutions.

FILTERS = {'none': None, '4-tap 2-D': upfirdn2d.setup_filter([1, 3, 3, 1]),
           '4-tap 1-D': upfirdn2d.setup_filter([1, 3, 3, 1], separable=True),
           'odd 1-D': torch.tensor([0.2, 0.5, 0.1, 0.7, 0.3]), 'odd 2-D 3x5': torch.rand(3, 5)}


@pytest.mark.parametrize('fname', list(FILTERS))
def test_upfirdn2d_grouped_equals_reference(fname):
    # Same products, summed by another convolution algorithm: float64 agreement to 1e-12.
    f = None if FILTERS[fname] is None else FILTERS[fname].to(F64)
    x = torch.randn(2, 3, 7, 9, dtype=F64)
    cases = itertools.product([1, 2, (2, 1), 3], [1, 2, (1, 2)], [0, 1, 3, -1, [2, -1, 0, 4]], [False, True])
    checked = 0
    for up, down, pad, flip in cases:
        kwargs = dict(up=up, down=down, padding=pad, flip_filter=flip, gain=1.7)
        try:
            ref = ref_upfirdn2d.upfirdn2d(x, f, **kwargs)
        except ValueError:   # empty output for this padding
            continue
        got = upfirdn2d.upfirdn2d(x, f, **kwargs)
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12, msg=f'{fname} {kwargs}')
        checked += 1
    assert checked > 100


def test_upfirdn2d_grouped_second_order():
    # R1 differentiates D's FIR downsampling twice; the grouped form must support it.
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).to(F64)
    x = torch.randn(1, 2, 6, 6, dtype=F64, requires_grad=True)
    for up, down in ((2, 1), (1, 2)):
        fn = lambda t, u=up, d=down: upfirdn2d.upfirdn2d(t, f, up=u, down=d, padding=[2, 1, 2, 1])  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))
