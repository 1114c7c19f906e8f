"""The --cfg presets: one row per preset, a dict of TrainConfig field overrides
(training/config.py `build_config`: defaults <- PRESETS[cfg] <- the train.py options)."""

import math
from typing import Any, Dict

# Paper rows: SPEC §8.2 rendering constants plus the §8.3 recipe
# values (gamma, weights, resolution, flips, clamps). Plane axes stay 'correct' here (project
# decision); the shipped recipes pass --plane_axes legacy to reproduce the paper.
# `synthetic` is CPU-sized for make_synthetic.py data at its defaults (radius 2.7, FOV 30 for the
# _unlabeled.zip labels, objects inside the unit cube at the origin, front facing +z, mirror
# plane x = 0, so rays from 2.7 - 0.87 to 2.7 + 0.87 cover it). Measured on its car data
# (docs/benchmark.md, "Preset search"): white backgrounds need white_back; the reference's pose
# init (~0.8 rad spread, a third of the cameras at the pole for seed 0) and lr multiplier 0.01
# (the pose moves ~0.07 rad in 1.5 kimg) are for runs of thousands of kimg; blur sigma 10 px
# blurs a 32 px image into one blob.

_PAPER = dict(batch=32, flip_to_disd_weight=1.0, lr_multiplier=0.01, lr_multiplier_pose=0.01,
              gen_pose_cond=True, dis_pose_cond=True, superres=True, dual_discrimination=True,
              neural_rendering_resolution_initial=64)

PRESETS: Dict[str, Dict[str, Any]] = {
    'ffhq': dict(_PAPER, depth_resolution=48, depth_resolution_importance=48, ray_start=2.25, ray_end=3.3,
                 box_warp=1.0, white_back=False, avg_camera_radius=2.7, avg_camera_pivot=(0.0, 0.0, 0.2),
                 h_mean=math.pi / 2, dataset_resolution=256, gamma=1.0, flip_type='flip_both',
                 dis_cam_weight=2.0, pose_gd_weight=1.0),
    'cats': dict(_PAPER, depth_resolution=48, depth_resolution_importance=48, ray_start=2.25, ray_end=3.3,
                 box_warp=1.0, white_back=False, avg_camera_radius=2.7, avg_camera_pivot=(0.0, 0.0, 0.0),
                 h_mean=math.pi / 2, dataset_resolution=256, create_label_fov=18.837, gamma=5.0,
                 flip_type='flip_both', dis_cam_weight=10.0, pose_gd_weight=10.0),
    'shapenet': dict(_PAPER, depth_resolution=64, depth_resolution_importance=64, ray_start=0.1, ray_end=2.6,
                     box_warp=1.6, white_back=True, avg_camera_radius=1.7, avg_camera_pivot=(0.0, 0.0, 0.0),
                     h_mean=math.pi, dataset_resolution=128, gamma=0.3, flip_type='flip_both_shapenet',
                     dis_cam_weight=2.0, pose_gd_weight=2.0, clamp_h=(0.0, 6.283185307179586),
                     clamp_v=(0.0, 3.1415926)),
    'synthetic': dict(depth_resolution=12, depth_resolution_importance=12, ray_start=1.8, ray_end=3.6,
                      box_warp=1.0, white_back=True, avg_camera_radius=2.7, avg_camera_pivot=(0.0, 0.0, 0.0),
                      pose_init_gain=(1.0, 0.2), lr_multiplier_pose=0.1, blur_init_sigma=1.0,
                      h_mean=math.pi / 2, dataset_resolution=32, create_label_fov=30.0,
                      neural_rendering_resolution_initial=32,
                      superres=False, plane_resolution=32, plane_channels=16, cbase=2048, cmax=64,
                      pose_head_channels=256, mbstd_group=4, d_num_fp16_res=0, sr_num_fp16_res=0, batch=8,
                      gamma=1.0, flip_type='flip_both', dis_cam_weight=2.0, pose_gd_weight=1.0,
                      blur_fade_kimg=50.0, plane_axes='correct', metrics=(), image_grid=(8, 4), tick=1, snap=5,
                      kimg=200, workers=1),
}


