"""Cameras (SPEC §3): golden look-at matrices, intrinsics, pose inverse, labels, mirrors."""

import math

import pytest
import torch

import camera_utils
from training.cameras import (Camera, LookAtPose, cam2world_to_pose, clamp_pose_v, flip_camera, mirror_pitch,
                              mirror_yaw, mirror_yaw_shapenet)

PI = math.pi


def _col(*values, dtype=torch.float64):
    return torch.tensor(values, dtype=dtype).reshape(-1, 1)


def _random_poses(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.rand(n, 1, generator=g, dtype=torch.float64) * (2 * PI - 0.2) + 0.1   # (0.1, 2pi - 0.1)
    v = torch.rand(n, 1, generator=g, dtype=torch.float64) * (PI - 0.2) + 0.1       # (0.1, pi - 0.1)
    r = torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 + 1                   # (1, 3)
    return h, v, r


def test_fov_to_intrinsics_literal_constants():
    # f = 1 / (tan(18.837 * 3.14159 / 360) * 1.414) = 1 / (tan(0.1643837) * 1.414)
    #   = 1 / (0.16588054 * 1.414) = 1 / 0.23455508 = 4.263391
    K = camera_utils.FOV_to_intrinsics(18.837)
    expected = torch.tensor([[4.263391, 0, 0.5], [0, 4.263391, 0.5], [0, 0, 1]])
    torch.testing.assert_close(K, expected, rtol=0, atol=1e-5)


def test_look_at_frontal_golden():
    # h = v = pi/2: phi = arccos(1 - 1) = pi/2, o = (2.7 cos(pi/2), 0, 2.7 sin(pi/2)) = (0, 0, 2.7).
    # f = normalize(0 - o) = (0, 0, -1); right = f x (0,1,0) = (0*0 - (-1)*1, (-1)*0 - 0*0, 0) = (1, 0, 0);
    # down = f x right = (0*0 - (-1)*0, (-1)*1 - 0*0, 0) = (0, -1, 0). Columns (right, down, f, o):
    M = LookAtPose(_col(PI / 2), _col(PI / 2), [0, 0, 0], 2.7)
    expected = torch.tensor([[[1., 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 2.7], [0, 0, 0, 1]]], dtype=torch.float64)
    torch.testing.assert_close(M, expected, rtol=0, atol=1e-12)
    assert torch.linalg.det(M[0, :3, :3]).item() == pytest.approx(1.0)  # a proper rotation


def test_look_at_h_pi_puts_camera_on_plus_x():
    # h = pi: o = (2.7 cos 0, 0, 2.7 sin 0) = (2.7, 0, 0); f = (-1, 0, 0);
    # right = f x up = (0, 0, -1); down = f x right = (0*(-1) - 0*0, 0*0 - (-1)(-1), 0) = (0, -1, 0).
    M = LookAtPose(_col(PI), _col(PI / 2), [0, 0, 0], 2.7)
    expected = torch.tensor([[[0., 0, -1, 2.7], [0, -1, 0, 0], [-1, 0, 0, 0], [0, 0, 0, 1]]], dtype=torch.float64)
    torch.testing.assert_close(M, expected, rtol=0, atol=1e-12)


def test_pivot_changes_forward_not_origin():
    # h = pi, pivot (0, 0, 0.2): o stays (2.7, 0, 0) (the orbit is about the world origin);
    # f = normalize((0, 0, 0.2) - o) = (-2.7, 0, 0.2) / sqrt(7.33) = (-0.997268, 0, 0.073872).
    M = LookAtPose(_col(PI), _col(PI / 2), torch.tensor([0, 0, 0.2]), 2.7)
    torch.testing.assert_close(M[0, :3, 3], torch.tensor([2.7, 0, 0], dtype=torch.float64), rtol=0, atol=1e-12)
    torch.testing.assert_close(M[0, :3, 2], torch.tensor([-0.997268, 0, 0.073872], dtype=torch.float64),
                               rtol=0, atol=1e-6)


def test_look_at_batched_radius_and_pivot_shapes():
    h, v, r = _random_poses(5)
    M = LookAtPose(h, v, torch.zeros(5, 3, dtype=torch.float64), r)
    assert M.shape == (5, 4, 4)
    torch.testing.assert_close(torch.linalg.vector_norm(M[:, :3, 3], dim=-1, keepdim=True), r)
    R = M[:, :3, :3]
    torch.testing.assert_close(R.transpose(1, 2) @ R, torch.eye(3, dtype=torch.float64).expand(5, 3, 3))
    assert torch.allclose(M[:, 1, 0], torch.zeros(5, dtype=torch.float64), atol=1e-12)  # no roll


def test_look_at_pose_gradcheck():
    h, v, _ = _random_poses(3, seed=1)
    h.requires_grad_(True)
    v.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda h, v: LookAtPose(h, v, [0, 0, 0.2], 2.7), (h, v))


def test_pose_round_trip():
    h, v, r = _random_poses(8, seed=2)
    pivot = [0, 0, 0.2]
    M = LookAtPose(h, v, pivot, r)
    h2, v2, r2 = cam2world_to_pose(M, pivot)
    torch.testing.assert_close(torch.cat([h2, v2, r2], 1), torch.cat([h, v, r], 1))
    torch.testing.assert_close(LookAtPose(h2, v2, pivot, r2), M)


