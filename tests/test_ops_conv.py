"""conv2d_resample (fast paths == naive composition, gradients) and conv2d_gradfix
(plain-torch equivalence, double backward, no_weight_gradients). CPU."""

import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_gradfix, conv2d_resample, upfirdn2d

pytestmark = pytest.mark.usefixtures('single_thread')

F4 = upfirdn2d.setup_filter([1, 3, 3, 1])


@pytest.fixture(params=[False, True], ids=['torch', 'gradfix'])
def gradfix(request, monkeypatch):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', request.param)
    return request.param


RESAMPLE_CASES = [  # k, f, up, down, padding, groups, flip_weight, flip_filter
    (3, F4, 2, 1, 1, 1, True, False),          # upsampling conv (transposed path)
    (3, F4, 1, 2, 1, 1, True, False),          # downsampling conv (strided path)
    (1, F4, 2, 1, 0, 1, True, False),          # 1x1 + up: conv first
    (1, F4, 1, 2, 0, 1, True, False),          # 1x1 + down: resample first
    (3, F4, 2, 2, 1, 1, False, True),          # up and down, true convolution, flipped filter
    (3, None, 1, 1, [1, 0, 2, 1], 1, True, False),   # asymmetric padding: generic path
    (3, None, 1, 1, 1, 2, False, False),       # plain conv, groups, flip_weight=False
    (3, torch.tensor([1., 2, 1]), 2, 1, [0, 1], 2, True, False),  # grouped transposed path
    (2, F4, 2, 1, 0, 1, True, True),           # even kernel
    (3, None, 2, 1, 1, 1, True, False),        # up without a filter
    (3, None, 1, 2, 1, 1, True, False),        # down without a filter (plain subsampling)
]


@pytest.mark.parametrize('k, f, up, down, padding, groups, flip_weight, flip_filter', RESAMPLE_CASES)
def test_resample_equals_naive(gradfix, k, f, up, down, padding, groups, flip_weight, flip_filter):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 4, 6, 5, generator=g, dtype=torch.float64)
    w = torch.randn(6, 4 // groups, k, k, generator=g, dtype=torch.float64)
    kwargs = dict(f=f, up=up, down=down, padding=padding, groups=groups, flip_weight=flip_weight,
                  flip_filter=flip_filter)
    y = conv2d_resample.conv2d_resample(x, w, **kwargs)
    want = conv2d_resample._conv2d_resample_ref(x, w, **kwargs)
    torch.testing.assert_close(y, want, rtol=1e-10, atol=1e-10)


def test_resample_shapes():
    x, w = torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3)
    assert conv2d_resample.conv2d_resample(x, w, F4, up=2, padding=1).shape == (1, 3, 16, 16)
    assert conv2d_resample.conv2d_resample(x, w, F4, down=2, padding=1).shape == (1, 3, 4, 4)
    assert conv2d_resample.conv2d_resample(x, w[:, :, :1, :1], F4, down=2).shape == (1, 3, 4, 4)


def test_resample_flip_weight_is_convolution():
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    y = conv2d_resample.conv2d_resample(x, w, padding=1, flip_weight=False)
    torch.testing.assert_close(y, F.conv2d(x, w.flip([2, 3]), padding=1))


@pytest.mark.parametrize('f', [F4, None], ids=['filter', 'nofilter'])
@pytest.mark.parametrize('up, down', [(2, 1), (1, 2)])
def test_resample_gradcheck(gradfix, f, up, down):
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    fn = lambda x, w: conv2d_resample.conv2d_resample(x, w, f, up=up, down=down, padding=1)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, w))
    assert torch.autograd.gradgradcheck(fn, (x, w))


