"""Canonical mirror symmetry of the generated field (issue 15, item 1; a project option, not in PoF3D).

Why: cameras orbit the point they look at, so yawing the object inside its frame renders what
yawing the camera renders. A field that is mirror-symmetric about the dataset's symmetry plane
pins the object's frame (up to the pitch, which the mirror leaves free), so only the camera can
turn. Modes (chosen once, at construction, recorded in the pickle as G's `symmetry`):

    none     the paper: no constraint.
    planes   exact by construction: every plane that contains the mirrored axis is averaged
             with its own flip along that axis, so σ(p) = σ(Mp) and rgb(p) = rgb(Mp).
    density  soft, colour left free: λ · mean |σ(p) − σ(Mp)| at random points in the box
             (`training/losses/symmetry.py`, DensitySymmetry).

The mirror M is the yaw mirror of the preset's `flip_type` (SPEC §3.4): x -> -x for
'flip_both' (ffhq, cats, synthetic), z -> -z for 'flip_both_shapenet'.

Why a flip of the texels is exact: a plane is sampled at grid coordinates in [-1, 1] with
align_corners=False, so texel coordinate ((g + 1) W - 1) / 2 at -g is W - 1 minus the one at g:
sampling F at -g is sampling flip(F) at g (bilinear weights and zero padding alike). A plane
whose two axes miss the mirrored one sees p and Mp at the same grid point already.
"""

from typing import Tuple

import torch

from training.rendering.planes import generate_planes

SYMMETRY_MODES = ('none', 'planes', 'density')
MIRROR_AXES = {'flip_both': 'x', 'flip_both_shapenet': 'z'}   # flip_type -> mirrored world axis
_AXIS_INDEX = {'x': 0, 'y': 1, 'z': 2}


def check_symmetry(mode: str, axis: str) -> None:
    if mode not in SYMMETRY_MODES:
        raise ValueError(f'symmetry must be one of {SYMMETRY_MODES}, got {mode!r}')
    if axis not in _AXIS_INDEX:
        raise ValueError(f'symmetry_axis must be one of {tuple(_AXIS_INDEX)}, got {axis!r}')


def plane_flip_dims(plane_axes: str, axis: str) -> Tuple[Tuple[int, ...], ...]:
    """For each plane of the axis set ('correct' | 'legacy'), the dims of its [C, H, W] feature
    map to flip for the mirror of world `axis`: -1 (W) when the plane's u axis (grid x) is the
    mirrored one, -2 (H) for its v axis (grid y), none when it is the plane's normal.

    Correct XY, XZ, ZY: x -> ((-1,), (-1,), ()), z -> ((), (-2,), (-1,)).
    Legacy XY, XZ, ZX:  x -> ((-1,), (-1,), (-2,)), z -> ((), (-2,), (-1,)).
    """
    index = _AXIS_INDEX[axis]
    flips = []
    for u, v, _normal in generate_planes(legacy=plane_axes == 'legacy').tolist():
        flips.append(tuple(dim for dim, row in ((-1, u), (-2, v)) if row[index] != 0))
    return tuple(flips)


def symmetrize_planes(planes: torch.Tensor, flips: Tuple[Tuple[int, ...], ...]) -> torch.Tensor:
    """planes [N, P, C, H, W] -> the same shape, plane k replaced by (F_k + flip(F_k, flips[k])) / 2
    (unchanged where flips[k] is empty). Out of place; gradients flow to both halves."""
    out = []
    for k, dims in enumerate(flips):
        plane = planes[:, k]
        out.append((plane + plane.flip(dims)) * 0.5 if dims else plane)
    return torch.stack(out, dim=1)


def mirror_points(points: torch.Tensor, axis: str) -> torch.Tensor:
    """points [..., 3] -> the same with world `axis` negated (M p)."""
    sign = torch.ones(3, dtype=points.dtype, device=points.device)
    sign[_AXIS_INDEX[axis]] = -1
    return points * sign


def mirror_flip_type(G) -> str:
    """The flip_type of G's yaw mirror, from its symmetry_axis (pickles without one: 'flip_both')."""
    axis = getattr(G, 'symmetry_axis', 'x')
    return {v: k for k, v in MIRROR_AXES.items()}[axis]