def test_clamp_pose_v():
    v = _col(-1.0, 0.0, 1.0, PI, 4.0)
    torch.testing.assert_close(clamp_pose_v(v), _col(1e-5, 1e-5, 1.0, PI - 1e-5, PI - 1e-5))
    assert torch.isfinite(LookAtPose(torch.zeros_like(v), clamp_pose_v(v), [0, 0, 0], 1)).all()


def test_label_round_trip():
    h, v, r = _random_poses(4, seed=3)
    K = camera_utils.FOV_to_intrinsics(18.837).to(torch.float64).expand(4, 3, 3)
    cam = Camera(LookAtPose(h, v, [0, 0, 0], r), K)
    c = cam.to_label()
    assert c.shape == (4, 25)
    torch.testing.assert_close(c[:, :16], cam.cam2world.reshape(4, 16))   # row-major cam2world
    assert c[0, 16].item() == pytest.approx(4.263391, abs=1e-5) and c[0, 18].item() == 0.5
    back = Camera.from_label(c)
    torch.testing.assert_close(back.cam2world, cam.cam2world)
    torch.testing.assert_close(back.intrinsics, cam.intrinsics)
    with pytest.raises(ValueError, match='25'):
        Camera.from_label(torch.zeros(4, 24))


@pytest.mark.parametrize('mirror, pose_map, pivot', [
    (mirror_yaw, lambda h, v: (PI - h, v), [0, 0, 0.2]),             # x -> -x, pivot on x = 0
    (mirror_pitch, lambda h, v: (h, PI - v), [0, 0, 0.2]),           # y -> -y, pivot on y = 0
    (mirror_yaw_shapenet, lambda h, v: (-h, v), [0, 0, 0]),          # z -> -z, pivot on z = 0
])
def test_mirrors(mirror, pose_map, pivot):
    h, v, _ = _random_poses(6, seed=4)
    M = LookAtPose(h, v, pivot, 2.7)
    M_before = M.clone()
    mirrored = mirror(M)
    torch.testing.assert_close(M, M_before, rtol=0, atol=0)             # input untouched
    torch.testing.assert_close(mirror(mirrored), M, rtol=0, atol=0)     # involution
    torch.testing.assert_close(mirrored, LookAtPose(*pose_map(h, v), pivot, 2.7))


def test_mirror_sign_pattern_matches_spec_table():
    # SPEC §3.4: yaw negates [2,0],[0,1],[0,2],[0,3] (+[1,0], zero for look-at cameras).
    M = torch.arange(1., 17).reshape(1, 4, 4)
    flipped = (mirror_yaw(M) != M)[0].nonzero().tolist()
    assert sorted(flipped) == [[0, 1], [0, 2], [0, 3], [1, 0], [2, 0]]
    assert sorted((mirror_pitch(M) != M)[0].nonzero().tolist()) == [[0, 1], [1, 0], [1, 2], [1, 3], [2, 1]]
    assert sorted((mirror_yaw_shapenet(M) != M)[0].nonzero().tolist()) == [[0, 0], [1, 0], [2, 1], [2, 2], [2, 3]]


def test_flip_camera_coin():
    h, v, _ = _random_poses(3, seed=5)
    M = LookAtPose(h, v, [0, 0, 0], 1.7)
    torch.testing.assert_close(flip_camera(M, 'flip_both', True), mirror_yaw(M))
    torch.testing.assert_close(flip_camera(M, 'flip_both', False), mirror_pitch(M))
    torch.testing.assert_close(flip_camera(M, 'flip_both_shapenet', True), mirror_yaw_shapenet(M))
    torch.testing.assert_close(flip_camera(M, 'flip_both_shapenet', False), mirror_pitch(M))
    with pytest.raises(ValueError, match='flip_type'):
        flip_camera(M, 'flip', True)


def test_samplers():
    pivot = torch.tensor([0, 0, 0.2])
    M = camera_utils.LookAtPoseSampler.sample(PI / 2, PI / 2, pivot, radius=2.7, batch_size=2)
    ref = LookAtPose(torch.full([2, 1], PI / 2), torch.full([2, 1], PI / 2), pivot, 2.7)
    torch.testing.assert_close(M, ref)
    # Gaussian: reproducible with a generator; v is clamped (mean 0 would otherwise give NaN).
    draw = [camera_utils.GaussianCameraPoseSampler.sample(PI / 2, 0.0, 0.3, 0.3, radius=2.7, batch_size=16,
                                                          generator=torch.Generator().manual_seed(7))
            for _ in range(2)]
    torch.testing.assert_close(draw[0], draw[1], rtol=0, atol=0)
    assert torch.isfinite(draw[0]).all()
    # Uniform: h in pi/2 +- 0.5, v in pi/2 +- 0.25, read back through the pose inverse.
    U = camera_utils.UniformCameraPoseSampler.sample(PI / 2, PI / 2, 0.5, 0.25, radius=1.0, batch_size=64,
                                                     generator=torch.Generator().manual_seed(8))
    h, v, r = cam2world_to_pose(U)
    assert ((h - PI / 2).abs() <= 0.5 + 1e-5).all() and ((v - PI / 2).abs() <= 0.25 + 1e-5).all()
    torch.testing.assert_close(U[:, :3, 2], -U[:, :3, 3])   # looks at the origin from radius 1
