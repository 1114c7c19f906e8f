"""pi-GAN's FiLM-SIREN representation (training/film_siren.py, training/rendering/siren_field.py,
the generator's `representation='film_siren'`, `--cfg pigan`): golden values of the FiLM layer
and the gamma map, the initializations of SEEDS_SPEC §1.3-1.4, gradcheck of the field (double
backward through the points), the generator with every pose source, and a short pigan run
whose snapshot loads safely and renders the same image."""

import math

import pytest
import torch
from click.testing import CliRunner

import train
from seed_helpers import (TINY_SAMPLES, assert_renders_alike, label, load_snapshot_both_ways, make_heads,
                          safe_round_trip, train_tiny)   # tests/seed_helpers.py
from training import config as config_lib
from training.film_siren import FilmAffine, FilmSirenBackbone, SirenNetwork, film_sine, siren_init_
from training.generator import TriPlaneGenerator
from training.rendering.siren_field import SirenField

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)

RK = dict(depth_resolution=4, depth_resolution_importance=4, ray_start=1.8, ray_end=3.6, box_warp=1.0,
          avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0], white_back=True)
Z, W, H, L = 16, 12, 8, 3


def make_G(pose_source='prior', **kwargs):
    torch.manual_seed(0)
    return TriPlaneGenerator(Z, 25, W, 8, 3, pose_source=pose_source, rendering_kwargs={**RK, **kwargs.pop('rk', {})},
                             mapping_kwargs=dict(num_layers=3), representation='film_siren',
                             representation_kwargs=dict(hidden=H, n_layers=L), **kwargs)


# ---------------------------------------------------------------------------------------------
# Golden values.

def test_film_sine_by_hand():
    linear = torch.nn.Linear(2, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        linear.bias.copy_(torch.tensor([0.5, 0.0]))
    x = torch.tensor([[[0.1, 0.2]]])                               # [N=1, K=1, 2]
    gamma, beta = torch.tensor([[30.0, 15.0]]), torch.tensor([[0.0, math.pi / 2]])
    # Wx + b = (0.6, 0.4); sin(30 * 0.6 + 0) = sin(18) = -0.750987; sin(15 * 0.4 + pi/2) = cos(6) = 0.960170
    out = film_sine(x, linear, gamma, beta)
    assert out.shape == (1, 1, 2)
    assert out.flatten().tolist() == pytest.approx([-0.750987246771676, 0.960170286650366], abs=1e-6)


def test_gamma_is_15f_plus_30_and_the_chunk_layout():
    affine = FilmAffine(W, H, L + 1)
    with torch.no_grad():
        affine.affine.weight.zero_()
        affine.affine.bias.zero_()
        affine.affine.bias[:(L + 1) * H] = 1.0                   # every frequency f = 1, every phase 0
    gamma, beta = affine(torch.randn(2, L + 1, W))
    assert gamma.shape == beta.shape == (2, L + 1, H)
    assert torch.all(gamma == 45) and torch.all(beta == 0)       # 15 * 1 + 30
    # Equal ws rows: pi-GAN's one Linear, frequencies first then phases, layer i at i*H:(i+1)*H.
    affine = FilmAffine(W, H, L + 1)
    w = torch.randn(2, W)
    flat = affine.affine(w)                                       # [2, (L + 1) * H * 2]
    gamma, beta = affine(w.unsqueeze(1).repeat(1, L + 1, 1))
    torch.testing.assert_close(gamma, flat[:, :(L + 1) * H].reshape(2, L + 1, H) * 15 + 30)
    torch.testing.assert_close(beta, flat[:, (L + 1) * H:].reshape(2, L + 1, H))


def test_backbone_shapes_and_latents():
    backbone = FilmSirenBackbone(Z, W, hidden=H, n_layers=L, mapping_layers=3)
    assert backbone.num_ws == L + 1 and len(backbone.mapping.layers) == 3
    z = torch.randn(5, Z)
    ws = backbone.mapping(z)
    assert ws.shape == (5, L + 1, W) and torch.equal(ws[:, 0], ws[:, -1])
    gamma, beta = backbone.latents(z)
    assert gamma.shape == beta.shape == (5, L + 1, H)


# ---------------------------------------------------------------------------------------------
# Initializations (SEEDS_SPEC §1.3-1.4).

def test_siren_init_ranges():
    net = SirenNetwork(hidden=256, n_layers=3)
    first = net.film[0].weight                                   # U(+-1 / fan_in) = U(+-1/3)
    assert first.abs().max() <= 1 / 3 and first.abs().max() > 0.95 / 3
    for layer in (*net.film[1:], net.sigma_head, net.color_film, net.color_head):
        bound = math.sqrt(6 / layer.weight.shape[1]) / 25         # U(+-sqrt(6 / fan_in) / 25)
        assert layer.weight.abs().max() <= bound and layer.weight.abs().max() > 0.9 * bound
        assert layer.bias.abs().max() <= 1 / math.sqrt(layer.weight.shape[1])   # PyTorch's default bias
    linear = torch.nn.Linear(5, 4)
    siren_init_(linear, first=True)
    assert linear.weight.abs().max() <= 1 / 5


def test_mapping_init_is_kaiming_and_the_last_layer_scaled():
    torch.manual_seed(0)
    backbone = FilmSirenBackbone(256, 256, hidden=64, n_layers=2)
    kaiming_std = math.sqrt(2 / (1 + 0.2 ** 2)) / math.sqrt(256)   # leaky_relu a = 0.2, fan_in 256
    for layer in backbone.mapping.layers[1:]:
        assert layer.weight.std().item() == pytest.approx(kaiming_std, rel=0.05)
    assert backbone.synthesis.affine.weight.std().item() == pytest.approx(0.25 * kaiming_std, rel=0.05)


# ---------------------------------------------------------------------------------------------
# The field: gradcheck, double backward through the points (normals later).

def test_field_gradcheck_points_and_code():
    torch.manual_seed(0)
    net = SirenNetwork(hidden=4, n_layers=2).double()
    points = torch.randn(1, 3, 3, dtype=torch.float64, requires_grad=True) * 0.3
    points = points.detach().requires_grad_(True)
    dirs = torch.nn.functional.normalize(torch.randn(1, 3, 3, dtype=torch.float64), dim=-1)
    gamma = (15 * torch.randn(1, 3, 4, dtype=torch.float64) * 0.1 + 30).requires_grad_(True)
    beta = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)

    def query(p, g, b):
        rgb, sigma = SirenField(g, b, net, 0.5).query(p, dirs)
        return rgb, sigma

    assert torch.autograd.gradcheck(query, (points, gamma, beta))
    assert torch.autograd.gradgradcheck(lambda p: query(p, gamma.detach(), beta.detach())[1], (points,))


