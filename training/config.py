"""Training configuration: frozen dataclasses (one doc line per field) and the presets table.

    config = build_config('ffhq', data='FFHQ_512.zip', gamma=1, ...)

Values are layered: the dataclass defaults (the EG3D/PoF3D CLI defaults, SPEC §8.1) <- the
row of `PRESETS` for the cfg (SPEC §8.2 rendering constants and the §8.3 recipe values) <-
explicit overrides (train.py options). Field names are the train.py option names (dashes as
underscores) and are unique across the sections, so an override finds its section by name.

The `*_kwargs()` methods turn a config into the constructor arguments of the dataset, G, D and
the loss (EG3D names, so training_options.json reads like EG3D's); they delegate to
training/config_kwargs.py, which holds the builders.
"""

import dataclasses
import math
from typing import Dict, Optional, Tuple

from training import config_kwargs as _kwargs
from training.config_kwargs import RENDER_STRATEGY_FIELDS
from training.light_sources import LIGHT_LAW_KEYS, LIGHT_SOURCES
from training.pose_sources import POSE_SOURCES, PRIOR_DISTRIBUTIONS, PRIOR_PARAMETRIZATIONS
from training.presets import PRESETS
from training.rendering.shading import SHADINGS
from training.representations import REPRESENTATIONS
from training.superresolution import SR_BY_RESOLUTION
from training.synthetic.lights import LightMVN

# RENDER_STRATEGY_FIELDS and SR_BY_RESOLUTION stay importable from here (train_checks.py and the tests).
__all__ = ['LIGHT_LAW_KEYS', 'LIGHT_SOURCES', 'SHADINGS',
           'POSE_SOURCES', 'PRIOR_DISTRIBUTIONS', 'PRIOR_PARAMETRIZATIONS', 'PRESETS', 'REPRESENTATIONS', 'TrainConfig',
           'build_config', 'replace', 'RENDER_STRATEGY_FIELDS', 'SR_BY_RESOLUTION']


