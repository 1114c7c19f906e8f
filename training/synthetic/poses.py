"""Pose distributions for synthetic data: (h, v) in radians (SPEC §3.2), plus the cameras.

h is the azimuth (pi/2: camera on +z, the frontal view; pi: on +x), v in [0, pi] the
uniform-on-sphere vertical parameter (pi/2: the equator; v < pi/2: camera above). Samples of
v are clamped to [1e-5, pi - 1e-5] like EG3D's samplers; h is returned as drawn (not wrapped;
`cam2world_to_pose` gives it back modulo 2 pi).

Pose-spec grammar (the --pose option of make_synthetic.py):

    SPEC     := 'gaussian' [':' KWARGS] | 'uniform' [':' KWARGS] | 'mix:' MODE (',' MODE)*
    KWARGS   := KEY '=' VALUE (',' KEY '=' VALUE)*
    MODE     := VALUE ':' VALUE ':' VALUE [':' VALUE ':' VALUE]    h_mean:h_std:weight[:v_mean:v_std]
    VALUE    := a float, or a multiple of pi: 'pi', '-pi/2', '2pi', '0.5*pi', '3pi/4'

    gaussian  keys h_mean (pi/2), h_std (0.3), v_mean (pi/2), v_std (0.15)
    uniform   keys h_min (0), h_max (2pi), v_min (pi/2-0.3), v_max (pi/2+0.3)
    mix       Gaussian modes; weights > 0, normalized; v_mean, v_std default pi/2, 0.15

Examples: `gaussian:h_std=0.3,v_std=0.15`, `uniform:h_min=pi/4,h_max=3pi/4`,
`mix:pi/2:0.2:0.5,0:0.2:0.25,pi:0.2:0.25` (frontal + two profiles).
"""

import dataclasses
import math
import re

import numpy as np
import torch

from training.cameras import FOV_to_intrinsics, LookAtPose, V_EPS, Camera


def _clamp_v(v: np.ndarray) -> np.ndarray:
    return np.clip(v, V_EPS, math.pi - V_EPS)


@dataclasses.dataclass(frozen=True)
class Gaussian:
    """h ~ N(h_mean, h_std^2), v ~ N(v_mean, v_std^2) (then clamped), independent."""
    h_mean: float = math.pi / 2
    h_std: float = 0.3
    v_mean: float = math.pi / 2
    v_std: float = 0.15

    def sample(self, n: int, rng: np.random.Generator):
        """-> (h [n], v [n]) float64 radians."""
        h = self.h_mean + self.h_std * rng.standard_normal(n)
        v = self.v_mean + self.v_std * rng.standard_normal(n)
        return h, _clamp_v(v)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """h ~ U[h_min, h_max), v ~ U[v_min, v_max) (uniform in v is uniform in area on the sphere)."""
    h_min: float = 0.0
    h_max: float = 2 * math.pi
    v_min: float = math.pi / 2 - 0.3
    v_max: float = math.pi / 2 + 0.3

    def sample(self, n: int, rng: np.random.Generator):
        """-> (h [n], v [n]) float64 radians."""
        h = rng.uniform(self.h_min, self.h_max, n)
        v = rng.uniform(self.v_min, self.v_max, n)
        return h, _clamp_v(v)


@dataclasses.dataclass(frozen=True)
class Mixture:
    """A mixture of independent Gaussians in (h, v); weights are normalized to sum 1."""
    modes: tuple            # of Gaussian
    weights: tuple          # of float > 0

    def sample(self, n: int, rng: np.random.Generator):
        """-> (h [n], v [n]) float64 radians; the mode of each sample is drawn first."""
        w = np.asarray(self.weights, dtype=np.float64)
        which = rng.choice(len(self.modes), size=n, p=w / w.sum())
        noise = rng.standard_normal((2, n))
        mean_h, std_h, mean_v, std_v = (np.array([getattr(m, k) for m in self.modes])[which]
                                        for k in ('h_mean', 'h_std', 'v_mean', 'v_std'))
        return mean_h + std_h * noise[0], _clamp_v(mean_v + std_v * noise[1])