def test_field_interface():
    net = SirenNetwork(hidden=H, n_layers=L)
    gamma, beta = FilmSirenBackbone(Z, W, hidden=H, n_layers=L).latents(torch.randn(2, Z))
    field = SirenField(gamma, beta, net, 0.24)
    points = torch.randn(2, 7, 3) * 0.1
    rgb, sigma = field.query(points, None, channels=3)
    assert field.batch_size == 2 and field.kernel_inputs() is None
    assert rgb.shape == (2, 7, 3) and sigma.shape == (2, 7, 1) and 0 <= rgb.min() and rgb.max() <= 1
    # box_warp 0.24 maps the cube of side 0.24 to [-1, 1]^3 (UniformBoxWarp, SEEDS_SPEC §1.4)
    torch.testing.assert_close(sigma, net(points * (2 / 0.24), torch.zeros_like(points), gamma, beta)[1])


# ---------------------------------------------------------------------------------------------
# The generator with representation='film_siren'.

@pytest.mark.parametrize('pose_source', ['prior', 'learned', 'prior_residual', 'dataset'])
def test_generator_renders_images_and_depth(pose_source):
    G = make_G(pose_source)
    z, c = torch.randn(2, Z), label(2)
    out = G(z, c)
    assert out.image.shape == out.image_raw.shape == (2, 3, 8, 8) and out.image_depth.shape == (2, 1, 8, 8)
    assert torch.isfinite(out.image).all() and G.superresolution is None
    assert (out.pose is None) == (pose_source == 'dataset')
    out.image.sum().backward()
    grads = {n: p.grad for n, p in G.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith('backbone.mapping.'))
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith('decoder.film.'))


def test_learned_pose_reads_the_mapping_w():
    G = make_G('learned')
    z, c = torch.randn(3, Z), label(3)
    w = G.backbone.mapping(z)[:, 0]                                # the mapping's last hidden feature
    assert G.pose_source.w_dim == W
    torch.testing.assert_close(G.pose(z, c).pose, G.pose_source(w, z, c).pose)
    G.pose(z, c).pose.sum().backward()
    assert G.backbone.mapping.layers[0].weight.grad.abs().sum() > 0   # PoF3D: pose gradients reach the mapping


def test_mapping_truncation_is_pigans_code_truncation():
    G = make_G()
    with torch.no_grad():
        G.backbone.mapping.w_avg.normal_()
    z, c = torch.randn(2, Z), label(2)
    ws = G.mapping(z, c, truncation_psi=0.5)
    assert ws.shape == (2, G.num_ws, W) and G.num_ws == L + 1
    # The last mapping layer is affine: lerping w toward w_avg lerps (gamma, beta) toward their code at w_avg.
    gamma, beta = G.backbone.synthesis(ws)
    g0, b0 = G.backbone.synthesis(G.mapping(z, c))
    ga, ba = G.backbone.synthesis(G.backbone.mapping.w_avg.expand(2, G.num_ws, W))
    torch.testing.assert_close(gamma, ga.lerp(g0, 0.5))
    torch.testing.assert_close(beta, ba.lerp(b0, 0.5))


