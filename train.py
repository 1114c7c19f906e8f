"""Train a PoF3D (or EG3D-style) tri-plane GAN. A thin command-line layer over training/config.py.

Examples:

    # PoF3D on FFHQ as in the paper (the shipped recipe: bash ffhq.sh)
    python train.py --outdir runs --cfg ffhq --data FFHQ_512.zip --gpus 8 --batch 32 --gamma 1 \\
        --dis_cam_weight 2 --pose_gd_weight 1 --plane_axes legacy --resume auto

    # small CPU run on make_synthetic.py data (one thread per process is much faster on a busy box)
    OMP_NUM_THREADS=1 python train.py --outdir runs --cfg synthetic --data data/car32_unlabeled.zip --kimg 20

    # ShadeGAN at CPU scale on lit heads (make_synthetic.py --family head --resolution 32 --light mvn
    # --pose gaussian:h_std=0.3,v_std=0.15); add --light_source fixed for the wrong-fixed-light ablation
    OMP_NUM_THREADS=1 python train.py --outdir runs --cfg shadegan --data data/head32_unlabeled.zip

Options left unset take the value of the --cfg preset (training/config.py: PRESETS), else the
EG3D/PoF3D default. Resume is "run the same command again" with `--resume auto`: it continues
the newest run directory of the same description and options from its latest training state
(see training/checkpoint.py). `--resume PATH.pkl` starts a new run from a network pickle.
`--kimg` and `--tick` may be fractions (smoke tests); snapshot names then carry the images past
the kimg (`network-snapshot-000000.016.pkl`). Hidden `--override FIELD=JSON` (repeatable) sets
any config field by name, e.g. `--override plane_resolution=16` (tests, experiments).
"""

import errno
import json
import math
import os

import click
import torch

import dnnlib
from dnnlib.cli import FLOAT as F, NONNEG_FLOAT, POS_FLOAT, UNIT_FLOAT
from training import config as config_lib
from training.config import PRESETS
from training.rendering.options import RenderingOptions


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
     'Shading after compositing: none, lambertian (ShadeGAN; needs --representation film_siren) [default: none]'),
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
    (('--pose_dist_start_kimg',), NONNEG_FLOAT, 'kimg before the pose-distribution term [default: 0]'),
    (('--pose_dist_min_slope',), NONNEG_FLOAT,
     "D pose head's slope on fakes before its estimates are used [default: 0.5]"),
    (('--pose_explore_weight',), NONNEG_FLOAT, "D's pose head also on yaws h_mean +- R (extension) [default: 0]"),
    (('--pose_explore_range',), NONNEG_FLOAT, 'R of --pose_explore_weight, radians [default: pi/2]'),
    (('--pose_hold_kimg',), NONNEG_FLOAT, "No term moves G's camera for this many kimg: D's pose head learns on "
     'its initial, broad law first (extension) [default: 0]'),
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


def make_config(opts: dict):
    """Config from the CLI options (None = not given)."""
    fields = {k: v for k, v in opts.items() if k not in NOT_CONFIG}
    fields.update(clamp_h=_pair(opts, 'clamp_h'), clamp_v=_pair(opts, 'clamp_v'), **opts['override'])
    try:
        return config_lib.build_config(**fields)
    except (KeyError, TypeError, ValueError) as err:
        raise click.UsageError(f'bad --override: {err}') from None