# pi-GAN at CPU scale (SEEDS_SPEC §6.2 "Cheapest CPU test"): make_synthetic.py --family head
# --resolution 32 --pose gaussian:h_std=0.3,v_std=0.15 data; the camera, rays and box of the
# synthetic preset (§6.0 "Scale"); FiLM-SIREN 4 x 64 with a 3 x 64 mapping; the prior pose
# source with the data's law; no SR; R1 every step (§6.0 "R1") and pi-GAN's betas (§2.2); no
# blur, no density regularizer, unconditional D (pi-GAN has none of them); pi-GAN's per-sample
# alpha (delta_last 1e10) with density noise 1 fading over 5000 steps, and its NeRF importance
# sampler (§1.5, §6.2). Departures measured at this scale (docs/seed_methods.md "CPU-scale
# rates"): pi-GAN's CelebA rates (G 6e-5, D 2e-4, gamma 0.2) left flat grey images for 3.6 kimg
# against the StyleGAN2 D that stands in for pi-GAN's; lr 1e-3 with relu killed every density
# (white images, no gradient); softplus (pi-GAN's other `act`, §1.5) at lr 1e-3 and gamma 1 draws
# heads within 1.6 kimg. The paper-scale recipes keep pi-GAN's own values.
PRESETS['pigan'] = dict(
    {k: PRESETS['synthetic'][k] for k in ('ray_start', 'ray_end', 'box_warp', 'white_back', 'avg_camera_radius',
                                          'avg_camera_pivot', 'h_mean', 'create_label_fov', 'cbase', 'cmax',
                                          'mbstd_group', 'd_num_fp16_res', 'sr_num_fp16_res', 'image_grid',
                                          'tick', 'snap', 'kimg', 'workers', 'metrics', 'flip_type')},
    representation='film_siren', siren_hidden=64, siren_layers=4, z_dim=256, w_dim=64, map_depth=3,
    pose_source='prior', prior_h_std=0.3, prior_v_std=0.15, dis_pose_cond=False, dis_cam_weight=0.0,
    pose_gd_weight=0.0, superres=False, dataset_resolution=32, neural_rendering_resolution_initial=32,
    depth_resolution=12, depth_resolution_importance=12, alpha_rule='sample_delta', density_activation='softplus',
    depth_sampler='importance_nerf', density_noise_init=1.0, density_noise_fade_steps=5000, batch=8, gamma=1.0,
    d_reg_interval=1, glr=1e-3, dlr=1e-3, betas=(0.0, 0.9),
    blur_init_sigma=0.0, density_reg=0.0, pose_head_channels=256)


# ShadeGAN at CPU scale (SEEDS_SPEC §6.4 "Cheapest CPU test"): the pigan row on make_synthetic.py
# --family head --light mvn data, plus Lambertian shading under the data's own light law (the
# LightMVN defaults = the ModelConfig light_* defaults) drawn per image. Albedo head: no view
# direction (ShadeGAN's _noview, "slightly better shapes", §4.5) and no light input (a clean
# albedo/shading split, §4.6 q3; --albedo_light True --albedo_view True is the shipped _view head).
# Ramp: ShadeGAN CelebA's 5000 / 2000 of 150k steps scaled to this preset's 25k (kimg 200 at
# batch 8): 833 / 333. Ablation (§6.4): --light_source fixed (the law's mean strengths, frontal).
# Mapping at lr_G x 0.05: ShadeGAN CelebA's unique_lr as intended (--mapping_lr_legacy True: as it ran, §4.6 q2).
PRESETS['shadegan'] = dict(PRESETS['pigan'], shading='lambertian', light_source='mvn', albedo_view=False,
                           albedo_light=False, shading_start_steps=833.0, shading_ramp_steps=333.0,
                           mapping_lr_mul=0.05)