@dataclasses.dataclass(frozen=True)
class DataConfig:
    data: str = ''                        # dataset .zip or folder (SPEC §2)
    dataset_resolution: int = 128         # training resolution H; images of another size are resized on load
    mirror: bool = False                  # x-flip augmentation: doubles the dataset (labels not flipped)
    create_label_fov: Optional[float] = None  # degrees: square-crop and synthesize intrinsics labels (SPEC §2.2)
    pad_long: bool = False                # with create_label_fov: pad to the long side instead of cropping
    create_label_grid: str = 'eg3d'       # create_label_fov's K: eg3d formula | corner (pi-GAN's grid, SEEDS_SPEC §6.0)
    max_size: Optional[int] = None        # use a random subset of this many images
    workers: int = 3                      # DataLoader worker processes per GPU
    dataset_class: str = 'training.dataset.ImageFolderDataset'  # dataset class (EG3D class_name)
    skip_bad_images: bool = False         # log and skip images that fail to decode instead of stopping


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    pose_source: str = 'learned'          # where G's camera comes from: learned | dataset | prior | prior_residual
    prior_distribution: str = 'gaussian'  # prior's law: gaussian | uniform | spherical_uniform | truncated_gaussian
    prior_parametrization: str = 'v'      # prior's 2nd coordinate: v (SPEC §3.2) | polar (phi; SEEDS_SPEC §6.0)
    prior_h_std: float = 0.3              # prior std (half range for the uniform laws) of h, around h_mean
    prior_v_mean: float = math.pi / 2     # prior mean of v, or of phi with prior_parametrization polar
    prior_v_std: float = 0.155            # prior std (half range for the uniform laws) of v or phi
    z_dim: int = 512                      # latent z size
    w_dim: int = 512                      # intermediate latent w size
    cbase: int = 32768                    # channel base of G's backbone and D (channels = min(cbase/res, cmax))
    cmax: int = 512                       # channel maximum of G's backbone and D
    map_depth: int = 2                    # mapping network layers
    plane_resolution: int = 256           # tri-plane resolution (G's StyleGAN2 backbone output)
    plane_channels: int = 32              # feature channels per plane
    superres: bool = True                 # build the super-resolution module (None: render at H directly)
    dual_discrimination: bool = True      # D sees image and image_raw (the only D implemented)
    mbstd_group: int = 4                  # D minibatch-stddev group size
    freezed: int = 0                      # freeze the first k D layers
    pose_head_channels: int = 4096        # hidden width of D's pose head (SPEC §5.2)
    dis_linear_pose: bool = False         # single linear layer as D's pose head
    dis_pose_cond: bool = True            # condition D: on its own pose (learned) or on labels (other sources)
    gen_pose_cond: bool = False           # EG3D generator pose conditioning (pose_source dataset only)
    lr_multiplier: float = 0.01           # learning-rate multiplier of the mapping network layers
    lr_multiplier_pose: float = 0.01      # learning-rate multiplier of the pose learner
    pose_init_gain: Tuple[float, float] = (1.0, 1.0)  # (h, v) scales of the pose learner's initial last layer
    pose_input: str = 'w'                 # what the pose learner reads: w (PoF3D) | noise (its own z dims, extension)
    g_num_fp16_res: int = 0               # G backbone resolutions in fp16 (conv_clamp 256 when > 0)
    d_num_fp16_res: int = 4               # D resolutions in fp16 (conv_clamp 256 when > 0)
    sr_num_fp16_res: int = 4              # super-resolution in fp16 when > 0
    disc_c_noise: float = 0.0             # std of the noise added to D's conditioning label
    sr_noise_mode: str = 'none'           # super-resolution noise: none | random
    symmetry: str = 'none'                # canonical mirror symmetry of the field: none | planes | density
    representation: str = 'triplane'      # G's 3-D representation: triplane | film_siren (pi-GAN, SEEDS_SPEC §6.2)
    # | feature_volume (VolumeGAN, SEEDS_SPEC §6.5); its options (the defaults are the FFHQ-256 code, §5.2):
    volume: bool = True                   # feature_volume: the 3-D feature volume (False: MLP on PE(x) only, "FV off")
    volume_channels: Tuple[int, ...] = (256, 128, 64, 32)  # ... its stage widths, 4^3 -> 4 * 2^(stages - 1) cubed
    template_init: str = 'ones'           # ... its 4^3 template's init: ones (the code) | randn (the slides)
    adain_scale: str = 'raw'              # ... AdaIN x * scale + shift: raw (the code) | one_plus (x * (1 + scale))
    point_mlp: str = 'modconv'            # ... point MLP: modconv (the code, on PE(x)) | film_siren (the slides)
    point_mlp_hidden: int = 256           # ... its width
    point_mlp_layers: int = 4             # ... its layers (one w code each)
    feature_channels: int = 512           # ... C_f, the rendered feature channels (3 without an image head)
    view_dependent: bool = False          # ... the feature head sees the view direction (the code: no)
    image_head: str = 'modconv1x1'        # ... image head: modconv1x1 (1x1 neural renderer) | none ("NR off")
    siren_hidden: int = 256               # film_siren: FiLM-SIREN width (pi-GAN 256; w_dim is the mapping width)
    siren_layers: int = 8                 # film_siren: FiLM-sine layers of the trunk (pi-GAN 8)
    shading: str = 'none'                 # shading stage after compositing: none | lambertian (ShadeGAN, §4.3)
    light_source: str = 'mvn'             # lambertian: light per image, mvn (the law below) | fixed (frontal)
    light_a_mean: float = LightMVN.a_mean  # light law (training/synthetic/lights.py LightMVN): mean of a
    light_d_mean: float = LightMVN.d_mean  # mean of d (k_d = d/2 + 1/2)
    light_lx_mean: float = LightMVN.lx_mean  # mean of l_x (L = normalize(l_x, l_y, 1), world)
    light_ly_mean: float = LightMVN.ly_mean  # mean of l_y
    light_a_std: float = LightMVN.a_std  # std of a
    light_d_std: float = LightMVN.d_std  # std of d
    light_lx_std: float = LightMVN.lx_std  # std of l_x
    light_ly_std: float = LightMVN.ly_std  # std of l_y
    albedo_view: bool = True              # film_siren colour/albedo head sees the view direction (pi-GAN)
    albedo_light: bool = False            # albedo head sees the light l (ShadeGAN's shipped configs, §4.6 q3)
    shading_start_steps: float = 5000     # shading ramp r = clamp((step - start) / ramp, 0, 1) (ShadeGAN 5000)
    shading_ramp_steps: float = 2000      # ShadeGAN 2000
    mapping_lr_mul: float = 1.0           # film_siren: lr multiplier of pi-GAN's mapping (GOF/ShadeGAN unique_lr 0.05)
    mapping_lr_legacy: bool = False       # ... ignored, the mapping at the full glr, as the official DDP code (§3.5 q3)


