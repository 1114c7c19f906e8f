"""Tri-plane volume renderer with importance sampling, EG3D's `ImportanceRenderer` (SPEC §4.5).

Shapes: N batch, M rays per image (R*R), S samples per ray, C decoder feature channels
(32; the first 3 are RGB), P = 3 planes.

`rendering_options` keys (EG3D names; the preset tables are in SPEC §8.2):
  ray_start, ray_end            float distances, or both 'auto' (ray/box intersection)
  box_warp                      side of the cube covered by the planes (world units)
  depth_resolution              coarse samples per ray (>= 2)
  depth_resolution_importance   fine samples per ray (0 disables the fine pass)
  disparity_space_sampling      optional, must be False (the only mode implemented)
  clamp_mode                    optional, must be 'softplus' (the only mode implemented)
  white_back                    optional, default False (ShapeNet: True)
  density_noise                 optional std of Gaussian noise on raw sigma, default 0
  plane_axes                    optional 'correct' (default) | 'legacy' (EG3D's XY/XZ/ZX
                                planes, SPEC §4.5); a reference-style 'wrong': True is read
                                as 'legacy' when 'plane_axes' is absent
  impl                          optional 'cuda' (default: the fused Triton kernel of
                                torch_utils/ops/triplane_render.py when the tensors are on
                                CUDA and the decoder is an OSGDecoder), 'ref' (always the
                                PyTorch path below) or 'triton'; POF3D_IMPL=ref forces 'ref'
"""

from typing import NamedTuple

import torch

from torch_utils import fastpath, misc
from training.rendering import fused as triplane_render
from training.rendering.decoder import decode_rows
from training.rendering import math_utils, samplers
from training.rendering.compositing import coarse_weights, march_importance, march_rays
from training.rendering.planes import (cached_planes, plane_mean_supported,
                                                              sample_from_planes, sample_plane_mean)

_PLANE_AXES = ('correct', 'legacy')


class RenderOutput(NamedTuple):
    """Everything one render produces (the EG3D forward returns the first three)."""
    features: torch.Tensor               # [N, M, C] composite features in ~[-1, 1]
    depth: torch.Tensor                  # [N, M, 1] expected ray distance
    weight_sum: torch.Tensor             # [N, M, 1] sum of the compositing weights (opacity)
    final_transmittance: torch.Tensor    # [N, M, 1] transmittance behind the last sample


def resolve_plane_axes(rendering_options: dict) -> str:
    """'correct' or 'legacy' from the options; raises ValueError on unknown or conflicting values."""
    axes = rendering_options.get('plane_axes')
    wrong = rendering_options.get('wrong')
    if axes is None:
        return 'legacy' if wrong else 'correct'
    if axes not in _PLANE_AXES:
        raise ValueError(f"rendering_options['plane_axes'] must be 'correct' or 'legacy', got {axes!r}")
    if wrong is not None and bool(wrong) != (axes == 'legacy'):
        raise ValueError(f"rendering_options has plane_axes={axes!r} but wrong={wrong!r}; drop one of them")
    return axes


def check_rendering_options(rendering_options: dict) -> None:
    """Raise a ValueError naming the problem for options this renderer cannot honour."""
    required = ('ray_start', 'ray_end', 'box_warp', 'depth_resolution', 'depth_resolution_importance')
    missing = [k for k in required if k not in rendering_options]
    if missing:
        raise ValueError(f'rendering_options lacks {missing} (see training/volumetric_rendering/renderer.py)')
    if rendering_options.get('disparity_space_sampling', False):
        raise ValueError('disparity_space_sampling=True is not implemented; every preset uses False')
    if rendering_options.get('clamp_mode', 'softplus') != 'softplus':
        raise ValueError(f"clamp_mode={rendering_options['clamp_mode']!r} is not supported; use 'softplus'")
    if rendering_options['depth_resolution'] < 2:
        raise ValueError('depth_resolution must be >= 2')
    start, end = rendering_options['ray_start'], rendering_options['ray_end']
    if (start == 'auto') != (end == 'auto'):
        raise ValueError("ray_start and ray_end must both be 'auto' or both be numbers")
    resolve_plane_axes(rendering_options)


def ray_limits(ray_origins: torch.Tensor, ray_directions: torch.Tensor, rendering_options: dict):
    """(ray_start [N, M, 1], ray_end [N, M, 1]) from fixed options or from the box ('auto').

    'auto' intersects each ray with the cube of side box_warp. Rays that miss get
    start = min valid start and end = max valid *start* (sic, EG3D; no preset uses 'auto').
    """
    N, M, _ = ray_origins.shape
    start, end = rendering_options['ray_start'], rendering_options['ray_end']
    if start != 'auto':
        full = dict(size=[N, M, 1], dtype=ray_origins.dtype, device=ray_origins.device)
        return torch.full(fill_value=float(start), **full), torch.full(fill_value=float(end), **full)
    t_start, t_end = math_utils.get_ray_limits_box(ray_origins, ray_directions, rendering_options['box_warp'])
    valid = t_end > t_start
    if bool(valid.any()):
        t_end = torch.where(valid, t_end, t_start[valid].max())
        t_start = torch.where(valid, t_start, t_start[valid].min())
    return t_start, t_end


