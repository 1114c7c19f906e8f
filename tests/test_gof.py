"""GOF as strategies of the one generator (issue 18; SEEDS_SPEC §3, §6.3, §6.6): normals from the
field (analytic fields, gradcheck through the double backward, the tri-plane's gradfix path), the
normal-consistency and opacity-prior terms (golden values, gradients into the field, schedules),
the render record they read, `--cfg gof` (preset values, a 2-iteration run whose snapshot loads and
renders) and the one-line usage errors."""

import math

import pytest
import torch
from click.testing import CliRunner

import legacy
import train
from seed_helpers import label, make_heads, train_tiny   # tests/seed_helpers.py
from torch_utils.ops import grid_sample_gradfix
from training import config as config_lib, schedules
from training.film_siren import SirenNetwork
from training.generator import TriPlaneGenerator
from training.losses.common import Step
from training.losses.occupancy import (GeometryRegularizers, NormalConsistency, OpacityPrior, normal_consistency,
                                       opacity_prior)
from training.rendering.decoder import OSGDecoder
from training.rendering.field import TriplaneField
from training.rendering.normals import normals_from_gradient, query_with_normals
from training.rendering.options import RenderSchedule
from training.rendering.siren_field import SirenField

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)

GOF_RK = dict(depth_resolution=9, depth_resolution_importance=6, depth_resolution_surface=9, ray_start=1.8,
              ray_end=3.6, box_warp=1.0, avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0], white_back=True,
              alpha_rule='occupancy', depth_sampler='surface_window', window_init=0.9, window_min=0.225)


def make_gof_G(**rk):
    torch.manual_seed(0)
    G = TriPlaneGenerator(16, 25, 12, 8, 3, pose_source='prior', rendering_kwargs={**GOF_RK, **rk},
                          mapping_kwargs=dict(num_layers=2), representation='film_siren',
                          representation_kwargs=dict(hidden=16, n_layers=2))
    with torch.no_grad():   # a bias that makes a blob at the centre: rays then find a surface
        G.decoder.sigma_head.bias.fill_(0.0)
    return G


def ball_field(radius=0.4):
    """An analytic field: sigma = radius^2 - |x|^2 (occupancy logit > 0 inside a ball)."""
    def query(points, directions=None, channels=None):
        return points[..., :1] * 0 + 1, radius ** 2 - (points ** 2).sum(-1, keepdim=True)
    return query


# ---------------------------------------------------------------------------------------------
# Normals (SEEDS_SPEC §3.3, §4.2).

def test_normals_of_analytic_fields_by_hand():
    points = torch.tensor([[[0.3, 0.0, 0.0], [0.0, -0.2, 0.0], [0.1, 0.1, 0.1]]])
    _, sigma, n = query_with_normals(ball_field(), points)
    # grad sigma = -2x, so n = x / |x|: outward.
    torch.testing.assert_close(n, points / points.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(sigma[0, :, 0], torch.tensor([0.16 - 0.09, 0.16 - 0.04, 0.16 - 0.03]))

    def half_space(points, directions=None):    # occupied below z = 0.1: sigma = 0.1 - z
        return points, 0.1 - points[..., 2:]
    n = query_with_normals(half_space, torch.randn(1, 5, 3))[2]
    torch.testing.assert_close(n, torch.tensor([0.0, 0.0, 1.0]).expand(1, 5, 3))
    # A flat field: zero gradient -> zero normal (no NaN, GOF's nan -> 0).
    assert torch.equal(normals_from_gradient(torch.zeros(2, 3)), torch.zeros(2, 3))
    # 1e-7 guard: |n| is 1 - 1e-7 / |grad| below 1.
    assert normals_from_gradient(torch.tensor([0.0, 0.0, -1e-3])).tolist() == pytest.approx([0, 0, 1], abs=2e-4)


def test_siren_normals_gradcheck_through_the_double_backward():
    torch.manual_seed(0)
    net = SirenNetwork(hidden=4, n_layers=2).double()
    points = torch.randn(1, 3, 3, dtype=torch.float64) * 0.3
    gamma = (torch.randn(1, 3, 4, dtype=torch.float64) * 1.5 + 30).requires_grad_(True)
    beta = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)

    def normals(g, b):
        return SirenField(g, b, net, 0.5).query(points, None, need_normal=True)[2]

    assert torch.autograd.gradcheck(normals, (gamma, beta))
    # The normal is the unit -grad sigma of the world point (box warp: a positive scale, §3.3).
    field = SirenField(gamma.detach(), beta.detach(), net, 0.5)
    x = points.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(field.query(x)[1].sum(), x)
    expected = -grad / (grad.norm(dim=-1, keepdim=True) + 1e-7)
    torch.testing.assert_close(field.query(points, need_normal=True)[2], expected)


