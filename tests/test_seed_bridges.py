"""Convention bridges to the pi-GAN family (SEEDS_SPEC §6.0, §6.6): the (theta, phi) <-> (h, v)
pose conversion, the corner-aligned-grid focal against a pixel-centre ray, and the prior pose
source's polar / spherical-uniform / truncated-Gaussian laws (config, CLI, pickle)."""

import math
import pickle
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

import dnnlib
from training import config as config_lib
from training.cameras import (FOV_to_intrinsics, LookAtPose, corner_aligned_focal, corner_aligned_intrinsics,
                              polar_to_pose, pose_to_origin, pose_to_polar)
from training.pose_sources import PriorPose, build_pose_source, truncated_normal
from training.rendering.rays import sample_rays

PI = math.pi
pytestmark = pytest.mark.usefixtures('single_thread')


# ---------------------------------------------------------------------------------------------
# (theta, phi) <-> (h, v)

@pytest.mark.parametrize('theta,phi,h,v', [
    (PI / 2, PI / 2, PI / 2, PI / 2),                          # frontal maps to itself
    (0.0, PI / 2, PI, PI / 2),                                 # source camera on +x: h = pi - 0
    (PI / 2, PI / 4, PI / 2, PI * (1 - math.sqrt(0.5)) / 2),   # v = pi (1 - 0.707107)/2 = 0.460075
])
def test_polar_pose_conversion_golden(theta, phi, h, v):
    got_h, got_v = polar_to_pose(torch.tensor(theta, dtype=torch.float64), torch.tensor(phi, dtype=torch.float64))
    assert got_h.item() == pytest.approx(h, abs=1e-12) and got_v.item() == pytest.approx(v, abs=1e-12)
    back_theta, back_phi = pose_to_polar(got_h, got_v)
    assert back_theta.item() == pytest.approx(theta, abs=1e-12) and back_phi.item() == pytest.approx(phi, abs=1e-7)


