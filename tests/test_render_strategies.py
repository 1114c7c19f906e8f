"""Alpha rules and depth samplers of the pi-GAN family (SEEDS_SPEC §1.5, §3.2, §6.1 items 2-3, §6.6).

Golden values are hand-computed (the numbers are in the comments); float64 unless stated.
"""

import math

import pytest
import torch

from test_rendering import _options, _render, _scene   # tests/test_rendering.py
from training import schedules
from training.rendering import depth_samplers, samplers
from training.rendering.compositing import march_samples, sample_delta_alpha, sample_weights
from training.rendering.decoder import OSGDecoder
from training.rendering.field import TriplaneField
from training.rendering.options import RenderingOptions, RenderSchedule
from training.rendering.renderer import ImportanceRenderer

F64 = torch.float64
pytestmark = pytest.mark.usefixtures('single_thread')


def _ray(values):
    """[S] -> [1, 1, S, 1] float64."""
    return torch.tensor(values, dtype=F64).reshape(1, 1, -1, 1)


# ---------------------------------------------------------------------------------------------
# Alpha rules and the per-sample compositing

def test_sample_delta_three_sample_ray_golden():
    # t = [1, 2, 4]: delta = [1, 2, 1e10]. relu(sigma) = [ln 2, ln 2, 0.3]:
    # alpha = [1 - 1/2, 1 - 1/4, 1 - exp(-3e9)] = [0.5, 0.75, 1]
    # T = [1, 0.5, 0.5 * 0.25] (+1e-10 terms) -> w = [0.5, 0.375, 0.125], sum 1
    t, sigma = _ray([1.0, 2.0, 4.0]), _ray([math.log(2), math.log(2), 0.3])
    torch.testing.assert_close(sample_delta_alpha(sigma, t).flatten(), torch.tensor([0.5, 0.75, 1.0], dtype=F64))
    # RGB one-hot per sample plus an extra channel (a normal component, say) [0.2, 0.4, 0.6]
    colors = torch.tensor([[1, 0, 0, 0.2], [0, 1, 0, 0.4], [0, 0, 1, 0.6]], dtype=F64).reshape(1, 1, 3, 4)
    out = march_samples([t], [colors], [sigma], 'sample_delta')
    torch.testing.assert_close(out.weights.flatten(), torch.tensor([0.5, 0.375, 0.125], dtype=F64), atol=1e-9, rtol=0)
    # sum w c = [0.5, 0.375, 0.125, 0.1 + 0.15 + 0.075 = 0.325] -> 2f - 1
    torch.testing.assert_close(out.features.flatten(), torch.tensor([0, -0.25, -0.75, -0.35], dtype=F64),
                               atol=1e-9, rtol=0)
    # raw depth 0.5*1 + 0.375*2 + 0.125*4 = 1.75 (not normalized, SEEDS_SPEC §6.0 "Depth")
    torch.testing.assert_close(out.depth.flatten(), torch.tensor([1.75], dtype=F64), atol=1e-9, rtol=0)
    assert out.final_transmittance.item() == pytest.approx(0.0, abs=1e-9)


