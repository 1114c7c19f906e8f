"""Tri-plane generator, pose sources and super-resolution (SPEC §4, docs/model_api.md).

Tiny configurations only (planes 16² × 8 channels, 8 + 8 samples per ray, 16² renders,
32² images): each forward takes a few tens of milliseconds on CPU.
"""

import copy
import math
import pickle

import pytest
import torch

from training import pose_sources, superresolution
from training.cameras import FOV_to_intrinsics, LookAtPose, flip_camera
from training.generator import TriPlaneGenerator
from training.pose_sources import PoseOutput, build_pose_source

Z_DIM = W_DIM = 16
N = 2


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """These tensors are tiny: one intra-op thread is faster than two fighting over shared
    CPU cores (measured ~5x on the CI box). Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_G(pose_source='learned', sr=None, img_resolution=None, rendering=None, **kwargs):
    """A tiny generator: with sr (an SR class name) 32² images from 16² renders, else 16²."""
    rk = dict(ray_start=2.25, ray_end=3.3, box_warp=1, depth_resolution=8, depth_resolution_importance=8,
              avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2], superresolution_module=sr)
    rk.update(rendering or {})
    if img_resolution is None:
        img_resolution = 32 if sr else 16
    torch.manual_seed(0)
    return TriPlaneGenerator(Z_DIM, 25, W_DIM, img_resolution, 3, pose_source=pose_source, rendering_kwargs=rk,
                             plane_resolution=16, plane_channels=8, neural_rendering_resolution=16,
                             mapping_kwargs={'num_layers': 2}, channel_base=1024, channel_max=32, num_fp16_res=0,
                             conv_clamp=None, sr_kwargs={'block_channels': (16, 8)}, **kwargs)


def make_inputs(n=N, seed=0, h=math.pi / 2, v=math.pi / 2):
    """z [n, Z_DIM] and a label c [n, 25] (frontal look-at camera, FFHQ intrinsics)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, Z_DIM, generator=g)
    cam2world = LookAtPose(torch.full([n, 1], h), torch.full([n, 1], v), [0, 0, 0.2], 2.7)
    K = FOV_to_intrinsics(18.837).reshape(1, 9).expand(n, 9)
    return z, torch.cat([cam2world.reshape(n, 16), K], dim=1)


def seeded(seed=0):
    return torch.Generator().manual_seed(seed)


def assert_outputs_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if a[key] is None:
            assert b[key] is None, key
        else:
            assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------------------------------
# Shapes and API.

@pytest.mark.parametrize('sr', [None, 'SuperresolutionHybrid2X'])
@pytest.mark.parametrize('pose_source', pose_sources.POSE_SOURCES)
def test_output_shapes(pose_source, sr):
    G = make_G(pose_source, sr=sr)
    z, c = make_inputs()
    out = G(z, c, generator=seeded())
    H = 32 if sr else 16
    assert out['image'].shape == (N, 3, H, H)
    assert out['image_raw'].shape == (N, 3, 16, 16)
    assert out['image_depth'].shape == (N, 1, 16, 16)
    assert out['cam2world'].shape == (N, 4, 4)
    if pose_source == 'dataset':
        assert out['pose'] is None and out['clamped_frac'] is None
    else:
        assert out['pose'].shape == (N, 2) and out['clamped_frac'].shape == ()
    for key in ('image', 'image_raw', 'image_depth', 'cam2world'):
        assert torch.isfinite(out[key]).all(), key
    # Depth is a ray distance inside [ray_start, ray_end + one jittered step].
    assert out['image_depth'].min() >= 2.25 and out['image_depth'].max() <= 3.3 + 1.05 / 7


def test_mapping_pose_synthesis_compose_to_forward():
    G = make_G('learned', sr='SuperresolutionHybrid2X')
    z, c = make_inputs()
    ws = G.mapping(z, c)
    assert ws.shape == (N, G.num_ws, W_DIM)
    pose = G.pose(z, c)
    assert isinstance(pose, PoseOutput) and pose.pose.shape == (N, 2)
    out = G(z, c, generator=seeded(3))
    assert torch.equal(out['pose'], pose.pose)
    again = G.synthesis(ws, c, cam2world=pose.cam2world, generator=seeded(3))
    for key in ('image', 'image_raw', 'image_depth', 'cam2world'):
        assert torch.equal(out[key], again[key]), key
    assert again['pose'] is None and again['clamped_frac'] is None


