"""Where the generator's light comes from: light-source strategies (SEEDS_SPEC §4.3, §6.1 item 4, §6.4).

The light mirrors the pose source (training/pose_sources.py): a small module chosen at the
generator's construction and recorded in the pickle through its constructor kwargs, called once
per generated batch,

    forward(batch_size, device, generator=None) -> light [N, 4] float32 (a, d, l_x, l_y)

with the same reading of l as ShadeGAN and the synthetic ground truth (training/synthetic/
lights.py): k_a = a/2 + 1/2, k_d = d/2 + 1/2, L = normalize(l_x, l_y, 1), a world direction.

  'mvn'    ShadeGAN: l ~ N(mean, diag(std^2)), a fresh draw per generated image (SEEDS_SPEC §4.3:
           "a fresh l for every generated image in both the D and G steps"). The law's parameters
           are those of `training.synthetic.lights.LightMVN` (a_mean ... ly_std), so the preset can
           use the synthetic data's own law. ShadeGAN's fitted MVNs are not public (§4.3).
  'fixed'  one constant light for every image: the wrong-fixed-light ablation of SEEDS_SPEC §6.4.
           Its default is the frontal light l = (a, d, 0, 0), L = (0, 0, 1).
Draws follow `generator` (a torch.Generator on `device`), else the global RNG.
"""

import dataclasses

import torch

from torch_utils import persistence
from training.synthetic.lights import LightMVN

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)
LIGHT_SOURCES = ('mvn', 'fixed')
LIGHT_LAW_KEYS = tuple(f.name for f in dataclasses.fields(LightMVN))   # a_mean ... ly_std


class LightSource(torch.nn.Module):
    """Base of the strategies: forward(batch_size, device, generator=None) -> [N, 4] float32."""

    def forward(self, batch_size: int, device, generator=None) -> torch.Tensor:
        raise NotImplementedError


@persistence.persistent_class
class MVNLight(LightSource):
    """l ~ N(mean, diag(std^2)) per image; kwargs as `LightMVN` (defaults: the synthetic data's
    default law). A std of 0 gives a constant light."""

    def __init__(self, **law):
        unknown = sorted(set(law) - set(LIGHT_LAW_KEYS))
        if unknown:
            raise ValueError(f'light law: unknown {unknown}; known {list(LIGHT_LAW_KEYS)}')
        super().__init__()
        self.law = LightMVN(**{k: float(v) for k, v in law.items()})
        self.mean = tuple(float(x) for x in self.law.mean)
        self.std = (self.law.a_std, self.law.d_std, self.law.lx_std, self.law.ly_std)
        if min(self.std) < 0:
            raise ValueError(f'light law: standard deviations must be >= 0, got {self.std}')

    def forward(self, batch_size: int, device, generator=None) -> torch.Tensor:
        noise = torch.randn([batch_size, 4], generator=generator, device=device)
        return torch.tensor(self.mean, device=device) + torch.tensor(self.std, device=device) * noise

    def extra_repr(self):
        return f'mean={self.mean}, std={self.std}'


@persistence.persistent_class
class FixedLight(LightSource):
    """The same l = (a, d, l_x, l_y) for every image; draws nothing (the RNG is left as it is).
    Defaults: the synthetic law's mean strengths from the front, L = (0, 0, 1) (SEEDS_SPEC §6.4)."""

    def __init__(self, a=LightMVN.a_mean, d=LightMVN.d_mean, lx=0.0, ly=0.0):
        super().__init__()
        self.light = (float(a), float(d), float(lx), float(ly))

    def forward(self, batch_size: int, device, generator=None) -> torch.Tensor:
        del generator
        return torch.tensor(self.light, device=device).expand(batch_size, 4).clone()

    def extra_repr(self):
        return f'light={self.light}'


_SOURCES = {'mvn': MVNLight, 'fixed': FixedLight}


def build_light_source(name: str, **kwargs) -> LightSource:
    """The light source called `name` (one of LIGHT_SOURCES), constructed with kwargs."""
    if name not in _SOURCES:
        raise ValueError(f'light_source must be one of {LIGHT_SOURCES}, got {name!r}')
    return _SOURCES[name](**kwargs)
