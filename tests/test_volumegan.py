"""VolumeGAN as parts of the one generator (issue 19; SEEDS_SPEC §5.2, §6.5): the trilinear volume
query (golden cell, layout, border, gradcheck), the shapes of every stage, the AdaIN / template /
view flags, the 1x1 neural renderer's per-pixel independence, the generator with every pose
source and both ablations, the pickle round trip, `--cfg volumegan` and its usage errors, and
short runs whose snapshot renders samples and a mesh."""


import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_samples_pose
from seed_helpers import (TINY_SAMPLES, assert_one_line_usage_error, assert_renders_alike, label,
                          load_snapshot_both_ways, make_heads, safe_round_trip, train_tiny)   # tests/seed_helpers.py
from training import config as config_lib, shapes
from training.cameras import FOV_to_intrinsics
from training.feature_volume import FeatureVolume
from training.generator import TriPlaneGenerator
from training.neural_renderer import NeuralRenderer1x1
from training.point_mlp import FilmPointMLP, ModulatedPointMLP, positional_encoding
from training.rendering.volume_field import VolumeField, sample_volume

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)

RK = dict(depth_resolution=4, depth_resolution_importance=4, ray_start=1.8, ray_end=3.6, box_warp=1.0,
          avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0], white_back=True, alpha_rule='sample_delta',
          depth_sampler='importance_nerf')
Z, W = 16, 12
VOLUME = dict(volume_channels=(8, 4), mlp_hidden=16, mlp_layers=2, feature_channels=8)


def make_G(pose_source='prior', head=True, **representation_kwargs):
    torch.manual_seed(0)
    rk = dict(RK, superresolution_module='NeuralRenderer1x1' if head else None)
    kwargs = {**VOLUME, **({} if head else dict(feature_channels=3)), **representation_kwargs}
    return TriPlaneGenerator(Z, 25, W, 16, 3, pose_source=pose_source, rendering_kwargs=rk,
                             mapping_kwargs=dict(num_layers=2), representation='feature_volume',
                             representation_kwargs=kwargs, neural_rendering_resolution=8 if head else 16,
                             sr_kwargs=dict(input_resolution=8, channel_base=128, channel_max=8) if head else {})


# ---------------------------------------------------------------------------------------------
# The trilinear query (SEEDS_SPEC §5.2 "Trilinear query").

def corner_volume():
    """[1, 2, 2, 2, 2]: channel 0 v[z, y, x] = x + 2y + 4z except v[1, 1, 1] = 8 (not 7: not linear);
    channel 1 = z (the layout check)."""
    v = torch.zeros(1, 2, 2, 2, 2, dtype=torch.float64)
    for z in range(2):
        for y in range(2):
            for x in range(2):
                v[0, 0, z, y, x] = x + 2 * y + 4 * z
                v[0, 1, z, y, x] = z
    v[0, 0, 1, 1, 1] = 8
    return v


def test_trilinear_query_golden_cell():
    v = corner_volume()
    # box_warp 0.5: world (0.125, -0.125, 0) -> box (0.5, -0.5, 0) -> align-corners index (0.75, 0.25, 0.5).
    # z = 0 face: 0.75 (0.25 * 0 + 0.75 * 1) + 0.25 (0.25 * 2 + 0.75 * 3) = 0.5625 + 0.6875 = 1.25
    # z = 1 face: 0.75 (0.25 * 4 + 0.75 * 5) + 0.25 (0.25 * 6 + 0.75 * 8) = 3.5625 + 1.875 = 5.4375
    # value = 0.5 * 1.25 + 0.5 * 5.4375 = 3.34375; channel 1 = the z fraction 0.5
    points = torch.tensor([[[0.125, -0.125, 0.0],
                            [-0.25, -0.25, -0.25],       # a corner voxel centre: exactly v[0, 0, 0] = 0
                            [0.25, 0.25, 0.25],          # the opposite corner: 8
                            [1.0, 1.0, 1.0],             # outside the box: border padding, 8
                            [0.0, 0.0, 0.25]]],          # the z = 1 face's centre: (4 + 5 + 6 + 8) / 4 = 5.75
                          dtype=torch.float64)
    out = sample_volume(v, points, box_warp=0.5)
    assert out.shape == (1, 5, 2)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([3.34375, 0, 8, 8, 5.75], dtype=torch.float64))
    torch.testing.assert_close(out[0, :, 1], torch.tensor([0.5, 0, 1, 1, 1], dtype=torch.float64))


