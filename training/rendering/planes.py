"""Tri-plane axes, projection and feature sampling (SPEC §4.5 "Plane axes", "Sampling features").

Shapes: N batch, M points, C channels per plane, H x W plane resolution. Plane features are
[N, 3, C, H, W]; a point's 2-D plane coordinate is (grid x = width axis, grid y = height
axis), both in [-1, 1] over the cube [-box_warp/2, box_warp/2]^3.
"""

import functools

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from torch_utils import misc
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


def plane_projection(planes: torch.Tensor, dtype=None) -> torch.Tensor:
    """[P, 3, 2]: point @ projection[k] = the (u, v) of plane k, i.e. inv(axes)[:, :2]."""
    # inv_ex: no singularity check, hence no host-device sync on GPU (the axes are permutations).
    return torch.linalg.inv_ex(planes.to(dtype or planes.dtype)).inverse[:, :, :2]


def project_onto_planes(planes: torch.Tensor, coordinates: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """2-D coordinates (times scale) of every point on every plane: planes [P, 3, 3],
    coordinates [N, M, 3] -> [N*P, M, 2] (row b*P + k is plane k of sample b)."""
    return _project(plane_projection(planes, coordinates.dtype), coordinates, scale)


def _project(projection: torch.Tensor, coordinates: torch.Tensor, scale: float) -> torch.Tensor:
    """`project_onto_planes` from the projection [P, 3, 2], as ONE [N*M, 3] x [3, 2P] product
    (the reference broadcasts the points over the planes and drops a column). For the
    permutation matrices of both axis sets every output is one coordinate times scale."""
    N, M, _ = coordinates.shape
    n_planes = projection.shape[0]
    weight = (projection * scale).permute(1, 0, 2).reshape(3, n_planes * 2)            # [3, P*2]
    projected = coordinates.reshape(N * M, 3).mm(weight).reshape(N, M, n_planes, 2)
    return projected.permute(0, 2, 1, 3).reshape(N * n_planes, M, 2)


def _grid_sample(features: torch.Tensor, grid: torch.Tensor, mode: str, padding_mode: str, impl: str = 'auto'):
    """align_corners=False sampling; bilinear + zeros goes through the double-backward-capable
    gradfix op (R1 / density regularization need it), other modes through F.grid_sample.
    impl: the gradfix op's implementation ('auto' follows its module flag; 'gradfix' forces the
    double backward, which the normals of SEEDS_SPEC §3.3 need while training has the flag off)."""
    if mode == 'bilinear' and padding_mode == 'zeros':
        return grid_sample_gradfix.grid_sample(features, grid, impl=impl)
    return F.grid_sample(features, grid, mode=mode, padding_mode=padding_mode, align_corners=False)


def sample_from_planes(plane_axes: torch.Tensor, plane_features: torch.Tensor, coordinates: torch.Tensor,
                       box_warp: float, mode: str = 'bilinear', padding_mode: str = 'zeros',
                       impl: str = 'auto') -> torch.Tensor:
    """Features of each point on each plane.

    plane_axes [P, 3, 3] (from `generate_planes`), plane_features [N, P, C, H, W],
    coordinates [N, M, 3] in world units -> [N, P, M, C]. Points are scaled by 2/box_warp so
    the cube of side box_warp maps onto the grid's [-1, 1]; outside it the features are 0
    (zero padding). align_corners=False: grid -1 / +1 are the outer edges of the edge texels.
    impl: see `_grid_sample`.
    """
    N, P, C, H, W = plane_features.shape
    misc.assert_shape(plane_axes, [P, 3, 3])
    misc.assert_shape(coordinates, [N, None, 3])
    return sample_projected(plane_features, coordinates, plane_projection(plane_axes, coordinates.dtype),
                            2 / box_warp, mode, padding_mode, impl)


def sample_projected(plane_features: torch.Tensor, coordinates: torch.Tensor, projection: torch.Tensor,
                     scale: float, mode: str = 'bilinear', padding_mode: str = 'zeros',
                     impl: str = 'auto') -> torch.Tensor:
    """`sample_from_planes` given the projection [P, 3, 2] (`plane_projection`) and the grid
    scale (2 / box_warp) instead of the axes and the box: [N, P, C, H, W], [N, M, 3] -> [N, P, M, C]."""
    N, P, C, H, W = plane_features.shape
    M = coordinates.shape[1]
    grid = _project(projection.to(coordinates.dtype), coordinates, scale).unsqueeze(1)   # [N*P, 1, M, 2]
    sampled = _grid_sample(plane_features.reshape(N * P, C, H, W), grid.to(plane_features.dtype),
                           mode, padding_mode, impl)                                # [N*P, C, 1, M]
    return sampled.reshape(N, P, C, M).permute(0, 1, 3, 2)


# ---------------------------------------------------------------------------------------------
# Sampling and plane mean in one weighted gather (the OSG decoder's input rows).

@functools.lru_cache(maxsize=None)
def plane_columns(legacy: bool):
    """(u columns, v columns): the world axis each plane's grid x and y read. Every axis matrix
    is a permutation, so the projection of `project_onto_planes` just picks coordinates."""
    axes = _LEGACY_AXES if legacy else _CORRECT_AXES
    return tuple(a[0].index(1) for a in axes), tuple(a[1].index(1) for a in axes)


def _padded_rows(plane_features: torch.Tensor) -> torch.Tensor:
    """[N, P, C, H, W] -> rows [N*P*(H+3)*(W+3), C]: channels-last texels with one zero texel
    before and two after each row and column, so clamped corners read zeros (zeros padding)."""
    N, P, C, H, W = plane_features.shape
    rows = F.pad(plane_features.permute(0, 1, 3, 4, 2), [0, 0, 1, 2, 1, 2])    # [N, P, H+3, W+3, C]
    return rows.reshape(-1, C)


@functools.lru_cache(maxsize=None)
def _tap_matrices(columns, size: int, dtype: torch.dtype, device: torch.device):
    """Affine maps [3, 4P] (+ [4P]) from per-axis floors / fractions [K, 3] to the 4P taps:
    (corner row offsets, u weights, v weights / P). Entries are 0, +-1 and small integers,
    so the products pick and offset coordinates exactly (one rounding for 1 - f)."""
    ucols, vcols = columns
    P, side = len(ucols), size + 3
    index, wu, wv = (torch.zeros(3, 4 * P, dtype=torch.float64) for _ in range(3))
    index_bias, wu_bias, wv_bias = (torch.zeros(4 * P, dtype=torch.float64) for _ in range(3))
    for p in range(P):
        for corner, (dv, du) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            tap = 4 * p + corner
            index[vcols[p], tap] += side       # the padded texel (v + 1 + dv, u + 1 + du) of plane p
            index[ucols[p], tap] += 1
            index_bias[tap] = p * side * side + (1 + dv) * side + 1 + du
            wu[ucols[p], tap], wu_bias[tap] = (1, 0) if du else (-1, 1)             # f or 1 - f
            wv[vcols[p], tap], wv_bias[tap] = ((1 / P, 0) if dv else (-1 / P, 1 / P))
    return tuple(t.to(dtype=dtype, device=device) for t in (index, index_bias, wu, wu_bias, wv, wv_bias))


def _bilinear_taps(points: torch.Tensor, first_plane: int, columns, size: int, scale: float):
    """Points [K, 3] on planes first_plane.. of size x size -> (row index [K, 4P] int32 into
    `_padded_rows`, weight [K, 4P] = bilinear weight / P), corners ordered (v, u) row-major.

    Texel coordinates (g + 1) size/2 - 1/2 of the grid g = point * scale (grid_sample,
    align_corners=False), per world axis. They are clamped to [-1, size]: beyond that every
    corner is a zero texel anyway (zeros padding), and the clamp keeps the corners inside the
    zero border. The taps come from three tiny products (`_tap_matrices`), because PyTorch's
    CPU broadcasts over tiny inner dimensions are slow; indices are exact in float below
    2^24 rows (checked by the caller).
    """
    index_map, index_bias, wu_map, wu_bias, wv_map, wv_bias = _tap_matrices(columns, size, points.dtype,
                                                                            points.device)
    pixels = points * (scale * size / 2) + (size - 1) / 2                          # [K, 3]
    clamped = pixels.clamp(-1, size)
    lo = clamped.floor()
    # Non-finite points give NaN weights (as grid_sample gives NaN), read from a valid texel.
    frac = clamped.sub_(lo).add_(pixels.mul_(0))
    side = size + 3
    # int32 indices: embedding_bag takes them, and the conversion costs ~1/4 of int64's.
    index = torch.addmm(index_bias + first_plane * side * side, lo.nan_to_num_(-1), index_map).int()
    weight = torch.addmm(wu_bias, frac, wu_map).mul_(torch.addmm(wv_bias, frac, wv_map))
    return index, weight


class _PlaneMeanSample(torch.autograd.Function):
    """(plane_features [N, P, C, H, W], coordinates [N, M, 3], projection [3, 2P]) -> the plane
    mean of the bilinear samples as rows [N*M, C] (`sample_plane_mean`).

    Forward: per block of points one `embedding_bag` (weighted sum of 4P channels-last texel
    rows per point), instead of grid_sample over channels-first planes + a strided mean + a
    transposing copy; blocks keep the taps in cache and out of fresh (page-faulting) memory.
    Backward: the reference's own gradient, grid_sampler_2d_backward with grad_output g/P on
    every plane (as MeanBackward gives it), then the projection's transpose for the points.
    Once differentiable (the training loop runs grid_sample without its double backward).
    """
    CHUNK = 4096

    @staticmethod
    def forward(ctx, plane_features, coordinates, projection, columns, scale):
        N, P, C, H, W = plane_features.shape
        M = coordinates.shape[1]
        ctx.save_for_backward(plane_features, coordinates, projection)
        rows = _padded_rows(plane_features)
        out = rows.new_empty([N * M, C])
        for n in range(N):
            for lo in range(0, M, _PlaneMeanSample.CHUNK):
                points = coordinates[n, lo:lo + _PlaneMeanSample.CHUNK]
                index, weight = _bilinear_taps(points, n * P, columns, W, scale)
                out[n * M + lo:n * M + lo + points.shape[0]] = F.embedding_bag(index, rows, mode='sum',
                                                                               per_sample_weights=weight)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        plane_features, coordinates, projection = ctx.saved_tensors
        N, P, C, H, W = plane_features.shape
        M = coordinates.shape[1]
        need_planes, need_coords = ctx.needs_input_grad[:2]
        if not (need_planes or need_coords):
            return None, None, None, None, None
        grid = coordinates.reshape(N * M, 3).mm(projection).reshape(N, M, P, 2).transpose(1, 2)
        grad_out = (grad.reshape(N, 1, M, C) / P).expand(N, P, M, C).permute(0, 1, 3, 2)   # [N, P, C, M]
        g_planes, g_grid = torch.ops.aten.grid_sampler_2d_backward(
            grad_out.reshape(N * P, C, 1, M), plane_features.reshape(N * P, C, H, W),
            grid.reshape(N * P, 1, M, 2), 0, 0, False, [need_planes, need_coords])   # bilinear, zeros
        g_coords = None
        if need_coords:
            g_coords = g_grid.reshape(N, P, M, 2).transpose(1, 2).reshape(N * M, 2 * P).mm(projection.t())
            g_coords = g_coords.reshape(N, M, 3)
        return g_planes.reshape(plane_features.shape) if need_planes else None, g_coords, None, None, None


def plane_mean_supported(plane_features: torch.Tensor) -> bool:
    """Whether `sample_plane_mean` takes these planes [N, P, C, H, W]: square, and fewer than
    2^24 padded texels (its tap indices are computed exactly in float)."""
    N, P, _, H, W = plane_features.shape
    return H == W and N * P * (H + 3) * (W + 3) < 2 ** 24


def sample_plane_mean(legacy: bool, plane_features: torch.Tensor, coordinates: torch.Tensor,
                      box_warp: float) -> torch.Tensor:
    """`sample_from_planes(generate_planes(legacy), ...).mean(dim=1)` (bilinear, zeros padding)
    as rows [N*M, C] (`_PlaneMeanSample`). plane_features [N, P, C, H, W], square,
    fewer than 2^24 texels; coordinates [N, M, 3]. Same bilinear weights as grid_sample,
    summed in another order (float rounding only)."""
    N, P, C, H, W = plane_features.shape
    if not plane_mean_supported(plane_features):
        raise ValueError(f'sample_plane_mean: needs square planes below 2^24 texels, got {list(plane_features.shape)}')
    misc.assert_shape(coordinates, [N, None, 3])
    plane_axes = cached_planes(legacy, plane_features.dtype, plane_features.device)
    misc.assert_shape(plane_axes, [P, 3, 3])
    projection = (plane_projection(plane_axes) * (2 / box_warp)).permute(1, 0, 2).reshape(3, 2 * P)
    return _PlaneMeanSample.apply(plane_features, coordinates.to(plane_features.dtype).contiguous(), projection,
                                  plane_columns(legacy), 2 / box_warp)
