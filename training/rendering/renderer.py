"""Volume rendering with importance sampling, EG3D's `ImportanceRenderer` (SPEC §4.5).

Shapes: N batch, M rays per image (R*R), S samples per ray, C feature channels (32; the first
3 are RGB). The renderer holds its options (training/rendering/options.py), built once, and
renders any field (training/rendering/field.py): the stages are

    rays (ray_limits) -> coarse depths (samplers) -> field.query -> coarse weights (compositing)
    -> fine depths (samplers) -> field.query -> march over both sets (compositing)

and, where the options and the field allow it, the same stages fused into one Triton kernel
(training/rendering/fused.py). With a per-sample alpha rule (options.alpha_rule 'sample_delta' or
'occupancy', SEEDS_SPEC §6.1) a depth sampler of depth_samplers.py replaces the two sampling
stages and compositing.march_samples composites what it sampled.
"""

from typing import NamedTuple, Optional

import torch

from torch_utils import misc
from training.rendering import depth_samplers, fused, samplers
from training.rendering.compositing import (MarchedSamples, coarse_weights, march_importance, march_rays,
                                            march_samples_recorded)
from training.rendering.options import RenderingOptions, RenderSchedule
from training.rendering.rays import ray_limits, ray_points


class RenderOutput(NamedTuple):
    """Everything one render produces (the EG3D forward returns the first three)."""
    features: torch.Tensor               # [N, M, C] composite features in ~[-1, 1]
    depth: torch.Tensor                  # [N, M, 1] expected ray distance
    weight_sum: torch.Tensor             # [N, M, 1] sum of the compositing weights (opacity)
    final_transmittance: torch.Tensor    # [N, M, 1] transmittance behind the last sample


class RecordedRender(NamedTuple):
    """`ImportanceRenderer.render_recorded`: the render and, for the per-sample rules (None on the
    eg3d path), what the GOF regularizers and the weighted depth variance read (SEEDS_SPEC §3.3,
    §3.4; docs/architecture.md "What a render returns to the geometry losses")."""
    output: RenderOutput
    samples: Optional[MarchedSamples] = None      # the composited samples' depths, alpha, weights
    surface_depth: Optional[torch.Tensor] = None  # [N, M, 1] secant surface depth of the surface_window
                                                  # sampler (no gradient), NaN on rays without a crossing


