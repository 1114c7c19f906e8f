"""`--pose_input noise`: the pose learner reads latent dims of its own, appended to z, so G's camera
is drawn independently of its object (training/pose_sources.py LearnedPose, training/generator.py)."""

import math
import pickle

import pytest
import torch

import test_losses
from test_generator import W_DIM, Z_DIM, make_G, make_inputs
from training import config as config_lib
from training.losses import PoF3DLoss
from training.networks_stylegan2 import normalize_2nd_moment
from training.pose_sources import build_pose_source

TINY = dict(dataset_resolution=16, neural_rendering_resolution_initial=16, z_dim=16, w_dim=16, plane_resolution=16,
            plane_channels=8, cbase=1024, cmax=32)


def wide_inputs(n=4, seed=0):
    """z [n, Z_DIM + W_DIM] (object dims, then the pose learner's) and labels c [n, 25]."""
    z_obj, c = make_inputs(n, seed)
    z_pose = torch.randn(n, W_DIM, generator=torch.Generator().manual_seed(seed + 100))
    return torch.cat([z_obj, z_pose], dim=1), c


def test_the_latent_grows_by_the_pose_dims_and_the_default_is_unchanged():
    assert (make_G().z_dim, make_G().object_z_dim) == (Z_DIM, Z_DIM)
    G = make_G(pose_kwargs=dict(pose_input='noise'))
    assert (G.z_dim, G.object_z_dim, G.pose_source.z_extra) == (Z_DIM + W_DIM, Z_DIM, W_DIM)


def test_the_camera_reads_only_the_pose_dims_and_the_object_only_its_own():
    G = make_G(pose_kwargs=dict(pose_input='noise'))
    z, c = wide_inputs()
    other_object, other_pose = z.clone(), z.clone()
    other_object[:, :Z_DIM] = torch.randn(4, Z_DIM)
    other_pose[:, Z_DIM:] = torch.randn(4, W_DIM)
    pose, ws = G.pose(z, c).pose, G.mapping(z, c)
    assert torch.equal(G.pose(other_object, c).pose, pose)          # a new object, the same camera
    assert torch.equal(G.mapping(other_pose, c), ws)                # a new camera, the same object
    assert (G.pose(other_pose, c).pose - pose).abs().min() > 1e-4
    # The hand value: the two layers on the normalized pose dims, offsets h_mean and pi/2.
    src = G.pose_source
    p = src.affine_layer2(src.affine_layer1(normalize_2nd_moment(z[:, Z_DIM:])))
    torch.testing.assert_close(pose, p + torch.tensor([src.h_mean, math.pi / 2]))


def test_with_w_the_camera_follows_the_object():
    """The control: PoF3D's learner reads w, so a new object moves its camera."""
    G = make_G()
    z, c = make_inputs(4)
    assert (G.pose(torch.randn(4, Z_DIM), c).pose - G.pose(z, c).pose).abs().min() > 1e-6


def test_the_render_trains_the_learner_and_not_the_mapping_through_the_camera():
    G = make_G(pose_kwargs=dict(pose_input='noise'))
    z, c = wide_inputs(2)
    G.pose(z, c).pose.sum().backward()
    assert all(p.grad is None for p in G.backbone.parameters())     # nothing of the object's latent path
    G.zero_grad(set_to_none=True)
    G(z, c, neural_rendering_resolution=16)['image'].square().mean().backward()
    assert G.pose_source.affine_layer1.weight.grad.abs().sum() > 0  # the image reaches the camera


def test_pickle_round_trip_and_a_bad_choice():
    G = make_G(pose_kwargs=dict(pose_input='noise'))
    z, c = wide_inputs()
    G2 = pickle.loads(pickle.dumps(G))
    assert G2.pose_source.pose_input == 'noise' and G2.z_dim == Z_DIM + W_DIM
    assert torch.equal(G2.pose(z, c).pose, G.pose(z, c).pose)
    with pytest.raises(ValueError, match='pose_input'):
        build_pose_source('learned', w_dim=W_DIM, radius=2.7, pivot=(0, 0, 0), pose_input='z')


def test_config_records_the_option_only_when_set():
    assert 'pose_input' not in config_lib.build_config('synthetic', **TINY).G_kwargs()['pose_kwargs']
    G = config_lib.build_config('synthetic', pose_input='noise', **TINY).G_kwargs()
    assert G['pose_kwargs']['pose_input'] == 'noise' and G['z_dim'] == 16   # the object's dims; G adds its own


@pytest.mark.parametrize('pose_input', ['w', 'noise'])
def test_a_frozen_law_stays_exactly_put_only_with_its_own_latent(pose_input):
    """--pose_freeze_kimg stops the camera's gradient; with w as input the law still drifts as the
    mapping trains (issue 15, run 19), with its own latent dims it cannot move at all."""
    G, D = test_losses.make_G(pose_kwargs=dict(pose_input=pose_input)), test_losses.make_D()
    loss = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_freeze_kimg=1.0)
    torch.manual_seed(0)
    z, c, reals = torch.randn(4, G.z_dim), test_losses.make_labels(4), torch.rand(4, 3, 32, 32) * 2 - 1
    before = G.pose(z, c).pose.detach().clone()
    opt = torch.optim.SGD(G.parameters(), lr=1000.0)   # the mapping's lr multiplier is 0.01: a visible step
    opt.zero_grad(set_to_none=True)
    loss.accumulate_gradients('Gmain', reals, c, z, c, 1, 2000)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in G.backbone.mapping.parameters())
    opt.step()
    moved = (G.pose(z, c).pose - before).abs().max().item()
    assert (moved == 0) if pose_input == 'noise' else (moved > 1e-6)