def check_config(c) -> None:
    """Invalid combinations -> one-line usage errors."""
    m, r, res = c.model, c.rendering, c.data.dataset_resolution
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
    check_representation(c)
    check_shading(c)
    if m.pose_source == 'learned' and m.dis_pose_cond != (c.loss.dis_cam_weight > 0):
        raise click.UsageError('--dis_pose_cond True needs --dis_cam_weight > 0, and --dis_cam_weight > 0 needs '
                               '--dis_pose_cond True (SPEC §12.11)')
    if m.superres and res not in config_lib.SR_BY_RESOLUTION:
        raise click.UsageError(f'--superres True needs --dataset_resolution in {sorted(config_lib.SR_BY_RESOLUTION)}; '
                               f'got {res} (use --superres False)')
    finals = {r.neural_rendering_resolution_initial, r.neural_rendering_resolution_final or res}
    if not m.superres and c.rendering_kwargs()['superresolution_module'] is None and finals != {res}:
        raise click.UsageError(f'--superres False renders at the image size: the neural rendering resolution must '
                               f'be --dataset_resolution ({res})')
    if c.aug != 'noaug':
        raise click.UsageError(f'--aug {c.aug} is not implemented (no shipped recipe uses augmentation)')
    if not m.dual_discrimination:
        raise click.UsageError('--dual_discrimination False is not implemented (the dual discriminator is the only D)')
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
    try:   # the alpha rule / depth sampler combination and values (training/rendering/options.py)
        RenderingOptions.from_kwargs(c.rendering_kwargs())
    except ValueError as err:
        raise click.UsageError(f'rendering options: {err}') from None
    check_geometry(c)
    if c.loss.pos_weight > 0 and m.pose_source != 'prior':
        raise click.UsageError('--pos_weight > 0 regresses the prior draw of each fake: it needs --pose_source prior')
    head_trained = c.loss.dis_cam_weight + c.loss.pose_gd_weight > 0
    if c.loss.pose_dist_weight > 0 and not (m.pose_source == 'learned' and head_trained):
        raise click.UsageError('--pose_dist_weight > 0 needs --pose_source learned and a trained D pose head '
                               '(--dis_cam_weight or --pose_gd_weight > 0)')
    if c.loss.pose_hold_kimg > 0 and m.pose_source != 'learned':
        raise click.UsageError('--pose_hold_kimg > 0 needs --pose_source learned (it holds the learned camera law)')
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
    if m.shading != 'none' and m.representation != 'film_siren':
        raise click.UsageError(f'--shading {m.shading} needs --representation film_siren (an albedo head; the '
                               f'tri-plane OSG decoder has none)')
    shading_fields = ['light_source', 'albedo_light', 'shading_start_steps', 'shading_ramp_steps'] + \
        [f'light_{key}' for key in config_lib.LIGHT_LAW_KEYS]
    changed = [f for f in shading_fields if getattr(m, f) != getattr(config_lib.ModelConfig, f)]
    if changed and m.shading == 'none':
        raise click.UsageError(f'--{changed[0]} needs --shading lambertian')
    if not m.albedo_view and m.representation != 'film_siren':
        raise click.UsageError('--albedo_view False needs --representation film_siren')
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


def build_nets(c) -> dict:
    """G and D as the training loop builds them (for checking a --resume pickle's shapes)."""
    with torch.random.fork_rng(devices=[]):   # random init only: leave the global RNG as it was
        return {name: dnnlib.util.construct_class_by_name(**kwargs) for name, kwargs in (('G', c.G_kwargs()),
                                                                                         ('D', c.D_kwargs()))}


def dry_run(c) -> None:
    from training.training_loop import describe
    print(json.dumps(describe(c), indent=2))
    for name, kwargs in (('G', c.G_kwargs()), ('D', c.D_kwargs())):
        net = dnnlib.util.construct_class_by_name(**kwargs)
        print(f'{name} parameters: {sum(p.numel() for p in net.parameters()):,}')
    print(f'Run directory name: <id>-{c.run_desc}\nDry run; exiting.')


@click.command(context_settings=dict(max_content_width=120))
@_add_options
def main(**opts):
    """Train a PoF3D tri-plane GAN (SPEC §8). Unset options take the --cfg preset's value."""
    c = make_config(opts)
    check_config(c)
    check_dataset(c)
    check_metrics(c, opts['trust_pickle'])
    if opts['cache_dir']:
        dnnlib.util.set_cache_dir(opts['cache_dir'])
        os.environ['DNNLIB_CACHE_DIR'] = opts['cache_dir']   # for spawned processes
    if opts['dry_run']:
        dry_run(c)
        return
    from training import checkpoint, distributed, training_loop
    if torch.cuda.is_available() and c.gpus > torch.cuda.device_count() and not distributed.under_torchrun():
        raise click.UsageError(f'--gpus {c.gpus}: only {torch.cuda.device_count()} CUDA devices are visible')
    plan = None
    if not distributed.under_torchrun():   # under torchrun, rank 0 plans inside the process group
        try:
            plan = checkpoint.plan_run(opts['outdir'], c.run_desc, c.to_dict(), opts['resume'], opts['trust_pickle'],
                                       check_network=lambda data: checkpoint.network_mismatch(data, build_nets(c)))
        except ValueError as err:
            raise click.UsageError(str(err)) from None
        except OSError as err:   # outdir under a regular file, read-only, ...
            raise click.UsageError(f'--outdir {opts["outdir"]}: cannot create the run folder '
                                   f'({err.strerror or err}: {err.filename or opts["outdir"]})') from None
    try:
        distributed.launch(training_loop.main, c.gpus, c, opts['outdir'], opts['resume'], plan, opts['trust_pickle'],
                           opts['verbose'])
    except Exception as err:     # an image that fails to decode, a full disk: one line naming the file
        raise click.ClickException(run_error_line(err)) from None


def run_error_line(err: Exception) -> str:
    """One line for an error that stops a run; re-raises errors that are bugs (tracebacks)."""
    from training.checkpoint import PlanError
    from training.dataset_check import bad_image_line
    if isinstance(err, PlanError):
        return str(err)
    line = bad_image_line(err)
    if line is not None:
        return f'{line} (resume with --resume auto after fixing the dataset)'
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES):
        return (f'{err.filename or "a run file"}: cannot write ({err.strerror}); the last complete snapshot is '
                f'kept: resume with --resume auto')
    raise err


if __name__ == '__main__':
    main()