def test_polar_pose_round_trip_and_same_origin():
    g = torch.Generator().manual_seed(0)
    theta = torch.rand(100, 1, generator=g, dtype=torch.float64) * 2 * PI
    phi = torch.rand(100, 1, generator=g, dtype=torch.float64) * (PI - 0.02) + 0.01
    h, v = polar_to_pose(theta, phi)
    t2, p2 = pose_to_polar(h, v)
    torch.testing.assert_close(t2, theta, rtol=0, atol=1e-12)
    torch.testing.assert_close(p2, phi, rtol=0, atol=1e-9)
    # pi-GAN's origin (SEEDS_SPEC §1.1): (sin phi cos theta, cos phi, sin phi sin theta).
    source = torch.cat([torch.sin(phi) * torch.cos(theta), torch.cos(phi), torch.sin(phi) * torch.sin(theta)], -1)
    torch.testing.assert_close(pose_to_origin(h, v), source, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Corner-aligned focal

def test_corner_aligned_focal_golden():
    # 63 / (128 tan 6 deg) = 63 / (128 * 0.10510424) = 63 / 13.453342 = 4.682851
    assert corner_aligned_focal(12, 64) == pytest.approx(4.682851, abs=1e-6)
    K = corner_aligned_intrinsics(12, 64)
    assert K[0, 0].item() == pytest.approx(4.682851, abs=1e-6) and K[0, 2].item() == 0.5 and K[2, 2].item() == 1


def _source_rays(theta, phi, fov_degrees, R):
    """The pi-GAN family's camera (SEEDS_SPEC §1.1, §1.2), written from the spec for this test:
    a corner-aligned grid x = linspace(-1, 1), y = linspace(1, -1), z = -1/tan(fov/2) in an
    OpenGL camera (columns -left, up, -forward) at r = 1 looking at the origin. -> [R*R, 3]."""
    o = torch.tensor([math.sin(phi) * math.cos(theta), math.cos(phi), math.sin(phi) * math.sin(theta)],
                     dtype=torch.float64)
    forward = -o / o.norm()
    left = torch.linalg.cross(torch.tensor([0.0, 1, 0], dtype=torch.float64), forward)
    left = left / left.norm()
    up = torch.linalg.cross(forward, left)
    rotation = torch.stack([-left, up, -forward], dim=1)                   # [3, 3], columns
    lin = torch.linspace(-1, 1, R, dtype=torch.float64)
    y, x = torch.meshgrid(-lin, lin, indexing='ij')                        # rows top to bottom
    z = torch.full_like(x, -1 / math.tan(math.radians(fov_degrees) / 2))
    d = torch.stack([x, y, z], -1).reshape(-1, 3)
    d = d / d.norm(dim=-1, keepdim=True)
    return o, d @ rotation.T


@pytest.mark.parametrize('theta,phi', [(PI / 2, PI / 2), (1.2, 1.9), (2.5, 0.8)])
def test_corner_grid_rays_equal_pixel_centre_rays(theta, phi):
    """The ray through each pixel centre of our camera (K = corner_aligned_intrinsics, the
    converted pose) equals the source's corner-grid ray of that pixel, the corner pixels
    included (SEEDS_SPEC §6.6); EG3D's FOV_to_intrinsics would not."""
    R, fov = 8, 12.0
    o_src, d_src = _source_rays(theta, phi, fov, R)
    h, v = polar_to_pose(torch.tensor([[theta]], dtype=torch.float64), torch.tensor([[phi]], dtype=torch.float64))
    cam2world = LookAtPose(h, v, [0, 0, 0], 1)
    K = corner_aligned_intrinsics(fov, R, dtype=torch.float64)[None]
    origins, dirs = sample_rays(cam2world, K, R)
    torch.testing.assert_close(origins[0, 0], o_src, rtol=0, atol=1e-12)
    torch.testing.assert_close(dirs[0], d_src, rtol=0, atol=1e-12)
    _, eg3d_dirs = sample_rays(cam2world, FOV_to_intrinsics(fov).to(torch.float64)[None], R)
    assert (eg3d_dirs[0] - d_src).abs().max() > 1e-3
    # image-right is world +x at the frontal camera (SEEDS_SPEC §6.0)
    if theta == PI / 2:
        assert dirs[0, R - 1, 0] > 0 > dirs[0, 0, 0]


# ---------------------------------------------------------------------------------------------
# Prior laws

def _prior(**kwargs):
    return PriorPose(radius=2.7, pivot=[0, 0, 0], **kwargs)


def _draw(src, n=200_000, seed=0):
    return src.sample(n, 'cpu', torch.Generator().manual_seed(seed)).double()


def test_default_prior_is_unchanged():
    """Default draws are bit for bit the old formula: (h_mean, v_mean) + (0.3, 0.155) * randn."""
    got = _prior().sample(64, 'cpu', torch.Generator().manual_seed(3))
    noise = torch.randn([64, 2], generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, torch.tensor([PI / 2, PI / 2]) + torch.tensor([0.3, 0.155]) * noise)


def test_polar_gaussian_is_gaussian_in_phi():
    pose = _draw(_prior(parametrization='polar', v_mean=PI / 2, v_std=0.155))
    _, phi = pose_to_polar(pose[:, 0], pose[:, 1])
    assert phi.mean().item() == pytest.approx(PI / 2, abs=2e-3)
    assert phi.std().item() == pytest.approx(0.155, rel=0.01)
    # ... and not in v: near the equator dv/dphi = (pi/2) sin(phi) ~ 1.57, sigma_v ~ 0.24 (SEEDS_SPEC §6.0)
    assert pose[:, 1].std().item() == pytest.approx(0.155 * PI / 2, rel=0.02)
    assert pose[:, 0].std().item() == pytest.approx(0.3, rel=0.01)


def test_polar_uniform_and_clamp():
    pose = _draw(_prior(distribution='uniform', parametrization='polar', v_mean=0.2, v_std=0.4))
    _, phi = pose_to_polar(pose[:, 0], pose[:, 1])
    # phi = 0.2 + 0.4 U(-1, 1) in (-0.2, 0.6), clamped to [1e-5, pi - 1e-5]: a quarter at 1e-5
    assert phi.min().item() == pytest.approx(1e-5, abs=1e-6) and phi.max().item() <= 0.6 + 1e-6
    assert (phi < 2e-5).double().mean().item() == pytest.approx(0.25, abs=0.01)


def test_spherical_uniform_is_uniform_in_cos_phi():
    pose = _draw(_prior(distribution='spherical_uniform', v_mean=PI / 2, v_std=PI / 2))
    _, phi = pose_to_polar(pose[:, 0], pose[:, 1])
    cos = torch.cos(phi)
    counts = torch.histc(cos, bins=10, min=-1, max=1) / len(cos)
    assert torch.allclose(counts, torch.full_like(counts, 0.1), atol=0.004)   # uniform on the sphere
    assert pose[:, 1].min() >= PI * 1e-5 * (1 - 1e-6) and pose[:, 1].max() <= PI * (1 - 1e-5) + 1e-6  # float32
    same = _draw(_prior(distribution='spherical_uniform', parametrization='polar', v_mean=PI / 2, v_std=PI / 2))
    assert torch.equal(pose, same)   # the law is in v (cos phi) whatever the parametrization


def test_truncated_normal_rule():
    x = truncated_normal([400_000], torch.Generator().manual_seed(0))
    # a value stays outside (-2, 2) only when all four draws are: P = 0.0455^4 ~ 4.3e-6
    assert (x.abs() >= 2).double().mean().item() < 2e-5
    assert x.std().item() == pytest.approx(0.8796, abs=0.005)   # std of N(0, 1) truncated to (-2, 2)
    pose = _draw(_prior(distribution='truncated_gaussian'))
    n = (pose - PI / 2) / torch.tensor([0.3, 0.155], dtype=torch.float64)   # the noise of each coordinate
    assert (n.abs() >= 2 + 1e-5).double().mean().item() < 2e-5
    torch.testing.assert_close(n.std(0), torch.full([2], 0.8796, dtype=torch.float64), rtol=0, atol=0.005)


@pytest.mark.parametrize('kwargs', [dict(), dict(parametrization='polar'), dict(distribution='spherical_uniform'),
                                    dict(distribution='truncated_gaussian', parametrization='polar')])
def test_prior_is_deterministic_by_generator(kwargs):
    src = _prior(**kwargs)
    a = src.sample(32, 'cpu', torch.Generator().manual_seed(5))
    assert torch.equal(a, src.sample(32, 'cpu', torch.Generator().manual_seed(5)))
    assert not torch.equal(a, src.sample(32, 'cpu', torch.Generator().manual_seed(6)))


def test_bad_prior_options_name_the_option():
    with pytest.raises(ValueError, match="parametrization must be one of .*'phi'"):
        _prior(parametrization='phi')
    with pytest.raises(ValueError, match="distribution must be one of .*'hybrid'"):
        build_pose_source('prior_residual', z_dim=4, radius=1, pivot=[0, 0, 0], distribution='hybrid')


# ---------------------------------------------------------------------------------------------
# Config, pickle, CLI

TINY = dict(dataset_resolution=16, neural_rendering_resolution_initial=16, z_dim=16, w_dim=16, plane_resolution=16,
            plane_channels=8, cbase=256, cmax=16, depth_resolution=4, depth_resolution_importance=4)


@pytest.mark.parametrize('pose_source', ['prior', 'prior_residual'])
def test_prior_options_reach_the_pickled_generator(pose_source):
    c = config_lib.build_config('synthetic', pose_source=pose_source, prior_distribution='truncated_gaussian',
                                prior_parametrization='polar', prior_h_std=0.5, prior_v_mean=1.4, prior_v_std=0.2,
                                **TINY)
    kwargs = c.G_kwargs()
    assert kwargs['pose_kwargs']['parametrization'] == 'polar'
    G = dnnlib.util.construct_class_by_name(**kwargs)
    G2 = pickle.loads(pickle.dumps(G))
    prior = G2.pose_source if pose_source == 'prior' else G2.pose_source.prior
    assert (prior.distribution, prior.parametrization) == ('truncated_gaussian', 'polar')
    assert prior.mean == (PI / 2, 1.4) and prior.std == (0.5, 0.2)
    z = torch.randn(4, 16, generator=torch.Generator().manual_seed(0))
    a = G.pose_source(None, z, None, generator=torch.Generator().manual_seed(1)).pose
    assert torch.equal(a, G2.pose_source(None, z, None, generator=torch.Generator().manual_seed(1)).pose)


def test_prior_defaults_keep_the_old_generator_kwargs_meaning():
    c = config_lib.build_config('synthetic', pose_source='prior', **TINY)
    pk = c.G_kwargs()['pose_kwargs']
    assert pk == dict(distribution='gaussian', parametrization='v', h_std=0.3, v_mean=PI / 2, v_std=0.155)
    assert config_lib.build_config('synthetic', **TINY).G_kwargs()['pose_kwargs'].keys() == {
        'lr_multiplier_pose', 'init_gain'}   # learned: unchanged


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp('data')
    subprocess.run([sys.executable, 'make_synthetic.py', '--outdir', str(out), '--num', '4', '--resolution', '16',
                    '--supersample', '1'], check=True, capture_output=True, timeout=300)
    return out / 'car16_unlabeled.zip'


@pytest.mark.parametrize('extra,message', [
    (['--prior_parametrization', 'polar'], '--prior_parametrization needs --pose_source prior or prior_residual'),
    (['--pose_source', 'prior', '--prior_distribution', 'hybrid'], "Invalid value for '--prior_distribution'"),
    (['--pose_source', 'prior', '--prior_v_std', '-1'], "Invalid value for '--prior_v_std'"),
])
def test_cli_prior_errors_are_one_line(extra, message, dataset, tmp_path):
    import train as train_cli
    base = ['--outdir', str(tmp_path), '--cfg', 'synthetic', '--data', str(dataset), '--dataset_resolution', '16',
            '--neural_rendering_resolution_initial', '16', '--dry-run']
    result = CliRunner().invoke(train_cli.main, base + extra)
    errors = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert result.exit_code == 2 and len(errors) == 1 and message in errors[0], result.output


def test_cli_prior_options_are_accepted(dataset, tmp_path):
    import train as train_cli
    args = ['--outdir', str(tmp_path), '--cfg', 'synthetic', '--data', str(dataset), '--dataset_resolution', '16',
            '--neural_rendering_resolution_initial', '16', '--pose_source', 'prior', '--dis_pose_cond', 'false',
            '--prior_distribution', 'spherical_uniform', '--prior_parametrization', 'polar', '--prior_v_std', '0.4']
    c = train_cli.make_config(train_cli.main.make_context('train', args).params)
    train_cli.check_config(c)
    assert (c.model.prior_distribution, c.model.prior_parametrization, c.model.prior_v_std) == (
        'spherical_uniform', 'polar', 0.4)
