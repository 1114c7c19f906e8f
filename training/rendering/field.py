"""What the renderer looks at: a 3-D field it can query at points (SPEC §4.5).

The renderer (training/rendering/renderer.py) never sees tri-planes: it asks a *field* for
features and raw density at points, and composites them. A new 3-D representation (a feature
volume, an MLP on coordinates) is a new field class with the same two methods; see
docs/architecture.md. The tri-plane field below is the first implementation.

    query(points [N, K, 3], directions [N, K, 3] | None, channels) -> (features [N, K, C'], sigma [N, K, 1])
    query(..., need_normal=True) -> (features, sigma, normals [N, K, 3]): unit outward normals
        -grad sigma / |grad sigma| with the graph of the gradient kept (training/rendering/normals.py)
    kernel_inputs() -> (planes, plane_axes, decoder params) for the fused kernel, or None

sigma is raw (the alpha rule of training/rendering/compositing.py maps it); features have
`channels` or more channels (None: all), the first 3 being RGB.
"""

import dataclasses
from typing import Optional, Tuple, Union

import torch

from training.rendering.decoder import decode_rows, decode_rows_autograd, plane_mean_rows
from training.rendering.normals import query_with_normals
from training.rendering.planes import cached_planes, plane_mean_supported, sample_from_planes, sample_plane_mean


def decode_triplane(planes: torch.Tensor, plane_axes: Union[str, torch.Tensor], params, points: torch.Tensor,
                    box_warp: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """OSG decoder output at points: planes [N, 3, C, H, W], plane_axes 'correct' | 'legacy' | a
    [3, 3, 3] tensor, params (w1, b1, w2, b2) of `OSGDecoder.params`, points [N, K, 3] ->
    (rgb [N, K, O], sigma [N, K, 1] raw). The plane mean comes straight out of one weighted
    gather where the planes allow it (`sample_plane_mean`), else out of grid_sample."""
    N, K = points.shape[:2]
    if isinstance(plane_axes, str) and plane_mean_supported(planes):
        rows = sample_plane_mean(plane_axes == 'legacy', planes, points, box_warp)
    else:
        axes = cached_planes(plane_axes == 'legacy', planes.dtype, planes.device) if isinstance(plane_axes, str) \
            else plane_axes
        rows = plane_mean_rows(sample_from_planes(axes, planes, points, box_warp).transpose(2, 3).contiguous())
    rgb, sigma = decode_rows(rows, params)
    return rgb.reshape(N, K, -1), sigma.reshape(N, K, 1)


@dataclasses.dataclass(frozen=True)
class TriplaneField:
    """Tri-plane features [N, 3, C, H, W] read by a decoder (EG3D's OSGDecoder, or any module
    mapping sampled features [N, 3, K, C] and directions to {'rgb', 'sigma'})."""
    planes: torch.Tensor
    decoder: torch.nn.Module
    plane_axes: str           # 'correct' | 'legacy'
    box_warp: float

    @property
    def batch_size(self) -> int:
        return self.planes.shape[0]

    def _params(self, channels=None):
        params = getattr(self.decoder, 'params', None)
        return params(channels) if callable(params) else None

    def query(self, points: torch.Tensor, directions: Optional[torch.Tensor] = None, channels: Optional[int] = None,
              need_normal: bool = False):
        """(features [N, K, C'], sigma [N, K, 1] raw) at points [N, K, 3], and the normals [N, K, 3]
        when need_normal; see the module docstring."""
        if need_normal:
            return query_with_normals(self.twice_differentiable_query, points, directions, channels)
        params = self._params(channels)
        if params is not None:
            return decode_triplane(self.planes, self.plane_axes, params, points, self.box_warp)
        axes = cached_planes(self.plane_axes == 'legacy', self.planes.dtype, self.planes.device)
        out = self.decoder(sample_from_planes(axes, self.planes, points, box_warp=self.box_warp), directions)
        return out['rgb'], out['sigma']

    def twice_differentiable_query(self, points, directions, channels):
        """`query` through ops with a double backward (the normals' losses differentiate the
        gradient w.r.t. the points): grid_sample's gradfix forced on (the training loop runs the
        plain op), the plane mean and the decoder MLP with plain autograd (the fast
        `sample_plane_mean` and `decode_rows` are once differentiable). Same values."""
        params = self._params(channels)
        axes = cached_planes(self.plane_axes == 'legacy', self.planes.dtype, self.planes.device)
        sampled = sample_from_planes(axes, self.planes, points, box_warp=self.box_warp, impl='gradfix')
        if params is None:
            out = self.decoder(sampled, directions)
            return out['rgb'], out['sigma']
        N, K = points.shape[:2]
        rgb, sigma = decode_rows_autograd(sampled.mean(dim=1).reshape(N * K, -1), params)
        return rgb.reshape(N, K, -1), sigma.reshape(N, K, 1)

    def kernel_inputs(self):
        """(planes, plane_axes, params) for training/rendering/fused.py, or None for a decoder
        the kernel does not implement."""
        params = self._params()
        return None if params is None else (self.planes, self.plane_axes, params)
