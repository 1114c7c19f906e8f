"""Kernel dispatch of bias_act / upfirdn2d through torch_utils.custom_ops, with fake kernels
(the real Triton kernels have their own tests): when the reference runs, what a kernel
receives, and the fallback when a kernel fails."""

import math
import types
import warnings

import pytest
import torch

from torch_utils import custom_ops
from torch_utils.ops import bias_act as ba
from torch_utils.ops import upfirdn2d as ud

pytestmark = pytest.mark.usefixtures('single_thread')


@pytest.fixture(autouse=True)
def _clean_kernel_cache():
    custom_ops.reset()
    yield
    custom_ops.reset()


def _no_kernel(name, loader):
    raise AssertionError(f'get_kernel({name!r}) must not be called on the reference path')


def test_cuda_impl_on_cpu_runs_reference_silently(monkeypatch):
    monkeypatch.setattr(custom_ops, 'get_kernel', _no_kernel)
    x = torch.randn(2, 3, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        y = ba.bias_act(x, torch.zeros(3), act='lrelu')  # impl='cuda' is the default
        z = ud.upsample2d(x, ud.setup_filter([1, 3, 3, 1]))
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(x, 0.2) * math.sqrt(2))
    assert z.shape == (2, 3, 8, 8)


def test_env_forces_reference(monkeypatch):
    monkeypatch.setenv('POF3D_IMPL', 'ref')
    monkeypatch.setattr(custom_ops, 'get_kernel', _no_kernel)
    x = torch.randn(1, 2, 4, 4)
    torch.testing.assert_close(ba.bias_act(x, act='tanh', impl='triton'), torch.tanh(x))
    torch.testing.assert_close(ud.upfirdn2d(x, None, impl='triton'), x)


def _fake(monkeypatch, name, kern):
    def get_kernel(n, loader):
        assert n == name
        return kern
    monkeypatch.setattr(custom_ops, 'get_kernel', get_kernel)


def test_bias_act_kernel_gets_resolved_arguments(monkeypatch):
    calls = []

    def kernel(x, b, dim, act, alpha, gain, clamp):
        calls.append((dim, act, alpha, gain, clamp))
        return ba._bias_act_ref(x, b, dim, act, alpha, gain, clamp)
    _fake(monkeypatch, 'bias_act', types.SimpleNamespace(bias_act=kernel))
    x, b = torch.randn(2, 3, 4), torch.randn(4)
    y = ba.bias_act(x, b, dim=-1, act='lrelu', impl='triton')
    assert calls == [(2, 'lrelu', 0.2, math.sqrt(2), -1.0)]
    assert all(isinstance(v, float) for v in calls[0][2:])
    torch.testing.assert_close(y, ba.bias_act(x, b, dim=2, act='lrelu', impl='ref'))


def test_failing_kernel_falls_back_with_one_warning(monkeypatch):
    def kernel(*args):
        raise RuntimeError('launch failed')
    _fake(monkeypatch, 'bias_act', types.SimpleNamespace(bias_act=kernel))
    x = torch.randn(2, 3)
    with pytest.warns(RuntimeWarning, match='bias_act'):
        y = ba.bias_act(x, act='sigmoid', impl='triton')
    torch.testing.assert_close(y, torch.sigmoid(x))
    assert custom_ops.is_disabled('bias_act')
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        ba.bias_act(x, act='sigmoid', impl='triton')  # no second warning


@pytest.mark.parametrize('taps, passes', [([1., 3, 3, 1], 2), ([[1., 2], [3, 4]], 1)])
def test_upfirdn2d_kernel_passes(monkeypatch, taps, passes):
    calls = []

    def kernel(x, f2d, upx, upy, downx, downy, px0, px1, py0, py1):
        calls.append((tuple(f2d.shape), upx, upy, downx, downy, px0, px1, py0, py1))
        return ud._upfirdn2d_torch_2d(x, f2d, upx, upy, downx, downy, px0, px1, py0, py1)
    _fake(monkeypatch, 'upfirdn2d', types.SimpleNamespace(upfirdn2d=kernel))
    f = torch.tensor(taps)
    x = torch.randn(2, 3, 5, 6)
    y = ud.upfirdn2d(x, f, up=2, down=[1, 2], padding=[1, 2, 3, -1], gain=2, impl='triton')
    torch.testing.assert_close(y, ud.upfirdn2d(x, f, up=2, down=[1, 2], padding=[1, 2, 3, -1], gain=2, impl='ref'))
    assert len(calls) == passes
    if passes == 2:  # horizontal pass (x params only), then vertical pass (y params only)
        assert calls == [((1, 4), 2, 1, 1, 1, 1, 2, 0, 0), ((4, 1), 1, 2, 1, 2, 0, 0, 3, -1)]
    else:
        assert calls == [((2, 2), 2, 2, 1, 2, 1, 2, 3, -1)]


def test_prepare_filter_2d_folds_flip_and_gain():
    f = torch.tensor([[1., 2], [3, 4]])
    (w,) = ud._prepare_filter_2d(f, False, 2.0, torch.float64, torch.device('cpu'))
    torch.testing.assert_close(w, torch.tensor([[8., 6], [4, 2]], dtype=torch.float64))  # flipped * 2
    (w,) = ud._prepare_filter_2d(f, True, 1.0, torch.float32, torch.device('cpu'))
    torch.testing.assert_close(w, f)
    wx, wy = ud._prepare_filter_2d(torch.tensor([1., 2, 3]), False, 4.0, torch.float32, torch.device('cpu'))
    torch.testing.assert_close(wx, torch.tensor([[6., 4, 2]]))      # flipped * 4**0.5
    torch.testing.assert_close(wy, torch.tensor([[6.], [4], [2]]))


def test_trainable_filter_stays_on_reference(monkeypatch):
    monkeypatch.setattr(custom_ops, 'get_kernel', _no_kernel)
    f = torch.ones(2, 2, requires_grad=True)
    ud.upfirdn2d(torch.randn(1, 1, 4, 4), f, impl='triton').sum().backward()
    assert f.grad is not None and f.grad.shape == (2, 2)