def test_volume_query_gradcheck():
    torch.manual_seed(0)
    volume = torch.randn(2, 3, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    points = (torch.rand(2, 4, 3, dtype=torch.float64) - 0.5).mul(0.9).requires_grad_(True)   # inside the box
    assert torch.autograd.gradcheck(lambda v, p: sample_volume(v, p, 1.0), (volume, points))


# ---------------------------------------------------------------------------------------------
# Shapes of every stage.

def test_feature_volume_stage_shapes():
    vol = FeatureVolume(W, channels=(8, 4, 2))
    outs = []
    for conv in vol.convs:
        conv.register_forward_hook(lambda m, i, o: outs.append(o.shape))
    volume = vol(torch.randn(3, W))
    assert [tuple(s) for s in outs] == [(3, 8, 4, 4, 4), (3, 4, 8, 8, 8), (3, 2, 16, 16, 16)]
    assert volume.shape == (3, 2, 16, 16, 16) and vol.resolution == 16
    assert vol.template.shape == (1, 8, 4, 4, 4) and torch.all(vol.template == 1)   # 'ones', the code (§5.1)
    assert vol.style.out_features == 2 * (8 + 4 + 2)


def test_positional_encoding_order_and_size():
    x = torch.tensor([[0.5, -0.25, 1.0]])
    pe = positional_encoding(x)
    assert pe.shape == (1, 63)                                   # 3 + 2 * 3 * 10 (§5.2)
    torch.testing.assert_close(pe[0, :3], x[0])
    torch.testing.assert_close(pe[0, 3:6], x[0].sin())           # sin(2^0 x)
    torch.testing.assert_close(pe[0, 6:9], x[0].cos())           # cos(2^0 x)
    torch.testing.assert_close(pe[0, 9:12], (2 * x[0]).sin())    # sin(2^1 x)
    torch.testing.assert_close(pe[0, -3:], (512 * x[0]).cos())   # cos(2^9 x)


@pytest.mark.parametrize('cls', [ModulatedPointMLP, FilmPointMLP])
@pytest.mark.parametrize('volume_channels', [4, 0])
def test_point_mlp_and_field_shapes(cls, volume_channels):
    net = cls(W, volume_channels=volume_channels, hidden=16, layers=2, feature_channels=5)
    volume = torch.randn(2, 4, 8, 8, 8) if volume_channels else None
    field = VolumeField(volume, torch.randn(2, 3, W), net, 1.0)
    features, sigma = field.query(torch.rand(2, 7, 3) - 0.5)
    assert features.shape == (2, 7, 5) and sigma.shape == (2, 7, 1) and field.kernel_inputs() is None
    with pytest.raises(ValueError, match='volume channels'):
        VolumeField(None if volume_channels else torch.randn(2, 4, 8, 8, 8), field.ws, net, 1.0).query(
            torch.zeros(2, 1, 3))


def test_neural_renderer_shapes_and_codes():
    nr = NeuralRenderer1x1(channels=6, img_resolution=32, w_dim=W, input_resolution=8, channel_base=256, channel_max=16)
    assert nr.blocks == 2 and nr.num_ws == 5                     # 2 per block + the last ToRGB
    assert [b['conv0'].out_channels for b in nr.layers] == [16, 8]   # min(256 / res, 16) at 16, 32
    image = nr(None, torch.randn(2, 6, 8, 8), torch.randn(2, 7, W))  # reads the last 5 codes
    assert image.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match='2\\^k'):
        NeuralRenderer1x1(channels=6, img_resolution=24, w_dim=W, input_resolution=16)