def test_point_queries():
    G = make_G()
    z, c = torch.randn(2, Z), label(2)
    points, dirs = torch.randn(2, 5, 3) * 0.3, torch.randn(2, 5, 3)
    out = G.sample(points, dirs, z, c)
    assert out['rgb'].shape == (2, 5, 3) and out['sigma'].shape == (2, 5, 1)
    mixed = G.sample_mixed(points, dirs, G.mapping(z, c))
    torch.testing.assert_close(mixed['sigma'], out['sigma'])


@pytest.mark.parametrize('kwargs, match', [
    (dict(symmetry='planes'), "symmetry='planes'"),
    (dict(rk=dict(superresolution_module='SuperresolutionHybrid2X')), 'superresolution_module'),
    (dict(channel_base=256), 'no StyleGAN2 synthesis'),
])
def test_incompatible_options_are_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_G(**kwargs)
    with pytest.raises(ValueError, match='takes no representation_kwargs'):
        TriPlaneGenerator(Z, 25, W, 8, 3, pose_source='prior', rendering_kwargs=RK,
                          representation_kwargs=dict(hidden=4))


def test_pickle_round_trip_through_the_safe_loader():
    G = make_G('learned').eval()
    loaded = safe_round_trip(G)
    assert loaded.representation == 'film_siren'
    assert_renders_alike(G, loaded, Z)


# ---------------------------------------------------------------------------------------------
# Config: the pigan preset.

def test_pigan_preset():
    c = config_lib.build_config('pigan', data='x.zip')
    m = c.model
    assert (m.representation, m.siren_hidden, m.siren_layers, m.map_depth, m.w_dim) == ('film_siren', 64, 4, 3, 64)
    assert m.pose_source == 'prior' and (m.prior_h_std, m.prior_v_std) == (0.3, 0.15) and not m.superres
    assert (c.rendering.depth_resolution, c.rendering.depth_resolution_importance) == (12, 12)
    assert c.data.dataset_resolution == 32 and c.batch == 8
    assert c.loss.gamma == 1.0 and c.optim.d_reg_interval == 1          # R1 every step (SEEDS_SPEC §6.0)
    # CPU-scale rates (presets.py): pi-GAN's own rates left grey images; relu at lr 1e-3 died empty
    assert (c.optim.glr, c.optim.dlr, c.optim.betas) == (1e-3, 1e-3, (0.0, 0.9))
    assert (c.rendering.alpha_rule, c.rendering.density_activation) == ('sample_delta', 'softplus')
    assert config_lib.build_config('volumegan', data='x.zip').rendering.density_activation == 'relu'   # its own
    kwargs = c.G_kwargs()
    assert kwargs['representation'] == 'film_siren' and 'channel_base' not in kwargs
    assert kwargs['pose_kwargs'] == dict(distribution='gaussian', parametrization='v', h_std=0.3, v_mean=math.pi / 2,
                                         v_std=0.15)
    assert 'representation' not in config_lib.build_config('synthetic', data='x.zip').G_kwargs()   # unchanged


# ---------------------------------------------------------------------------------------------
# train.py --cfg pigan: a few iterations on make_synthetic.py heads, a snapshot that loads safely.



@pytest.fixture(scope='module')
def heads(tmp_path_factory):
    return make_heads(tmp_path_factory.mktemp('heads'))


def test_pigan_trains_and_its_snapshot_loads_and_renders_the_same(heads, tmp_path):
    run_dir = train_tiny('pigan', heads, tmp_path / 'runs', *TINY_SAMPLES)
    snapshot = run_dir / 'network-snapshot-000000.016.pkl'
    safe, trusted = load_snapshot_both_ways(snapshot)   # the file we just wrote
    G, G_ref = safe['G_ema'], trusted['G_ema']
    assert G.representation == 'film_siren' and G.decoder.hidden == 16 and safe['D'] is not None
    z, c = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)), label(2)
    a = G(z, c, generator=torch.Generator().manual_seed(1))
    b = G_ref(z, c, generator=torch.Generator().manual_seed(1))
    assert a.image.shape == (2, 3, 16, 16) and torch.isfinite(a.image).all()
    assert torch.equal(a.image, b.image) and torch.equal(a.image_depth, b.image_depth)


@pytest.mark.parametrize('args, named', [(['--superres', 'True'], '--superres True'),
                                         (['--symmetry', 'planes'], '--symmetry planes'),
                                         (['--gen_pose_cond', 'True'], '--gen_pose_cond True')])
def test_pigan_incompatible_options_are_one_line_usage_errors(heads, tmp_path, args, named):
    res = CliRunner().invoke(train.main, ['--outdir', str(tmp_path / 'runs'), '--data', str(heads), '--cfg', 'pigan',
                                          '--metrics', 'none', *args])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and '--representation film_siren' in errors[0] and named in errors[0], res.output
    assert not (tmp_path / 'runs').exists()