def test_sample_delta_empty_last_sample_white_and_last_back():
    # relu(-1) = 0: alpha_last = 0, w = [0.5, 0.375, 0], sum 0.875, depth 1.25
    t, sigma = _ray([1.0, 2.0, 4.0]), _ray([math.log(2), math.log(2), -1.0])
    colors = torch.eye(3, dtype=F64).reshape(1, 1, 3, 3)
    plain = march_samples([t], [colors], [sigma], 'sample_delta')
    assert plain.depth.item() == pytest.approx(1.25, abs=1e-9)
    # white_back: f + (1 - 0.875) = [0.625, 0.5, 0.125] -> [0.25, 0, -0.75]
    white = march_samples([t], [colors], [sigma], 'sample_delta', white_back=True)
    torch.testing.assert_close(white.features.flatten(), torch.tensor([0.25, 0, -0.75], dtype=F64), atol=1e-9, rtol=0)
    # last_back: the last sample takes 0.125 -> w = [0.5, 0.375, 0.125], depth 1.75
    last = march_samples([t], [colors], [sigma], 'sample_delta', last_back=True)
    torch.testing.assert_close(last.weights.flatten(), torch.tensor([0.5, 0.375, 0.125], dtype=F64), atol=1e-9, rtol=0)
    assert last.depth.item() == pytest.approx(1.75, abs=1e-9)
    # softplus: alpha_0 = 1 - exp(-softplus(ln 2) * 1) = 1 - exp(-ln 3) = 2/3
    alpha = sample_delta_alpha(sigma, t, activation='softplus')
    assert alpha.flatten()[0].item() == pytest.approx(2 / 3, abs=1e-12)


def test_occupancy_composite_golden():
    # sigma = logit([0.5, 0.5, 0.8]) = [0, 0, ln 4]: alpha = [0.5, 0.5, 0.8], no delta
    # w = [0.5, 0.5 * 0.5, 0.25 * 0.8] = [0.5, 0.25, 0.2], sum 0.95; t = [1, 2, 3]: depth 1.6
    sigma = _ray([0.0, 0.0, math.log(4)])
    colors = torch.tensor([[1.0], [0.0], [0.5]], dtype=F64).reshape(1, 1, 3, 1)
    for t in (_ray([1.0, 2.0, 3.0]), _ray([1.0, 1.5, 3.0])):     # spacing does not matter
        out = march_samples([t], [colors], [sigma], 'occupancy')
        torch.testing.assert_close(out.weights.flatten(), torch.tensor([0.5, 0.25, 0.2], dtype=F64), atol=1e-9, rtol=0)
    assert out.depth.item() == pytest.approx(0.5 * 1 + 0.25 * 1.5 + 0.2 * 3, abs=1e-9)
    # sum w c = 0.5 + 0.1 = 0.6 -> 0.2
    assert out.features.item() == pytest.approx(0.2, abs=1e-9)
    assert out.weights.sum().item() == pytest.approx(0.95, abs=1e-9)


def test_march_samples_merges_unsorted_sets():
    # Two sets in any order give the composite of the sorted union.
    g = torch.Generator().manual_seed(0)
    t = torch.rand(2, 3, 7, 1, generator=g, dtype=F64) * 2 + 1
    colors, sigma = torch.rand(2, 3, 7, 5, generator=g, dtype=F64), torch.randn(2, 3, 7, 1, generator=g, dtype=F64)
    order = torch.sort(t, dim=-2).indices
    t_sorted, sigma_sorted = torch.gather(t, -2, order), torch.gather(sigma, -2, order)
    colors_sorted = torch.gather(colors, -2, order.expand(*colors.shape))
    for rule in ('sample_delta', 'occupancy'):
        split = march_samples([t[:, :, :4], t[:, :, 4:]], [colors[:, :, :4], colors[:, :, 4:]],
                              [sigma[:, :, :4], sigma[:, :, 4:]], rule)
        whole = march_samples([t_sorted], [colors_sorted], [sigma_sorted], rule)
        for a, b in zip(split, whole):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize('rule,last_back', [('sample_delta', False), ('sample_delta', True), ('occupancy', False)])
def test_march_samples_gradcheck(rule, last_back):
    # float64 gradcheck w.r.t. colours and raw densities (sigma kept away from relu's kink at 0).
    g = torch.Generator().manual_seed(1)
    t = torch.sort(torch.rand(1, 2, 5, 1, generator=g, dtype=F64) * 2 + 1, dim=-2).values
    colors = torch.rand(1, 2, 5, 4, generator=g, dtype=F64).requires_grad_(True)
    sigma = (torch.rand(1, 2, 5, 1, generator=g, dtype=F64) + 0.1).requires_grad_(True)

    def fn(c, s):
        out = march_samples([t[:, :, 3:], t[:, :, :3]], [c[:, :, 3:], c[:, :, :3]], [s[:, :, 3:], s[:, :, :3]],
                            rule, last_back=last_back)
        return out.features, out.depth
    assert torch.autograd.gradcheck(fn, (colors, sigma))