# ---------------------------------------------------------------------------------------------
# Flags (SEEDS_SPEC §6.5 "Flags").

def test_adain_scale_raw_centres_the_volume_at_the_shift():
    vols = {mode: FeatureVolume(W, channels=(4, 2), adain_scale=mode) for mode in ('raw', 'one_plus')}
    for vol in vols.values():
        torch.manual_seed(1)
        vol.load_state_dict(vols['raw'].state_dict())
        with torch.no_grad():
            vol.style.weight.zero_()
            vol.style.bias.zero_()                               # scale 0, shift 0
            vol.template.normal_()
    w = torch.randn(2, W)
    assert torch.all(vols['raw'](w) == 0)                        # x * 0 + 0, LReLU(0) = 0
    out = vols['one_plus'](w)                                    # LReLU(InstanceNorm(conv)): not zero
    assert out.abs().max() > 0.1
    assert FeatureVolume(W, channels=(4,), template_init='randn').template.std() > 0.5


def test_view_dependent_flag():
    torch.manual_seed(0)
    ws, points = torch.randn(1, 2, W), torch.rand(1, 5, 3) - 0.5
    d1, d2 = torch.zeros(1, 5, 3), torch.ones(1, 5, 3)
    for view_dependent in (False, True):
        net = ModulatedPointMLP(W, volume_channels=0, hidden=8, layers=2, feature_channels=4,
                                view_dependent=view_dependent)
        f1, s1 = VolumeField(None, ws, net, 1.0).query(points, d1)
        f2, s2 = VolumeField(None, ws, net, 1.0).query(points, d2)
        assert torch.equal(s1, s2)                               # density never sees the view
        assert torch.equal(f1, f2) != view_dependent


# ---------------------------------------------------------------------------------------------
# The neural renderer keeps pixels independent before upsampling (§5.1).

def test_neural_renderer_1x1_stage_is_per_pixel():
    torch.manual_seed(0)
    nr = NeuralRenderer1x1(channels=6, img_resolution=16, w_dim=W, input_resolution=8, channel_base=128,
                           channel_max=8)
    conv1, ws = nr.layers[0]['conv1'], torch.randn(1, W)
    x = torch.randn(1, 8, 16, 16)
    x2 = x.clone()
    x2[0, :, 5, 9] += torch.randn(8)
    changed = (conv1(x2, ws) - conv1(x, ws)).abs().sum(dim=1)[0] > 0
    assert changed[5, 9] and changed.sum() == 1                  # only its own pixel
    # The whole head: one pixel (i, j) of M reaches only the FIR [1, 3, 3, 1] footprint of its
    # own output pixels (rows and columns 2i - 1 .. 2i + 2); a 3x3 stage would spread further.
    M = torch.randn(1, 6, 8, 8)
    M2 = M.clone()
    M2[0, :, 3, 4] += 1
    codes = torch.randn(1, nr.num_ws, W)
    diff = (nr(None, M2, codes) - nr(None, M, codes)).abs().sum(dim=1)[0] > 0
    rows, cols = torch.nonzero(diff, as_tuple=True)
    assert diff[6, 8] and rows.min() >= 5 and rows.max() <= 8 and cols.min() >= 7 and cols.max() <= 10


# ---------------------------------------------------------------------------------------------
# The generator with representation='feature_volume'.

@pytest.mark.parametrize('pose_source', ['prior', 'learned', 'prior_residual', 'dataset'])
def test_generator_with_every_pose_source(pose_source):
    G = make_G(pose_source)
    out = G(torch.randn(2, Z), label(2))
    assert out.image.shape == (2, 3, 16, 16) and out.image_raw.shape == (2, 3, 8, 8)
    assert out.image_depth.shape == (2, 1, 8, 8) and torch.isfinite(out.image).all()
    assert (out.pose is None) == (pose_source == 'dataset') and G.num_ws == 2 + 3
    out.image.sum().backward()
    grads = {n: p.grad for n, p in G.named_parameters()}
    for prefix in ('backbone.mapping.', 'backbone.synthesis.volume.template', 'backbone.synthesis.volume.convs.',
                   'decoder.net.', 'superresolution.layers.0.torgb.'):
        assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith(prefix)), prefix


