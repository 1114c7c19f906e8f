"""Reprojection error of generated images (VolumeGAN's 3D-consistency measure; SEEDS_SPEC §5.6,
§6.5 "Metrics", §6.6 `reproj_err`).

Camera conventions (training/cameras.py, training/rendering/rays.py): cam2world [N, 4, 4] is
OpenCV style (columns 0-2: the camera's right (+x), down (+y) and forward (+z) axes in world
coordinates; column 3: the camera origin), the world is y-up; intrinsics K [N, 3, 3] are
normalized by the image size (fx, fy in image widths, principal point (cx, cy), cx = cy = 0.5
when centred). The ray of pixel (row i, col j) of an R x R render passes through the normalized
image point (u, v) = ((j + 1/2)/R, (i + 1/2)/R) (`sample_rays`), and G's 'image_depth' is the
distance along that unit ray (not the camera z).

reproj_err: for each of num_gen z (random z and dataset label c as in depth_err), G renders
  view 1 at its own camera (the pose source's: prior, learned, or the dataset label) and view 2
  at that camera yawed by `yaw_deg` (10) degrees about the vertical world axis through its
  look-at point (`look_at_point`: the point of the optical axis nearest to G's
  rendering_kwargs['avg_camera_pivot'], the origin when absent; exactly the pivot for a
  look-at camera). The rotation is right-handed about +y, i.e. h -> h + yaw for a camera
  orbiting a pivot on the y axis (`yaw_camera`). Both renders use the same z, c, G_kwargs and
  an identically seeded torch generator, so every random draw (prior pose, noise, stratified
  jitter) is the same in the two calls: at yaw 0 the two renders are identical.
  Resolution: the warp runs at the depth's resolution R (G's neural rendering resolution).
  'image' (after super-resolution / the neural renderer: what D sees) is reduced to R x R by
  area averaging (F.interpolate mode 'area'; a box average when the image size is a multiple
  of R); with image='image_raw' the rendered RGB before super-resolution is used (already R).
  Images are clamped to [-1, 1] and mapped to [0, 1] (x + 1)/2, not quantized.
  Warp (`warp_to_view`): every pixel of view 1 is back-projected with view 1's depth, projected
  into view 2 and view 2's image is sampled there (bilinear, grid_sample align_corners=False).
  Mask: the point is in front of camera 2 and projects inside the hull of view 2's pixel
  centres (so the bilinear sample is an interpolation), and passes the depth test
  |d_2(p') - |X - o_2|| <= depth_tol * |X - o_2| (view 2's depth sampled at p' the same way):
  points occluded in view 2, or on depth edges, are left out. G's outputs carry no opacity, so
  the mask has no separate foreground term: a background ray counts when its (normalized)
  depth is consistent between the views.
  Error per image: the mean over the mask of |I_1 - warp(I_2)| averaged over channels, on the
  [0, 1] scale; an image whose mask has < 16 pixels is not counted. value = the mean over
  counted images; also mask_frac (mean mask fraction over all images) and images (the fraction
  counted). Lower is more 3D-consistent.
Departures from VolumeGAN's own protocol (SEEDS_SPEC §5.6: marching-cubes mesh, depth from the
mesh, 5 uniform views, warps between consecutive views): the volume-rendered depth, two views,
one warp (view 2 into view 1); SEEDS_SPEC §6.5 asks for this lighter version. Numbers are
comparable between rows of one benchmark, not with the slides' 0.03-0.1.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from metrics import metric_utils
from torch_utils import misc
from training.cameras import Camera
from training.rendering.rays import sample_rays

MIN_MASK_PIXELS = 16
HULL_EPS = 1e-4   # slack (in grid units) of the pixel-centre hull test, for float round-off at yaw 0

# ----------------------------------------------------------------------------
# Pure camera math and the warp.


def look_at_point(cam2world: torch.Tensor, pivot) -> torch.Tensor:
    """The point of each camera's optical axis nearest to `pivot`: o + ((p - o) . f) f, with o
    the origin and f the unit forward axis (column 2). cam2world [N, 4, 4]; pivot [3] or
    [N, 3] (list or tensor) -> [N, 3]. Equals the pivot for a camera that looks at it."""
    misc.assert_shape(cam2world, [None, 4, 4])
    origin = cam2world[:, :3, 3]
    forward = F.normalize(cam2world[:, :3, 2], dim=-1)
    pivot = torch.as_tensor(pivot, dtype=cam2world.dtype, device=cam2world.device).reshape(-1, 3)
    t = ((pivot - origin) * forward).sum(-1, keepdim=True)
    return origin + t * forward


def yaw_camera(cam2world: torch.Tensor, yaw, center) -> torch.Tensor:
    """cam2world [N, 4, 4] rotated by `yaw` radians (float or [N]) about the vertical world
    line (direction +y) through center ([3] or [N, 3]): M' = T(center) R_y(yaw) T(-center) M,
    R_y right-handed: (x, z) -> (x cos + z sin, -x sin + z cos). For a camera on the sphere
    around a center on the y axis this is the pose map h -> h + yaw (v unchanged); the camera
    stays roll-free and keeps looking at the same point (rotated with it). Pure."""
    misc.assert_shape(cam2world, [None, 4, 4])
    n, dtype, device = cam2world.shape[0], cam2world.dtype, cam2world.device
    yaw = torch.as_tensor(yaw, dtype=dtype, device=device).reshape(-1).expand(n)
    center = torch.as_tensor(center, dtype=dtype, device=device).reshape(-1, 3).expand(n, 3)
    c, s = torch.cos(yaw), torch.sin(yaw)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rot = torch.stack([torch.stack([c, zero, s], -1), torch.stack([zero, one, zero], -1),
                       torch.stack([-s, zero, c], -1)], dim=-2)                           # [N, 3, 3]
    transform = torch.eye(4, dtype=dtype, device=device).repeat(n, 1, 1)
    transform[:, :3, :3] = rot
    transform[:, :3, 3] = center - (rot @ center[..., None])[..., 0]
    return transform @ cam2world


def reproject(depth: torch.Tensor, cam2world_dst: torch.Tensor, intrinsics_dst: torch.Tensor,
              cam2world_src: torch.Tensor, intrinsics_src: torch.Tensor):
    """Where the pixels of a destination view land in a source view.

    depth [N, 1, R, R]: ray distance of the destination's pixel-centre rays (`sample_rays` of
    cam2world_dst [N, 4, 4], intrinsics_dst [N, 3, 3]); each pixel gives the world point
    X = o_dst + depth * dir. X is taken into the source camera (cam2world_src, intrinsics_src):
    (x, y, z) = R_src^T (X - o_src), (u, v) = ((K_src (x, y, z)^T)_{0,1}) / z.
    Returns (uv [N, R, R, 2] normalized source image coordinates, u along columns, v along rows
    (the source's pixel (i, j) centre is ((j + 1/2)/R', (i + 1/2)/R')); z [N, R, R] the
    source camera's forward coordinate (> 0: in front); dist [N, R, R] = |X - o_src|, the ray
    distance the source's depth should show at uv)."""
    misc.assert_shape(depth, [None, 1, None, depth.shape[2]])
    n, _, res, _ = depth.shape
    for m, shape in ((cam2world_dst, [n, 4, 4]), (intrinsics_dst, [n, 3, 3]), (cam2world_src, [n, 4, 4]),
                     (intrinsics_src, [n, 3, 3])):
        misc.assert_shape(m, shape)
    origins, dirs = sample_rays(cam2world_dst.to(depth.dtype), intrinsics_dst.to(depth.dtype), res)
    points = origins + depth.reshape(n, res * res, 1) * dirs                       # [N, M, 3]
    rel = points - cam2world_src[:, None, :3, 3].to(depth.dtype)
    cam = rel @ cam2world_src[:, :3, :3].to(depth.dtype)                          # rows R^T (X - o)
    proj = cam @ intrinsics_src.to(depth.dtype).transpose(1, 2)                   # rows K (x, y, z)
    z = cam[..., 2]
    uv = proj[..., :2] / z[..., None]
    return uv.reshape(n, res, res, 2), z.reshape(n, res, res), rel.norm(dim=-1).reshape(n, res, res)


def warp_to_view(image_src: torch.Tensor, depth_src: torch.Tensor, depth_dst: torch.Tensor,
                 cam2world_dst: torch.Tensor, intrinsics_dst: torch.Tensor, cam2world_src: torch.Tensor,
                 intrinsics_src: torch.Tensor, depth_tol: float = 0.02):
    """The source view warped into the destination view with the destination's depth.

    image_src [N, C, S, S] and depth_src [N, 1, S, S] (ray distance) of the source camera;
    depth_dst [N, 1, R, R] of the destination camera (cameras as in `reproject`). Each
    destination pixel samples the source image bilinearly at its reprojection (grid_sample,
    align_corners=False: grid = 2 uv - 1). Returns (warped [N, C, R, R], mask [N, 1, R, R] bool):
    mask = in front of the source camera (z > 0) AND inside the hull of the source's pixel
    centres (|2 uv - 1| <= 1 - 1/S, slack 1e-4) AND the depth test
    |depth_src(uv) - dist| <= depth_tol * dist (depth_src sampled like the image; `reproject`'s
    dist), AND finite depths. Warped pixels outside the mask are not meaningful."""
    misc.assert_shape(depth_src, [image_src.shape[0], 1, image_src.shape[2], image_src.shape[3]])
    uv, z, dist = reproject(depth_dst, cam2world_dst, intrinsics_dst, cam2world_src, intrinsics_src)
    grid = uv * 2 - 1
    finite = torch.isfinite(grid).all(-1) & torch.isfinite(dist)
    grid = torch.where(finite[..., None], grid, torch.zeros_like(grid)).to(image_src.dtype)
    warped = F.grid_sample(image_src, grid, mode='bilinear', padding_mode='border', align_corners=False)
    sampled_depth = F.grid_sample(depth_src, grid, mode='bilinear', padding_mode='border', align_corners=False)[:, 0]
    inside = (grid.abs() <= 1 - 1 / image_src.shape[-1] + HULL_EPS).all(-1) & (z > 0)
    consistent = (sampled_depth - dist).abs() <= depth_tol * dist
    mask = finite & inside & consistent & torch.isfinite(sampled_depth)
    return warped, mask[:, None]


def masked_l1(image: torch.Tensor, warped: torch.Tensor, mask: torch.Tensor,
              min_pixels: int = MIN_MASK_PIXELS) -> torch.Tensor:
    """Per-image mean over the mask of |image - warped| averaged over channels, on the images'
    own scale. image, warped [N, C, R, R]; mask [N, 1, R, R] bool -> [N] float64, NaN for an
    image whose mask has fewer than min_pixels pixels."""
    misc.assert_shape(warped, list(image.shape))
    misc.assert_shape(mask, [image.shape[0], 1, image.shape[2], image.shape[3]])
    err = (image.double() - warped.double()).abs().mean(1, keepdim=True)
    m = mask.double()
    count = m.flatten(1).sum(1)
    value = (err * m).flatten(1).sum(1) / count.clamp_min(1)
    return torch.where(count >= min_pixels, value, torch.full_like(value, float('nan')))

# ----------------------------------------------------------------------------
# The metric.


def image_at_resolution(image: torch.Tensor, res: int) -> torch.Tensor:
    """image [N, C, H, W] -> [N, C, res, res] by area averaging (unchanged at res)."""
    if image.shape[-2:] == (res, res):
        return image
    return F.interpolate(image, size=(res, res), mode='area')


def view_pair_rows(G, z, c, seed: int, yaw: float, pivot, depth_tol: float, image: str = 'image',
                   G_kwargs=None) -> torch.Tensor:
    """One batch of the metric: view 1 at G's camera, view 2 yawed by `yaw` radians about the
    look-at point (nearest to `pivot`), both rendered with torch generators seeded with
    `seed`; view 2 warped into view 1. Returns [N, 2] float64: (masked L1 on [0, 1] or NaN,
    mask fraction)."""
    if image not in ('image', 'image_raw'):
        raise ValueError(f"reproj_err: image must be 'image' or 'image_raw', got {image!r}")
    render = metric_utils.seeded_renderer(G, z, c, seed, G_kwargs)
    out1 = render()
    cam1 = out1['cam2world']
    cam2 = yaw_camera(cam1, yaw, look_at_point(cam1, pivot))
    out2 = render(cam2world=cam2)
    depth1, depth2 = out1['image_depth'].float(), out2['image_depth'].float()
    res = depth1.shape[-1]
    img1, img2 = [(image_at_resolution(o[image].float(), res).clamp(-1, 1) + 1) / 2 for o in (out1, out2)]
    K = Camera.from_label(c).intrinsics.float()
    warped, mask = warp_to_view(img2, depth2, depth1, cam1.float(), K, cam2.float(), K, depth_tol)
    err = masked_l1(img1, warped, mask)
    return torch.stack([err, mask.double().flatten(1).mean(1)], dim=1)


def compute_reproj_err(opts: metric_utils.MetricOptions, num_gen: int = 1000, yaw_deg: float = 10.0,
                       depth_tol: float = 0.02, image: str = 'image', batch: int = 4) -> dict:
    """reproj_err (module docstring); NaN on ranks other than 0."""
    def pair(G, z, c, seed, pivot):
        return view_pair_rows(G, z, c, seed, math.radians(yaw_deg), pivot, depth_tol, image, opts.G_kwargs)
    rows = metric_utils.seeded_sweep_rows(opts, num_gen, batch, pair, 'generated view pairs')
    if opts.rank != 0:
        return dict(value=float('nan'))
    counted = np.isfinite(rows[:, 0])
    value = float(rows[counted, 0].mean()) if counted.any() else float('nan')
    return dict(value=value, mask_frac=float(rows[:, 1].mean()), images=float(counted.mean()))
