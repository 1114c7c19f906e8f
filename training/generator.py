"""The tri-plane generator with a pluggable pose source (SPEC §4; contract: docs/model_api.md).

z [N, z_dim] --mapping--> w [N, w_dim] --pose source--> camera (SPEC §4.1: untruncated w)
(a pose source may read z dims of its own after the object's: z_dim = object dims + its z_extra)
                            \\--broadcast, truncation--> ws [N, num_ws, w_dim]
ws --StyleGAN2 synthesis--> planes [N, 3, C_p, P, P] --volume rendering (camera, intrinsics
from c[:, 16:25])--> features [N, 32, R, R], depth [N, 1, R, R] --super-resolution--> image.
The representation is a strategy chosen at construction (training/representations.py):
'triplane' as above, or 'film_siren' (pi-GAN, SEEDS_SPEC §6.2), where the backbone maps ws to a
FiLM code, a SIREN network is the field, and the render is the image (no super-resolution), or
'feature_volume' (VolumeGAN, SEEDS_SPEC §6.5), where the backbone grows a 3-D feature volume read
by a point MLP, and the image head in the super-resolution slot is VolumeGAN's 1x1 neural renderer
(or none).
The shading stage is a strategy too (SEEDS_SPEC §4.3, §6.4): 'none', or 'lambertian' (ShadeGAN),
where the field's colour is albedo, its normals are composited beside it, and the composite is
shaded per pixel under a light drawn per image by a light source (training/light_sources.py).

Conventions: OpenCV cam2world, y-up world, intrinsics normalized by image size (SPEC §3.1);
label c [N, 25] = cam2world (16, row-major) + intrinsics (9). Poses (h, v) in radians.

Randomness: every random draw of a call (prior poses, per-layer noise, stratified jitter,
importance samples) follows the optional `generator` argument, so two calls with equally
seeded generators are identical. The StyleGAN2 noise layers draw from the global RNG, so
when a generator is given that RNG is seeded from it for the call and restored afterwards.
"""

import math
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from torch_utils import misc, persistence
from training.cameras import Camera
from training.generator_output import GeneratorOutput
from training.light_sources import build_light_source
from training.pose_sources import PoseOutput, build_pose_source
from training.rendering.compositing import unfinish_features
from training.rendering.normals import NormalField
from training.representations import (DECODER_OUTPUT_DIM, build_representation, check_representation,
                                       check_shading, representation_field)
from training.rendering.options import RenderingOptions
from training.rendering.rays import RaySampler
from training.rendering.renderer import ImportanceRenderer, RecordedRender
from training.rendering.shading import lambertian
from training.superresolution import resolve_superresolution
from training.symmetry import check_symmetry, plane_flip_dims, symmetrize_planes

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)

# The generator-level rendering_kwargs (EG3D names; SPEC §8.2, §4.1, §12.9) and their values
# when a pickle lacks them (EG3D's lack PoF3D's keys; PoF3D's lack plane_axes). Our config
# always passes every key (training/config.py). The renderer's own keys are typed and
# defaulted in training/rendering/options.py; ray_start, ray_end, box_warp and
# depth_resolution(_importance) are required there, avg_camera_radius / avg_camera_pivot by
# every pose source except 'dataset'.
RENDERING_DEFAULTS = {
    'superresolution_module': None,      # None | SR class name (or EG3D dotted path)
    'superresolution_noise_mode': 'none',
    'sr_antialias': False,               # EG3D's; accepted, ignored: PoF3D never antialiases (§12.4)
    'decoder_lr_mul': 1,
    'c_gen_conditioning_zero': False,    # 'dataset' only: zero the mapping's label
    'c_scale': 1,                        # 'dataset' only: scale of the mapping's label
    'h_mean': math.pi / 2,               # pose offset of h (SPEC §3.3)
    'clamp_h': None,                     # optional (min, max) for the learned h
    'clamp_v': None,                     # optional (min, max) for the learned v
    'safe_pose_clamp': True,             # SPEC §12.9
}