def test_ablations_fv_off_and_nr_off():
    fv_off = make_G(volume=False)
    assert fv_off.backbone.synthesis.volume is None and fv_off.decoder.volume_channels == 0
    assert fv_off.decoder.net[0].in_features == 63                # PE(x) only
    assert fv_off(torch.randn(2, Z), label(2)).image.shape == (2, 3, 16, 16)
    nr_off = make_G(head=False)
    assert nr_off.superresolution is None and nr_off.decoder.feature_sigmoid
    out = nr_off(torch.randn(2, Z), label(2))
    assert out.image.shape == (2, 3, 16, 16) and torch.equal(out.image, out.image_raw)
    assert out.image.min() >= -1 and out.image.max() <= 1          # sigmoid RGB composited on white, 2f - 1
    with pytest.raises(ValueError, match='feature_channels must be 3'):
        make_G(head=False, feature_channels=8)
    film = make_G(mlp='film_siren')
    assert isinstance(film.decoder, FilmPointMLP) and torch.isfinite(film(torch.randn(1, Z), label(1)).image).all()


def test_point_queries_and_shape_extraction():
    G = make_G()
    z, c = torch.randn(1, Z), label(1)
    out = G.sample(torch.rand(1, 5, 3) - 0.5, torch.zeros(1, 5, 3), z, c)
    assert out['rgb'].shape == (1, 5, 8) and out['sigma'].shape == (1, 5, 1)
    volume = shapes.extract_density(G, G.mapping(z, c), 8)
    assert volume.shape == (8, 8, 8) and np.isfinite(volume).all()


def test_pickle_round_trip_through_the_safe_loader():
    G = make_G('learned').eval()
    loaded = safe_round_trip(G)
    assert loaded.representation == 'feature_volume' and isinstance(loaded.superresolution, NeuralRenderer1x1)
    assert_renders_alike(G, loaded, Z)


# ---------------------------------------------------------------------------------------------
# Config: the volumegan preset (SEEDS_SPEC §6.5 "Cheapest CPU test").

def test_volumegan_preset():
    c = config_lib.build_config('volumegan', data='x.zip')
    m, r = c.model, c.rendering
    assert (m.representation, m.volume_channels, m.point_mlp_hidden, m.point_mlp_layers, m.feature_channels) == \
        ('feature_volume', (64, 32, 16), 64, 2, 64)
    assert (m.template_init, m.adain_scale, m.point_mlp, m.view_dependent) == ('ones', 'raw', 'modconv', False)
    assert (c.data.dataset_resolution, r.neural_rendering_resolution_initial, c.batch) == (32, 16, 8)
    assert (r.depth_resolution, r.depth_resolution_importance, r.alpha_rule, r.depth_sampler) == \
        (12, 12, 'sample_delta', 'importance_nerf')
    assert m.pose_source == 'prior' and not m.dis_pose_cond and c.D_kwargs()['c_dim'] == 0 and c.loss.gamma > 0
    kwargs = c.G_kwargs()
    assert kwargs['rendering_kwargs']['superresolution_module'] == 'NeuralRenderer1x1'
    assert kwargs['sr_kwargs'] == dict(input_resolution=16, channel_base=2048, channel_max=64)
    nr_off = config_lib.build_config('volumegan', data='x.zip', image_head='none').G_kwargs()
    assert nr_off['rendering_kwargs']['superresolution_module'] is None
    assert nr_off['representation_kwargs']['feature_channels'] == 3
    assert 'representation' not in config_lib.build_config('synthetic', data='x.zip').G_kwargs()   # unchanged


@pytest.fixture(scope='module')
def heads(tmp_path_factory):
    return make_heads(tmp_path_factory.mktemp('heads'))