def test_sample_weights_rejects_the_eg3d_rule():
    with pytest.raises(ValueError, match='alpha_rule'):
        sample_weights(_ray([1.0]), _ray([1.0]), 'eg3d')


# ---------------------------------------------------------------------------------------------
# Samplers

def test_importance_nerf_pdf_golden():
    # t = [0, 1, 2, 3]; per-sample w = [0.9, 0, 1, 0.7]. Bins = midpoints [0.5, 1.5, 2.5]; the pdf is
    # w[1:-1] + 1e-5 = [1e-5, 1 + 1e-5], plus sample_pdf's eps 1e-5: [2e-5, 1 + 2e-5] (the end samples'
    # weights 0.9 and 0.7 are never read). p0 = 2e-5 / (1 + 4e-5); cdf = [0, p0, 1].
    t, w = _ray([0.0, 1.0, 2.0, 3.0]), _ray([0.9, 0.0, 1.0, 0.7])
    p0 = 2e-5 / (1 + 4e-5)
    u = torch.tensor([0.5, p0 / 2, 0.999], dtype=F64).reshape(1, 1, 3)
    fine = samplers.sample_importance_nerf(t, w, 3, u=u).flatten()
    # u = 0.5: 1.5 + (0.5 - p0) / (1 - p0); u = p0/2: midway in [0.5, 1.5]; u = 0.999: near 2.5
    expected = torch.tensor([1.5 + (0.5 - p0) / (1 - p0), 1.0, 1.5 + (0.999 - p0) / (1 - p0)], dtype=F64)
    torch.testing.assert_close(fine, expected, atol=1e-12, rtol=0)


def test_sample_linspace_jitter_convention():
    lo, hi = torch.full([1, 2, 1], 1.0, dtype=F64), torch.full([1, 2, 1], 2.0, dtype=F64)
    plain = samplers.sample_linspace(lo, hi, 5, jitter=False)
    torch.testing.assert_close(plain[0, 0].flatten(), torch.tensor([1, 1.25, 1.5, 1.75, 2], dtype=F64))
    # u = 0 and u = 1 move every sample by -1/2 and +1/2 spacing (pi-GAN, SEEDS_SPEC §1.2)
    low = samplers.sample_linspace(lo, hi, 5, u=torch.zeros(1, 2, 5, 1, dtype=F64))
    high = samplers.sample_linspace(lo, hi, 5, u=torch.ones(1, 2, 5, 1, dtype=F64))
    torch.testing.assert_close(low, plain - 0.125)
    torch.testing.assert_close(high, plain + 0.125)


def test_secant_root_on_a_plane():
    # sigma = t - 1 (tau = 0.5: level logit(tau) = 0). Coarse t = 0.3, 0.5, ..., 1.9: the first
    # occupied sample is t = 1.1, so the bracket is (0.9, 1.1) with f = (-0.1, 0.1).
    t = samplers.sample_linspace(torch.full([1, 1, 1], 0.3, dtype=F64), torch.full([1, 1, 1], 1.9, dtype=F64), 9,
                                 jitter=False)
    t_lo, t_hi, f_lo, f_hi, valid = samplers.first_crossing(t - 1, t)
    assert valid.item() and t_lo.item() == pytest.approx(0.9) and t_hi.item() == pytest.approx(1.1)
    calls = []

    def level_at(x):
        calls.append(x)
        return x - 1
    depth = samplers.secant_root(level_at, t_lo, t_hi, f_lo, f_hi, steps=1)
    assert len(calls) == 1 and depth.item() == pytest.approx(1.0, abs=1e-12)
    # A curved level, f = t^2 - 1: the bracketed secant keeps one end fixed (linear convergence);
    # 4 steps leave an error of ~2.6e-8.
    depth = samplers.secant_root(lambda x: x * x - 1, t_lo, t_hi, t_lo ** 2 - 1, t_hi ** 2 - 1, steps=4)
    assert depth.item() == pytest.approx(1.0, abs=1e-7)


