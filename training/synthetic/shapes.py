"""Procedural, bilaterally symmetric objects as signed distance functions (SDFs) in torch.

World frame (SPEC §3): y up, the object's front faces +z (the frontal camera h = v = pi/2
sees it), its mirror plane is x = 0 (the yaw-mirror plane of SPEC §3.4). Units are world
units: every object fits in the cube [-0.5, 0.5]^3 (box_warp 1), is ~0.75-0.8 units at its
longest and has its bounding box roughly centred on the pivot (0, 0, 0).

Shapes: M points, D shape parameters, K parts (material slots).
- `family.sample(n, generator)` -> ShapeBatch(params [n, D], palette [n, K, 3] RGB in [0, 1]).
- `family.sdf(points [M, 3], params [M, D])` -> (dist [M], part [M] int64): one parameter
  row per point, so a batch of rays from different images is one call. `part` indexes the
  palette (the part nearest the point) and is used only for colouring.
Symmetry is by construction: each `sdf` folds x -> |x| before anything else, so
sdf(x, y, z) == sdf(-x, y, z) bit for bit.
"""

import dataclasses
import math

import torch

# ---------------------------------------------------------------------------------------------
# Primitives on coordinates x, y, z ([M] each, in the primitive's frame); sizes are [M] tensors
# or floats. Component-wise code (no [M, 3] stacks or norms over a size-3 axis) is ~2x faster
# on CPU. Exact SDFs except the ellipsoid, a bound-like approximation (the tracer steps with
# a margin).


def length(*c):
    """Euclidean norm of the components."""
    total = c[0] * c[0]
    for ci in c[1:]:
        total = total + ci * ci
    return torch.sqrt(total)


def sd_sphere(x, y, z, r):
    return length(x, y, z) - r


def sd_ellipsoid(x, y, z, rx, ry, rz):
    """Approximate distance to an axis-aligned ellipsoid with radii rx, ry, rz (exact on the surface)."""
    k0 = length(x / rx, y / ry, z / rz)
    k1 = length(x / (rx * rx), y / (ry * ry), z / (rz * rz))
    return k0 * (k0 - 1) / k1.clamp_min(1e-9)


def sd_round_box(x, y, z, hx, hy, hz, r: float = 0.0):
    """Box of half sizes hx, hy, hz whose edges are rounded with radius r."""
    qx, qy, qz = x.abs() - hx + r, y.abs() - hy + r, z.abs() - hz + r
    inside = torch.maximum(qx, torch.maximum(qy, qz)).clamp_max(0)
    return length(qx.clamp_min(0), qy.clamp_min(0), qz.clamp_min(0)) + inside - r


def sd_cylinder(a, b, axial, radius, half_len):
    """Capped cylinder along the `axial` coordinate; a, b are the two other coordinates."""
    dr, da = length(a, b) - radius, axial.abs() - half_len
    return length(dr.clamp_min(0), da.clamp_min(0)) + torch.maximum(dr, da).clamp_max(0)


def sd_capsule(x, y, z, a, b, r):
    """Segment from a to b (3-tuples of [M] tensors or floats) thickened by r."""
    pa = (x - a[0], y - a[1], z - a[2])
    ba = tuple(bi - ai for ai, bi in zip(a, b))
    h = ((pa[0] * ba[0] + pa[1] * ba[1] + pa[2] * ba[2]) / (ba[0] * ba[0] + ba[1] * ba[1] + ba[2] * ba[2]))
    h = h.clamp(0, 1)
    return length(pa[0] - ba[0] * h, pa[1] - ba[1] * h, pa[2] - ba[2] * h) - r


def union(a, b, k: float = 0.0):
    """Union of (dist, part) pairs; polynomial smooth-min of width k > 0 blends the surfaces.

    The part is the one with the smaller distance (a hard choice, for colouring only).
    """
    (da, pa), (db, pb) = a, b
    if k > 0:
        h = (0.5 + 0.5 * (db - da) / k).clamp(0, 1)
        d = db + (da - db) * h - k * h * (1 - h)
    else:
        d = torch.minimum(da, db)
    return d, torch.where(db < da, pb, pa)


