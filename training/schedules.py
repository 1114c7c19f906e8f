"""Training schedules: pure functions of the number of real images seen (`cur_nimg`).

Nothing here keeps state; the training loop and the losses call these each step with the
current `cur_nimg` (STYLE 6). Sources:
- `blur_sigma` (the blur itself: training/blur.py), `neural_rendering_resolution`: SPEC §4.7;
- `swapping_prob`: SPEC §6.1 (EG3D generator pose conditioning);
- `ema_beta`, `lazy_reg_adam_kwargs`: SPEC §7;
- `density_noise_std` (pi-GAN), `surface_window`, `opacity_weight` (GOF), `shading_ratio` (ShadeGAN):
  SEEDS_SPEC §1.5, §3.2 item 6, §3.3, §4.3, §6.3. They count iterations as the source does:
  step = cur_nimg / batch (a constant batch).
"""

import math
from typing import Optional, Sequence, Tuple

import numpy as np


def _fade_alpha(cur_nimg: float, fade_kimg: float) -> float:
    """Linear ramp 0 -> 1 over `fade_kimg` thousand images; 1 at once when fade_kimg <= 0."""
    if fade_kimg <= 0:
        return 1.0
    return min(cur_nimg / (fade_kimg * 1e3), 1.0)


def blur_sigma(cur_nimg: float, blur_init_sigma: float, blur_fade_kimg: float) -> float:
    """Std (pixels) of the Gaussian blur of D's `image` input (SPEC §4.7):
    sigma(t) = max(1 - t / (blur_fade_kimg * 1000), 0) * blur_init_sigma; 0 when blur_fade_kimg <= 0."""
    if blur_fade_kimg <= 0:
        return 0.0
    return max(1.0 - cur_nimg / (blur_fade_kimg * 1e3), 0.0) * blur_init_sigma


def neural_rendering_resolution(cur_nimg: float, initial: int, final: Optional[int] = None,
                                fade_kimg: float = 0) -> int:
    """R(t) = rint(initial (1 - a) + final a), a = min(t / (fade_kimg * 1000), 1) (SPEC §4.7);
    `initial` when final is None. fade_kimg <= 0 jumps to `final`."""
    if final is None:
        return int(initial)
    a = _fade_alpha(cur_nimg, fade_kimg)
    return int(np.rint(initial * (1 - a) + final * a))


def _stage(cur_nimg: float, batch: int, stages: Sequence[Sequence[float]], before: tuple) -> tuple:
    """The values of a pi-GAN-family curriculum (SEEDS_SPEC §1.8): stages are (from_step, *values)
    in increasing from_step; the last stage whose from_step <= step = cur_nimg / batch rules;
    before the first stage (or with none) `before`."""
    step = cur_nimg / batch
    for from_step, *values in stages:
        if step >= from_step:
            before = tuple(values)
    return before


def stage_resolution(cur_nimg: float, batch: int, resolution: int, stages: Sequence[Sequence[float]] = ()) -> int:
    """Render resolution R of a curriculum (`_stage`, img_size): stages (from_step, R); `resolution`
    before the first."""
    return int(_stage(cur_nimg, batch, stages, (resolution,))[0])


def render_resolution(cur_nimg: float, nrr: Sequence, stages: Optional[dict] = None) -> int:
    """The R of a training step: a curriculum's stages (`stage_resolution(**stages)`: batch and
    stages) when given, else EG3D's fade (`neural_rendering_resolution(*nrr)`) -- SPEC §4.7."""
    resolution = neural_rendering_resolution(cur_nimg, *nrr)
    return stage_resolution(cur_nimg, resolution=resolution, **stages) if stages else resolution


def swapping_prob(cur_nimg: float, gpc_reg_prob: Optional[float], gpc_reg_fade_kimg: float = 0) -> Optional[float]:
    """EG3D's probability of conditioning the mapping on another sample's camera (SPEC §6.1):
    (1 - a) * 1 + a * gpc_reg_prob, a = min(t / (fade * 1000), 1) or 1 when the fade is 0.
    None (no generator pose conditioning: the mapping gets zeros) when gpc_reg_prob is None."""
    if gpc_reg_prob is None:
        return None
    a = _fade_alpha(cur_nimg, gpc_reg_fade_kimg)
    return (1 - a) * 1.0 + a * gpc_reg_prob


