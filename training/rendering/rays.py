"""Camera rays through pixel centres (SPEC §4.4).

Conventions (SPEC §3.1): cam2world is OpenCV (camera +x right, +y down, +z forward) and the
intrinsics K are normalized by the image size (fx, fy in image widths; cx = cy = 0.5 for a
centred principal point). Ray m of an R x R image is pixel (row, col) with m = row*R + col.
"""

import torch

from torch_utils import misc
from training.rendering.math_utils import get_ray_limits_box, normalize_vecs


def sample_rays(cam2world: torch.Tensor, intrinsics: torch.Tensor, resolution: int):
    """One ray per pixel centre.

    cam2world: [N, 4, 4]; intrinsics: [N, 3, 3]; resolution: R.
    Returns (origins [N, R*R, 3], dirs [N, R*R, 3]); dirs are unit vectors in world space.
    Differentiable w.r.t. cam2world and intrinsics (the pose learner trains through this).
    """
    misc.assert_shape(cam2world, [None, 4, 4])
    misc.assert_shape(intrinsics, [cam2world.shape[0], 3, 3])
    R = int(resolution)
    dtype, device = cam2world.dtype, cam2world.device

    # Pixel centres in normalized image coordinates: u along columns, v along rows.
    centres = (torch.arange(R, dtype=dtype, device=device) + 0.5) / R
    v, u = torch.meshgrid(centres, centres, indexing='ij')           # [R, R], rows outer
    u = u.reshape(1, R * R)
    v = v.reshape(1, R * R)

    fx, fy = intrinsics[:, 0, 0, None], intrinsics[:, 1, 1, None]    # [N, 1]
    cx, cy = intrinsics[:, 0, 2, None], intrinsics[:, 1, 2, None]
    sk = intrinsics[:, 0, 1, None]
    # Invert K on the z = 1 plane, skew included (SPEC §4.4).
    x_cam = (u - cx + cy * sk / fy - sk * v / fy) / fx               # [N, M]
    y_cam = (v - cy) / fy
    ones = torch.ones_like(x_cam)
    points_cam = torch.stack([x_cam, y_cam, ones, ones], dim=-1)     # [N, M, 4] homogeneous

    points_world = (points_cam @ cam2world.transpose(1, 2))[..., :3]  # [N, M, 3]
    cam_origin = cam2world[:, None, :3, 3]                            # [N, 1, 3]
    dirs = normalize_vecs(points_world - cam_origin)
    origins = cam_origin.repeat(1, R * R, 1)                          # a real tensor, not a view
    return origins, dirs


class RaySampler(torch.nn.Module):
    """EG3D-compatible module wrapper around `sample_rays` (holds no parameters)."""

    def forward(self, cam2world_matrix: torch.Tensor, intrinsics: torch.Tensor, resolution: int):
        """cam2world_matrix [N, 4, 4], intrinsics [N, 3, 3] -> (origins, dirs), each [N, R*R, 3]."""
        return sample_rays(cam2world_matrix, intrinsics, resolution)


def ray_points(ray_origins: torch.Tensor, ray_directions: torch.Tensor, depths: torch.Tensor) -> torch.Tensor:
    """Sample points o + t d: ray_origins, ray_directions [N, M, 3], depths [N, M, S, 1] ->
    [N, M*S, 3] (ray-major). One addcmul: the same products and sums, ~1.7x faster."""
    N, M, S, _ = depths.shape
    return torch.addcmul(ray_origins.unsqueeze(-2), depths, ray_directions.unsqueeze(-2)).reshape(N, M * S, 3)


def ray_limits(ray_origins: torch.Tensor, ray_directions: torch.Tensor, ray_start, ray_end, box_warp: float):
    """(ray_start [N, M, 1], ray_end [N, M, 1]) from fixed distances or, for 'auto', from the box.

    'auto' intersects each ray with the cube of side box_warp. Rays that miss get
    start = min valid start and end = max valid *start* (sic, EG3D; no preset uses 'auto').
    """
    N, M, _ = ray_origins.shape
    if ray_start != 'auto':
        full = dict(size=[N, M, 1], dtype=ray_origins.dtype, device=ray_origins.device)
        return torch.full(fill_value=float(ray_start), **full), torch.full(fill_value=float(ray_end), **full)
    t_start, t_end = get_ray_limits_box(ray_origins, ray_directions, box_warp)
    valid = t_end > t_start
    if bool(valid.any()):
        t_end = torch.where(valid, t_end, t_start[valid].max())
        t_start = torch.where(valid, t_start, t_start[valid].min())
    return t_start, t_end
