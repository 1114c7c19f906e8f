"""The TrainConfig kwargs builders: how a config becomes the constructor arguments of the dataset,
G, D and the loss (EG3D names, so training_options.json reads like EG3D's).

Separate from training/config.py because the config is data (the dataclasses, presets and
overrides) and this is its translation into constructor arguments. The TrainConfig methods of the
same names delegate here (`c.G_kwargs()` == `G_kwargs(c)`). This module imports training.config
for type checking only, so training.config imports it at module level without a cycle.
"""

from typing import TYPE_CHECKING

from training.light_sources import LIGHT_LAW_KEYS
from training.superresolution import SR_BY_RESOLUTION
from training.symmetry import MIRROR_AXES

if TYPE_CHECKING:
    from training.config import TrainConfig

__all__ = ['RENDER_STRATEGY_FIELDS', 'training_set_kwargs', 'rendering_kwargs', 'G_kwargs', 'D_kwargs',
           'loss_kwargs']

# RenderingConfig fields passed as rendering_kwargs under their own names (the renderer reads the
# first ten; the schedules' constants ride along so that the pickle records them).
RENDER_STRATEGY_FIELDS = ('alpha_rule', 'density_activation', 'last_back', 'depth_sampler', 'depth_resolution_surface',
                          'secant_steps', 'surface_level', 'window_init', 'window_min', 'window_decay',
                          'window_warmup_steps', 'density_noise_init', 'density_noise_fade_steps')


def training_set_kwargs(c: 'TrainConfig') -> dict:
    d = c.data
    skipping = d.skip_bad_images and d.dataset_class == 'training.dataset.ImageFolderDataset'
    class_name = 'training.dataset_check.SkipBadImagesDataset' if skipping else d.dataset_class
    return dict(class_name=class_name, path=d.data, use_labels=True, max_size=d.max_size, xflip=d.mirror,
                resolution=d.dataset_resolution, random_seed=c.seed, create_label_fov=d.create_label_fov,
                pad_long=d.pad_long, **({} if d.create_label_grid == 'eg3d' else
                                        dict(create_label_grid=d.create_label_grid)))


def rendering_kwargs(c: 'TrainConfig') -> dict:
    r, m = c.rendering, c.model
    sr = SR_BY_RESOLUTION.get(c.data.dataset_resolution) if m.superres else None
    if m.representation == 'feature_volume':   # VolumeGAN's image head in the SR slot (SEEDS_SPEC §6.5)
        sr = 'NeuralRenderer1x1' if m.image_head == 'modconv1x1' else None
    kwargs = dict(image_resolution=c.data.dataset_resolution, disparity_space_sampling=False,
                  clamp_mode='softplus', superresolution_module=sr, c_gen_conditioning_zero=not m.gen_pose_cond,
                  c_scale=1, superresolution_noise_mode=m.sr_noise_mode, density_reg=r.density_reg,
                  density_reg_p_dist=r.density_reg_p_dist, reg_type='l1', decoder_lr_mul=r.decoder_lr_mul)
    for key in ('depth_resolution', 'depth_resolution_importance', 'ray_start', 'ray_end', 'box_warp',
                'white_back', 'avg_camera_radius', 'h_mean', 'clamp_h', 'clamp_v', 'safe_pose_clamp',
                'plane_axes'):
        kwargs[key] = getattr(r, key)
    kwargs['impl'] = r.render_impl
    kwargs.update({key: getattr(r, key) for key in RENDER_STRATEGY_FIELDS})
    kwargs['avg_camera_pivot'] = list(r.avg_camera_pivot)
    return kwargs


def G_kwargs(c: 'TrainConfig') -> dict:
    m = c.model
    pose_kwargs = {}
    if m.pose_source == 'learned':
        pose_kwargs = dict(lr_multiplier_pose=m.lr_multiplier_pose, init_gain=m.pose_init_gain)
        if m.pose_input != 'w':   # only then: the default's kwargs (and pickles) stay as they were
            pose_kwargs['pose_input'] = m.pose_input
    elif m.pose_source == 'prior_residual':
        pose_kwargs = dict(lr_multiplier=m.lr_multiplier_pose)
    if m.pose_source in ('prior', 'prior_residual'):   # the prior's law, recorded in the pickle
        pose_kwargs.update(distribution=m.prior_distribution, parametrization=m.prior_parametrization,
                           h_std=m.prior_h_std, v_mean=m.prior_v_mean, v_std=m.prior_v_std)
    if m.representation == 'film_siren':
        return _film_siren_G_kwargs(c, pose_kwargs)
    if m.representation == 'feature_volume':
        return _feature_volume_G_kwargs(c, pose_kwargs)
    fp16 = m.g_num_fp16_res > 0
    return dict(class_name='training.generator.TriPlaneGenerator', z_dim=m.z_dim, w_dim=m.w_dim, c_dim=25,
                img_resolution=c.data.dataset_resolution, img_channels=3, pose_source=m.pose_source,
                pose_kwargs=pose_kwargs, mapping_kwargs=dict(num_layers=m.map_depth, lr_multiplier=m.lr_multiplier),
                channel_base=m.cbase, channel_max=m.cmax, num_fp16_res=m.g_num_fp16_res,
                conv_clamp=256 if fp16 else None, fused_modconv_default='inference_only',
                plane_resolution=m.plane_resolution, plane_channels=m.plane_channels,
                neural_rendering_resolution=c.rendering.neural_rendering_resolution_initial,
                sr_num_fp16_res=m.sr_num_fp16_res, sr_kwargs=dict(fused_modconv_default='inference_only'),
                rendering_kwargs=rendering_kwargs(c), symmetry=m.symmetry,
                symmetry_axis=MIRROR_AXES[c.loss.flip_type], **_shading_G_kwargs(c))