def ema_beta(cur_nimg: float, batch: int, ema_kimg: float, ema_rampup: Optional[float]) -> float:
    """G_ema decay per step (SPEC §7): ema_nimg = min(ema_kimg * 1000, cur_nimg * ema_rampup)
    (no min when ema_rampup is None), beta = 0.5 ** (batch / max(ema_nimg, 1e-8))."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, 1e-8))


def lazy_reg_adam_kwargs(lr: float, betas: Sequence[float], interval: Optional[int]) -> dict:
    """Adam lr/betas for a module whose regularizer runs every `interval` steps (SPEC §7):
    k = interval / (interval + 1), lr * k, betas ** k. Unchanged when interval is None or 0.

    Example: D (lr 0.002, betas (0, 0.99), interval 16) -> lr 0.002*16/17, beta2 0.99**(16/17).
    """
    if not interval:
        return dict(lr=lr, betas=tuple(betas))
    k = interval / (interval + 1)
    return dict(lr=lr * k, betas=tuple(b ** k for b in betas))


def density_noise_std(cur_nimg: float, batch: int, initial: float = 1.0, fade_steps: float = 5000) -> float:
    """Std of the noise on raw sigma (SEEDS_SPEC §1.5, pi-GAN: s = max(0, 1 - step/5000)):
    initial * max(0, 1 - step / fade_steps), step = cur_nimg / batch; `initial` when fade_steps <= 0.
    Passed to the renderer as `RenderSchedule(density_noise=...)`."""
    if fade_steps <= 0:
        return float(initial)
    return float(initial) * max(0.0, 1.0 - (cur_nimg / batch) / fade_steps)


def render_schedule(cur_nimg: float, batch: int, depth_sampler: str = 'eg3d', density_noise_init: float = 0.0,
                    density_noise_fade_steps: float = 5000, window_init: float = 0.12, window_min: float = 0.03,
                    window_decay: float = 1e-5, window_warmup_steps: float = 0, shading: str = 'none',
                    shading_start_steps: float = 5000, shading_ramp_steps: float = 2000):
    """The renderer's per-call schedule values at cur_nimg (`RenderSchedule`, training/rendering/
    options.py), or None when nothing in the recipe is scheduled: pi-GAN's density noise
    (`density_noise_std`), GOF's surface window (`surface_window`) and ShadeGAN's shading ramp
    (`shading_ratio`, for any shading but 'none')."""
    from training.rendering.options import RenderSchedule
    noise = density_noise_std(cur_nimg, batch, density_noise_init, density_noise_fade_steps) \
        if density_noise_init > 0 else None
    window = surface_window(cur_nimg, batch, window_init, window_min, window_decay, window_warmup_steps) \
        if depth_sampler == 'surface_window' else None
    ratio = shading_ratio(cur_nimg, batch, shading_start_steps, shading_ramp_steps) if shading != 'none' else None
    if noise is None and window is None and ratio is None:
        return None
    return RenderSchedule(density_noise=noise, window=window, shading_ratio=ratio)


def shading_ratio(cur_nimg: float, batch: int, start_steps: float = 5000, ramp_steps: float = 2000) -> float:
    """ShadeGAN's shading ramp (SEEDS_SPEC §4.3): r = clamp((step - start_steps) / ramp_steps, 0, 1),
    step = cur_nimg / batch: no shading before start_steps, full shading from start_steps + ramp_steps
    (ShadeGAN: 5000 and 2000; a jump at start_steps when ramp_steps <= 0). The generator's shading
    stage makes s' = r s + 1 - r; passed as `RenderSchedule(shading_ratio=...)`."""
    step = cur_nimg / batch
    if ramp_steps <= 0:
        return 1.0 if step >= start_steps else 0.0
    return min(max((step - start_steps) / ramp_steps, 0.0), 1.0)


def surface_window(cur_nimg: float, batch: int, window_init: float, window_min: float, window_decay: float,
                   warmup_steps: float = 0) -> float:
    """Half-width of GOF's surface window (SEEDS_SPEC §3.2 item 6, §6.3):
    Delta = max(window_init * exp(-window_decay * step), window_min), step = cur_nimg / batch (GOF uses
    the absolute step). Passed to the renderer as `RenderSchedule(window=...)`; evaluation uses
    window_min (the renderer's default).
    warmup_steps: before this step Delta = inf, so the window spans the whole ray range
    (`samplers.window_bounds` caps it there): the radiance-style warm start of §6.3 that stands in
    for the authors' early checkpoint (§3.6); the decay still counts from step 0."""
    step = cur_nimg / batch
    if step < warmup_steps:
        return math.inf
    return max(window_init * math.exp(-window_decay * step), window_min)


def stage_lrs(cur_nimg: float, batch: int, glr: float, dlr: float,
              stages: Sequence[Sequence[float]] = ()) -> Tuple[float, float]:
    """(G lr, D lr) of a curriculum (`_stage`): stages (from_step, glr, dlr); the run's glr, dlr
    before the first."""
    return _stage(cur_nimg, batch, stages, (glr, dlr))


def topk_fraction(cur_nimg: float, batch: int, interval: float, floor: float) -> float:
    """pi-GAN's top-k share of G's adversarial loss (SEEDS_SPEC §1.7): p = max(0.99^(step / interval),
    floor), step = cur_nimg / batch; G's loss averages the ceil(p N) most-real fake scores of a chunk.
    1 (every score) when interval <= 0. pi-GAN CelebA: interval 2000, floor 0.6 (§2.2)."""
    if interval <= 0:
        return 1.0
    return max(0.99 ** (cur_nimg / batch / interval), floor)


def opacity_weight(cur_nimg: float, batch: int, weight: float, growth: float) -> float:
    """Weight of GOF's opacity prior (SEEDS_SPEC §3.3): min(10 weight, weight exp(growth step)),
    step = cur_nimg / batch; 0 when weight is 0. The exponent is capped at ln 10 first (the cap is
    reached there anyway), so long runs do not overflow."""
    if not weight:
        return 0.0
    return weight * math.exp(min(growth * cur_nimg / batch, math.log(10)))