def test_parameter_names_and_label_conditioning():
    names = dict(make_G('learned').named_parameters())
    for key in ('pose_source.affine_layer1.weight', 'pose_source.affine_layer2.bias', 'backbone.mapping.fc1.weight',
                'backbone.synthesis.b16.torgb.weight', 'decoder.net.2.weight'):
        assert key in names, key
    assert names['pose_source.affine_layer2.weight'].shape == (2, W_DIM)
    assert not any(k.startswith('backbone.mapping.embed') for k in names)   # PoF3D: mapping ignores c
    assert make_G('dataset').backbone.mapping.embed.weight.shape == (W_DIM, 25)


# ----------------------------------------------------------------------------------------
# The learned pose.

def test_pose_learner_trains_through_the_image():
    G = make_G('learned', sr='SuperresolutionHybrid2X')   # render res 16 == SR input res (no resize)
    z, c = make_inputs()
    out = G(z, c, generator=seeded())
    out['image'].sum().backward()
    for p in G.pose_source.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0

    G.zero_grad(set_to_none=True)
    critic = torch.randn(3 * 32 * 32, generator=seeded(1)) / 32   # a fixed linear "discriminator"
    before = G.pose(z, c).pose.detach()
    opt = torch.optim.Adam(G.parameters(), lr=0.01)
    logits = G(z, c, generator=seeded())['image'].flatten(1) @ critic
    torch.nn.functional.softplus(-logits).mean().backward()        # non-saturating G loss
    opt.step()
    after = G.pose(z, c).pose.detach()
    assert not torch.equal(before, after)


def test_truncation_leaves_pose_unchanged():
    G = make_G('learned')
    z, c = make_inputs()
    G.backbone.mapping.w_avg.copy_(torch.randn(W_DIM, generator=seeded(2)))
    full = G(z, c, generator=seeded())
    trunc = G(z, c, truncation_psi=0.5, generator=seeded())
    assert torch.equal(full['pose'], trunc['pose']) and torch.equal(full['cam2world'], trunc['cam2world'])
    assert not torch.equal(G.mapping(z, c), G.mapping(z, c, truncation_psi=0.5))
    assert not torch.equal(full['image'], trunc['image'])
    cut = G.mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut, torch.cat([G.mapping(z, c, truncation_psi=0.5)[:, :2],
                                               G.mapping(z, c)[:, 2:]], dim=1), rtol=0, atol=0)


def test_detach_w_stops_the_pose_gradient_at_w():
    G = make_G('learned')
    z, c = make_inputs()
    G.pose(z, c, detach_w=True).pose.sum().backward()
    assert G.pose_source.affine_layer1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in G.backbone.parameters())


def test_pose_init_gain_scales_the_initial_pose_offsets():
    """init_gain multiplies the last layer's initial weights: (pose - mean) scales by it exactly
    (biases start at 0), and 1 leaves the reference init untouched."""
    kw = dict(w_dim=W_DIM, radius=2.7, pivot=(0, 0, 0))
    torch.manual_seed(3)
    ref = build_pose_source('learned', **kw)
    torch.manual_seed(3)
    small = build_pose_source('learned', init_gain=0.25, **kw)
    torch.manual_seed(3)
    same = build_pose_source('learned', init_gain=1.0, **kw)
    w = torch.randn(64, W_DIM)
    center = torch.tensor([math.pi / 2, math.pi / 2])
    torch.testing.assert_close(small(w).pose - center, 0.25 * (ref(w).pose - center))
    torch.testing.assert_close(same(w).pose, ref(w).pose, rtol=0, atol=0)
    torch.manual_seed(3)
    per_axis = build_pose_source('learned', init_gain=(1.0, 0.5), **kw)
    torch.testing.assert_close(per_axis(w).pose - center, (ref(w).pose - center) * torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match='init_gain'):
        build_pose_source('learned', init_gain=(1.0, 0.5, 2.0), **kw)