@dataclasses.dataclass(frozen=True)
class RenderingConfig:
    depth_resolution: int = 48            # coarse samples per ray
    depth_resolution_importance: int = 48  # importance samples per ray
    ray_start: float = 2.25               # near bound of the rays (world units)
    ray_end: float = 3.3                  # far bound of the rays
    box_warp: float = 1.0                 # side of the cube the tri-planes span
    white_back: bool = False              # composite on white (ShapeNet)
    avg_camera_radius: float = 2.7        # radius of every generated camera (SPEC §3.3)
    avg_camera_pivot: Tuple[float, float, float] = (0.0, 0.0, 0.0)  # look-at point of every camera
    h_mean: float = math.pi / 2           # offset of the learned h (pi/2 frontal, pi for ShapeNet)
    clamp_h: Optional[Tuple[float, float]] = None  # (min, max) clamp of the learned h
    clamp_v: Optional[Tuple[float, float]] = None  # (min, max) clamp of the learned v
    safe_pose_clamp: bool = True          # clamp v to [1e-5, pi - 1e-5] before LookAtPose (SPEC §12.9)
    plane_axes: str = 'correct'           # tri-plane axes: correct | legacy (EG3D/PoF3D bi-plane quirk, §4.5)
    neural_rendering_resolution_initial: int = 64  # render resolution R at the start
    neural_rendering_resolution_final: Optional[int] = None  # R at the end of the fade (None: constant)
    neural_rendering_resolution_fade_kimg: float = 1000  # length of the R fade
    res_stages: Tuple[Tuple[float, int], ...] = ()   # (from_step, R): a curriculum's resolutions (pi-GAN)
    density_reg: float = 0.25             # weight of the density regularizer (0: no Greg phase)
    density_reg_every: int = 4            # Greg interval (lazy regularization)
    density_reg_p_dist: float = 0.004     # std of the density-regularizer perturbation
    decoder_lr_mul: float = 1.0           # learning-rate multiplier of the OSG decoder
    render_impl: str = 'auto'             # auto (Triton kernel for CUDA float32) | torch | triton
    # Alpha rule and depth sampler (training/rendering/options.py; SEEDS_SPEC §6.1 items 2-3)
    alpha_rule: str = 'eg3d'              # eg3d | sample_delta (pi-GAN) | occupancy (GOF)
    density_activation: str = 'relu'      # sample_delta's act(sigma): relu | softplus
    last_back: bool = False               # per-sample rules: the last sample takes 1 - sum w
    depth_sampler: str = 'eg3d'           # eg3d | importance_nerf (pi-GAN) | surface_window (GOF)
    depth_resolution_surface: int = 9     # surface_window: samples in the window (S_s)
    secant_steps: int = 4                 # surface_window: secant steps to the surface
    surface_level: float = 0.5            # surface_window: occupancy level tau of the surface
    window_init: float = 0.12             # surface_window half-width at step 0 (world units)
    window_min: float = 0.03              # ... its floor (and the half-width at evaluation)
    window_decay: float = 1e-5            # ... its decay per step: max(init exp(-decay step), min)
    window_warmup_steps: float = 0        # ... the whole ray range before this step (GOF warm start, §6.3)
    density_noise_init: float = 0.0       # std of the noise on raw sigma at step 0 (pi-GAN 1)
    density_noise_fade_steps: float = 5000  # ... falling linearly to 0 over this many steps


