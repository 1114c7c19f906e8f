"""train.py's option table: every training option with its type and help text, the option types
and callbacks it needs, and the click decorator that adds them to the command.

Separate from train.py (one concept per module): the table is data, read by --help and by make_config
(NOT_CONFIG); the command and its run logic stay in train.py.
"""

import json
import math

import click

from dnnlib.cli import FLOAT as F, NONNEG_FLOAT, POS_FLOAT, UNIT_FLOAT
from training import config as config_lib
from training.config import PRESETS


def _comma_list(ctx, param, value):
    if value is None:
        return None
    return () if value.strip().lower() == 'none' else tuple(x for x in value.split(',') if x)


class _GainPair(click.ParamType):
    """'G' or 'H,V' (positive floats) -> (h, v) pair."""
    name = 'G|H,V'

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            gains = tuple(float(x) for x in str(value).split(','))
        except ValueError:
            gains = ()
        if len(gains) == 1:
            gains = gains * 2
        if len(gains) != 2 or not all(math.isfinite(g) and g > 0 for g in gains):
            self.fail(f'{value!r}: expected one positive float or two separated by a comma', param, ctx)
        return gains


class _Widths(click.ParamType):
    """'64,32,16' (positive ints) -> (64, 32, 16)."""
    name = 'C,C,...'

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            widths = tuple(int(x) for x in str(value).split(','))
        except ValueError:
            widths = ()
        if not widths or min(widths) < 1:
            self.fail(f'{value!r}: expected positive integers separated by commas', param, ctx)
        return widths


class _Stages(click.ParamType):
    """'STEP:V1[:V2],...' (steps increasing from 0, values positive) -> ((step, v1, ...), ...);
    'none' -> (). A curriculum's stages: --lr_stages STEP:GLR:DLR, --res_stages STEP:R (R an integer)."""

    def __init__(self, name: str, what: str, integer: bool = False):
        self.name, self.what, self.integer = name, what, integer
        self.width = name.split(',')[0].count(':') + 1

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        if str(value).strip().lower() in ('', 'none'):
            return ()
        try:
            stages = tuple(tuple(float(x) for x in s.split(':')) for s in str(value).split(','))
        except ValueError:
            stages = ((),)
        steps = [s[0] for s in stages if len(s) == self.width]
        ok = all(len(s) == self.width and all(math.isfinite(x) for x in s) and s[0] >= 0 and min(s[1:]) > 0
                 and (not self.integer or all(x == int(x) for x in s[1:])) for s in stages)
        if not ok or steps != sorted(set(steps)):
            self.fail(f'{value!r}: expected {self.name.split(",")[0]} stages separated by commas, steps increasing '
                      f'from 0, {self.what}', param, ctx)
        return tuple((s[0], *map(int, s[1:])) for s in stages) if self.integer else stages


def _no_constant(item):
    """json.loads(parse_constant=...): NaN and Infinity are valid JSON for Python, not for a config."""
    def refuse(name):
        raise click.BadParameter(f'{item!r}: {name} is not a finite number', param_hint="'--override'")
    return refuse


def _overrides(ctx, param, values):
    """--override KEY=VALUE (hidden, for tests and experiments): VALUE is JSON, else a string."""
    out = {}
    for item in values:
        key, sep, text = item.partition('=')
        if not sep:
            raise click.BadParameter(f'expected KEY=VALUE, got {item!r}')
        try:
            out[key.strip()] = json.loads(text, parse_constant=_no_constant(item))
        except ValueError:
            out[key.strip()] = text
    return out


B, I = click.BOOL, click.INT
POS_INT = click.IntRange(min=1)