class ImportanceRenderer(torch.nn.Module):
    """Coarse stratified pass + importance pass over a field (holds no parameters)."""

    def __init__(self, options: RenderingOptions):
        super().__init__()
        self.options = options

    def forward(self, field, ray_origins, ray_directions, generator: Optional[torch.Generator] = None,
                channels: Optional[int] = None, schedule: Optional[RenderSchedule] = None) -> RenderOutput:
        """field (training/rendering/field.py); ray_origins, ray_directions [N, M, 3].

        generator drives the stratified jitter, the importance draws and the density noise.
        channels: return only the first `channels` feature channels (None: all C); a field
        may then compute no others. schedule: this call's values of the training schedules
        (density noise std, surface-window half-width; options.py `RenderSchedule`), computed by
        the caller from cur_nimg (training/schedules.py); None or None fields: the options' values.
        """
        return self.render_recorded(field, ray_origins, ray_directions, generator, channels, schedule).output

    def render_recorded(self, field, ray_origins, ray_directions, generator: Optional[torch.Generator] = None,
                        channels: Optional[int] = None, schedule: Optional[RenderSchedule] = None) -> RecordedRender:
        """`forward` (same arguments, same draws) with its per-sample record (`RecordedRender`)."""
        misc.assert_shape(ray_origins, [field.batch_size, None, 3])
        misc.assert_shape(ray_directions, list(ray_origins.shape))
        opts = self.options
        schedule = schedule or RenderSchedule()
        noise = opts.density_noise if schedule.density_noise is None else float(schedule.density_noise)
        t_start, t_end = ray_limits(ray_origins, ray_directions, opts.ray_start, opts.ray_end, opts.box_warp)
        if opts.depth_sampler != 'eg3d':
            window = opts.window_min if schedule.window is None else float(schedule.window)
            rays = depth_samplers.RayQuery(self._bind_rays(field, ray_origins, ray_directions, generator, channels,
                                                           noise), t_start, t_end)
            out, samples, surface = self._render_samples(rays, window, generator)
        else:
            samples = surface = None
            depths = samplers.sample_stratified(t_start, t_end, opts.depth_resolution, generator=generator)
            kernel = self._kernel_inputs(field, ray_origins, ray_directions, density_noise=noise)
            if kernel is not None:
                out = self._render_fused(kernel, ray_origins, ray_directions, depths, generator)
            else:
                out = self._render_staged(field, ray_origins, ray_directions, depths, generator, channels, noise)
        if channels is not None and out.features.shape[-1] != channels:
            out = out._replace(features=out.features[..., :channels])
        return RecordedRender(out, samples, surface)

    def query(self, field, points, directions=None, generator: Optional[torch.Generator] = None,
              channels: Optional[int] = None, density_noise: Optional[float] = None):
        """(features [N, K, C'], sigma [N, K, 1]) at points [N, K, 3]: the point query behind
        G.sample / G.sample_mixed (density regularization, shape extraction). sigma is raw (before
        the alpha rule) plus N(0, s^2) noise when s > 0, s = density_noise (None: the option).
        channels: the caller reads only that many feature channels (C' may be larger)."""
        noise = self.options.density_noise if density_noise is None else density_noise
        kernel = self._kernel_inputs(field, points, noise_free=True)
        if kernel is not None:
            planes, axes, params = kernel
            features, sigma = fused.query_triplane(planes, axes, params, points, self.options.box_warp,
                                                   impl=self.options.impl)
        else:
            features, sigma = field.query(points, directions, channels)
        if noise > 0:
            draw = torch.randn(sigma.shape, generator=generator, dtype=sigma.dtype, device=sigma.device)
            sigma = sigma + draw * noise
        return features, sigma

    def _kernel_inputs(self, field, *tensors, noise_free=False, density_noise=None):
        """The field's inputs to the fused kernel when it should run, else None (other fields,
        density noise inside a render, an alpha rule other than 'eg3d' (the kernel implements only
        that one), CPU tensors under 'auto', 'torch', POF3D_IMPL=ref)."""
        noise = self.options.density_noise if density_noise is None else density_noise
        if (noise > 0 and not noise_free) or self.options.impl == 'torch' or self.options.alpha_rule != 'eg3d':
            return None
        kernel = getattr(field, 'kernel_inputs', lambda: None)()
        if kernel is None or not fused.kernel_ready(self.options.impl, kernel[0], *tensors):
            return None
        return kernel

    def _render_staged(self, field, ray_origins, ray_directions, depths, generator, channels, noise) -> RenderOutput:
        """The stages in PyTorch, any field."""
        colors, densities = self._query_rays(field, ray_origins, ray_directions, depths, generator, channels, noise)
        white_back, n_importance = self.options.white_back, self.options.depth_resolution_importance
        if n_importance > 0:
            with torch.no_grad():  # the coarse weights only steer sampling (SPEC §4.5)
                weights = coarse_weights(densities, depths)
            fine_depths = samplers.sample_importance(depths, weights, n_importance, generator=generator)
            fine_colors, fine_densities = self._query_rays(field, ray_origins, ray_directions, fine_depths,
                                                           generator, channels, noise)
            result = march_importance(depths, colors, densities, fine_depths, fine_colors, fine_densities,
                                      white_back=white_back)
        else:
            result = march_rays(colors, densities, depths, white_back=white_back)
        return RenderOutput(result.features, result.depth, result.weights.sum(dim=2), result.final_transmittance)

    def _render_fused(self, kernel, ray_origins, ray_directions, depths, generator) -> RenderOutput:
        """The stages through the fused kernel: the same samples and RNG draws, but colours are
        never stored per sample; the fine pass re-decodes the coarse samples it merges with."""
        planes, axes, params = kernel
        opts = self.options
        if opts.depth_resolution_importance > 0:
            weights = fused.render_triplane_weights(planes, axes, params, ray_origins, ray_directions, depths,
                                                    opts.box_warp, impl=opts.impl)
            fine_depths = samplers.sample_importance(depths, weights, opts.depth_resolution_importance,
                                                     generator=generator)
            depths = torch.sort(torch.cat([depths, fine_depths], dim=-2), dim=-2).values
        out = fused.render_triplane_full(planes, axes, params, ray_origins, ray_directions, depths, opts.box_warp,
                                         white_back=opts.white_back, impl=opts.impl)
        return RenderOutput(*out)

    def _query_rays(self, field, ray_origins, ray_directions, depths, generator, channels, noise):
        """Query at o + t*d for depths [N, M, S, 1] -> (colors [N, M, S, C], densities [N, M, S, 1])."""
        N, M, S, _ = depths.shape
        dirs = ray_directions.unsqueeze(-2).expand(N, M, S, 3).reshape(N, M * S, 3)
        features, sigma = self.query(field, ray_points(ray_origins, ray_directions, depths), dirs,
                                     generator=generator, channels=channels, density_noise=noise)
        return features.reshape(N, M, S, -1), sigma.reshape(N, M, S, 1)

    def _bind_rays(self, field, ray_origins, ray_directions, generator, channels, noise):
        """`RayQuery.query` for a depth sampler: (depths, noise: bool, channels) -> `_query_rays`."""
        def query(depths, with_noise=True, query_channels=None):
            wanted = channels if query_channels is None else query_channels
            return self._query_rays(field, ray_origins, ray_directions, depths, generator, wanted,
                                    noise if with_noise else 0.0)
        return query

    def _render_samples(self, rays, window, generator):
        """A depth sampler of depth_samplers.py, then the per-sample alpha rule over what it sampled
        (SEEDS_SPEC §6.1 items 2-3) -> (RenderOutput, MarchedSamples, surface depth or None)."""
        opts = self.options
        plan = depth_samplers.SAMPLERS[opts.depth_sampler](rays, opts, window, generator)
        sets = [plan.queried] if plan.queried is not None else []
        if plan.depths is not None:
            sets.append((plan.depths, *rays(plan.depths)))
        depths, colors, densities = zip(*sets)
        result, samples = march_samples_recorded(depths, colors, densities, opts.alpha_rule, opts.density_activation,
                                                 white_back=opts.white_back, last_back=opts.last_back)
        out = RenderOutput(result.features, result.depth, result.weights.sum(dim=2), result.final_transmittance)
        return out, samples, plan.surface_depth

    def extra_repr(self) -> str:
        return repr(self.options)