@dataclasses.dataclass(frozen=True)
class LossConfig:
    gamma: float = 1.0                    # R1 weight gamma (the penalty is gamma/2 |grad|^2)
    dis_cam_weight: float = 0.0           # lambda_cam: D pose-head regression (> 0 iff dis_pose_cond, §12.11)
    pose_gd_weight: float = 0.0           # lambda_gd: pose-learner pull toward D's estimate
    pose_gd_start_kimg: float = 0.0       # L3 waits this many kimg (extension: 0 = paper)
    pose_gd_debias: bool = False          # L3's target corrected by D's pose-head fit on fakes (extension)
    pose_gd_min_slope: float = 0.0        # L3 pulls a component only once the head's slope on it reaches this
    sym_weight: float = 0.0               # mirror-symmetry consistency of G (extension, 0 = paper)
    symmetry_weight: float = 1.0          # λ of the density symmetry (symmetry 'density' only)
    pose_dist_weight: float = 0.0         # pose-distribution term: G's cameras vs D's de-biased real estimates
    pose_dist_start_kimg: float = 0.0     # the pose-distribution term waits for this many kimg
    pose_dist_min_slope: float = 0.5      # ... and for D's pose head to reach this slope on fakes
    pose_img_dist_weight: float = 0.0     # image-level term: D's estimates on G's images vs on reals (same gates)
    pose_explore_weight: float = 0.0      # D's pose head also on yaws U[h_mean ± R] (issue 15, pose_explore.py)
    pose_explore_range: float = math.pi / 2   # ... R, radians
    pose_hold_kimg: float = 0.0           # G's camera law held at its init this long (issue 15, pof3d.py)
    pose_freeze_kimg: float = 0.0         # ... and held at its learned law from here on (0: never)
    pose_freeze_slope: float = 0.0        # ... or from when D's head reads G's yaw at this slope (0: never)
    pose_view_weight: float = 0.0         # G's render must show its camera to D's pose head (pose.py ViewConsistency)
    pose_cond_grad: bool = False          # G's score gradient also through D's pose label (adversarial.py)
    flip_to_dis: bool = True              # G term on the mirrored render
    flip_to_disd: bool = True             # D term on the mirrored render (and w_f on both fake terms)
    flip_to_disd_weight: float = 1.0      # w_f
    flip_type: str = 'flip_both'          # mirror pair: flip_both | flip_both_shapenet (SPEC §3.4)
    detach_pose: bool = False             # detach the mirrored camera in the G flip term
    blur_init_sigma: float = 10.0         # initial std of D's input blur
    blur_fade_kimg: float = 200.0         # blur fade length at batch 32 (scaled by batch/32)
    blur_mode: str = 'single'             # single (one D pass) | reference (double-blur quirk, §6.5)
    share_render: bool = True             # L1/L3 and L4/L5 share one render (one noise draw; learned, single blur)
    gpc_reg_prob: float = 0.0             # EG3D pose-conditioning swap probability (gen_pose_cond)
    gpc_reg_fade_kimg: float = 1000.0     # fade of the swap probability
    normal_weight: float = 0.0            # GOF normal consistency λ_n (SEEDS_SPEC §3.3; needs surface_window)
    normal_h: float = 0.075               # ... its perturbation length h (world units)
    opacity_weight: float = 0.0           # GOF opacity prior λ₀ (per-sample alpha rules)
    opacity_growth: float = 0.0           # ... its growth per step: min(10 λ₀, λ₀ exp(growth step))
    opacity_legacy_red: bool = False      # ... on the red channel as GOF's code (§3.5 q1), not the occupancy
    pos_weight: float = 0.0               # pi-GAN λ_pos: D's pose head regresses the prior draw (SEEDS_SPEC §1.7)
    topk_interval: float = 0.0            # pi-GAN top-k: G's loss on the max(0.99^(step/interval), floor)
    topk_floor: float = 0.6               # ... most-real share of the fakes (0 = every fake, SEEDS_SPEC §1.7)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    glr: Optional[float] = None           # G learning rate (None: 0.0025)
    dlr: float = 0.002                    # D learning rate
    betas: Tuple[float, float] = (0.0, 0.99)  # Adam betas (before the lazy-regularization scaling)
    eps: float = 1e-8                     # Adam epsilon
    ema_kimg: Optional[float] = None      # G_ema half-life in kimg (None: batch * 10 / 32)
    ema_rampup: Optional[float] = 0.05    # EMA ramp-up (None: off)
    d_reg_interval: int = 16              # Dreg (R1) interval (lazy regularization); 0 = in D's main step
    grad_clip: float = 0.0                # clip each step's gradient norm of G and of D (pi-GAN family; 0 = off)
    lr_stages: Tuple[Tuple[float, float, float], ...] = ()   # (from_step, glr, dlr): a curriculum's lrs

    @property
    def g_lr(self) -> float:
        """G's learning rate: glr, or EG3D's 0.0025 when unset."""
        return self.glr if self.glr is not None else 0.0025


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    cfg: str = 'ffhq'                     # preset name (a key of PRESETS)
    gpus: int = 1                         # processes (one per GPU; gloo processes on CPU)
    batch: int = 32                       # total batch over all processes
    batch_gpu: Optional[int] = None       # per-process chunk (None: batch / gpus)
    kimg: float = 25000                   # training length in thousands of real images
    tick: float = 4                       # kimg per progress tick
    snap: int = 50                        # ticks per snapshot (network, training state, images, metrics)
    seed: int = 0                         # random seed
    metrics: Tuple[str, ...] = ('fid50k_full',)  # metrics after each snapshot (needs metrics/metric_main.py)
    image_grid: Optional[Tuple[int, int]] = None  # (columns, rows) of the snapshot grids (None: EG3D's rule)
    aug: str = 'noaug'                    # augmentation (only noaug is implemented)
    nobench: bool = False                 # disable cudnn.benchmark
    resume_blur: bool = False             # keep the blur when starting from a pickle
    desc: Optional[str] = None            # run-directory suffix
    data: DataConfig = DataConfig()       # dataset
    model: ModelConfig = ModelConfig()    # networks
    rendering: RenderingConfig = RenderingConfig()  # volume rendering and G-side regularization
    loss: LossConfig = LossConfig()       # loss weights and schedules
    optim: OptimConfig = OptimConfig()    # optimizers and EMA

    # -- derived values ---------------------------------------------------------------

    @property
    def batch_per_gpu(self) -> int:
        return self.batch // self.gpus

    @property
    def chunk(self) -> int:
        """Images per accumulate_gradients call."""
        return self.batch_gpu or self.batch_per_gpu

    @property
    def run_desc(self) -> str:
        """`{cfg}-{dataset_name}-gpus{N}-batch{B}-gamma{g}[-desc]` (SPEC §7)."""
        name = self.data.data.rstrip('/\\').replace('\\', '/').split('/')[-1]
        name = name[:-4] if name.lower().endswith('.zip') else name
        desc = f'{self.cfg}-{name}-gpus{self.gpus}-batch{self.batch}-gamma{self.loss.gamma:g}'
        return desc + (f'-{self.desc}' if self.desc else '')

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict) -> 'TrainConfig':
        top = {k: v for k, v in d.items() if k not in _SECTIONS}
        subs = {k: cls(**{n: _tuplify(x) for n, x in d[k].items()}) for k, cls in _SECTIONS.items() if k in d}
        return TrainConfig(**{k: _tuplify(v) for k, v in top.items()}, **subs)

    # -- constructor kwargs (built in training/config_kwargs.py) ---------------------------

    def training_set_kwargs(self) -> dict:
        return _kwargs.training_set_kwargs(self)

    def rendering_kwargs(self) -> dict:
        return _kwargs.rendering_kwargs(self)

    def G_kwargs(self) -> dict:
        return _kwargs.G_kwargs(self)

    def _film_siren_G_kwargs(self, pose_kwargs) -> dict:
        return _kwargs._film_siren_G_kwargs(self, pose_kwargs)

    def _feature_volume_G_kwargs(self, pose_kwargs) -> dict:
        return _kwargs._feature_volume_G_kwargs(self, pose_kwargs)

    def _albedo_head(self) -> dict:
        return _kwargs._albedo_head(self)

    def _shading_G_kwargs(self) -> dict:
        return _kwargs._shading_G_kwargs(self)

    def D_kwargs(self) -> dict:
        return _kwargs.D_kwargs(self)

    def loss_kwargs(self, from_pickle: bool = False) -> dict:
        return _kwargs.loss_kwargs(self, from_pickle=from_pickle)

    def g_reg_interval(self) -> Optional[int]:
        """Greg runs every this many iterations; None: one G phase, unscaled Adam (SPEC §7)."""
        return self.rendering.density_reg_every if self.rendering.density_reg > 0 else None

    def ema_kimg(self) -> float:
        return self.optim.ema_kimg if self.optim.ema_kimg is not None else self.batch * 10 / 32


