"""Each stage of training/rendering/ against the reference port it replaced (tests/reference/rendering.py).

The package runs one body per stage, written for speed; the plain formulation of the
reference code is kept beside the tests. Tolerances: float64 checks use 1e-10..1e-12 (a larger
difference is a bug, not rounding); float32 checks allow the rounding of sums regrouped in
another order (stated per test); operations that only move data are compared exactly.
"""

import dataclasses

import pytest
import torch

from reference import rendering as ref   # tests/reference/rendering.py
from training.rendering import decoder as decoder_module
from training.rendering import planes as planes_module
from training.rendering import samplers
from training.rendering.compositing import coarse_weights, march_importance, march_rays
from training.rendering.decoder import OSGDecoder
from training.rendering.field import TriplaneField
from training.rendering.options import RenderingOptions
from training.rendering.planes import generate_planes, sample_plane_mean
from training.rendering.renderer import ImportanceRenderer

F64 = torch.float64
pytestmark = pytest.mark.usefixtures('single_thread')


def assert_all_close(expected, got, **tol):
    assert len(expected) == len(got)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, **tol)


# ---------------------------------------------------------------------------------------------
# Decoder: plane mean on the stored layout, recomputed blocked MLP.

def _decoder_case(dtype):
    torch.manual_seed(0)
    dec = OSGDecoder(8, {'decoder_lr_mul': 0.5, 'decoder_output_dim': 6}).to(dtype)
    with torch.no_grad():
        for p in dec.parameters():
            p.normal_()
    # The layout sample_from_planes returns: a permuted view of [N, P, C, M] memory.
    feats = torch.randn(2, 3, 8, 37, dtype=dtype).permute(0, 1, 3, 2).requires_grad_(True)
    return dec, feats


def _decoder_run(dec, feats, decode):
    dec.zero_grad(set_to_none=True)
    feats.grad = None
    rgb, sigma = decode()
    (rgb.square().sum() + sigma.sin().sum()).backward()
    return [rgb.detach(), sigma.detach(), feats.grad] + [p.grad for p in dec.parameters()]


@pytest.mark.parametrize('chunk', [8, 10 ** 6])
def test_decoder_matches_reference(monkeypatch, chunk):
    # Blocks of 8 rows (10 blocks for 74 rows) and one block; float64: same function to 1e-12.
    monkeypatch.setattr(decoder_module._RecomputedDecoder, 'CHUNK', chunk)
    dec, feats = _decoder_case(F64)
    expected = _decoder_run(dec, feats, lambda: ref.osg_decode(feats, dec))
    got = _decoder_run(dec, feats, lambda: tuple(dec(feats)[k] for k in ('rgb', 'sigma')))
    assert_all_close(expected, got, rtol=1e-12, atol=1e-12)