def _hsv_to_rgb(h, s, v):
    """[n] hue in [0, 1), saturation, value -> [n, 3] RGB."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], -1)
    return v[:, None] - (v * s)[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _rand(n, generator, lo, hi):
    return lo + (hi - lo) * torch.rand(n, generator=generator)


@dataclasses.dataclass(frozen=True)
class ShapeBatch:
    """Per-sample shape parameters [N, D] and part colours [N, K, 3] (float32 RGB in [0, 1])."""
    params: torch.Tensor
    palette: torch.Tensor

    def __len__(self):
        return self.params.shape[0]

    def select(self, index) -> 'ShapeBatch':
        return ShapeBatch(self.params[index], self.palette[index])


class ShapeFamily:
    """Base: a table of uniformly drawn parameters; subclasses add `sdf` and `_palette`."""
    name = ''
    PARAMS: tuple = ()          # (name, low, high) per column of `params`
    PARTS: tuple = ()           # part names, the order of the palette
    half_extent = (0.5, 0.5, 0.5)   # axis-aligned bound of every sample, world units
    BOUND_MARGIN = 0.02             # world units, see `sdf`

    def sample(self, n: int, generator: torch.Generator) -> ShapeBatch:
        """n random shapes: parameters uniform in their ranges, colours from `_palette`."""
        lo = torch.tensor([p[1] for p in self.PARAMS])
        hi = torch.tensor([p[2] for p in self.PARAMS])
        params = lo + (hi - lo) * torch.rand(n, len(self.PARAMS), generator=generator)
        return ShapeBatch(params, self._palette(n, generator).clamp(0, 1))

    def columns(self, params: torch.Tensor) -> dict:
        """{name: [M]} views of the parameter columns."""
        return {p[0]: params[:, i] for i, p in enumerate(self.PARAMS)}

    def _palette(self, n, generator) -> torch.Tensor:
        raise NotImplementedError

    def _bound(self, x, y, z, c: dict) -> torch.Tensor:
        """Distance [M] to a cheap volume enclosing the object (x >= 0 folded coordinates)."""
        raise NotImplementedError

    def _detail(self, x, y, z, c: dict):
        """The full SDF at folded coordinates ([M] each) -> (dist [M], part [M] int64)."""
        raise NotImplementedError

    def sdf(self, points: torch.Tensor, params: torch.Tensor):
        """points [M, 3], params [M, D] -> (dist [M], part [M] int64).

        Points more than BOUND_MARGIN outside the enclosing volume get its distance, a lower
        bound of the true one (safe for sphere tracing, and cheaper); the others get the full
        SDF. Symmetric in x by construction: x is folded to |x| first.
        """
        x, y, z = points[:, 0].abs(), points[:, 1], points[:, 2]
        bound = self._bound(x, y, z, self.columns(params))
        near = torch.nonzero(bound < self.BOUND_MARGIN).squeeze(1)
        if near.numel() == bound.numel():
            return self._detail(x, y, z, self.columns(params))
        dist, part = bound.clone(), torch.zeros_like(bound, dtype=torch.long)
        if near.numel():
            sub = [t.index_select(0, near) for t in (x, y, z, params)]
            dist[near], part[near] = self._detail(*sub[:3], self.columns(sub[3]))
        return dist, part


class Car(ShapeFamily):
    """A car: rounded body box, a glass cabin with sloped windshield set toward the back, four
    wheels with hubs, wheel arches, headlights and a grille in front (+z), red taillights at
    the back. Length along z, width along x, wheels resting on y = -height/2."""
    name = 'car'
    PARAMS = (('length', 0.70, 0.80), ('width', 0.30, 0.36), ('body_h', 0.10, 0.13),
              ('cabin_h', 0.08, 0.11), ('cabin_len', 0.42, 0.55), ('cabin_shift', 0.03, 0.11),
              ('wheel_r', 0.055, 0.07), ('wheelbase', 0.56, 0.66), ('windshield', 0.8, 1.6))
    PARTS = ('body', 'glass', 'tire', 'hub', 'headlight', 'taillight', 'grille')
    half_extent = (0.21, 0.17, 0.43)

    def _palette(self, n, g):
        body = _hsv_to_rgb(torch.rand(n, generator=g), _rand(n, g, 0.4, 0.85), _rand(n, g, 0.55, 0.92))
        fixed = torch.tensor([[0.13, 0.17, 0.24], [0.06, 0.06, 0.06], [0.78, 0.78, 0.8],
                              [1.0, 0.96, 0.72], [0.85, 0.06, 0.05], [0.12, 0.12, 0.13]])
        jitter = 0.04 * (torch.rand(n, 6, 1, generator=g) - 0.5)
        return torch.cat([body[:, None], fixed + jitter], dim=1)

    def _bound(self, x, y, z, c):
        # Two boxes: body + wheels + lights, and the cabin; the ground is at y = -height / 2.
        L, W, bh, ch = c['length'], c['width'], c['body_h'], c['cabin_h']
        low_h = 0.55 * c['wheel_r'] + bh
        ybot = -(low_h + ch) / 2
        lower = sd_round_box(x, y - ybot - low_h / 2, z, W / 2 + 0.015, low_h / 2 + 0.005, L / 2 + 0.018)
        zc, half_len = -c['cabin_shift'] * L, c['cabin_len'] * L / 2
        cabin = sd_round_box(x, y + ybot + ch / 2, z - zc, 0.42 * W + 0.005, ch / 2 + 0.012, half_len + 0.005)
        return torch.minimum(lower, cabin)

    def _detail(self, x, y, z, c):
        L, W, bh, ch, wr = c['length'], c['width'], c['body_h'], c['cabin_h'], c['wheel_r']
        yb0 = 0.55 * wr                                   # body floor above the ground
        y = y + (yb0 + bh + ch) / 2                       # ground at y = 0, box centred on 0
        # Body with arches cut around the wheels.
        body = sd_round_box(x, y - yb0 - bh / 2, z, W / 2, bh / 2, L / 2, 0.03)
        xw, yw, zw = x - (W / 2 - 0.02), y - wr, z.abs() - c['wheelbase'] * L / 2
        body = torch.maximum(body, -sd_cylinder(yw, zw, xw, wr * 1.12, 0.045))
        # Cabin: a rounded box clipped by the windshield and rear-window planes; its top is roof.
        yc0, zc, half_len = yb0 + bh - 0.01, -c['cabin_shift'] * L, c['cabin_len'] * L / 2
        cabin = sd_round_box(x, y - yc0 - (ch + 0.01) / 2, z - zc, 0.42 * W, (ch + 0.01) / 2, half_len, 0.025)
        s = c['windshield']
        front = (s * (y - yc0) + (z - zc - half_len)) / torch.sqrt(1 + s * s)
        rear = (0.6 * (y - yc0) - (z - zc + half_len)) / math.sqrt(1.36)
        cabin = torch.maximum(cabin, torch.maximum(front, rear))
        roof = y > yc0 + ch - 0.012
        scene = union((body, torch.zeros_like(x, dtype=torch.long)), (cabin, torch.where(roof, 0, 1)), k=0.01)
        # Wheels: tire (rounded cylinder) and a hub standing 4 mm proud of it.
        tire = sd_cylinder(yw, zw, xw, wr - 0.01, 0.017) - 0.01
        hub = sd_cylinder(yw, zw, xw - 0.004, 0.55 * wr, 0.027)
        scene = union(union(scene, (tire, 2)), (hub, 3))
        # Lights and grille on the front (+z) and back faces.
        yl = y - yb0 - 0.62 * bh
        head = sd_ellipsoid(x - 0.3 * W, yl, z - L / 2 + 0.006, 0.045, 0.02, 0.02)
        tail = sd_ellipsoid(x - 0.33 * W, yl, z + L / 2 - 0.004, 0.05, 0.018, 0.014)
        grille = sd_round_box(x, y - yb0 - 0.38 * bh, z - L / 2, 0.2 * W, 0.2 * bh, 0.01, 0.005)
        return union(union(union(scene, (head, 4)), (tail, 5)), (grille, 6))


class Head(ShapeFamily):
    """A head and shoulders bust: ellipsoid skull and jaw, nose, ears, eye sockets with eyeballs
    and irises, brows, lips, a hair cap over the back and top, neck and shirt. Faces +z."""
    name = 'head'
    PARAMS = (('rx', 0.145, 0.17), ('ry', 0.185, 0.21), ('rz', 0.175, 0.20), ('jaw', 0.75, 0.9),
              ('nose_len', 0.025, 0.05), ('eye_sep', 0.05, 0.062), ('ear', 0.035, 0.05),
              ('hair', 1.03, 1.08), ('hairline', 0.09, 0.13), ('neck_r', 0.055, 0.07),
              ('shoulder_w', 0.22, 0.28))
    PARTS = ('skin', 'hair', 'sclera', 'iris', 'lips', 'shirt')
    half_extent = (0.30, 0.40, 0.28)
    Y_SKULL = 0.13          # skull centre height; the bust spans y in [-0.38, ~0.37]
    _HAIR = torch.tensor([[0.07, 0.05, 0.04], [0.30, 0.17, 0.08], [0.80, 0.64, 0.36],
                          [0.55, 0.20, 0.07], [0.62, 0.62, 0.64]])

    def _palette(self, n, g):
        tone = torch.rand(n, 1, generator=g)
        skin = torch.lerp(torch.tensor([0.95, 0.79, 0.67]), torch.tensor([0.42, 0.28, 0.20]), tone)
        hair = self._HAIR[torch.randint(len(self._HAIR), (n,), generator=g)]
        hair = hair + 0.05 * (torch.rand(n, 3, generator=g) - 0.5)
        iris = _hsv_to_rgb(_rand(n, g, 0.05, 0.65), _rand(n, g, 0.3, 0.7), _rand(n, g, 0.15, 0.4))
        lips = skin * torch.tensor([0.85, 0.55, 0.55])
        shirt = _hsv_to_rgb(torch.rand(n, generator=g), _rand(n, g, 0.2, 0.8), _rand(n, g, 0.3, 0.9))
        sclera = torch.tensor([0.94, 0.94, 0.92]).expand(n, 3)
        return torch.stack([skin, hair, sclera, iris, lips, shirt], dim=1)

    def _bound(self, x, y, z, c):
        # A sphere around the head (nose tip < 0.27 from its centre), the neck, the shoulders.
        head = sd_sphere(x, y - self.Y_SKULL, z, 0.275)
        neck = sd_cylinder(x, z + 0.015, y + 0.1, c['neck_r'] + 0.01, 0.25)
        torso = sd_round_box(x, y + 0.33, z + 0.01, c['shoulder_w'] + 0.01, 0.1, 0.13)
        return torch.minimum(torch.minimum(head, neck), torso)

    def _detail(self, x, y, z, c):
        rx, ry, rz = c['rx'], c['ry'], c['rz']
        yh = self.Y_SKULL

        def front_z(x0, y0):
            """z of the skull surface in front of (x0, y0) (a point on the face)."""
            return rz * torch.sqrt((1 - (x0 / rx) ** 2 - ((y0 - yh) / ry) ** 2).clamp_min(0))

        def skin(d):
            return d, torch.zeros_like(d, dtype=torch.long)

        skull = sd_ellipsoid(x, y - yh, z, rx, ry, rz)
        jaw = sd_ellipsoid(x, y - yh + 0.1, z - 0.03, c['jaw'] * rx, 0.55 * ry, 0.82 * rz)
        # Eye sockets are carved out of skull + jaw; eyeballs and irises sit in them.
        xe, ye = x - c['eye_sep'], y - yh - 0.005                 # coordinates around the eye
        ze = z - front_z(c['eye_sep'], yh + 0.005)
        head = torch.maximum(union(skin(skull), skin(jaw), k=0.04)[0], -sd_sphere(xe, ye, ze - 0.012, 0.03))
        nose = sd_capsule(x, y, z, (0.0, yh + 0.01, front_z(0.0, yh + 0.01) - 0.012),
                          (0.0, yh - 0.06, front_z(0.0, yh - 0.06) + c['nose_len']), 0.017)
        ear = sd_ellipsoid(x - 0.98 * rx, y - yh + 0.01, z + 0.005, 0.02, c['ear'], 0.6 * c['ear'])
        neck = sd_cylinder(x, z + 0.015, y + 0.1, c['neck_r'], 0.24)
        scene = union(union(union(skin(head), skin(nose), k=0.015), skin(ear), k=0.01), skin(neck), k=0.03)
        torso = torch.maximum(sd_ellipsoid(x, y + 0.33, z + 0.01, c['shoulder_w'], 0.09, 0.12), -(y + 0.38))
        scene = union(scene, (torso, 5), k=0.02)
        eye = sd_sphere(xe, ye, ze + 0.018, 0.024)
        iris = sd_sphere(xe, ye, ze, 0.011)
        zb = front_z(c['eye_sep'], yh + 0.045) + 0.004
        brow = sd_capsule(xe, ye, z, (-0.026, 0.036, zb), (0.026, 0.043, zb - 0.006), 0.009)
        lips = sd_ellipsoid(x, y - yh + 0.105, z - 0.026 - 0.82 * rz, 0.034, 0.012, 0.014)
        scene = union(union(union(union(scene, (eye, 2)), (iris, 3)), (brow, 1)), (lips, 4), k=0.004)
        # Hair: a slightly larger ellipsoid minus the face region {z > 0.02, y < hairline}.
        k = c['hair']
        shell = sd_ellipsoid(x, y - yh - 0.012, z + 0.01, k * rx, k * ry, k * rz)
        face = torch.maximum(0.02 - z, y - yh - c['hairline'])
        return union(scene, (torch.maximum(shell, -face), 1), k=0.006)


FAMILIES = {f.name: f for f in (Car(), Head())}