_SECTIONS = {'data': DataConfig, 'model': ModelConfig, 'rendering': RenderingConfig, 'loss': LossConfig,
             'optim': OptimConfig}

def _tuplify(value):
    """JSON round trip: lists back to tuples (the config's sequence fields are tuples)."""
    return tuple(_tuplify(v) for v in value) if isinstance(value, list) else value


def field_sections() -> Dict[str, str]:
    """{field name: section name ('' for TrainConfig's own fields)} for every settable field."""
    out = {f.name: '' for f in dataclasses.fields(TrainConfig) if f.name not in _SECTIONS}
    for section, cls in _SECTIONS.items():
        out.update({f.name: section for f in dataclasses.fields(cls)})
    return out


def replace(config: TrainConfig, **overrides) -> TrainConfig:
    """A copy of `config` with fields set by name, whatever their section; KeyError for unknown names."""
    where = field_sections()
    unknown = sorted(set(overrides) - set(where))
    if unknown:
        raise KeyError(f'unknown config fields: {unknown}')
    top = {k: _tuplify(v) for k, v in overrides.items() if where[k] == ''}
    for section in _SECTIONS:
        mine = {k: _tuplify(v) for k, v in overrides.items() if where[k] == section}
        if mine:
            top[section] = dataclasses.replace(getattr(config, section), **mine)
    return dataclasses.replace(config, **top)


def build_config(cfg: str, **overrides) -> TrainConfig:
    """Defaults <- PRESETS[cfg] <- overrides (None values are ignored: 'not given')."""
    if cfg not in PRESETS:
        raise KeyError(f'unknown cfg {cfg!r}; choose from {sorted(PRESETS)}')
    config = replace(TrainConfig(cfg=cfg), **PRESETS[cfg])
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})