class GeometryRender(NamedTuple):
    """`TriPlaneGenerator.render_geometry`: one render with what the geometry losses read (GOF's
    normal consistency and opacity prior, SEEDS_SPEC §3.3; docs/architecture.md)."""
    render: RecordedRender               # .output (features [N, M, 3], depth, ...), .samples, .surface_depth
    field: object                        # the rendered field, queried again for normals (need_normal=True)
    ray_origins: torch.Tensor            # [N, M, 3]
    ray_directions: torch.Tensor         # [N, M, 3] unit
    pose: Optional[torch.Tensor]         # [N, 2] the pose source's (h, v), or None


@persistence.persistent_class
class TriPlaneGenerator(torch.nn.Module):
    """EG3D/PoF3D tri-plane generator; see docs/model_api.md for the full contract.

    Sub-modules (EG3D names): backbone (StyleGAN2 mapping + synthesis at plane_resolution
    with 3*plane_channels outputs), decoder (OSG MLP), renderer, ray_sampler,
    superresolution (or None), plus pose_source. The mapping network sees c only for
    pose_source='dataset' (EG3D generator pose conditioning); PoF3D's ignores it (SPEC §4.9).
    symmetry: 'none' | 'planes' (mirror-symmetric field about world `symmetry_axis` = 0, exact)
    | 'density' (soft, a loss term); see training/symmetry.py.
    representation: 'triplane' (the above) | 'film_siren' (pi-GAN's FiLM-SIREN: backbone =
    FiLM mapping + code, decoder = SIREN, no super-resolution; representation_kwargs hidden,
    n_layers, view_condition, light_condition) | 'feature_volume' (VolumeGAN: backbone = StyleGAN2
    mapping + feature volume, decoder = point MLP, image head 'NeuralRenderer1x1' or None); see
    training/representations.py.
    shading: 'none' | 'lambertian' (ShadeGAN, film_siren or triplane without super-resolution:
    albedo x (k_a + k_d max(0, N . L)) after compositing, SEEDS_SPEC §4.3); light_source 'mvn' |
    'fixed' with light_kwargs (its law; training/light_sources.py) draws the light per image.
    """

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, pose_source='learned', pose_kwargs={},
                 sr_num_fp16_res=0, mapping_kwargs={}, rendering_kwargs={}, sr_kwargs={}, plane_resolution=256,
                 plane_channels=32, neural_rendering_resolution=None, symmetry='none', symmetry_axis='x',
                 representation='triplane', representation_kwargs={}, shading='none', light_source='mvn',
                 light_kwargs={}, **synthesis_kwargs):
        if c_dim != 25:
            raise ValueError(f'c_dim must be 25 (16 cam2world + 9 intrinsics, SPEC §3.1), got {c_dim}')
        if img_channels != 3:
            raise ValueError(f'img_channels must be 3 (RGB), got {img_channels}')
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.plane_resolution, self.plane_channels = plane_resolution, plane_channels
        check_symmetry(symmetry, symmetry_axis)
        self.symmetry, self.symmetry_axis = symmetry, symmetry_axis
        self.rendering_kwargs = {**RENDERING_DEFAULTS, **rendering_kwargs}   # EG3D's dict, for EG3D scripts
        check_representation(representation, representation_kwargs, symmetry, self.rendering_kwargs, mapping_kwargs,
                             synthesis_kwargs)
        self.representation = representation
        check_shading(shading, representation, representation_kwargs,
                      self.rendering_kwargs.get('superresolution_module'))
        self.shading = shading
        self._apply_rendering_kwargs()

        self.pose_source = build_pose_source(pose_source, **self._pose_source_kwargs(pose_source, pose_kwargs))
        self.object_z_dim = z_dim                      # what the mapping reads: z[:, :object_z_dim]
        self.z_dim = z_dim + self.pose_source.z_extra  # what callers draw
        mapping_c_dim = c_dim if self.pose_source.conditions_mapping else 0
        self.backbone, self.decoder = build_representation(
            representation, z_dim, mapping_c_dim, w_dim, img_resolution, plane_resolution, plane_channels,
            mapping_kwargs, representation_kwargs, self.rendering_kwargs, sr_kwargs, synthesis_kwargs)
        self.ray_sampler = RaySampler()
        self.num_ws = self.backbone.num_ws
        if shading != 'none':   # no module (no state, no draws) without shading: 'none' is as before
            self.light_source = build_light_source(light_source, **light_kwargs)
        self.superresolution = self._build_superresolution(sr_num_fp16_res, sr_kwargs)
        if neural_rendering_resolution is None:
            neural_rendering_resolution = img_resolution if self.superresolution is None else 64
        if self.superresolution is None and neural_rendering_resolution != img_resolution:
            raise ValueError(f'without a superresolution_module the neural rendering resolution '
                             f'({neural_rendering_resolution}) must equal img_resolution ({img_resolution})')
        # Default R for synthesis (SPEC §4.7): see set_neural_rendering_resolution.
        self.neural_rendering_resolution = int(neural_rendering_resolution)

    def set_neural_rendering_resolution(self, resolution: int) -> None:
        """The default R of `synthesis` (what inference renders at; the pickle records it). The
        training loop records its schedule's current R here at every tick; training itself
        passes R to every forward as an argument."""
        self.neural_rendering_resolution = int(resolution)

    def _apply_rendering_kwargs(self):
        """Build the renderer (its typed options, checked once) and the plane mirror of
        symmetry='planes' (fixed by the axis set) from self.rendering_kwargs."""
        options = RenderingOptions.from_kwargs(self.rendering_kwargs)
        self.renderer = ImportanceRenderer(options)
        self._plane_flips = plane_flip_dims(options.plane_axes, self.symmetry_axis) if self.symmetry == 'planes' \
            else None
        self._rendering_kwargs_applied = dict(self.rendering_kwargs)

    def _renderer(self) -> ImportanceRenderer:
        """The renderer; rebuilt when an EG3D-style script edited G.rendering_kwargs in place
        (e.g. more depth samples for a video), so such scripts keep working."""
        if self.rendering_kwargs != self._rendering_kwargs_applied:
            self._apply_rendering_kwargs()
        return self.renderer

    def _field(self, code, light=None, normals=True):
        """The field the renderer queries for the backbone's output `code` (`_code`); with shading
        (and `normals`), its normals appended to the albedo (training/rendering/normals.py), and
        the light [N, 4] bound for a light-conditioned albedo head."""
        field = representation_field(self.representation, code, self.decoder, self._renderer().options, light)
        return field if self.shading == 'none' or not normals else NormalField(field)

    def draw_light(self, batch_size, device, generator=None):
        """Lights [N, 4] (a, d, l_x, l_y) from the light source; None without shading."""
        return None if self.shading == 'none' else self.light_source(batch_size, device, generator=generator)

    def _pose_source_kwargs(self, name, pose_kwargs):
        """Constructor kwargs of pose source `name`: camera constants and pose options from
        rendering_kwargs (SPEC §3.3, §4.1), overridden by pose_kwargs."""
        rk = self.rendering_kwargs
        if name == 'dataset':
            return dict(pose_kwargs)
        missing = [k for k in ('avg_camera_radius', 'avg_camera_pivot') if k not in rk]
        if missing:
            raise ValueError(f'pose_source={name!r} needs rendering_kwargs {missing} (camera radius and look-at '
                             f'pivot, SPEC §3.3)')
        base = dict(radius=rk['avg_camera_radius'], pivot=rk['avg_camera_pivot'], h_mean=rk['h_mean'],
                    safe_pose_clamp=rk['safe_pose_clamp'])
        if name == 'learned':
            base.update(w_dim=self.w_dim, clamp_h=rk['clamp_h'], clamp_v=rk['clamp_v'])
        elif name == 'prior_residual':
            base.update(z_dim=self.z_dim)
        return {**base, **pose_kwargs}

    def _build_superresolution(self, sr_num_fp16_res, sr_kwargs):
        sr_class = resolve_superresolution(self.rendering_kwargs['superresolution_module'])
        if sr_class is None:
            return None
        channels = getattr(self.decoder, 'feature_channels', DECODER_OUTPUT_DIM)   # C_f of a point MLP
        return sr_class(channels=channels, img_resolution=self.img_resolution,
                        sr_num_fp16_res=sr_num_fp16_res, sr_antialias=self.rendering_kwargs['sr_antialias'],
                        **{'w_dim': self.w_dim, **sr_kwargs})

    # ------------------------------------------------------------------------------------
    # Latents and poses.

    def _mapping_c(self, c):
        """The label the mapping network sees: EG3D's c_gen_conditioning_zero / c_scale for
        'dataset'; ignored otherwise (the mapping has c_dim 0)."""
        if self.backbone.mapping.c_dim == 0:
            return c
        if self.rendering_kwargs['c_gen_conditioning_zero']:
            c = torch.zeros_like(c)
        return c * self.rendering_kwargs['c_scale']

    def mapping(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """z [N, z_dim], c [N, 25] -> ws [N, num_ws, w_dim] (broadcast, then truncated); the
        object's dims z[:, :object_z_dim] only (the rest are the pose source's)."""
        return self.backbone.mapping(z[:, :self.object_z_dim], self._mapping_c(c), truncation_psi=truncation_psi,
                                     truncation_cutoff=truncation_cutoff, update_emas=update_emas)

    def _w(self, z, c, update_emas=False):
        """Untruncated w [N, w_dim] (updates w_avg when update_emas)."""
        return self.mapping(z, c, update_emas=update_emas)[:, 0]

    def _broadcast_truncate(self, w, truncation_psi, truncation_cutoff):
        """w [N, w_dim] -> ws [N, num_ws, w_dim], the same values `mapping` returns (SPEC §4.1 6-7)."""
        ws = w.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi == 1:
            return ws
        truncated = self.backbone.mapping.w_avg.lerp(ws, truncation_psi)
        if truncation_cutoff is None:
            return truncated
        return torch.cat([truncated[:, :truncation_cutoff], ws[:, truncation_cutoff:]], dim=1)

    def pose(self, z, c, detach_w=False, generator=None) -> PoseOutput:
        """PoseOutput of the untruncated w (SPEC §4.1, §12.5); detach_w feeds sg(w)."""
        w = self._w(z, c)
        return self.pose_source(w.detach() if detach_w else w, z, c, generator=generator)

    # ------------------------------------------------------------------------------------
    # Planes, rendering, images.

    def _code(self, ws, update_emas, noise_mode, synthesis_kwargs):
        """ws [N, num_ws, w_dim] -> what `_field` binds: planes [N, 3, C_p, P, P] ('triplane'),
        or the FiLM code (gamma, beta) [N, num_ws, hidden] each ('film_siren': no noise, and
        the forward-time synthesis_kwargs of the StyleGAN2 blocks do not apply), or (volume
        [N, C, D, H, W] | None, ws) ('feature_volume', no noise)."""
        if self.representation != 'triplane':
            return self.backbone.synthesis(ws)
        return self._planes(ws, update_emas, noise_mode, synthesis_kwargs)

    def _planes(self, ws, update_emas, noise_mode, synthesis_kwargs):
        """ws [N, num_ws, w_dim] -> planes [N, 3, C_p, P, P] (SPEC §4.2 step 4, §4.3)."""
        self._renderer()   # the plane mirror follows the axis set of the current rendering_kwargs
        planes = self.backbone.synthesis(ws, update_emas=update_emas, noise_mode=noise_mode, **synthesis_kwargs)
        planes = planes.reshape(ws.shape[0], 3, self.plane_channels, planes.shape[-2], planes.shape[-1])
        return planes if self._plane_flips is None else symmetrize_planes(planes, self._plane_flips)

    def _render(self, code, cam2world, intrinsics, resolution, generator, channels=None, schedule=None,
                light=None):
        """Volume-render the field of `code` (`_code`) from cameras at R = resolution (SPEC §4.4-4.5).
        Returns (feature_image [N, 32, R, R] (or its first `channels` channels), depth_image
        [N, 1, R, R]); ray m = row*R + col. schedule: the renderer's RenderSchedule or None.
        With shading, feature_image is [N, 9, R, R]: the shaded RGB in [-1, 1], the albedo in
        [-1, 1], the unit world normal (`_shade`)."""
        origins, dirs = self.ray_sampler(cam2world, intrinsics, resolution)
        field = self._field(code, light)
        out = self.renderer(field, origins, dirs, generator=generator, channels=None if light is not None else channels,
                            schedule=schedule)
        features, depth = out.features, out.depth
        if self.shading != 'none':
            features = self._shade(out, light, schedule)
        N, R = field.batch_size, resolution
        feature_image = features.permute(0, 2, 1).reshape(N, features.shape[-1], R, R)
        depth_image = depth.permute(0, 2, 1).reshape(N, 1, R, R)
        return feature_image, depth_image

    def _shade(self, out, light, schedule):
        """The shading stage after compositing (SEEDS_SPEC §4.3, training/rendering/shading.py): the
        render's features [N, M, 6] (albedo, normal composites, mapped by 2f - 1 like every
        channel) -> [N, M, 9] (shaded RGB, albedo 2A - 1, unit normal). The ramp r is the
        schedule's shading_ratio (training/schedules.py), 1 without one (evaluation)."""
        raw = unfinish_features(out.features, out.weight_sum, self.renderer.options.white_back)
        ratio = 1.0 if schedule is None or schedule.shading_ratio is None else float(schedule.shading_ratio)
        shaded = lambertian(raw[..., :3], raw[..., 3:6], out.weight_sum, light, ratio,
                            white_back=self.renderer.options.white_back)
        return torch.cat([shaded.rgb, shaded.albedo * 2 - 1, shaded.normal], dim=-1)

    def synthesis(self, ws, c, cam2world=None, neural_rendering_resolution=None, update_emas=False,
                  noise_mode='random', generator=None, render_schedule=None, light=None, **synthesis_kwargs):
        """Render ws [N, num_ws, w_dim] from cam2world [N, 4, 4] (None: c[:, :16]) with the
        intrinsics c[:, 16:25] at R = neural_rendering_resolution (None: self's value).

        Returns a GeneratorOutput (training/generator_output.py; reads like EG3D's dict): image
        [N, 3, H, H], image_raw [N, 3, R, R], image_depth [N, 1, R, R] (ray distance), cam2world
        [N, 4, 4], pose None, clamped_frac None (SPEC §4.2).
        synthesis_kwargs (fused_modconv, force_fp32) reach the StyleGAN2 blocks and the SR.
        render_schedule: the renderer's training-schedule values (a RenderSchedule from
        training/schedules.py render_schedule; pi-GAN's density noise, GOF's window, ShadeGAN's ramp), or None.
        light: [N, 4] (a, d, l_x, l_y) for shading 'lambertian' (None: drawn from the light source,
        after the pose, with `generator`); ignored without shading.
        """
        camera = Camera.from_label(c)
        if cam2world is None:
            cam2world = camera.cam2world
        misc.assert_shape(cam2world, [ws.shape[0], 4, 4])
        R = int(self.neural_rendering_resolution if neural_rendering_resolution is None
                else neural_rendering_resolution)
        if self.shading != 'none' and light is None:
            light = self.draw_light(ws.shape[0], ws.device, generator)
        elif self.shading == 'none':
            light = None
        with misc.seeded_global_rng(generator, ws.device):
            code = self._code(ws, update_emas, noise_mode, synthesis_kwargs)
            # Without super-resolution only the RGB channels are read: render just those.
            channels = 3 if self.superresolution is None else None
            feature_image, depth_image = self._render(code, cam2world, camera.intrinsics, R, generator, channels,
                                                      render_schedule, light)
            rgb_image = feature_image[:, :3]
            image = rgb_image
            if self.superresolution is not None:   # SPEC §4.2 step 8, §4.6
                sr_noise = self.rendering_kwargs['superresolution_noise_mode']
                image = self.superresolution(rgb_image, feature_image, ws, noise_mode=sr_noise, **synthesis_kwargs)
            elif R != self.img_resolution:   # a curriculum's low stage (--res_stages): D's resize of image_raw
                image = F.interpolate(rgb_image, size=(self.img_resolution, self.img_resolution), mode='bilinear',
                                      align_corners=False, antialias=False)
        return GeneratorOutput(image=image, image_raw=rgb_image, image_depth=depth_image, cam2world=cam2world)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, neural_rendering_resolution=None,
                update_emas=False, cam2world=None, detach_w=False, noise_mode='random', generator=None,
                render_schedule=None, light=None, **synthesis_kwargs):
        """z [N, z_dim], c [N, 25] -> the synthesis GeneratorOutput with pose [N, 2] (or None) and
        'clamped_frac' of the pose source. The pose comes from the untruncated w (SPEC §4.1:
        truncation never changes it); cam2world [N, 4, 4], if given, overrides the pose
        source's camera (the mirrored render of SPEC §3.4) while 'pose' stays the source's."""
        w = self._w(z, c, update_emas=update_emas)
        pose = self.pose_source(w.detach() if detach_w else w, z, c, generator=generator)
        ws = self._broadcast_truncate(w, truncation_psi, truncation_cutoff)
        out = self.synthesis(ws, c, cam2world=pose.cam2world if cam2world is None else cam2world,
                             neural_rendering_resolution=neural_rendering_resolution, update_emas=update_emas,
                             noise_mode=noise_mode, generator=generator, render_schedule=render_schedule,
                             light=light, **synthesis_kwargs)
        return out.replace(pose=pose.pose, clamped_frac=pose.clamped_frac)

    def render_geometry(self, z, c, neural_rendering_resolution=None, generator=None, render_schedule=None,
                        cam2world=None, truncation_psi=1) -> GeometryRender:
        """z [N, z_dim], c [N, 25] -> a GeometryRender: the render of `forward` (the pose source's
        camera of the untruncated w unless cam2world is given, R = neural_rendering_resolution or the
        default; the field of w truncated by truncation_psi, 1: none), its RGB channels only, with the
        renderer's per-sample record and surface depth and the field itself (SEEDS_SPEC §3.3: the
        normal loss queries the field at the surface points; §3.4: the depth variance reads the record)."""
        w = self._w(z, c)
        pose = self.pose_source(w, z, c, generator=generator)
        ws = self._broadcast_truncate(w, truncation_psi, None)
        R = int(self.neural_rendering_resolution if neural_rendering_resolution is None
                else neural_rendering_resolution)
        with misc.seeded_global_rng(generator, ws.device):
            field = self._field(self._code(ws, False, 'random', {}))
            origins, dirs = self.ray_sampler(pose.cam2world if cam2world is None else cam2world,
                                             Camera.from_label(c).intrinsics, R)
            render = self.renderer.render_recorded(field, origins, dirs, generator=generator, channels=3,
                                                   schedule=render_schedule)
        return GeometryRender(render, field, origins, dirs, pose.pose)

    # ------------------------------------------------------------------------------------
    # Point queries (density regularization, shape extraction; SPEC §4.2).

    def sample(self, coordinates, directions, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False,
               noise_mode='random', generator=None, **synthesis_kwargs):
        """Decoder output at points [N, M, 3] of z's field -> {'rgb': [N, M, 32] (film_siren: [N, M, 3];
        the albedo with shading), 'sigma': [N, M, 1] raw}."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.sample_mixed(coordinates, directions, ws, update_emas=update_emas, noise_mode=noise_mode,
                                 generator=generator, **synthesis_kwargs)

    def sample_mixed(self, coordinates, directions, ws, truncation_psi=1, truncation_cutoff=None, update_emas=False,
                     noise_mode='random', generator=None, **synthesis_kwargs):
        """Like `sample` from given ws [N, num_ws, w_dim] (the truncation args exist for EG3D
        call compatibility and are unused: ws are taken as they are)."""
        del truncation_psi, truncation_cutoff
        with misc.seeded_global_rng(generator, ws.device):
            code = self._code(ws, update_emas, noise_mode, synthesis_kwargs)
        # With shading: the albedo, without normals (a light-conditioned head reads a drawn light).
        field = self._field(code, self.draw_light(ws.shape[0], ws.device, generator), normals=False)
        rgb, sigma = self.renderer.query(field, coordinates, directions, generator=generator)
        return {'rgb': rgb, 'sigma': sigma}

    def extra_repr(self):
        planes = '' if self.representation != 'triplane' else \
            f'plane_resolution={self.plane_resolution}, plane_channels={self.plane_channels}, '
        text = (f'z_dim={self.z_dim}, w_dim={self.w_dim}, img_resolution={self.img_resolution}, {planes}'
                f'neural_rendering_resolution={self.neural_rendering_resolution}, symmetry={self.symmetry}')
        text += f', representation={self.representation}' if self.representation != 'triplane' else ''
        return text + (f', shading={self.shading}' if self.shading != 'none' else '')

