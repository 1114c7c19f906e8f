"""ShadeGAN's shading as generator strategies (training/rendering/{normals,shading}.py,
training/light_sources.py, `shading='lambertian'`, `--cfg shadegan`): golden values of the
Lambertian shader and the ramp (SEEDS_SPEC §6.6), normals of analytic fields, gradcheck of the
shaded pixel through the normals (double backward), the light law, the generator with and
without shading, and a short shadegan run whose snapshot loads and renders."""


import numpy as np
import pytest
import torch

import legacy
from seed_helpers import (TINY_SAMPLES, assert_one_line_usage_error, assert_renders_alike, label,
                          make_heads, safe_round_trip, train_tiny)   # tests/seed_helpers.py
from training import config as config_lib, schedules
from training.cameras import FOV_to_intrinsics
from training.film_siren import SirenNetwork
from training.generator import TriPlaneGenerator
from training.light_sources import FixedLight, MVNLight, build_light_source
from training.rendering.normals import NormalField, field_normals
from training.rendering.options import RenderSchedule
from training.rendering.shading import lambertian, shading_factor
from training.rendering.field import TriplaneField
from training.rendering.siren_field import SirenField
from training.representations import check_shading
from torch_utils.ops import grid_sample_gradfix
from training.rendering.decoder import OSGDecoder
from training.synthetic.lights import LightMVN, lambertian_shading

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)

RK = dict(depth_resolution=4, depth_resolution_importance=4, ray_start=1.8, ray_end=3.6, box_warp=1.0,
          avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0], white_back=False, alpha_rule='sample_delta',
          depth_sampler='importance_nerf', density_activation='softplus')
Z, W, H, L = 16, 12, 8, 3


def make_G(shading='none', representation_kwargs={}, **kwargs):
    torch.manual_seed(0)
    return TriPlaneGenerator(Z, 25, W, 8, 3, pose_source='prior', rendering_kwargs={**RK, **kwargs.pop('rk', {})},
                             mapping_kwargs=dict(num_layers=3), representation='film_siren',
                             representation_kwargs=dict(hidden=H, n_layers=L, **representation_kwargs),
                             shading=shading, **kwargs)


# ---------------------------------------------------------------------------------------------
# Golden values (SEEDS_SPEC §6.6).

def test_lambertian_with_normal_equal_to_light_is_albedo_times_ka_plus_kd():
    light = torch.tensor([[0.2, 0.4, 0.0, 0.0]])       # k_a = 0.6, k_d = 0.7, L = (0, 0, 1)
    albedo = torch.tensor([[[0.5, 0.25, 1.0]]])
    normal_sum = torch.tensor([[[0.0, 0.0, 0.3]]])     # composited normal, normalized to L
    out = lambertian(albedo, normal_sum, torch.ones(1, 1, 1), light)
    # s = 0.6 + 0.7 = 1.3; A s = (0.65, 0.325, 1.3) -> clamp -> (0.65, 0.325, 1) -> 2x - 1
    torch.testing.assert_close(out.shading, torch.tensor([[[1.3]]]))
    torch.testing.assert_close(out.rgb, torch.tensor([[[0.3, -0.35, 1.0]]]))
    torch.testing.assert_close(out.normal, torch.tensor([[[0.0, 0.0, 1.0]]]))