def _fused_decoder_params(planes, decoder, opts, *rays):
    """Decoder parameters for the fused kernel, or None to stay on the PyTorch path (other
    decoders, density noise inside a render, CPU tensors by default, POF3D_IMPL=ref)."""
    if opts.get('density_noise', 0) > 0 or not triplane_render.kernel_ready(opts.get('impl', 'cuda'), planes, *rays):
        return None
    return triplane_render.osg_decoder_params(decoder)


def _sample_and_decode(planes, decoder, coordinates, directions, box_warp, legacy, channels=None):
    """Decoder output {'rgb': [N, M, C], 'sigma': [N, M, 1]} at coordinates [N, M, 3].

    Reference: grid_sample on every plane, then the decoder (which averages the planes).
    Fast path (torch_utils.fastpath, an OSGDecoder, square planes): the plane mean comes
    straight out of one weighted gather as the decoder's input rows (`sample_plane_mean`),
    so the [N, P, M, C] samples and their averaging never exist; with `channels` the
    output layer computes only that many feature channels (C = channels). Same function.
    """
    fast_params = getattr(decoder, 'fast_params', None)
    params = fast_params(channels) if fast_params is not None else None
    if params is None or not plane_mean_supported(planes):
        plane_axes = cached_planes(legacy, planes.dtype, planes.device)
        return decoder(sample_from_planes(plane_axes, planes, coordinates, box_warp=box_warp), directions)
    rgb, sigma = decode_rows(sample_plane_mean(legacy, planes, coordinates, box_warp), params)
    N, M = coordinates.shape[:2]
    return {'rgb': rgb.reshape(N, M, -1), 'sigma': sigma.reshape(N, M, 1)}


