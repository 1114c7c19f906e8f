"""Tri-plane axes, projection and feature sampling (SPEC §4.5 "Plane axes", "Sampling features").

Shapes: N batch, M points, C channels per plane, H x W plane resolution. Plane features are
[N, 3, C, H, W]; a point's 2-D plane coordinate is (grid x = width axis, grid y = height
axis), both in [-1, 1] over the cube [-box_warp/2, box_warp/2]^3.
"""

import functools

import torch
import torch.nn.functional as F

from torch_utils import fastpath, misc
from torch_utils.ops import grid_sample_gradfix

# Rows of each 3x3 matrix are the plane's (u, v, normal) axes in world coordinates; a point
# projects as coords @ inv(P) and keeps the first two components (SPEC §4.5 table).
_CORRECT_AXES = [[[1, 0, 0], [0, 1, 0], [0, 0, 1]],    # plane 0: (x, y)
                 [[1, 0, 0], [0, 0, 1], [0, 1, 0]],    # plane 1: (x, z)
                 [[0, 0, 1], [0, 1, 0], [1, 0, 0]]]    # plane 2: (z, y)
# The EG3D original ('wrong=True' in the reference, used by all paper runs): plane 2 is
# plane 1 transposed, so no plane sees (y, z) and the representation is a "bi-plane".
_LEGACY_AXES = [[[1, 0, 0], [0, 1, 0], [0, 0, 1]],     # plane 0: (x, y)
                [[1, 0, 0], [0, 0, 1], [0, 1, 0]],     # plane 1: (x, z)
                [[0, 0, 1], [1, 0, 0], [0, 1, 0]]]     # plane 2: (z, x)  [QUIRK, §12.1]


def generate_planes(legacy: bool = False, dtype=torch.float32, device='cpu') -> torch.Tensor:
    """Plane axis matrices [3, 3, 3]: correct XY, XZ, ZY planes, or EG3D's XY, XZ, ZX."""
    return torch.tensor(_LEGACY_AXES if legacy else _CORRECT_AXES, dtype=dtype, device=device)


@functools.lru_cache(maxsize=None)
def cached_planes(legacy: bool, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """`generate_planes` built once per (legacy, dtype, device): no host-to-device copy per
    render. Read-only by convention. Not a module buffer on purpose, so that a generator's
    state dict keeps the EG3D names (`copy_params_and_buffers(..., require_all=True)`)."""
    return generate_planes(legacy, dtype=dtype, device=device)


def project_onto_planes(planes: torch.Tensor, coordinates: torch.Tensor) -> torch.Tensor:
    """2-D coordinates of every point on every plane.

    planes [n_planes, 3, 3], coordinates [N, M, 3] -> [N*n_planes, M, 2] (batch-major: row
    b*n_planes + k is plane k of sample b).
    """
    N, M, _ = coordinates.shape
    n_planes = planes.shape[0]
    # inv_ex: no singularity check, hence no host-device sync on GPU (the axes are permutations).
    inv_planes = torch.linalg.inv_ex(planes.to(coordinates.dtype)).inverse     # [P, 3, 3]
    projected = coordinates.unsqueeze(1) @ inv_planes.unsqueeze(0)              # [N, P, M, 3]
    return projected[..., :2].reshape(N * n_planes, M, 2)


def _project_scaled(planes: torch.Tensor, coordinates: torch.Tensor, scale: float) -> torch.Tensor:
    """`project_onto_planes(planes, coordinates * scale)` as ONE [N*M, 3] x [3, 2P] product
    (the fast path): the reference broadcasts the points over the planes (a copy), multiplies
    by all three inverse columns, then drops one. For the permutation matrices of both axis
    sets every output is one coordinate times scale, exactly as in the reference."""
    N, M, _ = coordinates.shape
    n_planes = planes.shape[0]
    inv_planes = torch.linalg.inv_ex(planes.to(coordinates.dtype)).inverse            # [P, 3, 3]
    weight = (inv_planes[:, :, :2] * scale).permute(1, 0, 2).reshape(3, n_planes * 2)  # [3, P*2]
    projected = coordinates.reshape(N * M, 3).mm(weight).reshape(N, M, n_planes, 2)
    return projected.permute(0, 2, 1, 3).reshape(N * n_planes, M, 2)


def _grid_sample(features: torch.Tensor, grid: torch.Tensor, mode: str, padding_mode: str):
    """align_corners=False sampling; bilinear + zeros goes through the double-backward-capable
    gradfix op (R1 / density regularization need it), other modes through F.grid_sample."""
    if mode == 'bilinear' and padding_mode == 'zeros':
        return grid_sample_gradfix.grid_sample(features, grid)
    return F.grid_sample(features, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def sample_from_planes(plane_axes: torch.Tensor, plane_features: torch.Tensor, coordinates: torch.Tensor,
                       box_warp: float, mode: str = 'bilinear', padding_mode: str = 'zeros') -> torch.Tensor:
    """Features of each point on each plane.

    plane_axes [P, 3, 3] (from `generate_planes`), plane_features [N, P, C, H, W],
    coordinates [N, M, 3] in world units -> [N, P, M, C]. Points are scaled by 2/box_warp so
    the cube of side box_warp maps onto the grid's [-1, 1]; outside it the features are 0
    (zero padding). align_corners=False: grid -1 / +1 are the outer edges of the edge texels.
    """
    N, P, C, H, W = plane_features.shape
    misc.assert_shape(plane_axes, [P, 3, 3])
    misc.assert_shape(coordinates, [N, None, 3])
    M = coordinates.shape[1]
    if fastpath.enabled():
        grid = _project_scaled(plane_axes, coordinates, 2 / box_warp).unsqueeze(1)
    else:
        grid = project_onto_planes(plane_axes, coordinates * (2 / box_warp)).unsqueeze(1)  # [N*P, 1, M, 2]
    sampled = _grid_sample(plane_features.reshape(N * P, C, H, W), grid.to(plane_features.dtype),
                           mode, padding_mode)                                      # [N*P, C, 1, M]
    return sampled.reshape(N, P, C, M).permute(0, 1, 3, 2)
