"""The renderer's options, typed and checked once (SPEC §4.5, §8.2).

EG3D passes a `rendering_kwargs` dict to every render. Here that dict is read once, at the
pickle / config boundary (`RenderingOptions.from_kwargs`), into a frozen dataclass that the
renderer holds; the dict survives as `G.rendering_kwargs` for EG3D scripts.
"""

import dataclasses
from typing import Union

IMPLS = ('auto', 'torch', 'triton')
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
    TRITON_INTERPRET=1)."""
    ray_start: Union[float, str]
    ray_end: Union[float, str]
    box_warp: float
    depth_resolution: int
    depth_resolution_importance: int
    white_back: bool = False
    density_noise: float = 0.0
    plane_axes: str = 'correct'
    impl: str = 'auto'

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
            plane_axes=resolve_plane_axes(kwargs), impl=_IMPL_ALIASES.get(impl, impl))


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
