"""Camera math (SPEC §3): look-at poses, intrinsics, the 25-value label, mirrored cameras.

Conventions, stated once for the whole project:
- cam2world [N, 4, 4] is OpenCV style: its columns 0-2 are the camera's right (+x), down
  (+y) and forward (+z, the viewing direction) axes in world coordinates, column 3 is the
  camera origin. The world is y-up.
- intrinsics K [N, 3, 3] are normalized by the image size: fx, fy in image widths,
  cx = cy = 0.5 for a centred principal point.
- Poses are (h, v) in radians on a sphere of radius r around the *world origin*:
  h is the azimuth (h = pi/2: camera on +z, the frontal FFHQ view; h = pi: camera on +x),
  v in [0, pi] is a uniform-on-sphere parameter, polar angle phi = arccos(1 - 2v/pi)
  (v = pi/2 is the equator). The camera looks at a pivot point.
Everything is pure: no function modifies its inputs.
"""

import dataclasses
import math

import torch

from torch_utils import misc
from training.rendering.math_utils import normalize_vecs

V_EPS = 1e-5  # v is clamped to [V_EPS, pi - V_EPS] where clamping is asked for (SPEC §3.2, §12.9)


def FOV_to_intrinsics(fov_degrees, device='cpu') -> torch.Tensor:
    """Normalized K [3, 3] = [[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]] from EG3D's FOV formula.

    f = 1 / (tan(fov * 3.14159 / 360) * 1.414), with these literal constants (SPEC §3.1):
    18.837 gives f = 4.26339, not the exact focal of an 18.837-degree field of view.
    """
    f = float(1 / (math.tan(fov_degrees * 3.14159 / 360) * 1.414))
    return torch.tensor([[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]], device=device)


def corner_aligned_focal(fov_degrees: float, resolution: int) -> float:
    """Normalized focal f of a pixel-centre camera (`sample_rays`) whose R x R rays equal those
    of the pi-GAN family's corner-aligned grid (SEEDS_SPEC §1.2, §6.0).

    The source puts ray x_i = -1 + 2i/(R - 1) (times tan(fov/2)) through pixel i: the extreme
    rays pass through the image *corners*. Ours pass through (i + 1/2)/R at f image widths,
    x = ((i + 1/2)/R - 1/2)/f; equating the two for every i gives
    f = (R - 1)/(2R tan(fov/2)), e.g. 4.683 for 12 degrees at R = 64 (EG3D's
    `FOV_to_intrinsics` gives 6.73 there: a different, wider-pixel camera).
    """
    return (resolution - 1) / (2 * resolution * math.tan(math.radians(fov_degrees) / 2))


def corner_aligned_intrinsics(fov_degrees: float, resolution: int, device='cpu', dtype=torch.float32) -> torch.Tensor:
    """Normalized K [3, 3] with f = `corner_aligned_focal` and a centred principal point."""
    f = corner_aligned_focal(fov_degrees, resolution)
    return torch.tensor([[f, 0, 0.5], [0, f, 0.5], [0, 0, 1]], device=device, dtype=dtype)