def _film_siren_G_kwargs(c: 'TrainConfig', pose_kwargs) -> dict:
    """G kwargs of representation film_siren: no StyleGAN2 synthesis, planes or SR options;
    the mapping has map_depth plain layers of width w_dim (SEEDS_SPEC §1.3)."""
    m = c.model
    return dict(class_name='training.generator.TriPlaneGenerator', z_dim=m.z_dim, w_dim=m.w_dim, c_dim=25,
                img_resolution=c.data.dataset_resolution, img_channels=3, pose_source=m.pose_source,
                pose_kwargs=pose_kwargs, mapping_kwargs=dict(num_layers=m.map_depth),
                neural_rendering_resolution=c.rendering.neural_rendering_resolution_initial,
                rendering_kwargs=rendering_kwargs(c), symmetry=m.symmetry,
                symmetry_axis=MIRROR_AXES[c.loss.flip_type], representation='film_siren',
                representation_kwargs=dict(hidden=m.siren_hidden, n_layers=m.siren_layers, **_albedo_head(c)),
                **_shading_G_kwargs(c))


def _feature_volume_G_kwargs(c: 'TrainConfig', pose_kwargs) -> dict:
    """G kwargs of representation feature_volume (SEEDS_SPEC §6.5): the StyleGAN2 mapping, the
    volume and point MLP options, the image head's input resolution and widths (sr_kwargs);
    without an image head the feature is the RGB (C_f = 3)."""
    m, r = c.model, c.rendering
    head = m.image_head == 'modconv1x1'
    representation_kwargs = dict(volume=m.volume, volume_channels=m.volume_channels, template_init=m.template_init,
                                 adain_scale=m.adain_scale, mlp=m.point_mlp, mlp_hidden=m.point_mlp_hidden,
                                 mlp_layers=m.point_mlp_layers, feature_channels=m.feature_channels if head else 3,
                                 view_dependent=m.view_dependent)
    sr_kwargs = dict(input_resolution=r.neural_rendering_resolution_initial, channel_base=m.cbase,
                     channel_max=m.cmax) if head else {}
    return dict(class_name='training.generator.TriPlaneGenerator', z_dim=m.z_dim, w_dim=m.w_dim, c_dim=25,
                img_resolution=c.data.dataset_resolution, img_channels=3, pose_source=m.pose_source,
                pose_kwargs=pose_kwargs, mapping_kwargs=dict(num_layers=m.map_depth, lr_multiplier=m.lr_multiplier),
                neural_rendering_resolution=r.neural_rendering_resolution_initial, sr_num_fp16_res=0,
                sr_kwargs=sr_kwargs, rendering_kwargs=rendering_kwargs(c), symmetry=m.symmetry,
                symmetry_axis=MIRROR_AXES[c.loss.flip_type], representation='feature_volume',
                representation_kwargs=representation_kwargs)


def _albedo_head(c: 'TrainConfig') -> dict:
    """The colour head's options when they differ from pi-GAN's (SEEDS_SPEC §4.2)."""
    m = c.model
    return {} if (m.albedo_view, m.albedo_light) == (True, False) else \
        dict(view_condition=m.albedo_view, light_condition=m.albedo_light)


def _shading_G_kwargs(c: 'TrainConfig') -> dict:
    """shading, light_source and its law (recorded in the pickle); {} for shading none. The
    'fixed' light is the law's mean strengths from the front (SEEDS_SPEC §6.4 ablation)."""
    m = c.model
    if m.shading == 'none':
        return {}
    law = {key: getattr(m, f'light_{key}') for key in LIGHT_LAW_KEYS}
    light_kwargs = law if m.light_source == 'mvn' else dict(a=m.light_a_mean, d=m.light_d_mean, lx=0.0, ly=0.0)
    return dict(shading=m.shading, light_source=m.light_source, light_kwargs=light_kwargs)


def D_kwargs(c: 'TrainConfig') -> dict:
    m = c.model
    learned = m.pose_source == 'learned'
    c_dim = (2 if learned else 25) if m.dis_pose_cond else 0
    return dict(class_name='training.dual_discriminator.DualDiscriminator', c_dim=c_dim,
                img_resolution=c.data.dataset_resolution, img_channels=3, channel_base=m.cbase,
                channel_max=m.cmax, num_fp16_res=m.d_num_fp16_res,
                conv_clamp=256 if m.d_num_fp16_res > 0 else None, disc_c_noise=m.disc_c_noise,
                pose_head=learned or c.loss.pos_weight > 0, dis_linear_pose=m.dis_linear_pose,
                self_condition=learned and m.dis_pose_cond,
                pose_head_channels=m.pose_head_channels, block_kwargs=dict(freeze_layers=m.freezed),
                mapping_kwargs={}, epilogue_kwargs=dict(mbstd_group_size=m.mbstd_group))