def test_resample_validation():
    x = torch.zeros(1, 4, 5, 5)
    with pytest.raises(ValueError, match='channels'):
        conv2d_resample.conv2d_resample(x, torch.zeros(3, 3, 3, 3))
    with pytest.raises(ValueError, match='dtype'):
        conv2d_resample.conv2d_resample(x, torch.zeros(3, 4, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match='up'):
        conv2d_resample.conv2d_resample(x, torch.zeros(3, 4, 3, 3), up=0)


CONV_CASES = [  # transpose, stride, padding, output_padding, groups, dilation, weight shape
    (False, 2, 1, 0, 2, 1, (4, 1, 3, 3)),
    (False, 1, [0, 1], 0, 1, 2, (3, 2, 2, 3)),
    (True, 2, 1, 1, 2, 1, (2, 2, 3, 3)),
    (True, [1, 2], 0, [0, 1], 1, 1, (2, 3, 2, 2)),
]


def _conv_fns(transpose, stride, padding, output_padding, groups, dilation):
    if transpose:
        return (lambda x, w, b: conv2d_gradfix.conv_transpose2d(x, w, b, stride, padding, output_padding,
                                                                groups, dilation),
                lambda x, w, b: F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation))
    return (lambda x, w, b: conv2d_gradfix.conv2d(x, w, b, stride, padding, dilation, groups),
            lambda x, w, b: F.conv2d(x, w, b, stride, padding, dilation, groups))


def _conv_inputs(wshape, transpose, groups):
    cin = wshape[0] if transpose else wshape[1] * groups
    cout = wshape[1] * groups if transpose else wshape[0]
    x = torch.randn(2, cin, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(*wshape, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, dtype=torch.float64, requires_grad=True)
    return x, w, b


@pytest.mark.parametrize('transpose, stride, padding, output_padding, groups, dilation, wshape', CONV_CASES)
def test_gradfix_matches_torch_and_double_backward(gradfix, transpose, stride, padding, output_padding,
                                                   groups, dilation, wshape):
    ours, ref = _conv_fns(transpose, stride, padding, output_padding, groups, dilation)
    x, w, b = _conv_inputs(wshape, transpose, groups)
    torch.testing.assert_close(ours(x, w, b), ref(x, w, b))
    assert torch.autograd.gradcheck(ours, (x, w, b))
    assert torch.autograd.gradgradcheck(ours, (x, w, b))


@pytest.mark.parametrize('transpose', [False, True])
def test_no_weight_gradients(monkeypatch, transpose):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)
    ours, ref = _conv_fns(transpose, 2, 1, 1 if transpose else 0, 1, 1)
    x, w, b = _conv_inputs((3, 3, 3, 3), transpose, 1)
    want_x, want_b = torch.autograd.grad(ref(x, w, b).square().sum(), (x, b))
    with conv2d_gradfix.no_weight_gradients():
        ours(x, w, b).square().sum().backward()
    assert w.grad is None
    torch.testing.assert_close(x.grad, want_x)
    torch.testing.assert_close(b.grad, want_b)
    assert conv2d_gradfix.weight_gradients_disabled is False
    with conv2d_gradfix.no_weight_gradients(disable=False):  # a no-op
        ours(x, w, b).sum().backward()
    assert w.grad is not None


def test_no_weight_gradients_ignored_when_disabled(monkeypatch):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', False)  # StyleGAN2: plain torch conv
    x, w, _ = _conv_inputs((3, 3, 3, 3), False, 1)
    with conv2d_gradfix.no_weight_gradients():
        conv2d_gradfix.conv2d(x, w).sum().backward()
    assert w.grad is not None


def test_r1_style_penalty_weight_gradient(monkeypatch):
    """R1: grads w.r.t. the input inside no_weight_gradients (create_graph), then the
    penalty's weight gradient outside must equal plain torch's."""
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 2, 6, 6, generator=g, dtype=torch.float64, requires_grad=True)
    w1 = torch.randn(3, 2, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w2 = torch.randn(1, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)

    def penalty(conv, disable):
        logits = conv(F.softplus(conv(x, w1, None, 1, 1)), w2, None, 2, 0)
        with conv2d_gradfix.no_weight_gradients(disable):
            (gx,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
        return gx.square().sum()

    want = torch.autograd.grad(penalty(F.conv2d, False), (w1, w2))
    got = torch.autograd.grad(penalty(conv2d_gradfix.conv2d, True), (w1, w2))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_flag_restored_after_exception():
    with pytest.raises(KeyError):
        with conv2d_gradfix.no_weight_gradients():
            raise KeyError('boom')
    assert conv2d_gradfix.weight_gradients_disabled is False
