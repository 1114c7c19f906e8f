"""Canonical mirror symmetry (training/symmetry.py, issue 15 item 1): `--symmetry planes` makes
G's field exactly symmetric for every preset and both plane-axis sets; `--symmetry density` is a
soft loss that vanishes on a symmetric field and whose gradient reduces it."""

import io
import pickle

import pytest
import torch

import dnnlib
import legacy
from training import config as config_lib
from training.losses.symmetry import DensitySymmetry
from training.symmetry import MIRROR_AXES, mirror_points, plane_flip_dims, symmetrize_planes

Z = 16


pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)


def preset_G(cfg, plane_axes='correct', symmetry='planes', seed=0):
    """A tiny G with the preset's rendering constants and mirror axis (its flip_type)."""
    config = config_lib.build_config(cfg, symmetry=symmetry, plane_axes=plane_axes, cbase=256, cmax=16,
                                     plane_resolution=16, plane_channels=8, superres=False, dataset_resolution=16,
                                     neural_rendering_resolution_initial=16, z_dim=Z, w_dim=Z, g_num_fp16_res=0)
    torch.manual_seed(seed)
    G = dnnlib.util.construct_class_by_name(**config.G_kwargs())
    with torch.no_grad():   # break the initial structure: random biases everywhere
        for p in G.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return G


def query(G, points, z):
    """Decoder output at points [N, M, 3] for latents z: (sigma [N, M, 1], rgb features [N, M, 32])."""
    ws = G.mapping(z, torch.zeros(z.shape[0], 25))
    out = G.sample_mixed(points, torch.zeros_like(points), ws, noise_mode='const')
    return out['sigma'], out['rgb']


@pytest.mark.parametrize('axes, axis, expected', [
    ('correct', 'x', ((-1,), (-1,), ())), ('correct', 'z', ((), (-2,), (-1,))),
    ('legacy', 'x', ((-1,), (-1,), (-2,))), ('legacy', 'z', ((), (-2,), (-1,)))])
def test_plane_flip_dims_by_hand(axes, axis, expected):
    # correct planes XY, XZ, ZY / legacy XY, XZ, ZX; grid x = the plane's u axis = W (dim -1)
    assert plane_flip_dims(axes, axis) == expected


def test_symmetrize_planes_is_a_projection_and_out_of_place():
    planes = torch.randn(2, 3, 4, 5, 6)
    flips = plane_flip_dims('legacy', 'x')
    once = symmetrize_planes(planes, flips)
    assert torch.equal(symmetrize_planes(once, flips), once)
    assert torch.equal(once[:, 2], (planes[:, 2] + planes[:, 2].flip(-2)) / 2)
    assert not torch.equal(once, planes) and planes.shape == once.shape


# symmetry 'planes' mirrors tri-planes: the presets of other representations (pigan) refuse it.
TRIPLANE_PRESETS = sorted(k for k, v in config_lib.PRESETS.items() if v.get('representation', 'triplane') == 'triplane')


@pytest.mark.parametrize('plane_axes', ['correct', 'legacy'])
@pytest.mark.parametrize('cfg', TRIPLANE_PRESETS)
def test_planes_mode_field_is_mirror_symmetric(cfg, plane_axes):
    G = preset_G(cfg, plane_axes)
    axis = MIRROR_AXES[config_lib.PRESETS[cfg]['flip_type']]
    assert G.symmetry == 'planes' and G.symmetry_axis == axis
    box = G.rendering_kwargs['box_warp']
    p = (torch.rand(2, 300, 3, generator=torch.Generator().manual_seed(1)) - 0.5) * box
    z = torch.randn(2, Z, generator=torch.Generator().manual_seed(2))
    sigma, rgb = query(G, p, z)
    sigma_m, rgb_m = query(G, mirror_points(p, axis), z)
    torch.testing.assert_close(sigma_m, sigma, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(rgb_m, rgb, rtol=1e-5, atol=1e-5)
    # The same G without the option is far from symmetric: the check above can fail.
    free = preset_G(cfg, plane_axes, symmetry='none')
    s0, _ = query(free, p, z)
    s1, _ = query(free, mirror_points(p, axis), z)
    assert (s0 - s1).abs().mean() > 100 * (sigma - sigma_m).abs().mean() + 1e-4


def test_planes_mode_gradients_reach_the_backbone():
    G = preset_G('synthetic')
    p = torch.rand(1, 50, 3) - 0.5
    sigma, rgb = query(G, p, torch.randn(1, Z))
    (sigma.sum() + rgb.sum()).backward()
    grads = {n: p.grad for n, p in G.named_parameters()}
    assert grads['decoder.net.0.weight'].abs().sum() > 0
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith('backbone.synthesis.'))