def test_first_crossing_validity():
    # Valid only when the first sample is empty and a later one is occupied (SEEDS_SPEC §3.2 item 2).
    level = torch.tensor([[-1, -1, 1, -1], [1, -1, 1, 1], [-1, -1, -1, -1]], dtype=F64).reshape(1, 3, 4, 1)
    t = _ray([0.0, 1.0, 2.0, 3.0]).expand(1, 3, 4, 1)
    t_lo, t_hi, *_, valid = samplers.first_crossing(level, t)
    assert valid.flatten().tolist() == [True, False, False]
    assert (t_lo[0, 0].item(), t_hi[0, 0].item()) == (1.0, 2.0)


def test_window_bounds_clamped_to_ray_range():
    # Ray range [0.5, 2]; Delta = 0.2 (width 0.4).
    depth = torch.tensor([1.0, 0.55, 1.95, 1.0, 1.0], dtype=F64).reshape(1, 5, 1)
    valid = torch.tensor([True, True, True, True, False]).reshape(1, 5, 1)
    start, end = torch.full_like(depth, 0.5), torch.full_like(depth, 2.0)
    lo, hi = samplers.window_bounds(depth, valid, 0.2, start, end)
    # centred; shifted up to the start; shifted down to the end; (below) wider than the range; no crossing
    torch.testing.assert_close(lo.flatten()[:4], torch.tensor([0.8, 0.5, 1.6, 0.8], dtype=F64))
    torch.testing.assert_close(hi.flatten()[:4], torch.tensor([1.2, 0.9, 2.0, 1.2], dtype=F64))
    assert (lo[0, 4].item(), hi[0, 4].item()) == (0.5, 2.0)
    lo, hi = samplers.window_bounds(depth, valid, 5.0, start, end)
    assert torch.equal(lo, start) and torch.equal(hi, end)


class _PlaneField:
    """sigma = z - 1 (an occupancy plane at z = 1), features = [z, 1]."""
    batch_size = 1

    def query(self, points, directions=None, channels=None):
        z = points[..., 2:]
        return torch.cat([z, torch.ones_like(z)], dim=-1), z - 1