class ImportanceRenderer(torch.nn.Module):
    """Coarse stratified pass + importance pass over tri-plane features (holds no parameters).

    Plane axes are chosen per call by rendering_options['plane_axes'], so the module has no
    state (an EG3D checkpoint's renderer has none either).
    """

    def forward(self, planes, decoder, ray_origins, ray_directions, rendering_options, generator=None,
                channels=None):
        """planes [N, 3, C_p, H, W]; ray_origins, ray_directions [N, M, 3].

        Returns (features [N, M, C], depth [N, M, 1], weight_sum [N, M, 1]) as EG3D;
        `render` also gives the final transmittance. generator drives the stratified jitter,
        the importance draws and the density noise. channels: return only the first
        `channels` feature channels (None: all C); the fast path then computes no others.
        """
        out = self.render(planes, decoder, ray_origins, ray_directions, rendering_options, generator=generator,
                          channels=channels)
        return out.features, out.depth, out.weight_sum

    def render(self, planes, decoder, ray_origins, ray_directions, rendering_options,
               generator=None, channels=None) -> RenderOutput:
        """Full render; see `forward` for the shapes and `channels`."""
        out = self._render_all(planes, decoder, ray_origins, ray_directions, rendering_options, generator, channels)
        if channels is not None and out.features.shape[-1] != channels:   # the reference computes all, then slices
            out = out._replace(features=out.features[..., :channels])
        return out

    def _render_all(self, planes, decoder, ray_origins, ray_directions, rendering_options, generator,
                    channels) -> RenderOutput:
        """`render`, with features of `channels` or more channels (see `_sample_and_decode`)."""
        check_rendering_options(rendering_options)
        misc.assert_shape(ray_origins, [planes.shape[0], None, 3])
        misc.assert_shape(ray_directions, list(ray_origins.shape))
        opts = rendering_options
        t_start, t_end = ray_limits(ray_origins, ray_directions, opts)
        depths = samplers.sample_stratified(t_start, t_end, opts['depth_resolution'], generator=generator)
        fused = _fused_decoder_params(planes, decoder, opts, ray_origins, ray_directions)
        if fused is not None:
            return self._render_fused(planes, fused, ray_origins, ray_directions, depths, opts, generator)
        colors, densities = self._decode_along_rays(planes, decoder, ray_origins, ray_directions, depths,
                                                    opts, generator, channels)
        white_back = bool(opts.get('white_back', False))
        n_importance = int(opts['depth_resolution_importance'])
        if n_importance > 0:
            with torch.no_grad():  # the coarse weights only steer sampling (SPEC §4.5)
                weights = coarse_weights(colors, densities, depths, white_back=white_back)
            fine_depths = samplers.sample_importance(depths, weights, n_importance, generator=generator)
            fine_colors, fine_densities = self._decode_along_rays(planes, decoder, ray_origins, ray_directions,
                                                                  fine_depths, opts, generator, channels)
            result = march_importance(depths, colors, densities, fine_depths, fine_colors, fine_densities,
                                      white_back=white_back)   # unify_samples + march_rays
        else:
            result = march_rays(colors, densities, depths, white_back=white_back)
        return RenderOutput(result.features, result.depth, result.weights.sum(dim=2), result.final_transmittance)

    def _render_fused(self, planes, params, ray_origins, ray_directions, depths, opts, generator):
        """`render` through the fused kernel: the same samples and RNG draws, but colours are
        never stored per sample; the fine pass re-decodes the coarse samples it merges with."""
        axes, box, impl = resolve_plane_axes(opts), opts['box_warp'], opts.get('impl', 'cuda')
        n_importance = int(opts['depth_resolution_importance'])
        if n_importance > 0:
            weights = triplane_render.render_triplane_weights(planes, axes, params, ray_origins, ray_directions,
                                                              depths, box, impl=impl)
            fine_depths = samplers.sample_importance(depths, weights, n_importance, generator=generator)
            depths = torch.sort(torch.cat([depths, fine_depths], dim=-2), dim=-2).values
        out = triplane_render.render_triplane_full(planes, axes, params, ray_origins, ray_directions, depths, box,
                                                   white_back=bool(opts.get('white_back', False)), impl=impl)
        return RenderOutput(*out)

    def _decode_along_rays(self, planes, decoder, ray_origins, ray_directions, depths, opts, generator,
                           channels=None):
        """Decode at o + t*d for depths [N, M, S, 1] -> (colors [N, M, S, C], densities [N, M, S, 1])."""
        N, M, S, _ = depths.shape
        if fastpath.enabled():   # o + t*d in one op (same products and sums; ~1.7x faster)
            coords = torch.addcmul(ray_origins.unsqueeze(-2), depths, ray_directions.unsqueeze(-2))
        else:
            coords = ray_origins.unsqueeze(-2) + depths * ray_directions.unsqueeze(-2)
        coords = coords.reshape(N, M * S, 3)
        dirs = ray_directions.unsqueeze(-2).expand(N, M, S, 3).reshape(N, M * S, 3)
        out = self.run_model(planes, decoder, coords, dirs, opts, generator=generator, channels=channels)
        return out['rgb'].reshape(N, M, S, -1), out['sigma'].reshape(N, M, S, 1)

    def run_model(self, planes, decoder, sample_coordinates, sample_directions, options, generator=None,
                  channels=None):
        """Decoder output at arbitrary points: the point query behind G.sample / sample_mixed
        (density regularization, shape extraction).

        planes [N, 3, C_p, H, W]; sample_coordinates, sample_directions [N, M, 3] (directions
        are passed to the decoder, which ignores them). Reads box_warp, plane_axes and
        density_noise from options. Returns {'rgb': [N, M, C], 'sigma': [N, M, 1]}, sigma raw
        (before the marcher's softplus), plus N(0, density_noise^2) noise when that is > 0.
        channels: the caller reads only that many rgb channels (the fast path may return
        just those; see `_sample_and_decode`).
        """
        legacy = resolve_plane_axes(options) == 'legacy'
        fused = _fused_decoder_params(planes, decoder, dict(options, density_noise=0), sample_coordinates)
        if fused is not None:  # the noise below is added the same way on both paths
            rgb, sigma = triplane_render.query_triplane(planes, 'legacy' if legacy else 'correct', fused,
                                                        sample_coordinates, options['box_warp'],
                                                        impl=options.get('impl', 'cuda'))
            out = {'rgb': rgb, 'sigma': sigma}
        else:
            out = _sample_and_decode(planes, decoder, sample_coordinates, sample_directions, options['box_warp'],
                                     legacy, channels)
        noise_std = options.get('density_noise', 0)
        if noise_std > 0:
            sigma = out['sigma']
            noise = torch.randn(sigma.shape, generator=generator, dtype=sigma.dtype, device=sigma.device)
            out = dict(out, sigma=sigma + noise * noise_std)
        return out

    def query_points(self, planes, decoder, coordinates, rendering_options, directions=None, generator=None):
        """`run_model` with optional directions (zeros when None): coordinates [N, M, 3] ->
        {'rgb': [N, M, C], 'sigma': [N, M, 1]}. Convenience for density regularization."""
        if directions is None:
            directions = torch.zeros_like(coordinates)
        return self.run_model(planes, decoder, coordinates, directions, rendering_options, generator=generator)
