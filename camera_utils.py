"""EG3D/PoF3D-named camera API (`import camera_utils` works as in the reference scripts).

The math lives in `training.cameras` (conventions in its docstring: OpenCV cam2world, y-up
world, normalized intrinsics). This module adds EG3D's random pose samplers. Each sampler
takes an optional `generator` (an addition) so that its draws can be reproduced.
"""

import torch

from training.cameras import (
    Camera, FLIP_TYPES, FOV_to_intrinsics, LookAtPose, cam2world_to_pose, clamp_pose_v,
    create_cam2world_matrix, flip_camera, mirror_pitch, mirror_yaw, mirror_yaw_shapenet, pose_to_origin,
)


def _gaussian_pose(horizontal_mean, vertical_mean, horizontal_stddev, vertical_stddev, batch_size, device,
                   generator):
    """h, v [B, 1] ~ N(mean, stddev^2), v clamped to [1e-5, pi - 1e-5]."""
    h = torch.randn([batch_size, 1], device=device, generator=generator) * horizontal_stddev + horizontal_mean
    v = torch.randn([batch_size, 1], device=device, generator=generator) * vertical_stddev + vertical_mean
    return h, clamp_pose_v(v)


class LookAtPoseSampler:
    """Gaussian (h, v) around the means, camera looking at `lookat_position` (SPEC §3.2)."""

    @staticmethod
    def sample(horizontal_mean, vertical_mean, lookat_position, horizontal_stddev=0, vertical_stddev=0,
               radius=1, batch_size=1, device='cpu', generator=None) -> torch.Tensor:
        """cam2world [batch_size, 4, 4]; lookat_position is a [3] tensor or list."""
        h, v = _gaussian_pose(horizontal_mean, vertical_mean, horizontal_stddev, vertical_stddev,
                              batch_size, device, generator)
        return LookAtPose(h, v, lookat_position, radius)


class GaussianCameraPoseSampler:
    """Gaussian (h, v) around the means, camera looking at the world origin."""

    @staticmethod
    def sample(horizontal_mean, vertical_mean, horizontal_stddev=0, vertical_stddev=0, radius=1,
               batch_size=1, device='cpu', generator=None) -> torch.Tensor:
        """cam2world [batch_size, 4, 4]."""
        h, v = _gaussian_pose(horizontal_mean, vertical_mean, horizontal_stddev, vertical_stddev,
                              batch_size, device, generator)
        return LookAtPose(h, v, [0, 0, 0], radius)


class UniformCameraPoseSampler:
    """Uniform h in mean +- horizontal_stddev, v in mean +- vertical_stddev; looks at the origin."""

    @staticmethod
    def sample(horizontal_mean, vertical_mean, horizontal_stddev=0, vertical_stddev=0, radius=1,
               batch_size=1, device='cpu', generator=None) -> torch.Tensor:
        """cam2world [batch_size, 4, 4]."""
        h = (torch.rand([batch_size, 1], device=device, generator=generator) * 2 - 1) * horizontal_stddev \
            + horizontal_mean
        v = (torch.rand([batch_size, 1], device=device, generator=generator) * 2 - 1) * vertical_stddev \
            + vertical_mean
        return LookAtPose(h, clamp_pose_v(v), [0, 0, 0], radius)


__all__ = [
    'Camera', 'FLIP_TYPES', 'FOV_to_intrinsics', 'GaussianCameraPoseSampler', 'LookAtPose', 'LookAtPoseSampler',
    'UniformCameraPoseSampler', 'cam2world_to_pose', 'clamp_pose_v', 'create_cam2world_matrix', 'flip_camera',
    'mirror_pitch', 'mirror_yaw', 'mirror_yaw_shapenet', 'pose_to_origin',
]