def loss_kwargs(c: 'TrainConfig', from_pickle: bool = False) -> dict:
    """Loss constructor kwargs (without device, G, D, seed). from_pickle: EG3D's resume from a
    network pickle turns the blur off (unless resume_blur) and the swap fade to 0 (SPEC §7)."""
    ls, r = c.loss, c.rendering
    kwargs = dict(r1_gamma=ls.gamma, density_reg=r.density_reg, density_reg_p_dist=r.density_reg_p_dist,
                  reg_type='l1', blur_init_sigma=0 if from_pickle and not c.resume_blur else ls.blur_init_sigma,
                  blur_fade_kimg=c.batch * ls.blur_fade_kimg / 32,
                  neural_rendering_resolution_initial=r.neural_rendering_resolution_initial,
                  neural_rendering_resolution_final=r.neural_rendering_resolution_final,
                  neural_rendering_resolution_fade_kimg=r.neural_rendering_resolution_fade_kimg,
                  symmetry_density_weight=ls.symmetry_weight if c.model.symmetry == 'density' else 0.0)
    m = c.model
    if r.density_noise_init > 0 or r.depth_sampler == 'surface_window' or m.shading != 'none':   # SEEDS_SPEC
        kwargs['render_schedule'] = dict(batch=c.batch, depth_sampler=r.depth_sampler,
                                         density_noise_init=r.density_noise_init,
                                         density_noise_fade_steps=r.density_noise_fade_steps,
                                         window_init=r.window_init, window_min=r.window_min,
                                         window_decay=r.window_decay,
                                         window_warmup_steps=r.window_warmup_steps)
        if m.shading != 'none':   # ShadeGAN's ramp (SEEDS_SPEC §4.3)
            kwargs['render_schedule'].update(shading=m.shading, shading_start_steps=m.shading_start_steps,
                                             shading_ramp_steps=m.shading_ramp_steps)
    if r.res_stages:   # a pi-GAN-family curriculum's resolutions (SEEDS_SPEC §1.8)
        kwargs['resolution_stages'] = dict(batch=c.batch, stages=r.res_stages)
    if ls.topk_interval > 0:   # pi-GAN's top-k (SEEDS_SPEC §1.7)
        kwargs['topk'] = dict(batch=c.batch, interval=ls.topk_interval, floor=ls.topk_floor)
    if ls.normal_weight > 0 or ls.opacity_weight > 0:   # GOF's regularizers (training/losses/occupancy.py)
        kwargs['geometry'] = dict(normal_weight=ls.normal_weight, normal_h=ls.normal_h,
                                  opacity_weight=ls.opacity_weight, opacity_growth=ls.opacity_growth,
                                  batch=c.batch, legacy_red_channel=ls.opacity_legacy_red)
    if c.model.pose_source == 'learned':
        kwargs.update(dis_cam_weight=ls.dis_cam_weight, pose_gd_weight=ls.pose_gd_weight,
                      flip_to_dis=ls.flip_to_dis, flip_to_disd=ls.flip_to_disd,
                      flip_to_disd_weight=ls.flip_to_disd_weight, flip_type=ls.flip_type,
                      detach_pose=ls.detach_pose, blur_mode=ls.blur_mode, sym_weight=ls.sym_weight,
                      pose_dist_weight=ls.pose_dist_weight, pose_dist_start_kimg=ls.pose_dist_start_kimg,
                      pose_dist_min_slope=ls.pose_dist_min_slope, pose_gd_start_kimg=ls.pose_gd_start_kimg,
                      pose_gd_debias=ls.pose_gd_debias, pose_gd_min_slope=ls.pose_gd_min_slope,
                      share_render=ls.share_render,
                      pose_explore_weight=ls.pose_explore_weight, pose_explore_range=ls.pose_explore_range,
                      pose_hold_kimg=ls.pose_hold_kimg, pose_img_dist_weight=ls.pose_img_dist_weight,
                      pose_freeze_kimg=ls.pose_freeze_kimg, pose_freeze_slope=ls.pose_freeze_slope,
                      pose_view_weight=ls.pose_view_weight, pose_cond_grad=ls.pose_cond_grad)
    else:
        kwargs.update(flip_type=ls.flip_type, gpc_reg_prob=ls.gpc_reg_prob if c.model.gen_pose_cond else None,
                      gpc_reg_fade_kimg=0 if from_pickle else ls.gpc_reg_fade_kimg)
        if ls.pos_weight > 0:   # pi-GAN's position loss (SEEDS_SPEC §1.7, §6.1)
            kwargs['pos_weight'] = ls.pos_weight
    return kwargs
