"""Sphere-tracing renderer for the procedural SDFs of `shapes.py`, batched over images.

Cameras follow the project convention (SPEC §3.1, `training/cameras.py`): OpenCV cam2world
[N, 4, 4] and normalized intrinsics [N, 3, 3]; rays come from `sample_rays` (ray m of an
R x R image is pixel (row, col), m = row*R + col). Shading is Lambertian + ambient under fixed
world-space lights that lie in the mirror plane x = 0, so the scene stays mirror symmetric and
a yaw-mirrored camera (h -> pi - h) sees the horizontally flipped image. With a per-image
light (`render(..., light=)`, SEEDS_SPEC §6.4) shading is pure Lambertian under that light
instead (`lights.py`); only the light *law* is then mirror symmetric.

Depth is the distance along the unit ray from the camera origin to the first surface hit,
the same quantity as the model's `image_depth`; background pixels have depth +inf and mask
False. With supersampling s, each output pixel averages s x s sub-pixel rays: colour is the
box mean, mask is "at least half the sub-rays hit", depth is the mean over the sub-rays that hit.
"""

import dataclasses

import torch

from training.cameras import Camera
from training.synthetic.lights import lambertian_shading
from training.synthetic.shapes import ShapeBatch
from training.rendering.rays import sample_rays


@dataclasses.dataclass(frozen=True)
class RenderOptions:
    """Renderer settings (world units, colours RGB in [0, 1])."""
    resolution: int = 64                     # output R (pixels per side)
    supersample: int = 2                     # s: render (s*R)^2 rays, box-downsample by s
    n_steps: int = 64                        # sphere-tracing iterations (fixed budget)
    step_scale: float = 0.9                  # fraction of the SDF value stepped (SDFs are approximate)
    hit_eps: float = 5e-4                    # |sdf| below this is a hit
    late_hit_eps: float = 4e-3               # rays still marching after n_steps hit if sdf < this
    background: tuple = (1.0, 1.0, 1.0)      # constant background colour
    ambient: float = 0.3                     # ambient term, scaled by 0.8 + 0.2 n_y (sky above)
    lights: tuple = (((0.0, 0.75, 0.66), 0.55),    # (direction towards the light, intensity); a
                     ((0.9, 0.45, 0.0), 0.22),     # light off the plane x = 0 shines together with
                     ((0.0, 0.35, -0.94), 0.22))   # its mirror image (-x), keeping the scene symmetric
    normals: bool = False                    # also return normals [N, R, R, 3]


@dataclasses.dataclass(frozen=True)
class RenderResult:
    """One rendered batch. image uint8 [N, R, R, 3] (HWC); depth float32 [N, R, R] (ray
    distance, +inf where mask is False); mask bool [N, R, R]; normals float32 [N, R, R, 3]
    (unit, world space, zero on background) or None."""
    image: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor
    normals: torch.Tensor | None = None


def ray_box_limits(origins, dirs, half_extent):
    """Slab test against the box |x_i| <= half_extent[i]: origins, dirs [M, 3] -> (t_near, t_far) [M].

    t_near is clamped at 0; a ray that misses has t_far < t_near.
    """
    half = torch.tensor(half_extent, dtype=dirs.dtype)
    inv = 1 / torch.where(dirs.abs() < 1e-12, torch.full_like(dirs, 1e-12), dirs)
    t0, t1 = (-half - origins) * inv, (half - origins) * inv
    t_near = torch.minimum(t0, t1).amax(dim=-1).clamp_min(0)
    t_far = torch.maximum(t0, t1).amin(dim=-1)
    return t_near, t_far


def sphere_trace(sdf, params, origins, dirs, t_near, t_far, opts: RenderOptions):
    """March each ray by the SDF value until it hits, leaves [t_near, t_far], or the budget ends.

    sdf(points [K, 3], params [K, D]) -> (dist [K], part [K]); params, origins, dirs [M, .] are
    per ray; t_near, t_far [M]. Only still-marching rays are evaluated at each step.
    Returns (t [M] ray distance, hit [M] bool).
    """
    t = t_near.clone()
    hit = torch.zeros_like(t, dtype=torch.bool)
    active = torch.nonzero(t_far > t_near).squeeze(1)
    # Per-ray state of the marching rays, compacted as rays finish (index_select is the
    # cheapest gather on CPU); t is written back for the rays that finish.
    state = [x.index_select(0, active) for x in (origins, dirs, params, t_near, t_far)]
    for _ in range(opts.n_steps):
        if active.numel() == 0:
            return t, hit
        o, d, p, ta, tf = state
        dist, _ = sdf(torch.addcmul(o, ta[:, None], d), p)
        done = dist < opts.hit_eps
        ta = torch.where(done, ta, ta + opts.step_scale * dist)
        marching = ~done & (ta <= tf)
        hit[active[done]] = True
        t[active] = ta
        keep = torch.nonzero(marching).squeeze(1)
        active = active.index_select(0, keep)
        state = [x.index_select(0, keep) for x in (o, d, p, ta, tf)]
    if active.numel() > 0:    # out of budget (grazing rays): accept near misses
        o, d, p, ta, _ = state
        dist, _ = sdf(torch.addcmul(o, ta[:, None], d), p)
        hit[active[dist < opts.late_hit_eps]] = True
    return t, hit