# (option declarations, type, help). Every option defaults to None = "the preset's value".
OPTIONS = [
    (('--outdir',), str, 'Where to make the run directory [required]'),
    (('--cfg',), click.Choice(sorted(PRESETS)), 'Preset (rendering constants and recipe values) [required]'),
    (('--data',), str, 'Training data: .zip or folder [required]'),
    (('--gpus',), POS_INT, 'Number of GPUs (processes; gloo CPU processes without CUDA) [default: 1]'),
    (('--batch',), POS_INT, 'Total batch size [preset]'),
    (('--batch-gpu',), POS_INT, 'Images per accumulation chunk per GPU [default: batch/gpus]'),
    (('--gamma',), NONNEG_FLOAT, 'R1 regularization weight [preset]'),
    (('--kimg',), POS_FLOAT, 'Training length in kimg [default: 25000]'),
    (('--tick',), POS_FLOAT, 'kimg between progress ticks [default: 4]'),
    (('--snap',), POS_INT, 'Ticks between snapshots (network, training state, images, metrics) [default: 50]'),
    (('--seed',), click.IntRange(min=0), 'Random seed [default: 0]'),
    (('--resume',), str, "'auto' (continue the matching run in outdir), a run dir, a training-state .pt, "
                         'or a network .pkl/URL (weights only)'),
    (('--desc',), str, 'Suffix of the run directory name'),
    (('--metrics',), str, "Metrics after each snapshot, comma-separated or 'none' [default: fid50k_full]"),
    (('--mirror',), B, 'Dataset x-flips [default: False]'),
    (('--skip-bad-images',), B, 'Log and skip images that fail to decode instead of stopping [default: False]'),
    (('--workers',), click.IntRange(min=0), 'DataLoader worker processes [default: 3]'),
    (('--cache_dir',), str, 'Cache directory for downloads (metrics networks)'),
    (('--pose_source',), click.Choice(config_lib.POSE_SOURCES),
     "G's camera: learned (PoF3D), dataset (EG3D labels), prior, prior_residual [default: learned]"),
    (('--prior_distribution',), click.Choice(config_lib.PRIOR_DISTRIBUTIONS),
     'Law of the prior pose sources (prior, prior_residual) [default: gaussian]'),
    (('--prior_parametrization',), click.Choice(config_lib.PRIOR_PARAMETRIZATIONS),
     "The prior's second coordinate: v (uniform-on-sphere parameter) or polar (phi, as pi-GAN) [default: v]"),
    (('--prior_h_std',), NONNEG_FLOAT, 'Prior std (half range if uniform) of h around h_mean [default: 0.3]'),
    (('--prior_v_mean',), F, 'Prior mean of v (of phi with --prior_parametrization polar) [default: pi/2]'),
    (('--prior_v_std',), NONNEG_FLOAT, 'Prior std (half range if uniform) of v or phi [default: 0.155]'),
    (('--representation',), click.Choice(config_lib.REPRESENTATIONS),
     "G's 3-D representation: triplane (EG3D/PoF3D), film_siren (pi-GAN's FiLM-SIREN), feature_volume "
     "(VolumeGAN) [default: triplane]"),
    (('--volume',), B, 'feature_volume: the 3-D feature volume (False: the MLP reads PE(x) only) [default: True]'),
    (('--volume_channels',), _Widths(), 'feature_volume: stage widths, 4^3 -> 4*2^(stages-1) cubed '
                                        '[default: 256,128,64,32]'),
    (('--template_init',), click.Choice(['ones', 'randn']),
     "feature_volume: the volume template's init, ones (VolumeGAN's code) or randn (its slides) [default: ones]"),
    (('--adain_scale',), click.Choice(['raw', 'one_plus']),
     'feature_volume: AdaIN x*scale+shift (raw, the code) or x*(1+scale)+shift [default: raw]'),
    (('--point_mlp',), click.Choice(['modconv', 'film_siren']),
     'feature_volume: point MLP, modconv on PE(x) (the code) or FiLM-SIREN (the slides) [default: modconv]'),
    (('--point_mlp_hidden',), POS_INT, 'feature_volume: point MLP width [default: 256]'),
    (('--point_mlp_layers',), POS_INT, 'feature_volume: point MLP layers [default: 4]'),
    (('--feature_channels',), POS_INT, 'feature_volume: rendered feature channels C_f (3 with --image_head none) '
                                       '[default: 512]'),
    (('--view_dependent',), B, 'feature_volume: the feature head sees the view direction [default: False]'),
    (('--image_head',), click.Choice(['modconv1x1', 'none']),
     'feature_volume: image head, modconv1x1 (1x1 neural renderer) or none (render the image) '
     '[default: modconv1x1]'),
    (('--siren_hidden',), POS_INT, 'film_siren: FiLM-SIREN width [default: 256]'),
    (('--siren_layers',), POS_INT, 'film_siren: FiLM-sine layers of the trunk [default: 8]'),
    (('--shading',), click.Choice(config_lib.SHADINGS),
     'Shading after compositing: none, lambertian (ShadeGAN; --representation film_siren, or triplane with '
     '--superres False) [default: none]'),
    (('--light_source',), click.Choice(config_lib.LIGHT_SOURCES),
     'lambertian: light per image, mvn (the --light_* law) or fixed (frontal, the ablation) [default: mvn]'),
    *[((f'--light_{key}',), NONNEG_FLOAT if key.endswith('std') else F,
       f"lambertian: light law's {key.replace('_', ' ')} (as make_synthetic.py --light mvn:{key}=...) "
       f'[default: {getattr(config_lib.ModelConfig, "light_" + key)}]') for key in config_lib.LIGHT_LAW_KEYS],
    (('--albedo_view',), B, 'film_siren colour/albedo head sees the view direction [default: True]'),
    (('--albedo_light',), B, 'lambertian: the albedo head sees the light (ShadeGAN configs) [default: False]'),
    (('--shading_start_steps',), NONNEG_FLOAT, 'lambertian: steps before the shading ramp starts [default: 5000]'),
    (('--shading_ramp_steps',), NONNEG_FLOAT, 'lambertian: steps of the ramp to full shading [default: 2000]'),
    (('--plane_axes',), click.Choice(['correct', 'legacy']),
     "Tri-plane axes; 'legacy' = EG3D/PoF3D's bi-plane quirk, used by the paper recipes [default: correct]"),
    (('--render_impl',), click.Choice(['auto', 'torch', 'triton']),
     "Renderer: 'auto' (fused Triton kernel for CUDA float32 tensors, else PyTorch), 'torch', 'triton' "
     "[default: auto]"),
    (('--alpha_rule',), click.Choice(['eg3d', 'sample_delta', 'occupancy']),
     "Alpha rule: eg3d (interval midpoints), sample_delta (pi-GAN), occupancy (GOF) [default: eg3d]"),
    (('--density_activation',), click.Choice(['relu', 'softplus']), 'sample_delta: act(sigma) [default: relu]'),
    (('--last_back',), B, 'Per-sample alpha rules: the last sample takes 1 - sum w [default: False]'),
    (('--depth_sampler',), click.Choice(['eg3d', 'importance_nerf', 'surface_window']),
     'Depth sampler: eg3d, importance_nerf (pi-GAN), surface_window (GOF); with --alpha_rule eg3d only eg3d '
     '[default: eg3d]'),
    (('--depth_resolution_surface',), click.IntRange(min=2), 'surface_window: samples in the window [default: 9]'),
    (('--secant_steps',), click.IntRange(min=0), 'surface_window: secant steps [default: 4]'),
    (('--surface_level',), UNIT_FLOAT, 'surface_window: occupancy level of the surface, in (0, 1) [default: 0.5]'),
    (('--window_init',), POS_FLOAT, 'surface_window: half-width at step 0 (world units) [default: 0.12]'),
    (('--window_min',), POS_FLOAT, 'surface_window: smallest half-width, used at evaluation [default: 0.03]'),
    (('--window_decay',), NONNEG_FLOAT, 'surface_window: half-width decay per step [default: 1e-5]'),
    (('--window_warmup_steps',), NONNEG_FLOAT,
     'surface_window: steps at the start with the window over the whole ray range (warm start) [default: 0]'),
    (('--normal_weight',), NONNEG_FLOAT, "GOF normal consistency weight; needs --depth_sampler surface_window "
                                         "[default: 0]"),
    (('--normal_h',), POS_FLOAT, 'Perturbation length (world units) of the normal consistency [default: 0.075]'),
    (('--opacity_weight',), NONNEG_FLOAT, 'GOF opacity prior weight at step 0; needs a per-sample --alpha_rule '
                                          '[default: 0]'),
    (('--opacity_growth',), NONNEG_FLOAT, 'Opacity prior growth per step: min(10 w, w exp(growth step)) [default: 0]'),
    (('--pos_weight',), NONNEG_FLOAT, "pi-GAN position loss: D's pose head regresses the prior draw (D and G "
                                      'steps); needs --pose_source prior [default: 0]'),
    (('--topk_interval',), NONNEG_FLOAT, "pi-GAN top-k: G's loss on the max(0.99^(step/interval), floor) most-real "
     'share of each fake chunk; 0 = every fake [default: 0]'),
    (('--topk_floor',), UNIT_FLOAT, 'The floor of --topk_interval\'s share [default: 0.6]'),
    (('--lr_stages',), _Stages('STEP:GLR:DLR,...', 'positive lrs'), "A curriculum's learning rates: from each "
     'STEP (= images / batch) on, G and D train at GLR and DLR (pi-GAN family stages) [default: none]'),
    (('--res_stages',), _Stages('STEP:R,...', 'positive integer resolutions', integer=True),
     "A curriculum's render resolutions: from each STEP on, G renders at R (without super-resolution its image "
     'is that render resized to the data\'s; D sees reals alike) [default: none]'),
    (('--grad_clip',), NONNEG_FLOAT, 'Clip the gradient norm of G and of D at every step (pi-GAN family); 0 = off '
     '[default: 0]'),
    (('--opacity_legacy_red',), B, "Opacity prior on the red channel, as GOF's code (reproduction only) "
                                   '[default: False]'),
    (('--mapping_lr_mul',), POS_FLOAT, "film_siren: lr multiplier of pi-GAN's mapping network (GOF/ShadeGAN's "
                                       'unique_lr: 0.05) [default: 1]'),
    (('--mapping_lr_legacy',), B, "Ignore --mapping_lr_mul as GOF/ShadeGAN's official code does under DDP (the "
                                  'broken lr split; reproduction only) [default: False]'),
    (('--density_noise_init',), NONNEG_FLOAT, 'Std of the noise on raw density at step 0 [default: 0]'),
    (('--density_noise_fade_steps',), NONNEG_FLOAT, 'Steps over which that noise falls to 0 [default: 5000]'),
    (('--blur_mode',), click.Choice(['single', 'reference']),
     "D input blur: 'single' (one D pass) or 'reference' (the reference's double blur) [default: single]"),
    (('--dataset_resolution',), POS_INT, 'Training resolution; images are resized on load [preset]'),
    (('--create_label_fov',), POS_FLOAT, 'FOV (degrees) for synthesized intrinsics labels; crops images square'),
    (('--create_label_grid',), click.Choice(['eg3d', 'corner']),
     "--create_label_fov's focal: eg3d (EG3D's formula) or corner (pi-GAN's corner-aligned ray grid at "
     '--dataset_resolution, SEEDS_SPEC §6.0) [default: eg3d]'),
    (('--pad_long',), B, 'With --create_label_fov: pad to the long side (white) instead of cropping'),
    (('--neural_rendering_resolution_initial',), POS_INT, 'Neural rendering resolution at the start [preset]'),
    (('--neural_rendering_resolution_final',), POS_INT, 'Neural rendering resolution after the fade [default: none]'),
    (('--neural_rendering_resolution_fade_kimg',), NONNEG_FLOAT, 'kimg of the fade [default: 1000]'),
    (('--superres',), B, 'Super-resolution module [preset]'),
    (('--dual_discrimination',), B, 'D sees image and raw image (True is the only implemented D) [default: True]'),
    (('--flip_to_dis',), B, 'G loss on the mirrored render [default: True]'),
    (('--flip_to_disd',), B, 'D loss on the mirrored render [default: True]'),
    (('--flip_to_disd_weight',), NONNEG_FLOAT, 'Weight of both D fake terms with --flip_to_disd'),
    (('--flip_type',), click.Choice(['flip_both', 'flip_both_shapenet']), 'Mirror pair [preset]'),
    (('--lr_multiplier',), POS_FLOAT, 'Learning-rate multiplier of the mapping network layers [default: 0.01]'),
    (('--lr_multiplier_pose',), POS_FLOAT, 'Learning-rate multiplier of the pose learner [default: 0.01]'),
    (('--pose_init_gain',), _GainPair(), "Pose learner's initial last-layer scale: G or H,V (1: reference) [preset]"),
    (('--pose_input',), click.Choice(['w', 'noise']),
     "What the pose learner reads: w (PoF3D) or latent dims of its own, so that the camera is drawn independently "
     'of the object (extension) [default: w]'),
    (('--gen_pose_cond',), B, 'EG3D generator pose conditioning (pose_source dataset only) [default: False]'),
    (('--dis_pose_cond',), B, 'Condition D on its predicted pose (learned) or labels [default: True]'),
    (('--dis_cam_weight',), NONNEG_FLOAT, 'D pose-head loss weight; > 0 iff --dis_pose_cond [preset]'),
    (('--pose_gd_weight',), NONNEG_FLOAT, "Weight pulling G's pose toward D's estimate [preset]"),
    (('--pose_gd_start_kimg',), NONNEG_FLOAT, 'kimg before that pull starts (extension) [default: 0]'),
    (('--pose_gd_debias',), B, "That pull's target corrected by D's head fit on fakes (extension) [default: False]"),
    (('--pose_gd_min_slope',), NONNEG_FLOAT, "L3 pulls a component of G's camera only once D's pose head fits "
     'it on fakes with this slope; 0 = always, the paper (extension) [default: 0]'),
    (('--share_render',), B, 'L1/L3 and L4/L5 share one render and D pass (one noise draw; False: one per term '
                             'as the reference) [default: True]'),
    (('--sym_weight',), NONNEG_FLOAT, 'Mirror-symmetry consistency weight (extension) [default: 0]'),
    (('--symmetry',), click.Choice(['none', 'planes', 'density']),
     "Canonical mirror symmetry of G's field: planes (exact), density (soft loss) [default: none]"),
    (('--symmetry_weight',), NONNEG_FLOAT, 'Weight of --symmetry density [default: 1]'),
    (('--pose_dist_weight',), NONNEG_FLOAT,
     "Pose-distribution term: G's cameras vs D's de-biased estimates on reals (extension) [default: 0]"),
    (('--pose_dist_start_kimg',), NONNEG_FLOAT, 'kimg before the pose-distribution terms [default: 0]'),
    (('--pose_cond_grad',), B, "G's adversarial gradient also flows through D's pose label, so G's cameras see "
     'which poses D finds real (extension; needs --dis_pose_cond) [default: False]'),
    (('--pose_img_dist_weight',), NONNEG_FLOAT,
     "Image-level pose-distribution term: D's pose estimates on G's images vs on reals, through the "
     'render (extension) [default: 0]'),
    (('--pose_view_weight',), NONNEG_FLOAT,
     "G's render must show its camera: D's pose estimate of it regressed to the camera, through the render "
     '(InfoGAN-style, extension) [default: 0]'),
    (('--pose_dist_min_slope',), NONNEG_FLOAT,
     "D pose head's slope on fakes before its estimates are used [default: 0.5]"),
    (('--pose_explore_weight',), NONNEG_FLOAT, "D's pose head also on yaws h_mean +- R (extension) [default: 0]"),
    (('--pose_explore_range',), NONNEG_FLOAT, 'R of --pose_explore_weight, radians [default: pi/2]'),
    (('--pose_hold_kimg',), NONNEG_FLOAT, "No term moves G's camera for this many kimg: D's pose head learns on "
     'its initial, broad law first (extension) [default: 0]'),
    (('--pose_freeze_kimg',), NONNEG_FLOAT, "From this many kimg on no term moves G's camera: the camera law "
     'learned so far is kept while the field trains on (extension; 0: never) [default: 0]'),
    (('--pose_freeze_slope',), NONNEG_FLOAT, "Freeze G's camera law (as --pose_freeze_kimg) once D's pose head, "
     "fit on G's renders, reads their yaw at this slope: no labels (extension; 0: never) [default: 0]"),
    (('--clamp_h_min',), F, 'Lower clamp of the learned h (needs --clamp_h_max)'),
    (('--clamp_h_max',), F, 'Upper clamp of the learned h (needs --clamp_h_min)'),
    (('--clamp_v_min',), F, 'Lower clamp of the learned v (needs --clamp_v_max)'),
    (('--clamp_v_max',), F, 'Upper clamp of the learned v (needs --clamp_v_min)'),
    (('--safe_pose_clamp',), B, 'Clamp v to [1e-5, pi-1e-5] before the camera is built [default: True]'),
    (('--density_reg',), NONNEG_FLOAT, 'Density regularization weight [default: 0.25]'),
    (('--density_reg_every',), POS_INT, 'Density regularization interval [default: 4]'),
    (('--density_reg_p_dist',), NONNEG_FLOAT, 'Density regularization perturbation [default: 0.004]'),
    (('--glr',), POS_FLOAT, 'G learning rate [default: 0.0025]'),
    (('--dlr',), POS_FLOAT, 'D learning rate [default: 0.002]'),
    (('--blur_fade_kimg',), NONNEG_FLOAT, 'Blur fade at batch 32 (scaled by batch/32) [default: 200]'),
    (('--cbase',), POS_INT, 'Channel base [default: 32768]'),
    (('--cmax',), POS_INT, 'Max. channels [default: 512]'),
    (('--map-depth',), POS_INT, 'Mapping network depth [default: 2]'),
    (('--mbstd-group',), POS_INT, 'D minibatch-std group size [default: 4]'),
    (('--freezed',), click.IntRange(min=0), 'Freeze the first k D layers [default: 0]'),
    (('--aug',), click.Choice(['noaug', 'ada', 'fixed']), 'Augmentation (only noaug is implemented)'),
    (('--g_num_fp16_res',), click.IntRange(min=0), 'G resolutions in fp16 [default: 0]'),
    (('--d_num_fp16_res',), click.IntRange(min=0), 'D resolutions in fp16 [default: 4]'),
    (('--sr_num_fp16_res',), click.IntRange(min=0), 'Super-resolution in fp16 when > 0 [default: 4]'),
    (('--disc_c_noise',), NONNEG_FLOAT, "Noise on D's conditioning label [default: 0]"),
    (('--sr_noise_mode',), click.Choice(['random', 'none']), 'Super-resolution noise [default: none]'),
    (('--detach_pose',), B, 'Detach the mirrored camera in the G flip term [default: False]'),
    (('--dis_linear_pose',), B, "Linear D pose head [default: False]"),
    (('--pose_head_channels',), POS_INT, "Hidden width of D's pose head [preset]"),
    (('--gpc_reg_prob',), UNIT_FLOAT, 'EG3D pose-conditioning swap probability [default: 0]'),
    (('--gpc_reg_fade_kimg',), NONNEG_FLOAT, 'Fade of the swap probability [default: 1000]'),
    (('--decoder_lr_mul',), POS_FLOAT, 'OSG decoder lr multiplier [default: 1]'),
    (('--ray_start',), POS_FLOAT, 'Ray near bound [preset]'),
    (('--ray_end',), POS_FLOAT, 'Ray far bound [preset]'),
    (('--avg_camera_radius',), POS_FLOAT, 'Camera radius [preset]'),
    (('--box_warp',), POS_FLOAT, 'Side of the tri-plane cube [preset]'),
    (('--white_back',), B, 'Composite renders on white (data with white backgrounds) [preset]'),
    (('--resume_blur',), B, 'Keep the D blur when starting from a network pickle [default: False]'),
    (('--nobench',), B, 'Disable cudnn.benchmark [default: False]'),
]
NOT_CONFIG = ('outdir', 'resume', 'dry_run', 'trust_pickle', 'verbose', 'override', 'cache_dir', 'clamp_h_min',
              'clamp_h_max', 'clamp_v_min', 'clamp_v_max')