# GOF at CPU scale (SEEDS_SPEC §6.3 "Cheapest CPU test"): pigan's preset with the occupancy alpha (no
# density noise, §3.2 item 5) and the surface_window sampler, S_c / S_s / S_f = 9 / 9 / 6; the window
# and h scaled to the synthetic range (x 7.5, §6.0 "Scale"): Delta from 0.9 (half the range) to 0.225,
# reached at half the run (gamma = ln 4 / (total_steps / 2)), the whole range for the first 2 % of the
# steps (warm start, §6.3); lambda_n 0.05, h 0.075; lambda_0 0.05 growing x 10 over the run (the cap).
# The rates are computed from the preset's kimg and batch: a run with another --kimg keeps them.
# The mapping trains at lr_G x 0.05, GOF's unique_lr as intended (--mapping_lr_legacy True: as it ran, §3.5 q3).
_GOF_STEPS = PRESETS['pigan']['kimg'] * 1000 / PRESETS['pigan']['batch']
PRESETS['gof'] = dict(
    PRESETS['pigan'], alpha_rule='occupancy', depth_sampler='surface_window', density_noise_init=0.0,
    depth_resolution=9, depth_resolution_surface=9, depth_resolution_importance=6, secant_steps=4, surface_level=0.5,
    window_init=0.9, window_min=0.225, window_decay=math.log(4) / (_GOF_STEPS / 2),
    window_warmup_steps=0.02 * _GOF_STEPS, normal_weight=0.05, normal_h=0.075, opacity_weight=0.05,
    opacity_growth=math.log(10) / _GOF_STEPS, mapping_lr_mul=0.05)

# VolumeGAN at CPU scale (SEEDS_SPEC §6.5 "Cheapest CPU test"): the pigan row's camera, rays, box and
# tiny D; the prior pose at the ModelConfig defaults, VolumeGAN's own law (gaussian, h_std 0.3, v_std
# 0.155, §5.3; the synthetic heads' v_std 0.15 is within 0.005), so --pose_source learned / dataset need
# no reset. Output 32 px from a 16 px feature map M with 12 + 12 samples (importance_nerf, sample_delta
# relu, no density noise, §5.3); one modconv1x1 block 16 -> 32 (width min(cbase / 32, cmax) = 64);
# volume 4^3 -> 16^3 in 3 stages of widths 64, 32, 16; point MLP 2 x 64 (modconv on [v || PE(x)]);
# C_f 64. The target's StyleGAN2 mapping (8 layers, lr x 0.01, §6.5 "Keeps"); unconditional D;
# VolumeGAN's Adam (lr 0.002 both, betas (0, 0.99)) with lazy R1 every 16 (§5.4; gamma 1 as the
# synthetic row, VolumeGAN's 10 is for 256 px); no blur, no density regularizer (VolumeGAN has
# neither), no path-length term (left out at this scale).
# Ablations: --volume false ("FV off"); --image_head none --neural_rendering_resolution_initial 32 ("NR off").
PRESETS['volumegan'] = dict(
    {k: PRESETS['pigan'][k] for k in ('ray_start', 'ray_end', 'box_warp', 'white_back', 'avg_camera_radius',
                                      'avg_camera_pivot', 'h_mean', 'create_label_fov', 'cbase', 'cmax',
                                      'mbstd_group', 'd_num_fp16_res', 'sr_num_fp16_res', 'image_grid', 'tick', 'snap',
                                      'kimg', 'workers', 'metrics', 'flip_type', 'pose_source', 'dis_pose_cond',
                                      'dis_cam_weight', 'pose_gd_weight', 'pose_head_channels', 'alpha_rule',
                                      'depth_sampler', 'blur_init_sigma', 'density_reg', 'batch')},
    density_activation='relu',
    representation='feature_volume', volume=True, volume_channels=(64, 32, 16), template_init='ones',
    adain_scale='raw', point_mlp='modconv', point_mlp_hidden=64, point_mlp_layers=2, feature_channels=64,
    view_dependent=False, image_head='modconv1x1', z_dim=512, w_dim=512, map_depth=8, lr_multiplier=0.01,
    superres=False, dataset_resolution=32, neural_rendering_resolution_initial=16, depth_resolution=12,
    depth_resolution_importance=12, density_noise_init=0.0, gamma=1.0, d_reg_interval=16, glr=0.002, dlr=0.002,
    betas=(0.0, 0.99))
