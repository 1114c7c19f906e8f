"""grid_sample_gradfix: the gather reference equals F.grid_sample (forward, first backward),
gradcheck/gradgradcheck of the reference (input and grid) and of the default 'gradfix'
path, the cheap R1 path, dispatch. CPU, float64."""

import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import grid_sample_gradfix as gs

pytestmark = pytest.mark.usefixtures('single_thread')


def _inputs(n=2, c=3, h=4, w=5, ho=3, wo=2, seed=0, requires_grad=True):
    """input [N, C, H, W] and grid [N, Ho, Wo, 2] in [-1.3, 1.3] (some samples fall in the zero
    padding), nudged so no sample sits within 1e-2 of a pixel centre, where the bilinear
    weights have kinks that finite differences would straddle."""
    g = torch.Generator().manual_seed(seed)
    inp = torch.randn(n, c, h, w, generator=g, dtype=torch.float64)
    grid = (torch.rand(n, ho, wo, 2, generator=g, dtype=torch.float64) * 2 - 1) * 1.3
    size = torch.tensor([w, h], dtype=torch.float64)
    pix = ((grid + 1) * size - 1) / 2
    frac = pix - pix.floor()
    pix = torch.where((frac - 0.5).abs() > 0.49, pix.floor() + 0.5, pix)  # keep away from integers
    grid = (2 * pix + 1) / size - 1
    return inp.requires_grad_(requires_grad), grid.requires_grad_(requires_grad)


def _native(inp, grid):
    return F.grid_sample(inp, grid, mode='bilinear', padding_mode='zeros', align_corners=False)


def test_golden_values():
    # 2x2 image [[1, 2], [3, 4]]; pixel centres at x, y = -0.5, 0.5 (align_corners=False).
    inp = torch.tensor([[[[1., 2], [3, 4]]]])
    grid = torch.tensor([[[[-0.5, -0.5], [0.0, 0.0], [0.5, -0.5], [-1.0, -0.5], [2.0, 0.0]]]])
    # centre of pixel (0,0) -> 1; image centre -> mean 2.5; pixel (0,1) -> 2;
    # x=-1 is half a pixel left of pixel 0: 0.5 * 1 + 0.5 * 0 (zero padding) = 0.5; far outside -> 0.
    for impl in ('ref', 'gradfix', 'native'):
        out = gs.grid_sample(inp, grid, impl=impl)
        torch.testing.assert_close(out.flatten(), torch.tensor([1.0, 2.5, 2.0, 0.5, 0.0]))


def test_ref_matches_native_forward_and_backward():
    inp, grid = _inputs(h=5, w=7, ho=6, wo=4)
    out_ref, out_nat = gs._grid_sample_ref(inp, grid), _native(inp, grid)
    torch.testing.assert_close(out_ref, out_nat, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(out_nat)
    g_ref = torch.autograd.grad(out_ref, (inp, grid), go)
    g_nat = torch.autograd.grad(out_nat, (inp, grid), go)
    for a, b in zip(g_ref, g_nat):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_ref_float32_matches_native():
    inp, grid = _inputs(requires_grad=False)
    inp, grid = inp.float(), grid.float()
    torch.testing.assert_close(gs._grid_sample_ref(inp, grid), _native(inp, grid))


def test_ref_gradcheck_and_gradgradcheck():
    inp, grid = _inputs(n=1, c=2, h=3, w=4, ho=2, wo=3)
    assert torch.autograd.gradcheck(gs._grid_sample_ref, (inp, grid))
    assert torch.autograd.gradgradcheck(gs._grid_sample_ref, (inp, grid))


def test_gradfix_first_order_matches_native():
    inp, grid = _inputs()
    out = gs.grid_sample(inp, grid)  # impl='auto' -> 'gradfix' (enabled=True)
    torch.testing.assert_close(out, _native(inp, grid))
    go = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, (inp, grid), go),
                    torch.autograd.grad(_native(inp, grid), (inp, grid), go)):
        torch.testing.assert_close(a, b)


def test_gradfix_full_second_order():
    inp, grid = _inputs(n=1, c=2, h=3, w=4, ho=2, wo=3)
    fn = lambda i, g: gs.grid_sample(i, g, impl='gradfix')  # noqa: E731
    assert torch.autograd.gradcheck(fn, (inp, grid))
    assert torch.autograd.gradgradcheck(fn, (inp, grid))


def test_gradfix_r1_path_uses_native_only(monkeypatch):
    """Grid without grad (as in R1 through a fixed warp): the double backward is one native
    grid_sample; the reference must not run."""
    def fail(*args):
        raise AssertionError('the reference second-order path ran')
    monkeypatch.setattr(gs, '_second_order_ref', fail)
    inp, grid = _inputs(n=1, c=2, h=3, w=4, ho=2, wo=3)
    grid = grid.detach()
    fn = lambda i: gs.grid_sample(i, grid, impl='gradfix')  # noqa: E731
    assert torch.autograd.gradgradcheck(fn, (inp,))
    # R1-style: ||d sum(w * out)/d input||^2 differentiated w.r.t. a weight applied after.
    wgt = torch.randn(1, 2, 2, 3, dtype=torch.float64, requires_grad=True)
    (gi,) = torch.autograd.grad((fn(inp) * wgt).square().sum(), inp, create_graph=True)
    (gw,) = torch.autograd.grad(gi.square().sum(), wgt)
    out_ref = gs._grid_sample_ref(inp, grid)
    (gi_ref,) = torch.autograd.grad((out_ref * wgt).square().sum(), inp, create_graph=True)
    (gw_ref,) = torch.autograd.grad(gi_ref.square().sum(), wgt)
    torch.testing.assert_close(gw, gw_ref)


def test_dispatch_and_validation(monkeypatch):
    inp, grid = _inputs(requires_grad=False)
    monkeypatch.setattr(gs, 'enabled', False)  # 'auto' -> plain native op (no custom Function)
    out = gs.grid_sample(inp.requires_grad_(True), grid)
    assert out.grad_fn is not None and 'GridSampler2D' in type(out.grad_fn).__name__
    with pytest.raises(ValueError, match='impl'):
        gs.grid_sample(inp, grid, impl='cuda')
    with pytest.raises(ValueError, match='grid'):
        gs.grid_sample(inp, grid[..., :1])
    with pytest.raises(ValueError, match='dtype'):
        gs.grid_sample(inp, grid.float())
    with pytest.raises(ValueError, match='input'):
        gs.grid_sample(inp[0], grid)