def _preset_note(option: str) -> str:
    """'; --cfg synthetic 200' for the presets that set this option's field (shown in --help,
    so that EG3D's default is not read as the value a preset will use)."""
    field = option.lstrip('-').replace('-', '_')
    values = [f'{name} {PRESETS[name][field]}' for name in sorted(PRESETS) if field in PRESETS[name]]
    return f'; --cfg {", ".join(values)}' if values else ''


def _add_options(fn):
    for decls, kind, text in reversed(OPTIONS):
        note = _preset_note(decls[0])
        if note and text.endswith(']'):
            text = text[:-1] + note + ']'
        elif note:
            text += f' [{note[2:]}]'
        kwargs = dict(callback=_comma_list) if decls[0] == '--metrics' else {}
        if decls[0] in ('--outdir', '--cfg', '--data'):
            kwargs.update(required=True)
        else:
            kwargs.update(default=None)   # None = not given: the preset's value
        if decls[0] == '--skip-bad-images':
            kwargs.update(is_flag=False, flag_value=True)    # the bare flag, or a value
        fn = click.option(*decls, type=kind, help=text.replace(' [required]', ''), **kwargs)(fn)
    fn = click.option('--override', multiple=True, hidden=True, callback=_overrides)(fn)
    fn = click.option('--verbose', is_flag=True, help='Print all resolved options at the start of training')(fn)
    fn = click.option('--trust-pickle', is_flag=True, help='Read --resume files and a pickled detector with plain '
                      'pickle: code in them RUNS (trusted files only)')(fn)
    return click.option('-n', '--dry-run', is_flag=True, help='Print the options and parameter counts, then exit')(fn)


def _pair(opts, name):
    lo, hi = opts[f'{name}_min'], opts[f'{name}_max']
    if (lo is None) != (hi is None):
        raise click.UsageError(f'--{name}_min and --{name}_max must be given together')
    return None if lo is None else (lo, hi)
