"""Volume rendering (SPEC §4.4-4.5): rays, ray/box, marcher, plane sampling, importance, renderer."""

import math

import pytest
import torch

from training.cameras import FOV_to_intrinsics, LookAtPose
from training.rendering.decoder import OSGDecoder
from training.rendering import math_utils, samplers
from training.rendering.compositing import march_rays
from training.rendering.rays import RaySampler, sample_rays
from training.rendering.field import TriplaneField
from training.rendering.options import RenderingOptions
from training.rendering.renderer import ImportanceRenderer
from training.rendering.planes import generate_planes, project_onto_planes, sample_from_planes

F64 = torch.float64

# ----------------------------------------------------------------------------------------------
# Ray sampler (§4.4)


def test_rays_identity_camera_golden():
    # R = 2, K = [[1,0,.5],[0,1,.5],[0,0,1]]: pixel centres u, v in {0.25, 0.75}, so the z=1
    # points are (u - 0.5, v - 0.5, 1) = (+-0.25, +-0.25, 1), norm sqrt(1.125) = 1.0606602;
    # unit dirs have components +-0.2357023 and 0.9428090. Ray m = row*2 + col (u = column).
    K = torch.tensor([[[1., 0, 0.5], [0, 1, 0.5], [0, 0, 1]]], dtype=F64)
    origins, dirs = sample_rays(torch.eye(4, dtype=F64)[None], K, 2)
    a, b = 0.2357023, 0.9428090
    expected = torch.tensor([[[-a, -a, b], [a, -a, b], [-a, a, b], [a, a, b]]], dtype=F64)
    torch.testing.assert_close(dirs, expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(origins, torch.zeros(1, 4, 3, dtype=F64))


def test_rays_centre_ray_and_reprojection():
    # Odd R: the centre pixel (u = v = 0.5) is the principal point, so its ray is the camera
    # forward axis. Every ray, taken back to camera space and through K, lands on its pixel centre.
    g = torch.Generator().manual_seed(0)
    M = LookAtPose(torch.rand(2, 1, generator=g, dtype=F64) + 1, torch.rand(2, 1, generator=g, dtype=F64) + 1,
                   [0, 0, 0.2], 2.7)
    K = torch.tensor([[[4.26, 0.0, 0.5], [0, 4.26, 0.5], [0, 0, 1]], [[2.0, 0.3, 0.4], [0, 3.0, 0.6], [0, 0, 1]]],
                     dtype=F64)
    origins, dirs = sample_rays(M, K, 3)
    torch.testing.assert_close(dirs[0, 4], M[0, :3, 2])
    torch.testing.assert_close(origins, M[:, None, :3, 3].expand(2, 9, 3))
    d_cam = dirs @ M[:, :3, :3]                                  # R^T d, row form
    pix = d_cam @ K.transpose(1, 2)
    pix = pix[..., :2] / pix[..., 2:]
    c = (torch.arange(3, dtype=F64) + 0.5) / 3
    vv, uu = torch.meshgrid(c, c, indexing='ij')
    torch.testing.assert_close(pix, torch.stack([uu, vv], -1).reshape(1, 9, 2).expand(2, 9, 2))
    torch.testing.assert_close(RaySampler()(M, K, 3)[1], dirs)


# ----------------------------------------------------------------------------------------------
# Ray/box and linspace (math_utils)


def test_ray_box_limits():
    # From (0,0,2) along -z into the cube [-1,1]^3: enters z = 1 at t = 1, leaves z = -1 at t = 3.
    # The second ray, from (0,3,2), passes above the cube: invalid, flagged (-1, -2).
    o = torch.tensor([[[0., 0, 2], [0, 3, 2]]])
    d = torch.tensor([[[0., 0, -1], [0, 0, -1]]])
    near, far = math_utils.get_ray_limits_box(o, d, 2.0)
    assert near.shape == far.shape == (1, 2, 1)
    torch.testing.assert_close(near.flatten(), torch.tensor([1., -1]))
    torch.testing.assert_close(far.flatten(), torch.tensor([3., -2]))
    assert bool(far[0, 0] > near[0, 0]) and not bool(far[0, 1] > near[0, 1])


def test_linspace_batched():
    out = math_utils.linspace(torch.tensor([0., 1]), torch.tensor([1., 3]), 3)
    torch.testing.assert_close(out, torch.tensor([[0., 1], [0.5, 2], [1, 3]]))


# ----------------------------------------------------------------------------------------------
# Ray marcher (§4.5)


def test_marcher_constant_slab_golden():
    # t = [0,1,2,3] (delta = 1), raw sigma = 1 -> softplus(1 - 1) = ln 2, alpha = 1 - e^-ln2 = 0.5.
    # T = [1, 0.5, 0.25] (x (1 + 2e-10) factors), w = [0.5, 0.25, 0.125], sum w = 0.875, final T = 0.125.
    # feature (colour 1) = 0.875 -> 2*0.875 - 1 = 0.75; white_back: 0.875 + 0.125 = 1 -> 1.
    # depth = (0.5*0.5 + 0.25*1.5 + 0.125*2.5) / 0.875 = 0.9375 / 0.875 = 1.0714286.
    t = torch.arange(4, dtype=F64).reshape(1, 1, 4, 1)
    colors = torch.ones(1, 1, 4, 2, dtype=F64)
    sigma = torch.ones(1, 1, 4, 1, dtype=F64)
    out = march_rays(colors, sigma, t)
    torch.testing.assert_close(out.weights.flatten(), torch.tensor([0.5, 0.25, 0.125], dtype=F64))
    torch.testing.assert_close(out.final_transmittance.flatten(), torch.tensor([0.125], dtype=F64))
    torch.testing.assert_close(out.features.flatten(), torch.tensor([0.75, 0.75], dtype=F64))
    torch.testing.assert_close(out.depth.flatten(), torch.tensor([1.0714286], dtype=F64))
    white = march_rays(colors, sigma, t, white_back=True)
    torch.testing.assert_close(white.features.flatten(), torch.tensor([1.0, 1.0], dtype=F64))
    with pytest.raises(ValueError, match='softplus'):
        march_rays(colors, sigma, t, clamp_mode='mipnerf')


def test_marcher_opaque_empty_and_bounds():
    # Ray 0: opaque first interval [1.9, 2.1] -> depth = its midpoint 2.0.
    # Ray 1: empty (softplus(-1e3 - 1) = 0) -> 0/0 = NaN -> inf -> max t of the WHOLE batch (5.0).
    t = torch.tensor([[1.9, 2.1, 3.0], [1.0, 2.0, 5.0]], dtype=F64).reshape(1, 2, 3, 1)
    sigma = torch.tensor([[1e3, 1e3, 1e3], [-1e3, -1e3, -1e3]], dtype=F64).reshape(1, 2, 3, 1)
    out = march_rays(torch.rand(1, 2, 3, 3, dtype=F64), sigma, t)
    torch.testing.assert_close(out.depth.flatten(), torch.tensor([2.0, 5.0], dtype=F64))
    torch.testing.assert_close(out.features[0, 1], -torch.ones(3, dtype=F64))   # no colour -> 2*0 - 1
    g = torch.Generator().manual_seed(1)
    t = torch.sort(torch.rand(2, 5, 8, 1, generator=g) * 4, dim=2).values
    out = march_rays(torch.rand(2, 5, 8, 3, generator=g), torch.randn(2, 5, 8, 1, generator=g) * 5, t)
    assert (out.weights >= 0).all() and (out.weights.sum(2) <= 1 + 1e-6).all()
    torch.testing.assert_close(out.weights.sum(2) + out.final_transmittance, torch.ones(2, 5, 1))


# ----------------------------------------------------------------------------------------------
# Tri-plane axes and sampling


def test_plane_projection_correct_and_legacy():
    p = torch.tensor([[[1., 2, 3]]])
    correct = project_onto_planes(generate_planes(legacy=False), p)
    legacy = project_onto_planes(generate_planes(legacy=True), p)
    assert correct.shape == (3, 1, 2)
    torch.testing.assert_close(correct[:, 0], torch.tensor([[1., 2], [1, 3], [3, 2]]))   # XY, XZ, ZY
    torch.testing.assert_close(legacy[:, 0], torch.tensor([[1., 2], [1, 3], [3, 1]]))    # XY, XZ, ZX
    assert project_onto_planes(generate_planes(), p.expand(2, 5, 3)).shape == (6, 5, 2)


def test_sample_from_planes_linear_ramp():
    # Every plane (4x4) holds f(row i, col j) = 10*j + i. align_corners=False maps grid g to pixel
    # index (g + 1)*4/2 - 0.5 = 2g + 1.5, and bilinear interpolation of a linear ramp is exact.
    # box_warp = 1 scales p = (0.125, -0.125, 0.25) to g = (0.25, -0.25, 0.5) -> indices (2.0, 1.0, 2.5).
    # correct: XY 10*2.0 + 1.0 = 21.0, XZ 10*2.0 + 2.5 = 22.5, ZY 10*2.5 + 1.0 = 26.0; legacy ZX: 25 + 2 = 27.0.
    # p = (1, 0, 0) -> g = (2, 0, 0): outside in x -> 0 on XY and XZ (zero padding); ZY sees (0, 0) -> 16.5.
    i, j = torch.meshgrid(torch.arange(4.), torch.arange(4.), indexing='ij')
    planes = (10 * j + i).expand(1, 3, 1, 4, 4)
    p = torch.tensor([[[0.125, -0.125, 0.25], [1.0, 0, 0]]])
    out = sample_from_planes(generate_planes(False), planes, p, box_warp=1.0)
    assert out.shape == (1, 3, 2, 1)
    torch.testing.assert_close(out[0, :, :, 0], torch.tensor([[21.0, 0], [22.5, 0], [26.0, 16.5]]))
    legacy = sample_from_planes(generate_planes(True), planes, p, box_warp=1.0)
    assert legacy[0, 2, 0, 0].item() == pytest.approx(27.0)


# ----------------------------------------------------------------------------------------------
# Depth samplers


def test_stratified_sampling():
    start, end = torch.full([1, 2, 1], 2.0), torch.full([1, 2, 1], 3.0)
    t0 = samplers.sample_stratified(start, end, 5, noise=torch.zeros(1, 2, 5, 1))
    torch.testing.assert_close(t0[0, 0, :, 0], torch.tensor([2.0, 2.25, 2.5, 2.75, 3.0]))
    t1 = samplers.sample_stratified(start, end, 5, noise=torch.full([1, 2, 5, 1], 0.5))
    torch.testing.assert_close(t1 - t0, torch.full_like(t0, 0.125))   # u * delta, delta = 0.25
    draws = [samplers.sample_stratified(start, end, 5, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    torch.testing.assert_close(draws[0], draws[1], rtol=0, atol=0)
    assert ((draws[0] - t0 >= 0) & (draws[0] - t0 < 0.25)).all()


def test_sample_pdf_uniform_is_linear():
    # Equal weights on bins 0..4: the CDF is linear, t = 4u.
    bins = torch.arange(5, dtype=F64).expand(2, 5)
    u = torch.tensor([[0.0, 0.1, 0.5, 0.9]], dtype=F64).expand(2, 4)
    torch.testing.assert_close(samplers.sample_pdf(bins, torch.ones(2, 4, dtype=F64), 4, u=u), 4 * u)


def test_importance_sampling_delta_weights():
    # Coarse t = 0..15 (D = 16), all weight on interval 8 = [8, 9]. Smoothing: max-pool ->
    # 1 at 8, 9; avg-pool -> 0.5, 1, 0.5 on intervals 7, 8, 9; +0.01. pdf = smoothed[1:-1] + 1e-5
    # (13 values; total 2 + 13*0.01 + 13e-5 = 2.13013) over bins = midpoints 0.5, 1.5, ..., so pdf
    # entry k (bins k+0.5 .. k+1.5) carries interval k+1: the mass sits on [6.5, 9.5], fraction
    # (2 + 3*0.01 + 3e-5)/2.13013 = 0.95301, not on [7.5, 10.5] (the EG3D off-by-one).
    # u = 0.5: cdf[7] = (6*0.01001 + 0.51001)/2.13013, cdf[8] = cdf[7] + 1.01001/2.13013 ->
    # t = 7.5 + (0.5*2.13013 - 0.57007)/1.01001 = 7.990089. The last midpoint 14.5 is never used.
    D = 16
    t = torch.arange(D, dtype=F64).reshape(1, 1, D, 1)
    w = torch.zeros(1, 1, D - 1, 1, dtype=F64)
    w[0, 0, 8] = 1
    u = torch.tensor([0.5, 0.0, 1 - 1e-9], dtype=F64).reshape(1, 1, 3)
    golden = samplers.sample_importance(t, w, 3, u=u).flatten()
    torch.testing.assert_close(golden, torch.tensor([7.990089, 0.5, 13.5], dtype=F64), rtol=0, atol=1e-5)
    u = ((torch.arange(1000, dtype=F64) + 0.5) / 1000).reshape(1, 1, 1000)
    fine = samplers.sample_importance(t, w, 1000, u=u)
    assert fine.shape == (1, 1, 1000, 1)
    inside = ((fine >= 6.5) & (fine <= 9.5)).double().mean().item()
    assert inside == pytest.approx(0.95301, abs=2e-3)


def test_importance_shapes():
    g = torch.Generator().manual_seed(4)
    start, end = torch.full([2, 3, 1], 2.25), torch.full([2, 3, 1], 3.3)
    t = samplers.sample_stratified(start, end, 6, generator=g)
    out = march_rays(torch.rand(2, 3, 6, 4, generator=g), torch.randn(2, 3, 6, 1, generator=g), t)
    fine = samplers.sample_importance(t, out.weights, 5, generator=g)
    assert fine.shape == (2, 3, 5, 1) and not fine.requires_grad
    assert ((fine >= 2.25) & (fine <= t.max())).all()


# ----------------------------------------------------------------------------------------------
# Decoder and renderer


def _options(**overrides):
    opts = dict(ray_start=2.25, ray_end=3.3, box_warp=1.0, depth_resolution=6, depth_resolution_importance=6,
                disparity_space_sampling=False, clamp_mode='softplus', white_back=False, density_noise=0)
    opts.update(overrides)
    return opts


def _render(planes, decoder, origins, dirs, opts, generator=None, channels=None):
    """One render of (planes, decoder) with EG3D-style options (built into typed ones first)."""
    options = RenderingOptions.from_kwargs(opts)
    field = TriplaneField(planes, decoder, options.plane_axes, options.box_warp)
    return ImportanceRenderer(options)(field, origins, dirs, generator=generator, channels=channels)


def _scene(seed=0):
    g = torch.Generator().manual_seed(seed)
    planes = torch.randn(2, 3, 8, 16, 16, generator=g).requires_grad_(True)
    torch.manual_seed(seed)
    decoder = OSGDecoder(8, {'decoder_lr_mul': 1, 'decoder_output_dim': 4})
    h = (torch.full([2, 1], math.pi / 2) + torch.tensor([[0.0], [0.3]])).requires_grad_(True)
    v = torch.full([2, 1], math.pi / 2).requires_grad_(True)
    cam2world = LookAtPose(h, v, [0, 0, 0.2], 2.7)
    origins, dirs = sample_rays(cam2world, FOV_to_intrinsics(18.837).expand(2, 3, 3), 4)
    return planes, decoder, h, v, origins, dirs


def test_decoder_outputs():
    torch.manual_seed(0)
    dec = OSGDecoder()
    out = dec(torch.randn(2, 3, 7, 32) * 10, torch.randn(2, 7, 3))
    assert out['rgb'].shape == (2, 7, 32) and out['sigma'].shape == (2, 7, 1)
    assert (out['rgb'] > -0.001).all() and (out['rgb'] < 1.001).all()
    assert sorted(dict(dec.named_parameters())) == ['net.0.bias', 'net.0.weight', 'net.2.bias', 'net.2.weight']


def test_renderer_forward_and_gradients():
    planes, decoder, h, v, origins, dirs = _scene()
    planes_before = planes.detach().clone()
    rgb, depth, wsum, _ = _render(planes, decoder, origins, dirs, _options(),
                                  generator=torch.Generator().manual_seed(1))
    assert rgb.shape == (2, 16, 4) and depth.shape == (2, 16, 1) and wsum.shape == (2, 16, 1)
    assert torch.isfinite(rgb).all() and torch.isfinite(depth).all()
    assert (depth >= 2.25).all() and (wsum <= 1 + 1e-6).all()
    (rgb.square().sum() + depth.sum()).backward()
    for name, tensor in [('planes', planes), ('h', h), ('v', v)] + list(decoder.named_parameters()):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name
    torch.testing.assert_close(planes.detach(), planes_before, rtol=0, atol=0)


def test_renderer_options_and_determinism():
    planes, decoder, _, _, origins, dirs = _scene(seed=1)
    with torch.no_grad():
        def run(seed=5, **kw):
            return _render(planes, decoder, origins, dirs, _options(**kw),
                           generator=torch.Generator().manual_seed(seed))
        a, b = run(), run()
        torch.testing.assert_close(a.features, b.features, rtol=0, atol=0)
        assert not torch.equal(a.features, run(seed=6).features)
        legacy = run(plane_axes='legacy')
        assert not torch.allclose(a.features, legacy.features)
        torch.testing.assert_close(run(wrong=True).features, legacy.features, rtol=0, atol=0)
        assert not torch.equal(run(density_noise=1.0).features, a.features)
        auto = run(ray_start='auto', ray_end='auto', depth_resolution_importance=0)
        assert torch.isfinite(auto.features).all()
        white = run(white_back=True)
        torch.testing.assert_close(white.features, a.features + 2 * (1 - a.weight_sum))
    for bad in [dict(clamp_mode='relu'), dict(disparity_space_sampling=True), dict(plane_axes='xyz'),
                dict(plane_axes='correct', wrong=True), dict(ray_start='auto')]:
        with pytest.raises(ValueError):
            _render(planes, decoder, origins, dirs, _options(**bad))


def test_point_query():
    planes, decoder, *_ = _scene(seed=2)
    coords = torch.rand(2, 10, 3) - 0.5
    field = TriplaneField(planes, decoder, 'correct', 1.0)
    rgb, sigma = ImportanceRenderer(RenderingOptions.from_kwargs(_options())).query(field, coords)
    assert rgb.shape == (2, 10, 4) and sigma.shape == (2, 10, 1)
