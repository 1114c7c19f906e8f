"""The renderer's options, typed and checked once (SPEC §4.5, §8.2).

EG3D passes a `rendering_kwargs` dict to every render. Here that dict is read once, at the
pickle / config boundary (`RenderingOptions.from_kwargs`), into a frozen dataclass that the
renderer holds; the dict survives as `G.rendering_kwargs` for EG3D scripts.
"""

import dataclasses
import math
from typing import NamedTuple, Optional, Union

IMPLS = ('auto', 'torch', 'triton')
ALPHA_RULES = ('eg3d', 'sample_delta', 'occupancy')      # compositing.py; SEEDS_SPEC §6.1 item 2
DEPTH_SAMPLERS = ('eg3d', 'importance_nerf', 'surface_window', 'uniform')   # depth_samplers.py; §6.1 item 3, §3.4
DENSITY_ACTIVATIONS = ('relu', 'softplus')
_IMPL_ALIASES = {'cuda': 'auto', 'ref': 'torch'}   # the names of earlier versions of this project
_PLANE_AXES = ('correct', 'legacy')


@dataclasses.dataclass(frozen=True)
class RenderingOptions:
    """ray_start, ray_end: float distances, or both 'auto' (ray/box intersection).
    box_warp: side of the cube the planes cover (world units).
    depth_resolution: coarse samples per ray (>= 2); depth_resolution_importance: fine samples
    per ray (0: no fine pass). white_back: composite over white (ShapeNet). density_noise: std
    of Gaussian noise on raw sigma. plane_axes: 'correct' | 'legacy' (EG3D's XY/XZ/ZX planes,
    SPEC §12.1). impl: 'auto' (the fused Triton kernel for CUDA float32 tensors, PyTorch
    otherwise), 'torch' (always PyTorch), 'triton' (always try the kernel; on CPU only under
    TRITON_INTERPRET=1).

    alpha_rule (docs/architecture.md, SEEDS_SPEC §1.5, §3.2): 'eg3d' (interval midpoints,
    softplus(sigma - 1)), 'sample_delta' (per sample, act(sigma) with delta_last = 1e10; act =
    density_activation, 'relu' | 'softplus'), 'occupancy' (alpha = sigmoid(sigma), GOF).
    last_back (per-sample rules only): the last sample takes the weight 1 - sum w (pi-GAN's
    evaluation setting); not together with white_back.
    depth_sampler: 'eg3d' (stratified + EG3D's smoothed importance), 'importance_nerf' (pi-GAN),
    'surface_window' (GOF), 'uniform' (evaluation only: depth_resolution plain linspace samples, no
    density noise, GOF's depth-variance protocol, SEEDS_SPEC §3.4); all but 'eg3d' need a
    per-sample alpha rule, 'eg3d' needs 'eg3d'.
    surface_window: depth_resolution coarse samples (no jitter), secant_steps secant steps to
    the level sigma = logit(surface_level), depth_resolution_surface window samples, then
    depth_resolution_importance fine ones. window_init, window_min, window_decay: the half-width
    schedule Delta = max(window_init exp(-window_decay step), window_min) (world units;
    training/schedules.surface_window); the renderer uses window_min when no schedule is passed
    (GOF's evaluation, SEEDS_SPEC §3.2 item 6)."""
    ray_start: Union[float, str]
    ray_end: Union[float, str]
    box_warp: float
    depth_resolution: int
    depth_resolution_importance: int
    white_back: bool = False
    density_noise: float = 0.0
    plane_axes: str = 'correct'
    impl: str = 'auto'
    alpha_rule: str = 'eg3d'
    density_activation: str = 'relu'
    last_back: bool = False
    depth_sampler: str = 'eg3d'
    depth_resolution_surface: int = 9
    secant_steps: int = 4
    surface_level: float = 0.5
    window_init: float = 0.12
    window_min: float = 0.03
    window_decay: float = 1e-5

    def __post_init__(self):
        if self.depth_resolution < 2:
            raise ValueError('depth_resolution must be >= 2')
        if self.depth_resolution_importance < 0:
            raise ValueError('depth_resolution_importance must be >= 0')
        if (self.ray_start == 'auto') != (self.ray_end == 'auto'):
            raise ValueError("ray_start and ray_end must both be 'auto' or both be numbers")
        if self.plane_axes not in _PLANE_AXES:
            raise ValueError(f"plane_axes must be 'correct' or 'legacy', got {self.plane_axes!r}")
        if self.impl not in IMPLS:
            raise ValueError(f'impl must be one of {IMPLS}, got {self.impl!r}')
        self._check_strategies()

    def _check_strategies(self):
        """The alpha rule / depth sampler options (SEEDS_SPEC §6.1 items 2-3): one ValueError
        naming the option."""
        for name, allowed in (('alpha_rule', ALPHA_RULES), ('depth_sampler', DEPTH_SAMPLERS),
                              ('density_activation', DENSITY_ACTIVATIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f'{name} must be one of {allowed}, got {getattr(self, name)!r}')
        if (self.alpha_rule == 'eg3d') != (self.depth_sampler == 'eg3d'):
            raise ValueError(f"depth_sampler={self.depth_sampler!r} does not pair with alpha_rule={self.alpha_rule!r}: "
                             "'eg3d' samples from interval weights (alpha_rule 'eg3d'), the others from per-sample "
                             "weights (alpha_rule 'sample_delta' or 'occupancy')")
        if self.last_back and (self.white_back or self.alpha_rule == 'eg3d'):
            raise ValueError('last_back needs a per-sample alpha_rule and white_back=False')
        if self.depth_sampler == 'surface_window' and self.depth_resolution_surface < 2:
            raise ValueError('depth_resolution_surface must be >= 2 for the surface_window sampler')
        if self.secant_steps < 0:
            raise ValueError('secant_steps must be >= 0')
        if not 0 < self.surface_level < 1:
            raise ValueError(f'surface_level must be in (0, 1), got {self.surface_level}')
        if not 0 < self.window_min <= self.window_init or self.window_decay < 0:
            raise ValueError('window_* must satisfy 0 < window_min <= window_init and window_decay >= 0, got '
                             f'{self.window_min}, {self.window_init}, {self.window_decay}')

    @property
    def surface_logit(self) -> float:
        """logit(surface_level): the level of raw sigma at the surface (0 for GOF's tau = 0.5)."""
        return math.log(self.surface_level / (1 - self.surface_level))

    @property
    def auto_limits(self) -> bool:
        return self.ray_start == 'auto'

    @staticmethod
    def from_kwargs(kwargs: dict) -> 'RenderingOptions':
        """Options from an EG3D-style rendering_kwargs dict (other keys are ignored); a
        ValueError names the problem for options this renderer cannot honour."""
        required = ('ray_start', 'ray_end', 'box_warp', 'depth_resolution', 'depth_resolution_importance')
        missing = [k for k in required if k not in kwargs]
        if missing:
            raise ValueError(f'rendering_kwargs lacks {missing} (see training/rendering/options.py)')
        if kwargs.get('disparity_space_sampling', False):
            raise ValueError('disparity_space_sampling=True is not implemented; every preset uses False')
        if kwargs.get('clamp_mode', 'softplus') != 'softplus':
            raise ValueError(f"clamp_mode={kwargs['clamp_mode']!r} is not supported; use 'softplus'")
        start, end = kwargs['ray_start'], kwargs['ray_end']
        impl = kwargs.get('impl', 'auto')
        return RenderingOptions(
            ray_start=start if start == 'auto' else float(start), ray_end=end if end == 'auto' else float(end),
            box_warp=float(kwargs['box_warp']), depth_resolution=int(kwargs['depth_resolution']),
            depth_resolution_importance=int(kwargs['depth_resolution_importance']),
            white_back=bool(kwargs.get('white_back', False)), density_noise=float(kwargs.get('density_noise') or 0),
            plane_axes=resolve_plane_axes(kwargs), impl=_IMPL_ALIASES.get(impl, impl), **_strategy_kwargs(kwargs))


_STRATEGY_KEYS = {'alpha_rule': str, 'density_activation': str, 'last_back': bool, 'depth_sampler': str,
                  'depth_resolution_surface': int, 'secant_steps': int, 'surface_level': float,
                  'window_init': float, 'window_min': float, 'window_decay': float}


def _strategy_kwargs(kwargs: dict) -> dict:
    """The alpha-rule / depth-sampler fields present in a rendering_kwargs dict (absent keys:
    the dataclass defaults, today's EG3D behaviour, so older pickles load unchanged)."""
    return {key: cast(kwargs[key]) for key, cast in _STRATEGY_KEYS.items() if kwargs.get(key) is not None}


class RenderSchedule(NamedTuple):
    """Per-call values of the training schedules (training/schedules.py), passed by the caller to
    `ImportanceRenderer.forward(..., schedule=)`; None takes the options' value.
    density_noise: std of N(0, s^2) on raw sigma (pi-GAN's s = max(0, 1 - step/5000), §1.5).
    window: half-width Delta of the surface window, world units (GOF §3.2 item 6).
    shading_ratio: the ramp r of ShadeGAN's shading (SEEDS_SPEC §4.3), read by the generator's
    shading stage, not by the renderer; None: 1 (full shading, as at evaluation)."""
    density_noise: Optional[float] = None
    window: Optional[float] = None
    shading_ratio: Optional[float] = None


def resolve_plane_axes(kwargs: dict) -> str:
    """'correct' or 'legacy' from a rendering_kwargs dict; a reference-style 'wrong': True
    reads as 'legacy' when 'plane_axes' is absent. ValueError on unknown or conflicting values."""
    axes = kwargs.get('plane_axes')
    wrong = kwargs.get('wrong')
    if axes is None:
        return 'legacy' if wrong else 'correct'
    if axes not in _PLANE_AXES:
        raise ValueError(f"rendering_kwargs['plane_axes'] must be 'correct' or 'legacy', got {axes!r}")
    if wrong is not None and bool(wrong) != (axes == 'legacy'):
        raise ValueError(f"rendering_kwargs has plane_axes={axes!r} but wrong={wrong!r}; drop one of them")
    return axes