def test_triplane_normals_use_the_gradfix_and_train_the_planes():
    torch.manual_seed(0)
    planes = torch.randn(1, 3, 4, 8, 8, dtype=torch.float64, requires_grad=True)
    decoder = OSGDecoder(4, {'decoder_lr_mul': 1, 'decoder_output_dim': 3}).double()
    field = TriplaneField(planes, decoder, 'correct', 1.0)
    points = torch.rand(1, 6, 3, dtype=torch.float64) * 0.8 - 0.4
    saved = grid_sample_gradfix.enabled
    grid_sample_gradfix.enabled = False     # as the training loop runs: plain grid_sample
    try:
        rgb, sigma, n = field.query(points, None, 3, need_normal=True)
        rgb_fast, sigma_fast = field.query(points, None, 3)
        torch.testing.assert_close(sigma, sigma_fast)
        torch.testing.assert_close(rgb, rgb_fast)
        (n * torch.randn_like(n)).sum().backward()
        assert planes.grad is not None and planes.grad.abs().sum() > 0
        assert torch.autograd.gradcheck(lambda p: TriplaneField(p, decoder, 'correct', 1.0).query(
            points, None, 1, need_normal=True)[2], (planes.detach().requires_grad_(True),))
    finally:
        grid_sample_gradfix.enabled = saved


# ---------------------------------------------------------------------------------------------
# The terms: golden values (STYLE §10) and schedules.

def test_normal_consistency_by_hand():
    n_s = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    n_n = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]])
    valid = torch.tensor([[True, True, False]])
    # ray 0: |(0, -1, 1)|^2 = 2; ray 1: 0; ray 2 masked out. MSE over 2 rays x 3 components = 2 / 6.
    assert normal_consistency(n_s, n_n, valid).item() == pytest.approx(1 / 3)
    assert normal_consistency(n_s, n_n, torch.zeros_like(valid)).item() == 0


def test_opacity_prior_by_hand():
    # log(0.1 + o) + log(1.1 - o) + 2.20727: 0 at o = 0 and 1; at 0.5: 2 log 0.6 + 2.2072749 = 1.1856237.
    assert opacity_prior(torch.tensor([0.0, 1.0])).item() == pytest.approx(0.0, abs=1e-6)
    assert opacity_prior(torch.tensor([0.5])).item() == pytest.approx(1.1856237, abs=1e-6)
    assert opacity_prior(torch.tensor([0.0, 0.5])).item() == pytest.approx(1.1856237 / 2, abs=1e-6)


def test_opacity_prior_reads_the_occupancy_or_the_legacy_red_channel():
    from training.generator import GeometryRender
    from training.rendering.compositing import MarchedSamples
    from training.rendering.renderer import RecordedRender, RenderOutput
    alpha = torch.tensor([0.0, 1.0, 0.5]).reshape(1, 1, 3, 1)
    features = torch.tensor([[[2 * 0.5 - 1, 0.0, 0.0]]])              # composited red C = 0.5
    render = RecordedRender(RenderOutput(features, None, None, None), MarchedSamples(alpha, alpha, alpha), None)
    geometry = GeometryRender(render, None, None, None, None)
    assert OpacityPrior(1.0).occupancy(geometry) is alpha
    assert OpacityPrior(2.0)(geometry, 0).item() == pytest.approx(2 * 1.1856237 / 3, abs=1e-6)
    red = OpacityPrior(1.0, legacy_red_channel=True).occupancy(geometry)
    assert red.item() == pytest.approx(1 / (1 + math.exp(-0.5)))       # sigmoid(C_red), GOF's quirk (§3.5 q1)
    assert OpacityPrior(0.0)(geometry, 0) is None and NormalConsistency(0.0)(geometry) is None


def test_schedules():
    # lambda_o = min(10 lambda_0, lambda_0 exp(growth step)), step = cur_nimg / batch (§3.3)
    assert schedules.opacity_weight(0, 8, 0.05, 1e-3) == pytest.approx(0.05)
    assert schedules.opacity_weight(8 * 1000, 8, 0.05, 1e-3) == pytest.approx(0.05 * math.e)
    assert schedules.opacity_weight(8 * 10 ** 6, 8, 0.05, 1e-3) == pytest.approx(0.5)
    assert schedules.opacity_weight(123, 8, 0.0, 1.0) == 0.0
    # Warm start: the whole range (inf) before warmup_steps, then the decayed window.
    assert schedules.surface_window(8 * 9, 8, 0.9, 0.225, 1e-3, warmup_steps=10) == math.inf
    after = schedules.surface_window(8 * 10, 8, 0.9, 0.225, 1e-3, warmup_steps=10)
    assert after == pytest.approx(0.9 * math.exp(-0.01))