_PI_RE = re.compile(r'^([+-]?(?:\d+\.?\d*|\.\d+)?)\*?pi(?:/(\d+\.?\d*))?$')


def parse_value(text: str) -> float:
    """'0.3' -> 0.3, 'pi/2' -> 1.5708, '-3pi/4', '0.5*pi', '2pi'; ValueError otherwise."""
    t = text.strip().lower()
    match = _PI_RE.match(t)
    if match:
        coef = match.group(1)
        coef = -1.0 if coef == '-' else 1.0 if coef in ('', '+') else float(coef)
        return coef * math.pi / (float(match.group(2)) if match.group(2) else 1.0)
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f'{text!r} is not a number (a float, or a multiple of pi like 3pi/4)') from None
    if not math.isfinite(value):
        raise ValueError(f'{text!r} is not a finite number')
    return value


def _parse_kwargs(cls, body: str):
    fields = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for item in filter(None, body.split(',')):
        key, sep, value = item.partition('=')
        key = key.strip()
        if not sep or key not in fields:
            raise ValueError(f'expected KEY=VALUE with KEY in {sorted(fields)}, got {item!r}')
        kwargs[key] = parse_value(value)
    return cls(**kwargs)


def _parse_mode(text: str):
    values = [parse_value(x) for x in text.split(':')]
    if len(values) not in (3, 5):
        raise ValueError(f'a mix mode is h_mean:h_std:weight[:v_mean:v_std], got {text!r}')
    v_mean, v_std = values[3:] if len(values) == 5 else (Gaussian.v_mean, Gaussian.v_std)
    if values[2] <= 0:
        raise ValueError(f'mode weights must be > 0, got {text!r}')
    return Gaussian(values[0], values[1], v_mean, v_std), values[2]


def _check(dist):
    gaussians = dist.modes if isinstance(dist, Mixture) else (dist,) if isinstance(dist, Gaussian) else ()
    if any(g.h_std < 0 or g.v_std < 0 for g in gaussians):
        raise ValueError('standard deviations must be >= 0')
    if isinstance(dist, Uniform) and (dist.h_max < dist.h_min or dist.v_max < dist.v_min):
        raise ValueError('uniform needs h_min <= h_max and v_min <= v_max')
    return dist


def parse_pose_spec(spec: str):
    """A pose distribution from its spec string (grammar in the module docstring).

    Raises ValueError with a one-line message naming the problem.
    """
    kind, _, body = spec.strip().partition(':')
    try:
        if kind == 'gaussian':
            return _check(_parse_kwargs(Gaussian, body))
        if kind == 'uniform':
            return _check(_parse_kwargs(Uniform, body))
        if kind == 'mix':
            if not body.strip():
                raise ValueError('mix needs at least one mode h_mean:h_std:weight')
            modes, weights = zip(*[_parse_mode(m) for m in body.split(',')])
            return _check(Mixture(tuple(modes), tuple(weights)))
    except ValueError as err:
        raise ValueError(f'bad pose spec {spec!r}: {err}') from None
    raise ValueError(f"bad pose spec {spec!r}: unknown distribution {kind!r} (use gaussian, uniform or mix)")


def make_cameras(h, v, radius: float = 2.7, fov: float = 30.0, pivot=(0.0, 0.0, 0.0)) -> Camera:
    """Look-at cameras (SPEC §3.2) for poses h, v ([N] arrays, radians), float32.

    radius in world units; fov in degrees through EG3D's formula (`FOV_to_intrinsics`).
    The matrices are built in float64 and rounded once, so labels, renders and the ground
    truth share the same float32 values.
    """
    h = torch.as_tensor(np.asarray(h, dtype=np.float64)).reshape(-1, 1)
    v = torch.as_tensor(np.asarray(v, dtype=np.float64)).reshape(-1, 1)
    cam2world = LookAtPose(h, v, pivot=torch.tensor(pivot, dtype=torch.float64), radius=radius).float()
    intrinsics = FOV_to_intrinsics(fov).float().expand(h.shape[0], 3, 3).clone()
    return Camera(cam2world=cam2world, intrinsics=intrinsics)
