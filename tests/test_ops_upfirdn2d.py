"""upfirdn2d reference: golden values, a brute-force loop definition, the kernel contract
(`_upfirdn2d_torch_2d`), gradcheck/gradgradcheck, validation. CPU."""

import numpy as np
import pytest
import torch

from torch_utils.ops import upfirdn2d as ud

pytestmark = pytest.mark.usefixtures('single_thread')


def brute_upfirdn2d(x, f, up, down, pad, flip_filter, gain):
    """Loop-by-loop definition (numpy, float64): zero-insert, pad/crop, convolve, subsample."""
    x = np.asarray(x, dtype=np.float64)
    f = np.asarray(f, dtype=np.float64)
    if f.ndim == 1:
        f = np.outer(f, f)  # a separable filter is the outer product; gain**0.5 twice = gain
    (upx, upy), (downx, downy) = up, down
    px0, px1, py0, py1 = pad
    n, c, h, w = x.shape
    u = np.zeros([n, c, h * upy, w * upx])
    u[:, :, ::upy, ::upx] = x
    hp, wp = h * upy + py0 + py1, w * upx + px0 + px1
    p = np.zeros([n, c, hp, wp])
    for i in range(hp):
        for j in range(wp):
            si, sj = i - py0, j - px0
            if 0 <= si < u.shape[2] and 0 <= sj < u.shape[3]:
                p[:, :, i, j] = u[:, :, si, sj]
    fh, fw = f.shape
    k = f if flip_filter else f[::-1, ::-1]  # a convolution correlates with the flipped taps
    out = np.zeros([n, c, hp - fh + 1, wp - fw + 1])
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            out[:, :, i, j] = (p[:, :, i:i + fh, j:j + fw] * k).sum(axis=(2, 3))
    return out[:, :, ::downy, ::downx] * gain


def test_setup_filter_normalization():
    # [1,3,3,1] has < 8 taps, so it becomes the 4x4 outer product, normalized: taps/64.
    f = ud.setup_filter([1, 3, 3, 1])
    want = torch.tensor([[1., 3, 3, 1], [3, 9, 9, 3], [3, 9, 9, 3], [1, 3, 3, 1]]) / 64
    torch.testing.assert_close(f, want)
    assert f.dtype == torch.float32 and f.sum().item() == pytest.approx(1.0)
    # Kept separable: [1,3,3,1]/8 per axis; the gain is split as gain**0.5 per axis.
    torch.testing.assert_close(ud.setup_filter([1, 3, 3, 1], separable=True), torch.tensor([1., 3, 3, 1]) / 8)
    assert ud.setup_filter([1, 3, 3, 1], separable=True, gain=4).sum().item() == pytest.approx(2.0)
    assert ud.setup_filter([1, 3, 3, 1], gain=4).sum().item() == pytest.approx(4.0)
    assert ud.setup_filter([1] * 8).shape == (8,)  # >= 8 taps: separable by default
    torch.testing.assert_close(ud.setup_filter([1, 2], normalize=False, flip_filter=True),
                               torch.tensor([[4., 2], [2, 1]]))  # outer([1,2],[1,2]) flipped
    assert ud.setup_filter(None).tolist() == [[1.0]]


def test_golden_impulse_filter2d():
    # 1 at the centre (2, 2) of a 5x5 image; filter2d pads [fw//2, (fw-1)//2] = [2, 1], so the
    # convolution places the 4x4 outer([1,3,3,1])/64 at rows/cols 1..4 (extra tap leads).
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1
    for f in (ud.setup_filter([1, 3, 3, 1]), ud.setup_filter([1, 3, 3, 1], separable=True)):
        y = ud.filter2d(x, f, impl='ref')
        want = torch.zeros(5, 5)
        want[1:, 1:] = torch.outer(torch.tensor([1., 3, 3, 1]), torch.tensor([1., 3, 3, 1])) / 64
        torch.testing.assert_close(y[0, 0], want)


def test_golden_flip_and_resampling():
    x = torch.tensor([[[[0., 0, 1, 0, 0]]]])
    f = torch.tensor([[1., 2]])
    # padded [0,0,0,1,0,0]; convolution with [1,2] reproduces [1,2] starting at the impulse.
    assert ud.upfirdn2d(x, f, padding=[1, 0, 0, 0]).flatten().tolist() == [0, 0, 1, 2, 0]
    # flip_filter=True correlates: the taps come out reversed.
    assert ud.upfirdn2d(x, f, padding=[1, 0, 0, 0], flip_filter=True).flatten().tolist() == [0, 0, 2, 1, 0]
    # up=2 inserts a zero after each sample; down=2 keeps samples 0, 2, 4, ...
    assert ud.upfirdn2d(torch.tensor([[[[5., 7]]]]), None, up=[2, 1]).flatten().tolist() == [5, 0, 7, 0]
    row = torch.arange(1., 9).reshape(1, 1, 1, 8)
    assert ud.upfirdn2d(row, None, down=[2, 1]).flatten().tolist() == [1, 3, 5, 7]
    # negative padding crops: 1 from the left, 2 from the right
    assert ud.upfirdn2d(row, None, padding=[-1, -2, 0, 0]).flatten().tolist() == [2, 3, 4, 5, 6]


