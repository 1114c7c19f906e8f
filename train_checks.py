"""train.py's usage checks: invalid option combinations, an unreadable dataset and unknown metrics
-> one-line click usage errors, before anything is written.

Separate from train.py (one concept per module): the checks only read a built config; train.py
builds it and runs training.
"""

import os

import click

import dnnlib
from training import config as config_lib
from training.rendering.options import RenderingOptions
from training.representations import SHADED_REPRESENTATIONS
from training.superresolution import SR_BY_RESOLUTION


def check_config(c) -> None:
    """Invalid combinations -> one-line usage errors."""
    # in this order: with several invalid options, the first check that fails names the error
    _check_data(c)
    check_representation(c)
    check_shading(c)
    _check_networks(c)
    _check_pose_source(c)
    try:   # the alpha rule / depth sampler combination and values (training/rendering/options.py)
        RenderingOptions.from_kwargs(c.rendering_kwargs())
    except ValueError as err:
        raise click.UsageError(f'rendering options: {err}') from None
    check_geometry(c)
    _check_pose_terms(c)


def _check_data(c) -> None:
    """The data path, the batch split and the resolution."""
    m, res = c.model, c.data.dataset_resolution
    if not os.path.exists(c.data.data):
        raise click.UsageError(f'--data {c.data.data}: no such file or directory')
    if c.batch % c.gpus != 0 or c.batch_per_gpu % c.chunk != 0:
        raise click.UsageError(f'--batch {c.batch} must be a multiple of --gpus {c.gpus} times --batch-gpu {c.chunk}')
    if c.chunk < m.mbstd_group or c.chunk % m.mbstd_group != 0:
        raise click.UsageError(f'--batch-gpu {c.chunk} must be a multiple of the D minibatch-std group '
                               f'({m.mbstd_group}); change --batch-gpu or --mbstd-group')
    if res < 8 or res & (res - 1):
        raise click.UsageError(f'--dataset_resolution {res} must be a power of two >= 8')
    if c.data.create_label_grid != 'eg3d' and c.data.create_label_fov is None:
        raise click.UsageError(f'--create_label_grid {c.data.create_label_grid} needs --create_label_fov')


def _check_networks(c) -> None:
    """D's pose conditioning, the super-resolution module and the parts that are not implemented."""
    m, r, res = c.model, c.rendering, c.data.dataset_resolution
    if m.pose_source == 'learned' and m.dis_pose_cond != (c.loss.dis_cam_weight > 0):
        raise click.UsageError('--dis_pose_cond True needs --dis_cam_weight > 0, and --dis_cam_weight > 0 needs '
                               '--dis_pose_cond True (SPEC §12.11)')
    if m.superres and res not in config_lib.SR_BY_RESOLUTION:
        raise click.UsageError(f'--superres True needs --dataset_resolution in {sorted(config_lib.SR_BY_RESOLUTION)}; '
                               f'got {res} (use --superres False)')
    finals = {r.neural_rendering_resolution_initial, r.neural_rendering_resolution_final or res}
    no_sr = not m.superres and c.rendering_kwargs()['superresolution_module'] is None
    if no_sr and finals != {res}:
        raise click.UsageError(f'--superres False renders at the image size: the neural rendering resolution must '
                               f'be --dataset_resolution ({res})')
    if r.res_stages and (not no_sr or m.representation == 'feature_volume'):
        raise click.UsageError('--res_stages needs a generator that renders its image directly (--superres False, '
                               'no feature_volume); with super-resolution use --neural_rendering_resolution_final')
    if any(not 4 <= R <= res for _, R in r.res_stages):
        raise click.UsageError(f'--res_stages: every R must be in [4, --dataset_resolution ({res})]')
    if c.aug != 'noaug':
        raise click.UsageError(f'--aug {c.aug} is not implemented (no shipped recipe uses augmentation)')
    if not m.dual_discrimination:
        raise click.UsageError('--dual_discrimination False is not implemented (the dual discriminator is the only D)')