def test_surface_window_sampler_on_a_plane():
    # Rays from the origin along +z: the secant finds depth 1 and the window is [0.9, 1.1].
    opts = RenderingOptions(ray_start=0.2, ray_end=2.0, box_warp=4.0, depth_resolution=9, depth_resolution_importance=3,
                            alpha_rule='occupancy', depth_sampler='surface_window', depth_resolution_surface=5)
    origins = torch.zeros(1, 2, 3, dtype=F64)
    dirs = torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(1, 2, 3)
    renderer = ImportanceRenderer(opts)
    t_start, t_end = torch.full([1, 2, 1], 0.2, dtype=F64), torch.full([1, 2, 1], 2.0, dtype=F64)
    rays = depth_samplers.RayQuery(renderer._bind_rays(_PlaneField(), origins, dirs, None, None, 0.0), t_start, t_end)
    plan = depth_samplers.surface_window(rays, opts, 0.1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(plan.surface_depth, torch.ones(1, 2, 1, dtype=F64))
    assert plan.queried is None and plan.depths.shape == (1, 2, 8, 1)
    window = plan.depths[:, :, :5]
    assert ((window >= 0.9 - 0.025) & (window <= 1.1 + 0.025)).all()   # +-1/2 spacing (0.05) of jitter
    out = renderer(_PlaneField(), origins, dirs, generator=torch.Generator().manual_seed(0),
                   schedule=RenderSchedule(window=0.1))
    assert out.features.shape == (1, 2, 2) and torch.isfinite(out.depth).all()


# ---------------------------------------------------------------------------------------------
# Renderer and options

def test_default_options_render_as_e6481e9():
    # tests/data/render_eg3d_e6481e9.pt: outputs and gradients of the renderer at e6481e9 (before
    # the alpha-rule / depth-sampler options), scene _scene(seed=3), generator seed 7, one thread.
    # Equal up to float32 rounding, not bit for bit: the CPU's vector width changes the order of
    # sums (an AVX2 machine differs from the one that wrote the file by <= 3e-7 relative on the
    # outputs and <= 3e-5 on the plane gradients); any change of the algorithm moves them by far more.
    golden = torch.load('tests/data/render_eg3d_e6481e9.pt')
    for name, kw in [('default', {}), ('noise_white_coarse', dict(density_noise=1.0, white_back=True,
                                                                   depth_resolution_importance=0))]:
        planes, decoder, h, v, origins, dirs = _scene(seed=3)
        out = _render(planes, decoder, origins, dirs, _options(**kw), generator=torch.Generator().manual_seed(7))
        (out.features.square().sum() + out.depth.sum()).backward()
        expected = golden[name]
        got = dict(features=out.features, depth=out.depth, weight_sum=out.weight_sum,
                   final_transmittance=out.final_transmittance, planes_grad=planes.grad, h_grad=h.grad)
        for key, value in got.items():
            torch.testing.assert_close(value.detach(), expected[key], rtol=1e-5,
                                       atol=1e-6 * float(expected[key].abs().max()), msg=f'{name} {key}')


@pytest.mark.parametrize('rule,sampler', [('sample_delta', 'importance_nerf'), ('occupancy', 'surface_window'),
                                          ('occupancy', 'importance_nerf'), ('sample_delta', 'surface_window')])
def test_renderer_per_sample_paths(rule, sampler):
    planes, decoder, h, v, origins, dirs = _scene(seed=3)   # raw sigma in [-0.15, 0.94]: relu passes gradient
    kw = dict(alpha_rule=rule, depth_sampler=sampler, window_min=0.1, window_init=0.5)
    if sampler == 'surface_window':
        kw.update(surface_level=0.574)   # level logit 0.3: most rays of this scene cross it (the window matters)

    def run(seed=5, schedule=None, **extra):
        return ImportanceRenderer(RenderingOptions.from_kwargs(_options(**kw, **extra)))(
            TriplaneField(planes, decoder, 'correct', 1.0), origins, dirs,
            generator=torch.Generator().manual_seed(seed), schedule=schedule)
    out = run()
    assert out.features.shape == (2, 16, 4) and out.depth.shape == (2, 16, 1)
    assert torch.isfinite(out.features).all() and torch.isfinite(out.depth).all()
    (out.features.square().sum() + out.depth.sum()).backward()
    assert planes.grad.abs().sum() > 0 and h.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(run().features, out.features.detach())
        assert not torch.equal(run(schedule=RenderSchedule(density_noise=1.0)).features, out.features)
        if sampler == 'surface_window':
            assert not torch.equal(run(schedule=RenderSchedule(window=0.4)).features, out.features)
        assert run(depth_resolution_importance=0).features.shape == (2, 16, 4)


@pytest.mark.parametrize('rule', ['sample_delta', 'occupancy'])
def test_no_fused_kernel_for_per_sample_rules(rule):
    planes, decoder, h, v, origins, dirs = _scene(seed=0)
    field = TriplaneField(planes, decoder, 'correct', 1.0)
    sampler = 'importance_nerf' if rule == 'sample_delta' else 'surface_window'
    renderer = ImportanceRenderer(RenderingOptions.from_kwargs(_options(impl='triton', alpha_rule=rule,
                                                                        depth_sampler=sampler)))
    assert renderer._kernel_inputs(field, origins, dirs) is None
    assert renderer._kernel_inputs(field, origins, noise_free=True) is None
    eg3d = ImportanceRenderer(RenderingOptions.from_kwargs(_options(impl='triton')))
    if eg3d._kernel_inputs(field, origins, dirs) is None:
        pytest.skip('the fused kernel cannot run here (no Triton, or no TRITON_INTERPRET on CPU)')


def test_options_defaults_and_errors():
    opts = RenderingOptions.from_kwargs(_options())
    assert (opts.alpha_rule, opts.depth_sampler, opts.density_activation, opts.last_back) == \
        ('eg3d', 'eg3d', 'relu', False)
    opts = RenderingOptions.from_kwargs(_options(alpha_rule='sample_delta', depth_sampler='importance_nerf',
                                                 density_activation='softplus', last_back=True, secant_steps=2))
    assert (opts.alpha_rule, opts.density_activation, opts.last_back, opts.secant_steps) == \
        ('sample_delta', 'softplus', True, 2)
    assert RenderingOptions.from_kwargs(_options(alpha_rule='occupancy', depth_sampler='surface_window',
                                                 surface_level=0.5)).surface_logit == 0.0
    bad = [(dict(alpha_rule='nerf'), 'alpha_rule'), (dict(depth_sampler='x'), 'depth_sampler'),
           (dict(alpha_rule='occupancy'), 'depth_sampler'), (dict(depth_sampler='importance_nerf'), 'depth_sampler'),
           (dict(alpha_rule='occupancy', depth_sampler='importance_nerf', density_activation='exp'),
            'density_activation'),
           (dict(alpha_rule='sample_delta', depth_sampler='importance_nerf', last_back=True, white_back=True),
            'last_back'), (dict(last_back=True), 'last_back'),
           (dict(alpha_rule='occupancy', depth_sampler='surface_window', depth_resolution_surface=1),
            'depth_resolution_surface'), (dict(surface_level=1.0), 'surface_level'),
           (dict(window_min=0.5, window_init=0.1), 'window_'), (dict(secant_steps=-1), 'secant_steps')]
    for kw, name in bad:
        with pytest.raises(ValueError, match=name):
            RenderingOptions.from_kwargs(_options(**kw))


def test_schedules_golden():
    # pi-GAN: s = max(0, 1 - step/5000), step = cur_nimg / batch
    assert schedules.density_noise_std(0, 8) == 1.0
    assert schedules.density_noise_std(8 * 2500, 8) == 0.5
    assert schedules.density_noise_std(8 * 6000, 8) == 0.0
    assert schedules.density_noise_std(10 ** 6, 8, initial=0.3, fade_steps=0) == 0.3
    # GOF CelebA: Delta = max(0.12 exp(-1e-5 step), 0.03); 0.12 e^-1 at step 1e5; Delta_min from ~138.6k
    assert schedules.surface_window(0, 4, 0.12, 0.03, 1e-5) == 0.12
    assert schedules.surface_window(4 * 10 ** 5, 4, 0.12, 0.03, 1e-5) == pytest.approx(0.12 * math.exp(-1))
    assert schedules.surface_window(4 * 140_000, 4, 0.12, 0.03, 1e-5) == 0.03


def test_decoder_extra_channels_are_composited():
    # Every feature channel (32 for the OSG decoder) goes through the per-sample composite.
    planes, _, _, _, origins, dirs = _scene(seed=0)
    torch.manual_seed(0)
    decoder = OSGDecoder(8, {'decoder_lr_mul': 1, 'decoder_output_dim': 7})
    out = _render(planes, decoder, origins, dirs, _options(alpha_rule='occupancy', depth_sampler='importance_nerf'),
                  generator=torch.Generator().manual_seed(0))
    assert out.features.shape == (2, 16, 7)