@pytest.mark.parametrize('args, named', [
    (['--cfg', 'volumegan', '--superres', 'True'], '--superres True'),
    (['--cfg', 'volumegan', '--symmetry', 'planes'], '--symmetry planes'),
    (['--cfg', 'volumegan', '--neural_rendering_resolution_initial', '32'], '--neural_rendering_resolution_initial'),
    (['--cfg', 'volumegan', '--image_head', 'none'], '--image_head none renders the image directly'),
    (['--cfg', 'pigan', '--volume', 'false'], '--volume needs --representation feature_volume'),
    (['--cfg', 'synthetic', '--image_head', 'none'], '--image_head needs --representation feature_volume'),
])
def test_incompatible_options_are_one_line_usage_errors(heads, tmp_path, args, named):
    assert_one_line_usage_error(heads, tmp_path, args, named)


# ---------------------------------------------------------------------------------------------
# train.py --cfg volumegan: a few iterations of each row, a snapshot that loads, samples and a mesh.

TINY_VOLUME = [*TINY_SAMPLES, '--volume_channels', '8,4', '--point_mlp_hidden', '16', '--feature_channels', '8']
ROWS = {'full': ['--neural_rendering_resolution_initial', '8'],
        'fv_off': ['--neural_rendering_resolution_initial', '8', '--volume', 'false'],
        'nr_off': ['--image_head', 'none'],
        'pof3d_pose': ['--neural_rendering_resolution_initial', '8', '--pose_source', 'learned', '--dis_pose_cond',
                       'true', '--dis_cam_weight', '2', '--pose_gd_weight', '1', '--override', 'pose_head_channels=16']}


@pytest.mark.parametrize('row', sorted(ROWS))
def test_volumegan_rows_train_and_their_snapshots_load_and_render(heads, tmp_path, row):
    run_dir = train_tiny('volumegan', heads, tmp_path / 'runs', *TINY_VOLUME, *ROWS[row])
    snapshot = run_dir / 'network-snapshot-000000.016.pkl'
    safe, trusted = load_snapshot_both_ways(snapshot)   # the file we just wrote
    G, G_ref = safe['G_ema'], trusted['G_ema']
    assert G.representation == 'feature_volume' and safe['D'] is not None
    assert (G.pose_source.__class__.__name__ == 'LearnedPose') == (row == 'pof3d_pose')
    assert (G.backbone.synthesis.volume is None) == (row == 'fv_off')
    assert (G.superresolution is None) == (row == 'nr_off')
    z, c = torch.randn(2, 16, generator=torch.Generator().manual_seed(0)), label(2)
    a = G(z, c, generator=torch.Generator().manual_seed(1))
    b = G_ref(z, c, generator=torch.Generator().manual_seed(1))
    assert a.image.shape == (2, 3, 16, 16) and torch.isfinite(a.image).all()
    assert torch.equal(a.image, b.image) and torch.equal(a.image_depth, b.image_depth)
    if row == 'full':
        samples_and_mesh(G, snapshot, tmp_path / 'samples')


def samples_and_mesh(G, snapshot, out):
    """gen_samples_pose.py on the snapshot: an image, a depth map and a mesh at the level of the
    volume's median (a random tiny G's density need not reach the default level 10)."""
    c = gen_samples_pose.frontal_label(G, FOV_to_intrinsics(30), 'cpu')
    z = torch.from_numpy(np.random.RandomState(0).randn(1, G.z_dim)).float()
    level = float(np.median(shapes.extract_density(G, G.mapping(z, c), 16)))
    res = CliRunner().invoke(gen_samples_pose.main, ['--network', str(snapshot), '--seeds', '0', '--outdir', str(out),
                                                     '--shapes', '--shape-res', '16', '--shape-format', 'both',
                                                     '--shape-level', str(level), '--fov-deg', '30'])
    assert res.exit_code == 0, res.output
    image = np.asarray(PIL.Image.open(out / 'seed0000.png'))
    assert image.shape == (16, 16, 3) and np.load(out / 'seed0000_depth.npy').shape == (8, 8)
    vertices, faces = shapes.read_ply(str(out / 'seed0000.ply'))
    assert len(faces) > 0 and (out / 'seed0000.mrc').exists()