def test_decoder_forward_float32_and_saves_only_its_input():
    # float32: the output layer runs transposed (another GEMM, so another summation order
    # inside the 64-term dot products): agreement to float32 rounding.
    dec, feats = _decoder_case(torch.float32)
    with torch.no_grad():
        rgb, sigma = ref.osg_decode(feats, dec)
        out = dec(feats)
    torch.testing.assert_close(out['rgb'], rgb, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(out['sigma'], sigma, rtol=1e-5, atol=1e-5)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        dec(feats)
    assert max(saved) <= feats.numel() // 3   # the averaged input [N*M, C]; no hidden layer


def test_decoder_refuses_double_backward():
    dec, feats = _decoder_case(F64)
    out = dec(feats)
    g, = torch.autograd.grad(out['sigma'].sum(), feats, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


# ---------------------------------------------------------------------------------------------
# Tri-plane sampling + plane mean as one weighted gather (sample_plane_mean).

def _plane_case(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    planes = torch.randn(2, 3, 5, 8, 8, generator=g, dtype=dtype).requires_grad_(True)
    coords = (torch.rand(2, 400, 3, generator=g, dtype=dtype) - 0.5) * 1.7      # some beyond the box
    # Points on texel centres and edges, the box faces, and far outside (all-zero corners).
    special = torch.tensor([[0.0, 0.0, 0.0], [0.65, -0.65, 0.1], [1 / 16, 3 / 16, -5 / 16], [0.7, 0.66, -0.72],
                            [-0.65 - 1 / 8, 0.2, 0.3], [5.0, -7.0, 0.0], [0.65, 0.65, 0.65]], dtype=dtype)
    coords = torch.cat([coords, special.expand(2, -1, -1)], dim=1).requires_grad_(True)
    return planes, coords


@pytest.mark.parametrize('legacy', [False, True])
def test_sample_plane_mean_matches_grid_sample_then_mean(legacy):
    # Forward: the same bilinear weights summed in another order (float64: 1e-12). Backward is
    # grid_sample's own backward: plane gradients exact, point gradients through the
    # projection's transpose (1e-12).
    planes, coords = _plane_case(F64)
    expected = ref.sample_from_planes(generate_planes(legacy, dtype=F64), planes, coords, 1.3).mean(dim=1)
    got = sample_plane_mean(legacy, planes, coords, 1.3).reshape(expected.shape)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)
    g = torch.randn_like(expected)
    assert_all_close(torch.autograd.grad(expected, (planes, coords), g), torch.autograd.grad(got, (planes, coords), g),
                     rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('legacy', [False, True])
def test_sample_from_planes_matches_reference(legacy):
    # The one-product projection picks the same coordinates as the full inverse product.
    planes, coords = _plane_case(F64, seed=2)
    axes = generate_planes(legacy, dtype=F64)
    expected = ref.sample_from_planes(axes, planes, coords, 1.3)
    got = planes_module.sample_from_planes(axes, planes, coords, 1.3)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)


def test_sample_plane_mean_float32_and_blocks(monkeypatch):
    # Blocks of 64 points (several per sample) give the same rows as one block; float32 within
    # rounding of the reference (~6e-8 relative per term, 12 terms).
    planes, coords = _plane_case(torch.float32, seed=1)
    with torch.no_grad():
        expected = ref.sample_from_planes(generate_planes(False), planes, coords, 1.3).mean(dim=1)
        whole = sample_plane_mean(False, planes, coords, 1.3)
        monkeypatch.setattr(planes_module._PlaneMeanSample, 'CHUNK', 64)
        blocked = sample_plane_mean(False, planes, coords, 1.3)
    assert torch.equal(whole, blocked)
    torch.testing.assert_close(whole.reshape(expected.shape), expected, rtol=1e-5, atol=2e-6)


def test_sample_plane_mean_non_finite_points_give_nan_like_grid_sample():
    # An unsafe camera can put NaN / inf into the points; grid_sample returns NaN there (and
    # the gather must not index out of range).
    planes = torch.randn(1, 3, 2, 4, 4)
    inf, nan = float('inf'), float('nan')
    coords = torch.tensor([[[nan, 0, 0], [inf, 0.1, 0.1], [0.1, 0.2, 0.3], [0.1, -inf, 0.2]]])
    with torch.no_grad():
        expected = ref.sample_from_planes(generate_planes(False), planes, coords, 1.0).mean(dim=1)
        got = sample_plane_mean(False, planes, coords, 1.0).reshape(expected.shape)
    torch.testing.assert_close(got, expected, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# Ray marching, the importance merge, the sampler's smoothing.

def _samples(N=2, M=5, S1=6, S2=4, C=3, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    d1 = torch.sort(torch.rand(N, M, S1, 1, generator=g, dtype=dtype) * 2 + 1, dim=-2).values
    d2 = torch.rand(N, M, S2, 1, generator=g, dtype=dtype) * 2 + 1
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=dtype).requires_grad_(True)  # noqa: E731
    return d1, rnd(N, M, S1, C), rnd(N, M, S1, 1), d2, rnd(N, M, S2, C), rnd(N, M, S2, 1)


@pytest.mark.parametrize('white_back', [False, True])
def test_march_importance_matches_unify_then_march(white_back):
    d1, c1, s1, d2, c2, s2 = _samples()

    def run(march):
        out = march(d1, c1, s1, d2, c2, s2, white_back=white_back)
        loss = (out.features * torch.arange(3, dtype=F64)).sum() + out.depth.sum() + out.weights.square().sum()
        return [out.features, out.depth, out.weights, out.final_transmittance,
                *torch.autograd.grad(loss, (c1, s1, c2, s2))]
    assert_all_close(run(ref.march_importance), run(march_importance), rtol=1e-10, atol=1e-12)


def test_march_importance_float32_without_grad():
    d1, c1, s1, d2, c2, s2 = _samples(dtype=torch.float32, seed=1)
    with torch.no_grad():
        expected, got = ref.march_importance(d1, c1, s1, d2, c2, s2), march_importance(d1, c1, s1, d2, c2, s2)
    assert_all_close(expected, got, rtol=1e-5, atol=1e-6)   # float32, colour sum in another order


@pytest.mark.parametrize('white_back', [False, True])
def test_march_rays_and_coarse_weights_match(white_back):
    d, c, s = _samples(S2=1)[:3]

    def run(march):
        out = march(c, s, d, white_back=white_back)
        return [*out, *torch.autograd.grad(out.features.square().sum() + out.depth.sum(), (c, s))]
    assert_all_close(run(ref.march_rays), run(march_rays), rtol=1e-10, atol=1e-12)
    assert torch.equal(coarse_weights(s, d), ref.march_rays(c, s, d).weights)   # the same ops, no colours


def test_smooth_weights_equal_the_pooling():
    w = torch.rand(7, 9, generator=torch.Generator().manual_seed(3), dtype=F64)
    assert torch.equal(samplers.smooth_weights(w), ref.smooth_weights(w))


# ---------------------------------------------------------------------------------------------
# The whole renderer.

def _render_case(white_back, seed=1):
    dec, _ = _decoder_case(F64)
    g = torch.Generator().manual_seed(seed)
    planes = torch.randn(2, 3, 8, 8, 8, generator=g, dtype=F64).requires_grad_(True)
    origins = torch.randn(2, 1, 3, generator=g, dtype=F64).expand(2, 9, 3) * 0.1 + torch.tensor([0, 0, -2.0], dtype=F64)
    dirs = torch.nn.functional.normalize(torch.randn(2, 9, 3, generator=g, dtype=F64) * 0.2
                                         + torch.tensor([0, 0, 1.0], dtype=F64), dim=-1)
    opts = RenderingOptions(ray_start=1.0, ray_end=3.0, box_warp=1.6, depth_resolution=5, depth_resolution_importance=4,
                            white_back=white_back)
    return dec, planes, origins, dirs, opts


def _render_run(dec, planes, render):
    dec.zero_grad(set_to_none=True)
    planes.grad = None
    feats, depth = render()
    (feats.square().sum() + depth.sum()).backward()
    return [feats.detach(), depth.detach(), planes.grad] + [p.grad for p in dec.parameters()]


@pytest.mark.parametrize('white_back', [False, True])
@pytest.mark.parametrize('channels', [None, 3])
def test_renderer_matches_reference(white_back, channels):
    # The reference computes all channels and slices; with channels=3 the package's output
    # layer computes only those (the generator without super-resolution reads only RGB).
    dec, planes, origins, dirs, opts = _render_case(white_back)
    renderer = ImportanceRenderer(opts)
    field = TriplaneField(planes, dec, 'correct', opts.box_warp)

    def reference():
        f, depth, _ = ref.importance_render(planes, dec, origins, dirs, dataclasses.asdict(opts),
                                            torch.Generator().manual_seed(2))
        return f[..., :channels] if channels else f, depth
    expected = _render_run(dec, planes, reference)
    got = _render_run(dec, planes, lambda: renderer(field, origins, dirs, generator=torch.Generator().manual_seed(2),
                                                    channels=channels)[:2])
    assert got[0].shape == (2, 9, channels or 6)
    assert_all_close(expected, got, rtol=1e-10, atol=1e-12)