def test_lambertian_light_frame_and_backfacing_normal():
    # l = (0, 0, 1, 0): k_a = k_d = 1/2, L = (1, 0, 1)/sqrt 2 (world +x and +z).
    light = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    normals = torch.tensor([[[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])
    s = shading_factor(normals, light, ratio=1.0)
    # n . L = 0.70711, -0.70711 (clamped to 0), 0.70711: s = 0.5 + 0.5 * (0.70711, 0, 0.70711)
    torch.testing.assert_close(s.flatten(), torch.tensor([0.853553, 0.5, 0.853553]))
    # The synthetic ground truth's shading (training/synthetic/lights.py) is the same law.
    torch.testing.assert_close(s[0], lambertian_shading(normals[0], light.expand(3, 4)))


def test_white_background_is_not_shaded():
    light = torch.tensor([[-1.0, -1.0, 0.0, 0.0]])    # k_a = k_d = 0: the object is black
    out = lambertian(torch.full((1, 2, 3), 0.3), torch.tensor([[[0.0, 0.0, 1.0]] * 2]),
                     torch.tensor([[[0.6], [0.0]]]), light, white_back=True)
    # pixel 0: 0.3 * 0 + (1 - 0.6) = 0.4 -> -0.2; pixel 1 (empty): background 1 -> 1
    torch.testing.assert_close(out.rgb[0, :, 0], torch.tensor([-0.2, 1.0]))


def test_shading_ramp_by_hand():
    # r = clamp((step - 5000) / 2000, 0, 1), step = cur_nimg / batch
    assert schedules.shading_ratio(0, 8) == 0.0
    assert schedules.shading_ratio(5000 * 8, 8) == 0.0
    assert schedules.shading_ratio(6000 * 8, 8) == 0.5
    assert schedules.shading_ratio(7000 * 8, 8) == 1.0 and schedules.shading_ratio(9e9, 8) == 1.0
    assert schedules.shading_ratio(100 * 4, 4, start_steps=50, ramp_steps=200) == 0.25
    assert schedules.shading_ratio(10, 1, start_steps=10, ramp_steps=0) == 1.0
    # s' = r s + 1 - r: s = 1.3 (above) at r = 0.5 -> 1.15; r = 0 -> 1 (no shading)
    light, normal = torch.tensor([[0.2, 0.4, 0.0, 0.0]]), torch.tensor([[[0.0, 0.0, 1.0]]])
    assert shading_factor(normal, light, 0.5).item() == pytest.approx(1.15)
    assert shading_factor(normal, light, 0.0).item() == 1.0
    rs = schedules.render_schedule(6000 * 8, 8, shading='lambertian')
    assert rs == RenderSchedule(shading_ratio=0.5)
    assert schedules.render_schedule(6000 * 8, 8) is None     # nothing scheduled without shading


# ---------------------------------------------------------------------------------------------
# Normals of analytic fields.

class AnalyticField:
    """sigma = f(x_hat), x_hat = x * 2 / box_warp; features = 0.5."""

    def __init__(self, fn, box_warp=1.0):
        self.fn, self.box_warp, self.batch_size = fn, box_warp, 1

    def query(self, points, directions=None, channels=None):
        return torch.full_like(points, 0.5), self.fn(points * (2 / self.box_warp))


def test_normals_of_a_plane_and_a_sphere():
    points = torch.tensor([[[0.1, 0.2, 0.3], [-0.2, 0.05, 0.1]]])
    # plane: sigma = -x_hat_z (density grows towards -z): n = -d sigma / d x_hat = (0, 0, 1)
    plane = AnalyticField(lambda x: -x[..., 2:3], box_warp=2.0)
    _, sigma, n = field_normals(plane, points)
    torch.testing.assert_close(n, torch.tensor([[[0.0, 0.0, 1.0]] * 2]))
    # sphere: sigma = 1 - |x_hat|^2, box_warp 0.5 (x_hat = 4x): n = 2 x_hat = 8 x, outward, unnormalized
    sphere = AnalyticField(lambda x: 1 - (x * x).sum(-1, keepdim=True), box_warp=0.5)
    _, sigma, n = field_normals(sphere, points)
    torch.testing.assert_close(n, 8 * points)
    torch.testing.assert_close(sigma, 1 - 16 * (points * points).sum(-1, keepdim=True))
    with torch.no_grad():                                  # inference still gets normals (detached)
        _, _, n0 = field_normals(sphere, points)
    torch.testing.assert_close(n0, 8 * points)
    assert not n0.requires_grad


def test_normal_field_appends_normals_and_skips_them_for_density_only_queries():
    sphere = AnalyticField(lambda x: 1 - (x * x).sum(-1, keepdim=True))
    points = torch.rand(1, 5, 3)
    features, sigma = NormalField(sphere).query(points)
    assert features.shape == (1, 5, 6)
    torch.testing.assert_close(features[..., 3:], 4 * points)
    assert NormalField(sphere).query(points, channels=1)[0].shape == (1, 5, 3)   # no normals computed


def test_normals_keep_the_points_graph():
    # A learned pose reaches the points: their graph must survive the normal computation.
    offset = torch.tensor([0.1, 0.0, 0.0], requires_grad=True)
    points = torch.rand(1, 4, 3) + offset
    sphere = AnalyticField(lambda x: 1 - (x * x).sum(-1, keepdim=True))
    _, _, n = field_normals(sphere, points)
    (g,) = torch.autograd.grad(n.sum(), offset)
    torch.testing.assert_close(g, torch.full((3,), 4.0 * 4))   # d(4 x)/d offset summed over 4 points


def test_shaded_pixel_gradcheck_through_the_normals():
    """gradcheck (float64) of the shaded colour w.r.t. SIREN parameters: the function contains the
    normals -d sigma / d x (create_graph), so its gradient is double backward through the field."""
    torch.manual_seed(0)
    net = SirenNetwork(hidden=4, n_layers=2, view_condition=False).double()
    gamma, beta = torch.rand(1, 3, 4, dtype=torch.float64) * 3 + 1, torch.rand(1, 3, 4, dtype=torch.float64)
    points = torch.rand(1, 3, 3, dtype=torch.float64) - 0.5
    weights = torch.tensor([[[0.2], [0.5], [0.3]]], dtype=torch.float64)
    light = torch.tensor([[0.1, 0.3, 0.4, 0.2]], dtype=torch.float64)
    layer = net.film[1]

    def shaded(weight, bias):
        def network(*args, **kwargs):
            return torch.func.functional_call(net, {'film.1.weight': weight, 'film.1.bias': bias}, args, kwargs)
        albedo, _, normals = field_normals(SirenField(gamma, beta, network, 1.0), points)
        A = (weights * albedo).sum(1, keepdim=True)
        N = (weights * normals).sum(1, keepdim=True)
        return lambertian(A, N, weights.sum(1, keepdim=True), light).rgb

    args = (layer.weight.detach().clone().requires_grad_(True), layer.bias.detach().clone().requires_grad_(True))
    assert torch.autograd.gradcheck(shaded, args, eps=1e-6, atol=1e-5)
    assert torch.autograd.gradgradcheck(shaded, args, eps=1e-6, atol=1e-4)


# ---------------------------------------------------------------------------------------------
# The light source.

def test_mvn_light_law_statistics_and_determinism():
    law = LightMVN()
    source = build_light_source('mvn', **{k: getattr(law, k) for k in ('a_mean', 'd_mean', 'lx_mean', 'ly_mean',
                                                                      'a_std', 'd_std', 'lx_std', 'ly_std')})
    draws = source(20000, 'cpu', generator=torch.Generator().manual_seed(0))
    assert draws.shape == (20000, 4) and draws.dtype == torch.float32
    np.testing.assert_allclose(draws.mean(0).numpy(), law.mean, atol=0.02)
    np.testing.assert_allclose(np.cov(draws.numpy().T), law.cov, atol=0.01)
    a = source(5, 'cpu', generator=torch.Generator().manual_seed(3))
    b = source(5, 'cpu', generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    constant = MVNLight(a_std=0, d_std=0, lx_std=0, ly_std=0)(2, 'cpu')
    assert torch.equal(constant, torch.tensor(np.stack([law.mean] * 2)).float())


def test_fixed_light_is_frontal_and_draws_nothing():
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    light = FixedLight()(3, 'cpu', generator=g)
    assert torch.equal(light, torch.tensor([[-0.4, 0.2, 0.0, 0.0]] * 3)) and torch.equal(g.get_state(), state)
    with pytest.raises(ValueError, match='light_source must be one of'):
        build_light_source('sky')
    with pytest.raises(ValueError, match='unknown'):
        MVNLight(sigma=1)


# ---------------------------------------------------------------------------------------------
# The generator.

def test_shading_none_is_unchanged_and_ratio_zero_is_the_albedo_render():
    plain = make_G()
    shaded = make_G('lambertian')
    assert plain.state_dict().keys() == shaded.state_dict().keys()
    z, c = torch.randn(2, Z), label(2)
    a = plain(z, c, generator=torch.Generator().manual_seed(1))
    light = torch.tensor([[0.3, 0.5, 0.2, 0.1]] * 2)
    # r = 0 (before the ramp) under an explicit light (no draw): exactly the unshaded render.
    b = shaded(z, c, generator=torch.Generator().manual_seed(1), light=light,
               render_schedule=RenderSchedule(shading_ratio=0.0))
    torch.testing.assert_close(a.image, b.image, atol=1e-6, rtol=0)
    torch.testing.assert_close(a.image_depth, b.image_depth)
    full = shaded(z, c, generator=torch.Generator().manual_seed(1), light=light)
    assert not torch.allclose(full.image, a.image)
    full.image.sum().backward()     # double backward through the SIREN
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in shaded.decoder.film.parameters())


def make_triplane_G(shading='none', **kwargs):
    torch.manual_seed(0)
    return TriPlaneGenerator(Z, 25, W, 8, 3, pose_source='prior', rendering_kwargs=RK, plane_resolution=8,
                             plane_channels=4, mapping_kwargs=dict(num_layers=2), channel_base=64, channel_max=16,
                             shading=shading, **kwargs)


def test_triplane_normal_field_is_twice_differentiable_under_the_plain_grid_sample():
    """NormalField over a tri-plane: the appended normals are -d sigma / d x_hat (central differences,
    float64), and gradcheck of them w.r.t. the planes passes with the training loop's plain
    grid_sample (the normals query goes through the gradfix op, which has a double backward)."""
    torch.manual_seed(0)
    decoder = OSGDecoder(4, {'decoder_lr_mul': 1, 'decoder_output_dim': 32}).double()
    planes = torch.randn(1, 3, 4, 8, 8, dtype=torch.float64)
    points = torch.rand(1, 5, 3, dtype=torch.float64) * 0.6 - 0.3
    saved = grid_sample_gradfix.enabled
    grid_sample_gradfix.enabled = False
    try:
        inner = TriplaneField(planes, decoder, 'correct', 0.5)
        features, sigma = NormalField(inner).query(points)
        assert features.shape == (1, 5, 6)
        torch.testing.assert_close(features[..., :3], inner.query(points, None, 3)[0])
        step = 1e-6
        fd = torch.stack([(inner.query(points + step * e, None, 1)[1] - inner.query(points - step * e, None, 1)[1])
                          [..., 0] / (2 * step) for e in torch.eye(3, dtype=torch.float64)], dim=-1)
        torch.testing.assert_close(features[..., 3:], -fd * 0.5 / 2, atol=1e-6, rtol=1e-5)
        assert torch.autograd.gradcheck(lambda p: NormalField(TriplaneField(p, decoder, 'correct', 0.5)).query(
            points)[0][..., 3:], (planes.clone().requires_grad_(True),))
    finally:
        grid_sample_gradfix.enabled = saved


def test_triplane_shading_ratio_zero_is_the_plain_render_and_trains_the_planes():
    plain, shaded = make_triplane_G(), make_triplane_G('lambertian', light_source='fixed')
    assert plain.state_dict().keys() == shaded.state_dict().keys()
    z, c = torch.randn(2, Z), label(2)
    light = torch.tensor([[0.3, 0.5, 0.2, 0.1]] * 2)
    a = plain(z, c, generator=torch.Generator().manual_seed(1))
    b = shaded(z, c, generator=torch.Generator().manual_seed(1), light=light,
               render_schedule=RenderSchedule(shading_ratio=0.0))
    torch.testing.assert_close(a.image, b.image, atol=1e-6, rtol=0)
    full = shaded(z, c, generator=torch.Generator().manual_seed(1), light=light)
    assert not torch.allclose(full.image, a.image)
    full.image.sum().backward()     # double backward through the planes (gradfix) and the decoder
    grads = [p.grad for p in [*shaded.backbone.synthesis.parameters(), *shaded.decoder.parameters()]]
    assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)


def test_light_conditioned_albedo_and_bad_combinations():
    G = make_G('lambertian', representation_kwargs=dict(view_condition=False, light_condition=True),
               light_source='fixed')
    assert G.decoder.color_film.in_features == H + 4
    out = G(torch.randn(2, Z), label(2), generator=torch.Generator().manual_seed(0))
    assert out.image.shape == (2, 3, 8, 8) and torch.isfinite(out.image).all()
    with pytest.raises(ValueError, match="needs representation 'film_siren' or 'triplane'"):
        check_shading('lambertian', 'feature_volume', {})
    with pytest.raises(ValueError, match='superresolution_module None'):
        TriPlaneGenerator(Z, 25, W, 32, 3, pose_source='prior', shading='lambertian',
                          rendering_kwargs={**RK, 'superresolution_module': 'SuperresolutionHybrid2X'})
    with pytest.raises(ValueError, match="light_condition=True"):
        make_G(representation_kwargs=dict(light_condition=True))


def test_pickle_round_trip_through_the_safe_loader():
    G = make_G('lambertian', light_kwargs=dict(a_mean=0.1, lx_std=0.2)).eval()
    loaded = safe_round_trip(G)
    assert loaded.shading == 'lambertian' and loaded.light_source.mean[0] == 0.1
    assert loaded.light_source.std[2] == 0.2
    assert_renders_alike(G, loaded, Z)


# ---------------------------------------------------------------------------------------------
# Config and train.py --cfg shadegan.

def test_shadegan_preset():
    c = config_lib.build_config('shadegan', data='x.zip')
    kwargs = c.G_kwargs()
    assert kwargs['shading'] == 'lambertian' and kwargs['light_source'] == 'mvn'
    law = LightMVN()
    assert kwargs['light_kwargs'] == {k: getattr(law, k) for k in kwargs['light_kwargs']} and \
        len(kwargs['light_kwargs']) == 8                       # the synthetic data's default law
    assert kwargs['representation_kwargs'] == dict(hidden=64, n_layers=4, view_condition=False,
                                                   light_condition=False)
    assert c.loss_kwargs()['render_schedule']['shading_start_steps'] == 833
    fixed = config_lib.build_config('shadegan', data='x.zip', light_source='fixed').G_kwargs()
    assert fixed['light_kwargs'] == dict(a=-0.4, d=0.2, lx=0.0, ly=0.0)
    pigan = config_lib.build_config('pigan', data='x.zip')
    assert 'shading' not in pigan.G_kwargs() and 'shading' not in pigan.loss_kwargs()['render_schedule']




@pytest.fixture(scope='module')
def heads(tmp_path_factory):
    return make_heads(tmp_path_factory.mktemp('lit_heads'), '--light', 'mvn')


def test_shadegan_trains_and_its_snapshot_loads_and_renders(heads, tmp_path):
    run_dir = train_tiny('shadegan', heads, tmp_path / 'runs', '--shading_start_steps', '0',
                         '--shading_ramp_steps', '1', *TINY_SAMPLES)
    with open(run_dir / 'network-snapshot-000000.016.pkl', 'rb') as f:
        G = legacy.load_network_pkl(f)['G_ema']
    assert G.shading == 'lambertian' and not G.decoder.view_condition
    out = G(torch.randn(2, 16), label(2), generator=torch.Generator().manual_seed(1))
    assert out.image.shape == (2, 3, 16, 16) and torch.isfinite(out.image).all()


def test_triplane_shading_with_a_superresolution_module_is_a_usage_error():
    import click
    import train_checks
    c = config_lib.build_config('synthetic', data='x.zip', shading='lambertian', dataset_resolution=128, superres=True)
    with pytest.raises(click.UsageError, match='128 px has a super-resolution module; add --superres False'):
        train_checks.check_shading(c)
    train_checks.check_shading(config_lib.build_config('synthetic', data='x.zip', shading='lambertian',
                                                       dataset_resolution=128, superres=False))


def test_shadegan_on_the_triplane_trains_and_its_snapshot_loads_and_renders(heads, tmp_path):
    run_dir = train_tiny('shadegan', heads, tmp_path / 'runs', '--representation', 'triplane', '--mapping_lr_mul', '1',
                         '--override',
                         'plane_resolution=8', '--override', 'plane_channels=4', '--shading_start_steps', '0',
                         '--shading_ramp_steps', '1', *TINY_SAMPLES)
    with open(run_dir / 'network-snapshot-000000.016.pkl', 'rb') as f:
        G = legacy.load_network_pkl(f)['G_ema']
    assert G.shading == 'lambertian' and G.representation == 'triplane' and G.superresolution is None
    z, light = torch.randn(2, G.z_dim), torch.tensor([[0.0, 0.5, 0.5, 0.0]] * 2)
    out = G(z, label(2), generator=torch.Generator().manual_seed(1), light=light)
    albedo = G(z, label(2), generator=torch.Generator().manual_seed(1), light=light,
               render_schedule=RenderSchedule(shading_ratio=0.0))
    assert out.image.shape == (2, 3, 16, 16) and torch.isfinite(out.image).all()
    assert not torch.allclose(out.image, albedo.image)


@pytest.mark.parametrize('args, named', [(['--cfg', 'pigan', '--light_source', 'fixed'], '--light_source'),
                                         (['--cfg', 'volumegan', '--shading', 'lambertian'], 'film_siren or triplane'),
                                         (['--cfg', 'shadegan', '--representation', 'triplane', '--mapping_lr_mul',
                                           '1', '--albedo_light', 'True'], '--albedo_light'),
                                         (['--cfg', 'shadegan', '--light_source', 'fixed', '--light_lx_mean', '1'],
                                          '--light_lx_mean')])
def test_shading_usage_errors_are_one_line(heads, tmp_path, args, named):
    assert_one_line_usage_error(heads, tmp_path, args, named)


def test_shading_probe_reads_albedo_and_shading_of_every_snapshot(heads, tmp_path):
    """bench/shading_probe.py: one table row per snapshot whose albedo numbers are those of G_ema's
    ratio-0 render (hand-computed here), a grid png; a folder without snapshots is one error line."""
    from hardening_helpers import run_py
    run_dir = train_tiny('shadegan', heads, tmp_path / 'runs', '--shading_start_steps', '0',
                         '--shading_ramp_steps', '1', *TINY_SAMPLES)
    proc = run_py('bench/shading_probe.py', '--run', run_dir, '--num', 2, '--png', tmp_path / 'probe.png')
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(' | ') for line in proc.stdout.splitlines() if line.startswith('| network-snapshot')]
    assert [r[0] for r in rows] == ['| network-snapshot-000000.008.pkl', '| network-snapshot-000000.016.pkl']
    with open(run_dir / 'network-snapshot-000000.016.pkl', 'rb') as f:
        G = legacy.load_network_pkl(f)['G_ema']
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(0))
    c = label(2)
    c[:, 16:] = FOV_to_intrinsics(30.0).reshape(-1)          # the tiny data's FOV, as the probe reads it
    albedo = G(z, c, render_schedule=RenderSchedule(shading_ratio=0.0),
               generator=torch.Generator().manual_seed(1)).image
    dx = (albedo[..., 1:] - albedo[..., :-1]).abs().mean()
    assert float(rows[-1][1]) == pytest.approx(float(albedo.std()), abs=6e-4)
    assert float(rows[-1][2]) == pytest.approx(float(dx), abs=6e-4)
    import PIL.Image
    assert PIL.Image.open(tmp_path / 'probe.png').size == (2 * 2 * 16, 2 * 16)   # 2 snapshots x (2 + 2) samples
    (tmp_path / 'empty').mkdir()
    bad = run_py('bench/shading_probe.py', '--run', tmp_path / 'empty')
    assert bad.returncode == 1 and 'no network-snapshot' in bad.stderr and 'Traceback' not in bad.stderr