def test_golden_constant_image_resample():
    f = ud.setup_filter([1, 3, 3, 1])
    # upsample2d: interior taps (1+3)/8*2 = 1 per axis; at the border one tap falls on the
    # padding: 3/8*2 = 0.75 per axis (corner 0.5625).
    up = ud.upsample2d(torch.ones(1, 2, 4, 4), f, impl='ref')
    assert up.shape == (1, 2, 8, 8)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], torch.ones(1, 2, 6, 6))
    assert up[0, 0, 0, 3].item() == pytest.approx(0.75) and up[0, 0, 0, 0].item() == pytest.approx(0.5625)
    # downsample2d: interior (1+3+3+1)/8 = 1; border row loses one tap: 7/8 (corner 49/64).
    dn = ud.downsample2d(torch.ones(1, 2, 8, 8), f, impl='ref')
    assert dn.shape == (1, 2, 4, 4)
    torch.testing.assert_close(dn[..., 1:-1, 1:-1], torch.ones(1, 2, 2, 2))
    assert dn[0, 0, 0, 1].item() == pytest.approx(0.875) and dn[0, 0, 0, 0].item() == pytest.approx(49 / 64)


CASES = [  # f (None, taps list -> 1-D separable, or nested -> 2-D), up, down, padding, flip, gain
    ([[1., 2, 0.5], [0.3, -1, 2]], 1, 1, 0, False, 1.0),
    ([[1., 2, 0.5], [0.3, -1, 2]], 2, 1, [1, 0, 2, -1], False, 1.0),
    ([1., 3, 3, 1], 1, 2, 1, False, 2.0),
    ([1., 2, 3], [2, 1], [1, 2], [-1, 2, 1, 0], True, 1.0),
    ([[0.5, 1.5], [2.0, -1.0]], [1, 3], [3, 1], [2, -1, 0, 3], True, 0.5),
    (None, 2, 2, [0, 0, -1, 1], False, 3.0),
]


def _filter(taps):
    return None if taps is None else torch.tensor(taps, dtype=torch.float32)


@pytest.mark.parametrize('taps, up, down, padding, flip, gain', CASES)
def test_matches_brute_force(taps, up, down, padding, flip, gain):
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f = _filter(taps)
    y = ud.upfirdn2d(x, f, up=up, down=down, padding=padding, flip_filter=flip, gain=gain, impl='ref')
    want = brute_upfirdn2d(x.numpy(), [[1.0]] if f is None else f.double().numpy(), ud._parse_scaling(up),
                           ud._parse_scaling(down), ud._parse_padding(padding), flip, gain)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('taps, up, down, padding, flip, gain', CASES)
def test_kernel_contract_plan(taps, up, down, padding, flip, gain):
    """Executing the kernel plan pass by pass with _upfirdn2d_torch_2d equals the public API."""
    x = torch.randn(1, 2, 5, 4)
    f = _filter(taps)
    up, down, padding = ud._parse_scaling(up), ud._parse_scaling(down), ud._parse_padding(padding)
    plan = ud._plan(x, f, up, down, padding, flip, gain)
    assert len(plan) == (2 if f is not None and f.ndim == 1 else 1)
    y = x
    for f2d, *args in plan:
        assert f2d.ndim == 2 and f2d.dtype == x.dtype
        y = ud._upfirdn2d_torch_2d(y, f2d, *args)
    torch.testing.assert_close(y, ud._upfirdn2d_torch(x, f, up, down, padding, flip, gain))


@pytest.mark.parametrize('taps, up, down, padding, flip, gain', CASES[1:])
def test_gradcheck(taps, up, down, padding, flip, gain):
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    f = _filter(taps)
    fn = lambda x: ud.upfirdn2d(x, f, up, down, padding, flip, gain, impl='ref')  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


def test_does_not_mutate_and_keeps_dtype():
    x = torch.randn(1, 2, 6, 6)
    f = ud.setup_filter([1, 3, 3, 1])
    x0, f0 = x.clone(), f.clone()
    y = ud.upsample2d(ud.downsample2d(x, f, impl='ref'), f, impl='ref')
    assert torch.equal(x, x0) and torch.equal(f, f0) and y.dtype == x.dtype and y.shape == x.shape


@pytest.mark.parametrize('kwargs, match', [
    (dict(x=torch.zeros(2, 3, 4)), '4-D'),
    (dict(f=torch.zeros(1, 1, 1)), 'filter'),
    (dict(up=0), 'up'),
    (dict(down=[2, 2, 2]), 'down'),
    (dict(padding=[1, 2, 3]), 'padding'),
    (dict(padding=-3), 'empty output'),
    (dict(f=torch.ones(3, 3, dtype=torch.int64)), 'floating'),
])
def test_validation(kwargs, match):
    args = dict(x=torch.zeros(1, 1, 4, 4), f=torch.ones(2, 2))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ud.upfirdn2d(**args)
    with pytest.raises(ValueError):
        ud.setup_filter(torch.ones(2, 2, 2))