def create_cam2world_matrix(forward_vector: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
    """Roll-free OpenCV cam2world [N, 4, 4] from a viewing direction and an origin, both [N, 3].

    right = normalize(f x up_world), down = normalize(f x right), up_world = (0, 1, 0).
    """
    forward = normalize_vecs(forward_vector)
    up_world = torch.tensor([0, 1, 0], dtype=forward.dtype, device=forward.device).expand_as(forward)
    right = normalize_vecs(torch.linalg.cross(forward, up_world, dim=-1))
    down = normalize_vecs(torch.linalg.cross(forward, right, dim=-1))
    top = torch.stack([right, down, forward, origin.to(forward.dtype)], dim=-1)      # [N, 3, 4]
    bottom = torch.tensor([0, 0, 0, 1], dtype=forward.dtype, device=forward.device)
    return torch.cat([top, bottom.expand(top.shape[0], 1, 4)], dim=1)


def pose_to_origin(h: torch.Tensor, v: torch.Tensor, radius=1) -> torch.Tensor:
    """Camera origin [B, 3] on the sphere of `radius` around the world origin (SPEC §3.2).

    h, v: [B, 1]; radius: scalar or [B, 1]. o = (r sin(phi) cos(pi-h), r cos(phi), r sin(phi) sin(pi-h)),
    phi = arccos(1 - 2v/pi). No clamping: v outside [0, pi] gives NaN (see `clamp_pose_v`).
    """
    phi = torch.arccos(1 - 2 * v / math.pi)
    return torch.cat([radius * torch.sin(phi) * torch.cos(math.pi - h),
                      radius * torch.cos(phi),
                      radius * torch.sin(phi) * torch.sin(math.pi - h)], dim=-1)


def polar_to_pose(theta, phi):
    """pi-GAN pose -> ours (SEEDS_SPEC §6.0): (theta yaw, phi polar angle from +y) -> (h, v).

    h = pi - theta, v = pi (1 - cos phi)/2; tensors of any one shape. The camera origin is the
    same: pose_to_origin(h, v, r) = (r sin phi cos theta, r cos phi, r sin phi sin theta), the
    source's origin (SEEDS_SPEC §1.1). Frontal (pi/2, pi/2) maps to itself.
    """
    theta, phi = torch.as_tensor(theta), torch.as_tensor(phi)
    # pi (1 - cos phi)/2 = pi sin^2(phi/2): the same value without float32's 1 - cos(1e-5) = 0
    return math.pi - theta, math.pi * torch.sin(phi / 2) ** 2


def pose_to_polar(h, v):
    """Ours -> pi-GAN pose, the inverse of `polar_to_pose`: (h, v) -> (theta = pi - h,
    phi = arccos(1 - 2v/pi)); v outside [0, pi] gives NaN (clamp with `clamp_pose_v`)."""
    h, v = torch.as_tensor(h), torch.as_tensor(v)
    return math.pi - h, torch.arccos(1 - 2 * v / math.pi)


def _as_points(point, like: torch.Tensor) -> torch.Tensor:
    """A 3-vector (list, [3] or [B, 3] tensor) as a tensor broadcastable to [B, 3]."""
    return torch.as_tensor(point, dtype=like.dtype, device=like.device).reshape(-1, 3)


def LookAtPose(h: torch.Tensor, v: torch.Tensor, pivot, radius=1) -> torch.Tensor:
    """Differentiable batched look-at camera [B, 4, 4] (PoF3D; SPEC §3.2).

    h, v: [B, 1] radians; pivot: the look-at point, [3] or [B, 3] (list or tensor); radius:
    scalar or [B, 1]. The camera orbits the world origin (not the pivot) and looks at the
    pivot. v is not clamped; apply `clamp_pose_v` first where v may leave [0, pi].
    """
    misc.assert_shape(h, [None, 1])
    misc.assert_shape(v, [h.shape[0], 1])
    origin = pose_to_origin(h, v, radius)
    return create_cam2world_matrix(_as_points(pivot, origin) - origin, origin)


def clamp_pose_v(v: torch.Tensor) -> torch.Tensor:
    """v clamped to [1e-5, pi - 1e-5], where arccos(1 - 2v/pi) is finite (SPEC §12.9)."""
    return torch.clamp(v, V_EPS, math.pi - V_EPS)


def cam2world_to_pose(cam2world: torch.Tensor, pivot=None):
    """Inverse of `LookAtPose` for the origin: cam2world [N, 4, 4] -> (h, v, radius), each [N, 1].

    With o the camera origin relative to the *world origin* (LookAtPose orbits it whatever
    the pivot): phi = arccos(o_y/|o|), v = pi(1 - cos phi)/2, h = pi - atan2(o_z, o_x),
    so h lies in [0, 2pi). `pivot` is accepted for symmetry with LookAtPose and does not
    enter the result; the camera orientation is not checked.
    """
    del pivot
    misc.assert_shape(cam2world, [None, 4, 4])
    o = cam2world[:, :3, 3]
    radius = torch.linalg.vector_norm(o, dim=-1, keepdim=True)
    cos_phi = o[:, 1:2] / radius
    v = math.pi * (1 - cos_phi) / 2
    h = math.pi - torch.atan2(o[:, 2:3], o[:, 0:1])
    return h, v, radius


@dataclasses.dataclass(frozen=True)
class Camera:
    """A batch of cameras: cam2world [N, 4, 4] (OpenCV) and normalized intrinsics [N, 3, 3].

    The only place that knows the layout of the 25-value label c (SPEC §3.1):
    c[:, 0:16] = cam2world row-major, c[:, 16:25] = K row-major.
    """
    cam2world: torch.Tensor
    intrinsics: torch.Tensor

    def __post_init__(self):
        misc.assert_shape(self.cam2world, [None, 4, 4])
        misc.assert_shape(self.intrinsics, [self.cam2world.shape[0], 3, 3])

    @property
    def batch_size(self) -> int:
        return self.cam2world.shape[0]

    def to_label(self) -> torch.Tensor:
        """The label c [N, 25]."""
        n = self.batch_size
        return torch.cat([self.cam2world.reshape(n, 16), self.intrinsics.reshape(n, 9)], dim=1)

    @classmethod
    def from_label(cls, c: torch.Tensor) -> 'Camera':
        """Camera from a label c [N, 25] (a ValueError names any other shape)."""
        if c.ndim != 2 or c.shape[1] != 25:
            raise ValueError(f'a camera label must be [N, 25] (16 cam2world + 9 intrinsics), got {list(c.shape)}')
        n = c.shape[0]
        return cls(cam2world=c[:, :16].reshape(n, 4, 4), intrinsics=c[:, 16:25].reshape(n, 3, 3))


# ---------------------------------------------------------------------------------------------
# Mirrored cameras (SPEC §3.4). Each is M' = S_world M S_cam with S_world negating one world
# axis (the row of M) and S_cam negating one camera axis (right or down, a column of 0-2) so
# the result is again a proper, roll-free look-at camera. The sign masks below are that
# product; each map is an involution and equals LookAtPose of the mirrored (h, v) with a pivot
# on the mirror plane. Entry [1, 0] is 0 for a roll-free camera; it is negated here too (the
# exact mirror), which the reference omits - identical results on look-at cameras.


def _sign_mask(entries) -> torch.Tensor:
    mask = torch.ones(4, 4)
    for row, col in entries:
        mask[row, col] = -1
    return mask


_YAW_MASK = _sign_mask([(2, 0), (1, 0), (0, 1), (0, 2), (0, 3)])             # x -> -x, right flipped
_PITCH_MASK = _sign_mask([(2, 1), (0, 1), (1, 0), (1, 2), (1, 3)])           # y -> -y, down flipped
_YAW_SHAPENET_MASK = _sign_mask([(0, 0), (1, 0), (2, 1), (2, 2), (2, 3)])    # z -> -z, right flipped


def _apply_mask(cam2world: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    misc.assert_shape(cam2world, [None, 4, 4])
    return cam2world * mask.to(dtype=cam2world.dtype, device=cam2world.device)


def mirror_yaw(cam2world: torch.Tensor) -> torch.Tensor:
    """World x -> -x; pose map h -> pi - h, v unchanged. [N, 4, 4] -> [N, 4, 4]."""
    return _apply_mask(cam2world, _YAW_MASK)


def mirror_pitch(cam2world: torch.Tensor) -> torch.Tensor:
    """World y -> -y; pose map v -> pi - v, h unchanged. [N, 4, 4] -> [N, 4, 4]."""
    return _apply_mask(cam2world, _PITCH_MASK)


def mirror_yaw_shapenet(cam2world: torch.Tensor) -> torch.Tensor:
    """World z -> -z; pose map h -> -h (2pi - h), v unchanged. [N, 4, 4] -> [N, 4, 4]."""
    return _apply_mask(cam2world, _YAW_SHAPENET_MASK)


FLIP_TYPES = ('flip_both', 'flip_both_shapenet')


def flip_camera(cam2world: torch.Tensor, flip_type: str, coin: bool) -> torch.Tensor:
    """The mirrored camera of the G flip term (SPEC §3.4) for the whole minibatch [N, 4, 4].

    coin is the caller's draw (the reference: Python `random.random() < 0.5`, one per
    minibatch): True -> yaw mirror ('flip_both') or ShapeNet z-mirror ('flip_both_shapenet'),
    False -> pitch mirror. The result is not re-clamped (only the matrix is used).
    """
    if flip_type not in FLIP_TYPES:
        raise ValueError(f'flip_type must be one of {FLIP_TYPES}, got {flip_type!r}')
    if not coin:
        return mirror_pitch(cam2world)
    return mirror_yaw(cam2world) if flip_type == 'flip_both' else mirror_yaw_shapenet(cam2world)


def mirror_coin(cam2world: torch.Tensor, flip_type: str, generator=None) -> torch.Tensor:
    """Each camera [N, 4, 4] replaced by its yaw mirror (`flip_camera(..., coin=True)`) with
    probability 1/2, one draw per camera from `generator` (on cam2world's device).

    Why: with PoF3D's mirrored renders D's fake stream is the mixture of G's cameras and their
    yaw mirrors, so a G may cover one of two mirror-image modes of the data and still be at
    equilibrium. Sampling G "as D saw it" (gen_samples_pose.py / gen_videos.py --mirror-coin, the
    pose_js_mirror_coin metric) draws this coin per sample (issue 15, item 3)."""
    heads = torch.rand([cam2world.shape[0], 1, 1], generator=generator, device=cam2world.device) < 0.5
    return torch.where(heads, flip_camera(cam2world, flip_type, True), cam2world)