def test_symmetry_is_recorded_in_the_pickle():
    G = preset_G('shapenet', 'legacy')
    data = pickle.dumps(dict(G=G, D=None, G_ema=G, augment_pipe=None, training_set_kwargs={}))
    G2 = legacy.load_network_pkl(io.BytesIO(data))['G_ema']
    assert (G2.symmetry, G2.symmetry_axis) == ('planes', 'z')
    p = torch.rand(1, 40, 3) - 0.5
    z = torch.randn(1, Z)
    torch.testing.assert_close(query(G2, mirror_points(p, 'z'), z)[0], query(G2, p, z)[0], rtol=1e-5, atol=1e-5)


def test_bad_symmetry_is_a_value_error():
    with pytest.raises(ValueError, match='symmetry must be one of'):
        preset_G('synthetic', symmetry='radial')


# ----------------------------------------------------------------------------------------
# The soft mode.

def test_density_symmetry_vanishes_on_a_symmetric_field_and_not_otherwise():
    z, c = torch.randn(2, Z), torch.zeros(2, 25)
    assert DensitySymmetry(0.0)(preset_G('synthetic', symmetry='none'), z, c) is None
    symmetric = DensitySymmetry(1.0)(preset_G('synthetic', symmetry='planes'), z, c)
    free = DensitySymmetry(1.0)(preset_G('synthetic', symmetry='none'), z, c)
    assert symmetric.item() < 1e-5 and free.item() > 1e-3
    shapenet = DensitySymmetry(1.0, 'flip_both_shapenet')(preset_G('shapenet', symmetry='planes'), z, c)
    assert shapenet.item() < 1e-5


def test_density_symmetry_weight_scales_the_loss():
    G, z, c = preset_G('synthetic', symmetry='density'), torch.randn(2, Z), torch.zeros(2, 25)
    torch.manual_seed(3)
    one = DensitySymmetry(1.0)(G, z, c)
    torch.manual_seed(3)
    three = DensitySymmetry(3.0)(G, z, c)
    torch.testing.assert_close(three, 3 * one)


def test_density_symmetry_gradient_descent_makes_the_field_symmetric():
    G, z, c = preset_G('synthetic', symmetry='density'), torch.randn(2, Z), torch.zeros(2, 25)
    term = DensitySymmetry(1.0, num_points=200)
    opt = torch.optim.Adam(G.parameters(), lr=1e-2)
    torch.manual_seed(0)
    start = term(G, z, c).item()
    for _ in range(30):
        opt.zero_grad()
        term(G, z, c).backward()
        opt.step()
    torch.manual_seed(0)
    assert term(G, z, c).item() < 0.5 * start


def test_density_symmetry_is_built_from_the_config():
    for source in ('learned', 'dataset'):
        config = config_lib.build_config('synthetic', symmetry='density', symmetry_weight=0.5, pose_source=source)
        assert config.loss_kwargs()['symmetry_density_weight'] == 0.5
        assert config.G_kwargs()['symmetry'] == 'density'
    assert config_lib.build_config('synthetic', symmetry_weight=0.5).loss_kwargs()['symmetry_density_weight'] == 0
    assert config_lib.build_config('shapenet', pose_source='dataset').loss_kwargs()['flip_type'] == 'flip_both_shapenet'


@pytest.mark.parametrize('pose_source', ['learned', 'dataset'])
def test_both_loss_drivers_run_the_density_symmetry_in_gmain(pose_source):
    from training.losses import loss_class_for
    from test_losses import make_D, make_G, make_labels   # tests/ is on sys.path
    G = make_G(pose_source=pose_source)
    D = make_D() if pose_source == 'learned' else make_D(c_dim=25, pose_head=False, self_condition=False)
    z, c = torch.randn(2, 16), make_labels(2)
    total = []
    for weight in (0.0, 1.0):
        extra = dict(pose_gd_weight=0, flip_to_dis=False) if pose_source == 'learned' else {}
        loss = loss_class_for(pose_source)('cpu', G, D, symmetry_density_weight=weight,
                                           neural_rendering_resolution_initial=16, **extra)
        loss.G_adv.weight = 0                                # only the symmetry term may write gradients
        for p in G.parameters():
            p.grad = None
        loss.accumulate_gradients('Gmain', torch.rand(2, 3, 32, 32) * 2 - 1, c, z, c, 1, 0)
        total.append(sum(p.grad.abs().sum() for p in G.parameters() if p.grad is not None))
    assert total[0] == 0 and total[1] > 0