# ---------------------------------------------------------------------------------------------
# The render record and gradients into the field.

def test_render_geometry_returns_the_surface_and_the_samples():
    G = make_gof_G()
    geometry = G.render_geometry(torch.randn(2, 16), label(2), render_schedule=RenderSchedule(window=0.5))
    render = geometry.render
    assert render.output.features.shape == (2, 64, 3) and render.surface_depth.shape == (2, 64, 1)
    assert render.samples.alpha.shape == render.samples.depths.shape == (2, 64, 15, 1)   # S_s + S_f
    found = torch.isfinite(render.surface_depth)
    assert found.any(), 'the test field should have a surface on some rays'
    t = render.surface_depth[found]
    assert (t >= 1.8).all() and (t <= 3.6).all()
    torch.testing.assert_close(render.samples.alpha, torch.sigmoid(torch.logit(render.samples.alpha)))
    # forward returns the same render without the record (RenderOutput keeps its four fields)
    field = G._field(G._code(G.mapping(torch.randn(1, 16), label(1)), False, 'random', {}))
    rays = geometry.ray_origins[:1], geometry.ray_directions[:1]
    plain = G.renderer(field, *rays, generator=torch.Generator().manual_seed(3))
    recorded = G.renderer.render_recorded(field, *rays, generator=torch.Generator().manual_seed(3))
    assert len(plain) == 4 and all(torch.equal(a, b) for a, b in zip(plain, recorded.output))


@pytest.mark.parametrize('which', ['normal', 'opacity', 'legacy'])
def test_gradients_reach_the_field(which):
    G = make_gof_G()
    weights = dict(normal=dict(normal_weight=1.0), opacity=dict(opacity_weight=1.0),
                   legacy=dict(opacity_weight=1.0, legacy_red_channel=True))[which]
    terms = GeometryRegularizers(**weights, batch=2)
    terms.check(G.renderer.options)
    loss = terms(G, torch.randn(2, 16), label(2), Step(blur_sigma=0, resolution=8, render=RenderSchedule(window=0.5)),
                 cur_nimg=0)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    film = [p.grad for n, p in G.named_parameters() if n.startswith('decoder.film.')]
    assert all(g is not None for g in film) and sum(g.abs().sum() for g in film) > 0
    assert G.backbone.mapping.layers[0].weight.grad.abs().sum() > 0
    if which == 'normal':   # only the sigma trunk shapes normals; the colour head gets nothing
        assert G.decoder.color_head.weight.grad is None or G.decoder.color_head.weight.grad.abs().sum() == 0


def test_terms_refuse_renders_they_cannot_read():
    G = TriPlaneGenerator(16, 25, 12, 8, 3, pose_source='prior', representation='film_siren',
                          rendering_kwargs={**GOF_RK, 'alpha_rule': 'sample_delta', 'depth_sampler': 'importance_nerf'},
                          mapping_kwargs=dict(num_layers=2), representation_kwargs=dict(hidden=8, n_layers=1))
    with pytest.raises(ValueError, match='surface_window'):
        GeometryRegularizers(normal_weight=1.0).check(G.renderer.options)
    GeometryRegularizers(opacity_weight=1.0).check(G.renderer.options)   # sample_delta: its per-sample alpha
    from training.rendering.options import RenderingOptions
    eg3d = RenderingOptions(ray_start=1.8, ray_end=3.6, box_warp=1.0, depth_resolution=4, depth_resolution_importance=4)
    with pytest.raises(ValueError, match='per-sample alpha_rule'):
        GeometryRegularizers(opacity_weight=1.0).check(eg3d)
    GeometryRegularizers(opacity_weight=1.0, legacy_red_channel=True).check(eg3d)


# ---------------------------------------------------------------------------------------------
# --cfg gof.