def test_safe_pose_clamp_keeps_the_render_finite():
    G = make_G('learned')
    z, c = make_inputs()
    out = G(z, c, generator=seeded())
    assert out['clamped_frac'].item() == 0
    with torch.no_grad():
        G.pose_source.affine_layer2.bias[1] = 1000       # stored bias x lr 0.01: v = pi/2 + ~10 > pi
    out = G(z, c, generator=seeded())
    assert out['clamped_frac'].item() == 1
    assert (out['pose'][:, 1] > math.pi).all()           # reported pose: before the safety clamp
    assert all(torch.isfinite(out[k]).all() for k in ('image', 'image_depth', 'cam2world'))

    unsafe = make_G('learned', rendering={'safe_pose_clamp': False})
    unsafe.load_state_dict(G.state_dict())
    out = unsafe(z, c, generator=seeded())
    assert out['clamped_frac'] is None and not torch.isfinite(out['cam2world']).all()   # SPEC §12.9 hazard


def test_clamp_h_and_clamp_v():
    G = make_G('learned', rendering={'clamp_h': (1.5, 1.6), 'clamp_v': (-1.0, 1.6)})
    z, c = make_inputs(n=8)
    pose = G.pose(z, c).pose
    assert (pose[:, 0] >= 1.5).all() and (pose[:, 0] <= 1.6).all()
    assert (pose[:, 1] >= 1e-5).all() and (pose[:, 1] <= 1.6).all()   # clamp_v then [1e-5, pi - 1e-5]


# ----------------------------------------------------------------------------------------
# Prior, residual prior and dataset sources.

def test_prior_sampling_follows_the_generator():
    src = build_pose_source('prior', radius=2.7, pivot=[0, 0, 0], distribution='uniform', h_mean=3.0,
                            v_mean=1.5, h_std=0.2, v_std=0.1)
    z = torch.zeros(64, Z_DIM)
    a = src(None, z, None, generator=seeded(5))
    assert torch.equal(a.pose, src(None, z, None, generator=seeded(5)).pose)
    assert not torch.equal(a.pose, src(None, z, None, generator=seeded(6)).pose)
    assert ((a.pose - torch.tensor([3.0, 1.5])).abs() <= torch.tensor([0.2, 0.1])).all()
    assert a.cam2world.shape == (64, 4, 4) and a.clamped_frac.item() == 0
    gauss = build_pose_source('prior', radius=2.7, pivot=[0, 0, 0], v_mean=0.0, v_std=0.5)
    assert 0 < gauss(None, z, None, generator=seeded(0)).clamped_frac.item() < 1   # about half below v = 0


def test_prior_residual_is_the_prior_at_init_and_trains():
    G = make_G('prior_residual')
    z, c = make_inputs()
    w = G.mapping(z, c)[:, 0]
    res = G.pose_source(w, z, c, generator=seeded(4))
    prior = G.pose_source.prior(w, z, c, generator=seeded(4))
    assert torch.equal(res.pose, prior.pose) and torch.equal(res.cam2world, prior.cam2world)

    out = G(z, c, generator=seeded(4))
    assert torch.equal(out['pose'], prior.pose)
    out['image'].sum().backward()
    assert G.pose_source.fc1.weight.grad.abs().sum() > 0


def test_dataset_source_renders_the_label_camera():
    G = make_G('dataset')
    z, c = make_inputs(h=1.2, v=1.4)
    out = G(z, c, generator=seeded())
    assert torch.equal(out['cam2world'], c[:, :16].reshape(N, 4, 4))
    assert out['pose'] is None
    again = G.synthesis(G.mapping(z, c), c, generator=seeded())   # cam2world=None: from c
    assert torch.equal(out['image'], again['image'])
    # Generator pose conditioning: the label reaches w unless c_gen_conditioning_zero.
    _, c2 = make_inputs(h=2.0)
    assert not torch.equal(G.mapping(z, c), G.mapping(z, c2))
    G0 = make_G('dataset', rendering={'c_gen_conditioning_zero': True})
    assert torch.equal(G0.mapping(z, c), G0.mapping(z, c2))


