"""Per-image random lights: ground truth for ShadeGAN-style shading (SEEDS_SPEC §4.3, §6.4).

A light is l = (a, d, l_x, l_y), read as ShadeGAN reads it (SEEDS_SPEC §4.3):
  k_a = a/2 + 1/2 (ambient), k_d = d/2 + 1/2 (diffuse), L = normalize(l_x, l_y, 1) a *world*
  direction towards the light, on the +z (front) side of the objects;
  shading s = k_a + k_d max(0, n . L) with the unit world normal n (no sky factor), and the
  pixel colour is clamp(albedo * s, 0, 1).

Light laws (`--light` of make_synthetic.py):
  fixed                       the renderer's fixed symmetric lights (RenderOptions.lights); no l
  mvn[:KEY=VALUE,...]         l ~ N(mean, diag(std^2)), one draw per image; KEYS (defaults):
                              a_mean (-0.4) d_mean (0.2) lx_mean (0) ly_mean (0.3)
                              a_std (0.1) d_std (0.1) lx_std (0.5) ly_std (0.3)
The defaults give k_a ~ 0.3, k_d ~ 0.6 (a lit face reaches 0.9, below the clamp) and a light
from the front, slightly above, spread left-right symmetrically (lx_mean = 0): the *law* stays
mirror symmetric about x = 0, as the shapes are, so x-flip augmentation keeps the data's law.
ShadeGAN's own MVNs are not public values (SEEDS_SPEC §4.3); these are ours.
"""

import dataclasses

import numpy as np
import torch

from training.rendering.shading import light_terms  # noqa: F401 (the one law, shared with the model)

from training.synthetic.poses import parse_value

LIGHT_MODES = ('fixed', 'mvn')


@dataclasses.dataclass(frozen=True)
class LightMVN:
    """l = (a, d, l_x, l_y) ~ N(mean, diag(std^2)), independent per image."""
    a_mean: float = -0.4
    d_mean: float = 0.2
    lx_mean: float = 0.0
    ly_mean: float = 0.3
    a_std: float = 0.1
    d_std: float = 0.1
    lx_std: float = 0.5
    ly_std: float = 0.3

    @property
    def mean(self) -> np.ndarray:
        """[4] (a, d, l_x, l_y)."""
        return np.array([self.a_mean, self.d_mean, self.lx_mean, self.ly_mean])

    @property
    def cov(self) -> np.ndarray:
        """[4, 4] diagonal covariance."""
        return np.diag(np.array([self.a_std, self.d_std, self.lx_std, self.ly_std]) ** 2)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """[n, 4] float64 lights, drawn from `rng`."""
        std = np.sqrt(np.diag(self.cov))
        return self.mean + std * rng.standard_normal((n, 4))


def parse_light_spec(spec: str):
    """None for 'fixed', a `LightMVN` for 'mvn[:KEY=VALUE,...]' (grammar in the module
    docstring). ValueError with a one-line message naming the problem otherwise."""
    kind, _, body = spec.strip().partition(':')
    if kind == 'fixed' and not body.strip():
        return None
    if kind != 'mvn':
        raise ValueError(f'light law must be one of {LIGHT_MODES} (mvn[:KEY=VALUE,...]), got {spec!r}')
    keys = {f.name for f in dataclasses.fields(LightMVN)}
    kwargs = {}
    for item in filter(None, body.split(',')):
        key, sep, value = item.partition('=')
        if not sep or key.strip() not in keys:
            raise ValueError(f'expected KEY=VALUE with KEY in {sorted(keys)}, got {item!r}')
        kwargs[key.strip()] = parse_value(value)
    law = LightMVN(**kwargs)
    if min(law.a_std, law.d_std, law.lx_std, law.ly_std) < 0:
        raise ValueError('light standard deviations must be >= 0')
    return law


def lambertian_shading(normals: torch.Tensor, light: torch.Tensor) -> torch.Tensor:
    """s = k_a + k_d max(0, n . L) (SEEDS_SPEC §4.3; no sky factor): normals [K, 3] unit,
    light [K, 4] -> s [K, 1]. ShadeGAN clamps n . L to [0, 1]; for unit n that is max(0, .)."""
    k_a, k_d, L = light_terms(light.to(normals.dtype))
    return k_a + k_d * (normals * L).sum(-1, keepdim=True).clamp(0, 1)