def test_gof_preset_values():
    c = config_lib.build_config('gof', data='x.zip')
    r, ls = c.rendering, c.loss
    assert (r.alpha_rule, r.depth_sampler, r.density_noise_init) == ('occupancy', 'surface_window', 0.0)
    assert (r.depth_resolution, r.depth_resolution_surface, r.depth_resolution_importance) == (9, 9, 6)
    steps = c.kimg * 1000 / c.batch                                      # 25 000
    assert steps == 25000 and (r.window_init, r.window_min) == (0.9, 0.225)
    assert r.window_decay == pytest.approx(math.log(4) / 12500) and r.window_warmup_steps == 500
    # Delta reaches Delta_min at half the run (SEEDS_SPEC §6.3)
    half = schedules.surface_window(c.batch * steps / 2, c.batch, 0.9, 0.225, r.window_decay, 500)
    assert half == pytest.approx(0.225)
    assert (ls.normal_weight, ls.normal_h, ls.opacity_weight) == (0.05, 0.075, 0.05)
    assert ls.opacity_growth == pytest.approx(math.log(10) / 25000) and not ls.opacity_legacy_red
    kwargs = c.loss_kwargs()
    assert kwargs['geometry'] == dict(normal_weight=0.05, normal_h=0.075, opacity_weight=0.05,
                                      opacity_growth=ls.opacity_growth, batch=8, legacy_red_channel=False)
    assert kwargs['render_schedule']['window_warmup_steps'] == 500
    assert c.model.representation == 'film_siren' and c.model.pose_source == 'prior'
    for cfg in ('synthetic', 'pigan'):
        assert 'geometry' not in config_lib.build_config(cfg, data='x.zip').loss_kwargs()




@pytest.fixture(scope='module')
def heads(tmp_path_factory):
    return make_heads(tmp_path_factory.mktemp('heads'))


def test_gof_trains_and_its_snapshot_loads_and_renders(heads, tmp_path):
    run_dir = train_tiny('gof', heads, tmp_path / 'runs')
    stats = (run_dir / 'stats.jsonl').read_text()
    assert 'Loss/G/normal' in stats and 'Loss/G/opacity' in stats
    with open(run_dir / 'network-snapshot-000000.016.pkl', 'rb') as f:
        G = legacy.load_network_pkl(f)['G_ema']
    options = G.renderer.options
    assert (options.alpha_rule, options.depth_sampler, options.depth_resolution_surface) == ('occupancy',
                                                                                             'surface_window', 9)
    assert G.rendering_kwargs['window_warmup_steps'] == 500
    out = G(torch.randn(2, 16), label(2), generator=torch.Generator().manual_seed(1))
    assert out.image.shape == (2, 3, 16, 16) and torch.isfinite(out.image).all()


@pytest.mark.parametrize('args, named', [
    (['--depth_sampler', 'importance_nerf', '--alpha_rule', 'sample_delta'], 'surface_window'),
    (['--alpha_rule', 'eg3d', '--depth_sampler', 'eg3d', '--normal_weight', '0'], 'per-sample alpha_rule'),
])
def test_gof_terms_without_their_render_are_one_line_usage_errors(heads, tmp_path, args, named):
    res = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', str(heads), '--cfg', 'gof',
                                          '--metrics', 'none', *args])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and named in errors[0], res.output
    assert not (tmp_path / 'runs').exists()


@pytest.mark.parametrize('pose_source', ['prior', 'learned'])
def test_loss_drivers_run_the_terms_in_gmain(pose_source, monkeypatch):
    """EG3DLoss (prior) and PoF3DLoss (PoF3D's learned pose with an occupancy field) call both terms."""
    import dnnlib
    from torch_utils import training_stats
    from training.losses import loss_class_for
    extra = dict(pose_source='learned', dis_pose_cond=True, dis_cam_weight=2.0, pose_gd_weight=1.0) \
        if pose_source == 'learned' else {}
    config = config_lib.build_config('gof', dataset_resolution=16, neural_rendering_resolution_initial=16,
                                     siren_hidden=16, siren_layers=2, z_dim=16, w_dim=16, cbase=256, cmax=16,
                                     pose_head_channels=16, **extra)
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**config.G_kwargs())
    D = dnnlib.util.construct_class_by_name(**config.D_kwargs())
    loss = loss_class_for(pose_source)(device=torch.device('cpu'), G=G, D=D, seed=0, **config.loss_kwargs())
    seen = {}
    monkeypatch.setattr(training_stats, 'report', lambda name, value: seen.setdefault(name, value))
    loss.accumulate_gradients('Gmain', torch.zeros(4, 3, 16, 16), label(4), torch.randn(4, 16), label(4),
                              gain=1, cur_nimg=0)
    assert 'Loss/G/normal' in seen and 'Loss/G/opacity' in seen
    assert G.decoder.sigma_head.weight.grad is not None