def test_cam2world_override_renders_the_mirrored_camera():
    G = make_G('learned')
    z, c = make_inputs()
    out = G(z, c, generator=seeded())
    mirrored = flip_camera(out['cam2world'], 'flip_both', coin=True)
    flip = G(z, c, cam2world=mirrored, generator=seeded())
    assert torch.equal(flip['cam2world'], mirrored) and torch.equal(flip['pose'], out['pose'])
    assert not torch.allclose(flip['image'], out['image'])
    assert torch.isfinite(flip['image_depth']).all()


# ----------------------------------------------------------------------------------------
# Point queries, randomness, pickling, purity.

def test_sample_and_sample_mixed():
    G = make_G('learned')
    z, c = make_inputs()
    coords = torch.rand(N, 50, 3, generator=seeded(1)) - 0.5
    dirs = torch.nn.functional.normalize(torch.randn(N, 50, 3, generator=seeded(2)), dim=-1)
    out = G.sample(coords, dirs, z, c, truncation_psi=0.7, generator=seeded())
    assert out['rgb'].shape == (N, 50, 32) and out['sigma'].shape == (N, 50, 1)
    mixed = G.sample_mixed(coords, dirs, G.mapping(z, c, truncation_psi=0.7), generator=seeded())
    assert torch.equal(out['rgb'], mixed['rgb']) and torch.equal(out['sigma'], mixed['sigma'])


def test_seeded_generator_is_deterministic_and_leaves_global_rng_alone():
    G = make_G('prior', sr='SuperresolutionHybrid2X', rendering={'superresolution_noise_mode': 'random'})
    for layer in G.modules():   # make the noise inputs matter
        if hasattr(layer, 'noise_strength'):
            layer.noise_strength.data.fill_(0.5)
    z, c = make_inputs()
    state = torch.get_rng_state()
    a = G(z, c, generator=seeded(7))
    b = G(z, c, generator=seeded(7))
    assert torch.equal(torch.get_rng_state(), state)
    assert_outputs_equal(a, b)
    d = G(z, c, generator=seeded(8))
    assert not torch.equal(a['image'], d['image']) and not torch.equal(a['pose'], d['pose'])


@pytest.mark.parametrize('pose_source', ['learned', 'prior_residual'])
def test_pickle_round_trip(pose_source):
    G = make_G(pose_source, sr='SuperresolutionHybrid2X')
    z, c = make_inputs()
    G2 = pickle.loads(pickle.dumps(G))
    assert type(G2).__name__ == 'TriPlaneGenerator' and G2 is not G
    a = G(z, c, noise_mode='const', generator=seeded())
    assert_outputs_equal(a, G2(z, c, noise_mode='const', generator=seeded()))
    assert_outputs_equal(a, copy.deepcopy(G)(z, c, noise_mode='const', generator=seeded()))


def test_forward_mutates_neither_inputs_nor_module_state():
    G = make_G('learned', sr='SuperresolutionHybrid2X')
    z, c = make_inputs()
    mirrored = flip_camera(G.pose(z, c).cam2world.detach(), 'flip_both', coin=False)
    originals = [t.clone() for t in (z, c, mirrored)]
    state = {k: v.clone() for k, v in G.state_dict().items()}
    out = G(z, c, cam2world=mirrored, neural_rendering_resolution=8, generator=seeded())
    assert out['image'].shape == (N, 3, 32, 32) and out['image_raw'].shape == (N, 3, 8, 8)
    (out['image'].sum() + out['pose'].sum()).backward()
    for before, after in zip(originals, (z, c, mirrored)):
        assert torch.equal(before, after)
    assert all(torch.equal(state[k], v) for k, v in G.state_dict().items())
    assert G.neural_rendering_resolution == 16
    G(z, c, update_emas=True)   # the one sanctioned state change: w_avg tracking
    assert not torch.equal(state['backbone.mapping.w_avg'], G.backbone.mapping.w_avg)


# ----------------------------------------------------------------------------------------
# Super-resolution modules.