def _check_pose_source(c) -> None:
    """Loss and prior options that need a given --pose_source."""
    m = c.model
    if c.loss.blur_mode != 'single' and m.pose_source != 'learned':
        raise click.UsageError('--blur_mode reference needs --pose_source learned')
    if c.loss.sym_weight > 0 and m.pose_source != 'learned':
        raise click.UsageError('--sym_weight > 0 needs --pose_source learned')
    if m.pose_source != 'learned' and not c.loss.share_render:
        raise click.UsageError('--share_render False changes the PoF3D loss, which needs --pose_source learned')
    if m.pose_source != 'learned' and (c.loss.pose_gd_debias or c.loss.pose_gd_start_kimg > 0
                                       or c.loss.pose_gd_min_slope > 0):
        raise click.UsageError('--pose_gd_debias, --pose_gd_start_kimg and --pose_gd_min_slope change L3, which needs '
                               '--pose_source learned')
    prior_fields = ('prior_distribution', 'prior_parametrization', 'prior_h_std', 'prior_v_mean', 'prior_v_std')
    preset = config_lib.PRESETS[c.cfg]   # the preset's own prior (pigan, gof, ...) is no user choice
    changed = [f for f in prior_fields if getattr(m, f) != preset.get(f, getattr(config_lib.ModelConfig, f))]
    if changed and m.pose_source not in ('prior', 'prior_residual'):
        raise click.UsageError(f'--{changed[0]} needs --pose_source prior or prior_residual')


def _check_pose_terms(c) -> None:
    """The pose loss terms that need a given --pose_source or a trained D pose head."""
    m = c.model
    if c.loss.pos_weight > 0 and m.pose_source != 'prior':
        raise click.UsageError('--pos_weight > 0 regresses the prior draw of each fake: it needs --pose_source prior')
    head_trained = c.loss.dis_cam_weight + c.loss.pose_gd_weight > 0
    for name in ('pose_dist_weight', 'pose_img_dist_weight', 'pose_view_weight'):
        if getattr(c.loss, name) > 0 and not (m.pose_source == 'learned' and head_trained):
            raise click.UsageError(f'--{name} > 0 needs --pose_source learned and a trained D pose head '
                                   '(--dis_cam_weight or --pose_gd_weight > 0)')
    if c.loss.pose_cond_grad and not (m.pose_source == 'learned' and m.dis_pose_cond):
        raise click.UsageError('--pose_cond_grad needs --pose_source learned and --dis_pose_cond True (the gradient '
                               "flows through D's self-conditioning pose label)")
    if m.pose_input != 'w' and m.pose_source != 'learned':
        raise click.UsageError(f'--pose_input {m.pose_input} needs --pose_source learned (what its pose learner reads)')
    if c.loss.pose_hold_kimg > 0 and m.pose_source != 'learned':
        raise click.UsageError('--pose_hold_kimg > 0 needs --pose_source learned (it holds the learned camera law)')
    if c.loss.pose_freeze_kimg > 0 and m.pose_source != 'learned':
        raise click.UsageError('--pose_freeze_kimg > 0 needs --pose_source learned (it freezes the learned camera law)')
    if c.loss.pose_freeze_slope > 0 and not (m.pose_source == 'learned' and head_trained):
        raise click.UsageError('--pose_freeze_slope > 0 needs --pose_source learned and a trained D pose head '
                               "(--dis_cam_weight or --pose_gd_weight > 0): it reads the head's fit on G's renders")
    if 0 < c.loss.pose_freeze_kimg <= c.loss.pose_hold_kimg:
        raise click.UsageError(f'--pose_freeze_kimg ({c.loss.pose_freeze_kimg:g}) must be past --pose_hold_kimg '
                               f'({c.loss.pose_hold_kimg:g}): the camera law would never move')
    if c.loss.pose_explore_weight > 0 and not (m.pose_source == 'learned' and head_trained):
        raise click.UsageError('--pose_explore_weight > 0 needs --pose_source learned and a trained D pose head')