def surface_normals(sdf, points, params, h: float = 1e-3):
    """Unit SDF gradient at points [K, 3] (tetrahedral finite differences, step h) -> [K, 3]."""
    k = torch.tensor([[1, -1, -1], [-1, -1, 1], [-1, 1, -1], [1, 1, 1]], dtype=points.dtype)
    n = sum(k[i] * sdf(points + h * k[i], params)[0][:, None] for i in range(4))
    return torch.nn.functional.normalize(n, dim=-1)


def shade(albedo, normals, opts: RenderOptions):
    """Lambertian + ambient: albedo, normals [K, 3] -> RGB [K, 3] in [0, 1]."""
    light = opts.ambient * (0.8 + 0.2 * normals[:, 1:2])
    for (x, y, z), intensity in opts.lights:
        for sx in ((1, -1) if x != 0 else (1,)):
            d = torch.nn.functional.normalize(torch.tensor((sx * x, y, z), dtype=normals.dtype), dim=0)
            light = light + intensity * (normals @ d).clamp_min(0)[:, None]
    return (albedo * light).clamp(0, 1)


def _downsample(x, n, R, s):
    """[n*(s*R)^2, C] sub-pixel values -> [n, R, R, C] box means."""
    return x.reshape(n, R, s, R, s, -1).mean(dim=(2, 4))


def render(family, shapes: ShapeBatch, camera: Camera, opts: RenderOptions = RenderOptions(),
           background: torch.Tensor | None = None, light: torch.Tensor | None = None) -> RenderResult:
    """Render N objects, each seen by its own camera.

    family: a `ShapeFamily` (sdf, half_extent); shapes: N parameter rows and palettes;
    camera: N cameras (float32); background: optional per-image colour [N, 3] (else
    opts.background); light: optional per-image light [N, 4] (a, d, l_x, l_y): pure Lambertian
    shading under it (`lights.lambertian_shading`, SEEDS_SPEC §6.4) instead of opts' fixed
    lights and sky-scaled ambient. Returns a `RenderResult` at opts.resolution.
    """
    n, R, s = camera.batch_size, opts.resolution, opts.supersample
    if len(shapes) != n:
        raise ValueError(f'{len(shapes)} shapes for {n} cameras')
    with torch.no_grad():
        origins, dirs = sample_rays(camera.cam2world, camera.intrinsics, R * s)     # [n, M, 3]
        m = origins.shape[1]
        origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        image_id = torch.arange(n).repeat_interleave(m)                             # [n*M]
        params = shapes.params[image_id]
        t_near, t_far = ray_box_limits(origins, dirs, family.half_extent)
        t, hit = sphere_trace(family.sdf, params, origins, dirs, t_near, t_far, opts)

        idx = torch.nonzero(hit).squeeze(1)
        points = origins[idx] + t[idx, None] * dirs[idx]
        _, part = family.sdf(points, params[idx])
        normals = surface_normals(family.sdf, points, params[idx])
        albedo = shapes.palette[image_id[idx], part]
        if light is None:
            rgb_hit = shade(albedo, normals, opts)
        else:
            rgb_hit = (albedo * lambertian_shading(normals, light[image_id[idx]])).clamp(0, 1)

        bg = torch.as_tensor(opts.background if background is None else background, dtype=torch.float32)
        rgb = bg.expand(n, 3)[image_id].clone()
        rgb[idx] = rgb_hit
        hit_f = hit.float()[:, None]
        coverage = _downsample(hit_f, n, R, s)[..., 0]
        depth_sum = _downsample(torch.where(hit, t, 0.0)[:, None], n, R, s)[..., 0]
        mask = coverage >= 0.5
        depth = torch.where(mask, depth_sum / coverage.clamp_min(1e-6), torch.inf)
        image = (_downsample(rgb, n, R, s) * 255).round().clamp(0, 255).to(torch.uint8)
        normal_img = None
        if opts.normals:
            full = torch.zeros(n * m, 3)
            full[idx] = normals
            normal_img = torch.nn.functional.normalize(_downsample(full, n, R, s), dim=-1)
        return RenderResult(image=image, depth=depth.float(), mask=mask, normals=normal_img)