def _sr(name, img_resolution=32, sr_antialias=True, **kwargs):
    torch.manual_seed(0)
    return superresolution.SR_MODULES[name](channels=32, img_resolution=img_resolution, sr_num_fp16_res=0,
                                            sr_antialias=sr_antialias, w_dim=W_DIM, block_channels=(16, 8),
                                            **kwargs)


@pytest.mark.parametrize('name,render_res', [('SuperresolutionHybrid2X', 16), ('SuperresolutionHybrid2X', 8),
                                             ('SuperresolutionHybrid4X', 8), ('SuperresolutionHybrid8XDC', 16)])
def test_sr_shapes_and_last_w_only(name, render_res):
    sr = _sr(name)
    x = torch.randn(N, 32, render_res, render_res, generator=seeded())
    ws = torch.randn(N, 6, W_DIM, generator=seeded(1))
    img = sr(x[:, :3], x, ws, noise_mode='none')
    assert img.shape == (N, 3, 32, 32)
    other = torch.cat([torch.randn(N, 5, W_DIM), ws[:, -1:]], dim=1)   # SPEC §4.6: only ws[:, -1] matters
    assert torch.equal(img, sr(x[:, :3], x, other, noise_mode='none'))


def test_sr_antialias_is_accepted_and_ignored():
    # EG3D's flag (its pickles carry it); PoF3D resizes never antialias (SPEC §12.4), so a
    # downsampled render (64 -> 16) gives the same image either way.
    x = torch.randn(N, 32, 64, 64, generator=seeded())
    ws = torch.randn(N, 6, W_DIM, generator=seeded(1))
    a, b = (_sr('SuperresolutionHybrid2X', sr_antialias=flag)(x[:, :3], x, ws, noise_mode='none')
            for flag in (True, False))
    assert torch.equal(a, b)


def test_sr_hybrid2x_backward_without_resize_in_float32():
    # Render res == SR input res: no resize, so rgb is a view of the features all the way into
    # block0's skip add (EG3D's in-place add breaks this backward; SPEC "Project decisions").
    sr = _sr('SuperresolutionHybrid2X')
    x = torch.randn(N, 32, 16, 16, generator=seeded(), requires_grad=True)
    feats = x * 1.0
    img = sr(feats[:, :3], feats, torch.randn(N, 6, W_DIM), noise_mode='none')
    img.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad[:, :3].abs().sum() > 0


def test_sr_4x_refuses_to_downsample_and_names_resolve():
    with pytest.raises(ValueError, match='upsamples'):
        _sr('SuperresolutionHybrid4X')(torch.zeros(1, 3, 32, 32), torch.zeros(1, 32, 32, 32), torch.zeros(1, 6, W_DIM))
    assert superresolution.resolve_superresolution('training.superresolution.SuperresolutionHybrid4X') \
        is superresolution.SuperresolutionHybrid4X
    assert superresolution.resolve_superresolution(None) is None
    with pytest.raises(ValueError, match='SuperresolutionHybrid3X'):
        superresolution.resolve_superresolution('SuperresolutionHybrid3X')


# ----------------------------------------------------------------------------------------
# Configuration errors and the EG3D-named module.

def test_configuration_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="'campari'"):
        build_pose_source('campari')
    with pytest.raises(ValueError, match="'bogus'"):
        build_pose_source('prior', radius=1, pivot=[0, 0, 0], distribution='bogus')
    renderer_only = dict(ray_start=2, ray_end=3, box_warp=1, depth_resolution=4, depth_resolution_importance=0)
    with pytest.raises(ValueError, match='avg_camera_radius'):
        TriPlaneGenerator(Z_DIM, 25, W_DIM, 16, 3, rendering_kwargs=renderer_only)
    with pytest.raises(ValueError, match='neural rendering resolution'):
        make_G('learned', img_resolution=32)   # no SR, but 16² renders for 32² images
    with pytest.raises(ValueError, match='c_dim'):
        TriPlaneGenerator(Z_DIM, 3, W_DIM, 16, 3)


def test_triplane_module_aliases():
    from training import triplane
    assert triplane.TriPlaneGenerator is TriPlaneGenerator and triplane.TriPlaneGeneratorPose is TriPlaneGenerator