def check_geometry(c) -> None:
    """GOF's regularizers need what the renderer gives them (training/losses/occupancy.py)."""
    from training.losses.occupancy import GeometryRegularizers
    ls = c.loss
    try:
        GeometryRegularizers(ls.normal_weight, ls.normal_h, ls.opacity_weight, ls.opacity_growth, c.batch,
                             ls.opacity_legacy_red).check(RenderingOptions.from_kwargs(c.rendering_kwargs()))
    except ValueError as err:
        raise click.UsageError(str(err)) from None


def check_representation(c) -> None:
    """Options that need the tri-plane representation, or another one -> one-line usage errors."""
    m = c.model
    if m.representation != 'film_siren' and (m.mapping_lr_mul != 1 or m.mapping_lr_legacy):
        raise click.UsageError('--mapping_lr_mul / --mapping_lr_legacy need --representation film_siren (the '
                               'tri-plane mapping has --lr_multiplier)')
    check_feature_volume(c)
    if m.representation != 'film_siren':
        return
    for bad, text in ((m.superres, '--superres True (film_siren renders the image directly, SEEDS_SPEC §6.2)'),
                      (m.symmetry == 'planes', "--symmetry planes (it mirrors tri-planes; use 'none' or 'density')"),
                      (m.gen_pose_cond, '--gen_pose_cond True (the FiLM mapping is not label-conditioned)'),
                      (m.g_num_fp16_res > 0, '--g_num_fp16_res > 0 (no StyleGAN2 synthesis layers)')):
        if bad:
            raise click.UsageError(f'--representation film_siren does not go with {text}')


VOLUME_FIELDS = ('volume', 'volume_channels', 'template_init', 'adain_scale', 'point_mlp', 'point_mlp_hidden',
                 'point_mlp_layers', 'feature_channels', 'view_dependent', 'image_head')


def check_feature_volume(c) -> None:
    """feature_volume's options without it, and what it does not go with -> usage errors (SEEDS_SPEC §6.5)."""
    m, r, res = c.model, c.rendering, c.data.dataset_resolution
    if m.representation != 'feature_volume':
        changed = [f for f in VOLUME_FIELDS if getattr(m, f) != getattr(config_lib.ModelConfig, f)]
        if changed:
            raise click.UsageError(f'--{changed[0]} needs --representation feature_volume')
        return
    for bad, text in ((m.superres, '--superres True (its image head is --image_head, SEEDS_SPEC §6.5)'),
                      (m.symmetry == 'planes', "--symmetry planes (it mirrors tri-planes; use 'none' or 'density')"),
                      (m.g_num_fp16_res > 0, '--g_num_fp16_res > 0 (no StyleGAN2 synthesis layers)'),
                      (m.sr_num_fp16_res > 0, '--sr_num_fp16_res > 0 (the image head runs in float32)')):
        if bad:
            raise click.UsageError(f'--representation feature_volume does not go with {text}')
    R = r.neural_rendering_resolution_initial
    if m.image_head == 'none' and {R, r.neural_rendering_resolution_final or res} != {res}:
        raise click.UsageError(f'--image_head none renders the image directly: --neural_rendering_resolution_initial '
                               f'({R}) must be --dataset_resolution ({res}), without a fade')
    if m.image_head != 'none' and (r.neural_rendering_resolution_final not in (None, R) or R >= res
                                   or res % R or (res // R) & (res // R - 1)):
        raise click.UsageError(f'--image_head {m.image_head} upsamples a fixed render by powers of two: '
                               f'--neural_rendering_resolution_initial ({R}) must be --dataset_resolution ({res}) / '
                               f'2^k, k >= 1, without a fade (for --image_head none it is {res})')
    if m.image_head != 'none' and m.feature_channels < 3:
        raise click.UsageError('--image_head modconv1x1 reads its base RGB from feature channels 0-2: '
                               '--feature_channels must be >= 3')


def check_shading(c) -> None:
    """Shading options without the shading stage, or shading without its representation -> usage errors."""
    m = c.model
    if m.shading != 'none' and m.representation not in SHADED_REPRESENTATIONS:
        raise click.UsageError(f'--shading {m.shading} needs --representation film_siren or triplane (an albedo '
                               f'colour and a twice-differentiable field), got {m.representation}')
    if m.shading != 'none' and m.representation == 'triplane' and m.superres and \
            c.data.dataset_resolution in SR_BY_RESOLUTION:
        raise click.UsageError(f'--shading {m.shading} shades the rendered image itself: the tri-plane at '
                               f'{c.data.dataset_resolution} px has a super-resolution module; add --superres False')
    if m.albedo_light and m.representation != 'film_siren':
        raise click.UsageError('--albedo_light True needs --representation film_siren (the tri-plane decoder '
                               'has no light input)')
    shading_fields = ['light_source', 'albedo_light', 'shading_start_steps', 'shading_ramp_steps'] + \
        [f'light_{key}' for key in config_lib.LIGHT_LAW_KEYS]
    changed = [f for f in shading_fields if getattr(m, f) != getattr(config_lib.ModelConfig, f)]
    if changed and m.shading == 'none':
        raise click.UsageError(f'--{changed[0]} needs --shading lambertian')
    if not m.albedo_view and m.representation == 'feature_volume':   # (the tri-plane's colour never sees the view)
        raise click.UsageError('--albedo_view False needs --representation film_siren (feature_volume: '
                               '--view_dependent)')
    law = [f'light_{key}' for key in config_lib.LIGHT_LAW_KEYS if key not in ('a_mean', 'd_mean')]
    moved = [f for f in law if getattr(m, f) != getattr(config_lib.ModelConfig, f)]
    if m.light_source == 'fixed' and moved:
        raise click.UsageError(f'--{moved[0]}: --light_source fixed is frontal (it reads --light_a_mean and '
                               f'--light_d_mean only; a constant other light is --light_source mvn with stds 0)')


def check_dataset(c) -> None:
    """Open the dataset as training will (labels are required: G reads intrinsics from them)."""
    try:
        dataset = dnnlib.util.construct_class_by_name(**c.training_set_kwargs())
    except (IOError, OSError, ValueError) as err:
        raise click.UsageError(f'--data: {" ".join(str(err).split())}') from None
    if dataset.label_dim != 25:
        raise click.UsageError(f'--data {c.data.data} has no camera labels (dataset.json); pass --create_label_fov '
                               f'DEGREES to synthesize intrinsics')
    if c.model.pose_source == 'dataset' and not dataset.get_label(0)[:16].any():
        raise click.UsageError('--pose_source dataset needs camera poses in dataset.json; this dataset has none')
    from training.dataset_check import check_images
    bad = check_images(dataset)   # every header: a bad image stops us here, not ticks later
    if bad and c.data.skip_bad_images:
        print(f'warning: {len(bad)} bad images will be skipped, e.g. {bad[0]}')
    elif bad:
        more = f' (and {len(bad) - 1} more; `python dataset_tool.py --check ZIP` lists them)' if len(bad) > 1 else ''
        raise click.UsageError(f'--data: {bad[0]}{more}')


def check_metrics(c, trust_pickle: bool) -> None:
    from training.training_loop import load_metric_main
    metric_main = load_metric_main()
    if metric_main is None or not c.metrics:
        return      # the training loop skips metrics with a note
    bad = [m for m in c.metrics if not metric_main.is_valid_metric(m)]
    if bad:
        raise click.UsageError(f'--metrics: unknown {bad}; choose from {metric_main.list_valid_metrics()}')
    from metrics import metric_utils
    detector = metric_utils.resolve_detector_url(None)
    if not trust_pickle and metric_utils.detector_needs_trust(detector):
        raise click.UsageError(f'${metric_utils.DETECTOR_ENV} {detector}: a pickle, not a TorchScript archive; '
                               f'pass --trust-pickle only if you trust it')
