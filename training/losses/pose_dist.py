"""A distribution-level pose term for G's pose learner (issue 15, item 2; a project option, off by default).

    L_dist = λ_dist · SW₂²( {ξ_G(z_k)}_k , {A(D_pose(B x_j))}_j )

PoF3D's L3 is a per-image consistency between G's camera and D's estimate of G's own render;
nothing asks G's *distribution* of cameras to match the data's. D's pose head is trained on
fakes whose cameras are known (L4), so its estimates on real images are pseudo-labels of the
data's pose law: this term pulls the law of G's cameras onto them.

- ξ_G: the pose learner on sg(w) (as L3: only the two pose-learner layers get gradient), for
  `num_poses` latents of the term's own seeded generator (the pose costs no render).
- Pseudo-labels: D_pose(B x) of the real batch, no gradient, kept in a FIFO of `queue_size`
  so that a batch of 8 reals still describes a law.
- A: the head regresses toward the mean (slope < 1 on fakes), which would pull G into a law
  narrower than the data's. `HeadCalibration` fits est = a + b·true + noise per pose component
  on the fakes of L4 (running moments), and A maps an estimate to (est − a) / b with the
  spread shrunk by the noise variance, so A(est) has the mean and spread of the true law.
- SW₂²: sliced squared 2-Wasserstein over `num_dirs` evenly spaced directions of the (h, v)
  plane (deterministic; 2-D needs no random projections). 1-D W₂ between n samples and a
  target set is the mean squared gap between sorted samples and the target's quantiles at
  (i + 0.5) / n.
- Switched on at `start_kimg`, on the pose components the head has learned: those whose fit on
  fakes has slope ≥ `min_slope` (a component whose fakes barely vary cannot be calibrated). On
  heads and cars the yaw is learned long before the pitch; until then the term matches h alone.
- ... and only where the head tells the reals apart: at least MIN_SIGNAL of the variance of its
  real estimates must exceed its noise on fakes. Measured (cars, 5.5 kimg): a head with slope
  0.53 on fakes gave the reals one yaw (std 4.9° against the truth's 45.7°, below its noise of
  10.6°); de-biased, that is a point, which would pull every camera into it.
- Image-level variant (`image_weight`, `--pose_img_dist_weight`): the head's estimates on G's
  *images* (with their graph) against its raw estimates on the reals, SW₂² on the same gated
  components. The same head reads both sides, so nothing needs de-biasing, and the gradient
  reaches the camera and the field through the render: it asks G's images to show the data's
  law of views as the head sees them, which D's score alone did not enforce (issue 15, run 9:
  D's head read the reals' two modes while G rendered one).
- Caveat (measured, docs/benchmark.md "Issue 15"): the head learns from G's fakes only, so its
  estimates on reals have no anchor in the data; when G's cameras leave the data's range they
  follow them. At weight 10 with a fast pose learner the two chased each other (a runaway).
"""

import math
from typing import Optional

import torch

from torch_utils import training_stats
from training.losses.common import DInput, Step, fake_pair, image_from_raw, real_pair

MIN_SIGNAL = 0.5   # share of the real estimates' variance that must be pose, not head noise


def sliced_wasserstein(x: torch.Tensor, target: torch.Tensor, num_dirs: int = 16) -> torch.Tensor:
    """Mean over `num_dirs` directions θ_k = kπ/num_dirs of W₂²(x·θ, target·θ); in 1-D, W₂² itself.

    x [n, d] (with graph), target [m, d] (any m >= 1, no graph needed), d in (1, 2) -> scalar.
    Exact 1-D W₂ between x's empirical law and the target's, via target quantiles at (i + 0.5) / n.
    """
    if x.shape[1] == 1:
        dirs = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    else:
        angles = torch.arange(num_dirs, dtype=x.dtype, device=x.device) * (math.pi / num_dirs)
        dirs = torch.stack([angles.cos(), angles.sin()])                   # [2, K]
    px, _ = (x @ dirs).sort(dim=0)                                         # [n, K]
    pt, _ = (target.to(x.dtype) @ dirs).sort(dim=0)                        # [m, K]
    n, m = x.shape[0], target.shape[0]
    # The target's inverse CDF (a step function) at (i + 0.5) / n: its sorted sample floor(.. * m).
    index = ((torch.arange(n, device=x.device) * 2 + 1) * m) // (2 * n)    # [n], exact integer arithmetic
    return (px - pt[index]).square().mean()


class HeadCalibration:
    """Running fit of D's pose head on fakes: est = a + b·true + noise, per component.

    Exponential moving moments with factor `decay` per update of a batch. All state is in
    float64 tensors (`state_dict`)."""

    def __init__(self, decay: float = 0.99, min_var: float = 1e-4):
        self.decay, self.min_var = decay, min_var
        self.moments = torch.zeros(5, 2, dtype=torch.float64)   # E[t], E[e], E[t²], E[e²], E[t·e]
        self.weight = torch.zeros((), dtype=torch.float64)      # total EMA weight (bias correction)

    def update(self, true: torch.Tensor, est: torch.Tensor) -> None:
        """true, est [N, 2] of the same fakes (no graph)."""
        t, e = true.detach().double().cpu(), est.detach().double().cpu()
        batch = torch.stack([t.mean(0), e.mean(0), t.square().mean(0), e.square().mean(0), (t * e).mean(0)])
        self.moments = self.moments * self.decay + batch * (1 - self.decay)
        self.weight = self.weight * self.decay + (1 - self.decay)

    def fit(self):
        """(a, b, noise_var, calibrated) [2] each; calibrated: the fakes' component varies enough."""
        mt, me, mtt, mee, mte = self.moments / self.weight.clamp(min=1e-12)
        var_t, var_e, cov = mtt - mt.square(), mee - me.square(), mte - mt * me
        calibrated = (var_t > self.min_var) & (self.weight > 0.5)
        b = torch.where(calibrated, cov / var_t.clamp(min=1e-12), torch.ones_like(cov))
        a = torch.where(calibrated, me - b * mt, torch.zeros_like(me))
        noise = torch.where(calibrated, (var_e - b.square() * var_t).clamp(min=0), torch.zeros_like(var_e))
        return a, b, noise, calibrated

    def trusted(self, min_slope: float) -> torch.Tensor:
        """[2] bool: the components calibrated with slope >= min_slope."""
        _, b, _, calibrated = self.fit()
        return calibrated & (b >= min_slope)

    def correct(self, est: torch.Tensor, min_slope: float) -> torch.Tensor:
        """Per-sample correction est [N, 2] -> (est − a) / b on the trusted components (others as
        given): unbiased for the true pose, E[(est − a) / b | true] = true, so a regression toward
        it no longer pulls every camera toward the mean (the de-biased L3, `--pose_gd_debias`)."""
        a, b, _, _ = (x.to(est) for x in self.fit())
        return torch.where(self.trusted(min_slope).to(est.device), (est - a) / b, est)

    def signal_fraction(self, est: torch.Tensor) -> torch.Tensor:
        """[2]: the share of the estimates' variance (est [m, 2]) that the fit does not explain as
        head noise, (var − noise) / var clamped to [0, 1]. Near 0 the head tells the samples apart no
        better than its own noise: its estimates on them carry no pose information."""
        _, _, noise, _ = (x.to(est) for x in self.fit())
        var = est.var(0, unbiased=False)
        return ((var - noise) / var.clamp(min=1e-12)).clamp(0, 1)

    def debias(self, est: torch.Tensor) -> torch.Tensor:
        """est [m, 2] -> [m, 2] with the calibrated mean and spread: (est − a) / b, its spread
        shrunk so that the noise variance is not counted as pose spread."""
        a, b, _, _ = (x.to(est) for x in self.fit())
        mean = est.mean(0)
        return ((mean - a) + (est - mean) * self.signal_fraction(est).sqrt()) / b

    def state_dict(self) -> dict:
        return {'moments': self.moments.clone(), 'weight': self.weight.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.moments, self.weight = state['moments'].clone(), state['weight'].clone()


class PoseDistribution:
    """L_dist for G (see the module doc). weight = λ_dist (0 = off: nothing computed)."""

    def __init__(self, d_input: DInput, weight: float = 0.0, start_kimg: float = 0.0, min_slope: float = 0.5,
                 calibration: Optional[HeadCalibration] = None, num_poses: int = 64, queue_size: int = 512,
                 num_dirs: int = 16, seed: int = 0, min_signal: float = MIN_SIGNAL, image_weight: float = 0.0):
        """calibration: the head's fit on fakes, fed by the owner (PoF3DLoss: L4's pairs).
        image_weight: λ of the image-level term (`image_term`), which shares the queue and gates."""
        self.d_input, self.weight, self.start_kimg, self.min_slope = d_input, weight, start_kimg, min_slope
        self.num_poses, self.queue_size, self.num_dirs, self.min_signal = num_poses, queue_size, num_dirs, min_signal
        self.image_weight = image_weight
        self.calibration = HeadCalibration() if calibration is None else calibration
        self.queue = torch.zeros(0, 2)                          # raw real estimates, newest last
        self.generator = torch.Generator().manual_seed(seed)   # latents of the pose batch
        self.dims = []                                          # the components the gates let through

    def __call__(self, G, D, z: torch.Tensor, c: torch.Tensor, real_img: torch.Tensor, step: Step,
                 cur_nimg: float) -> Optional[torch.Tensor]:
        """z [N, z_dim], c [N, 25] (intrinsics), real_img [N, 3, H, H] -> scalar, or None while
        off (weight 0, before start_kimg, or the head not yet calibrated)."""
        if not (self.weight or self.image_weight):
            return None
        with torch.no_grad():
            real = real_pair(real_img, step.resolution, step.blur_sigma, image_from_raw(G))
            est = self.d_input.pose(D, real, step.blur_sigma)
        self.queue = torch.cat([self.queue, est.detach().float().cpu()])[-self.queue_size:]
        slopes = self.calibration.fit()[1]
        for k, name in enumerate('hv'):
            training_stats.report(f'Pose/calib_slope_{name}', slopes[k])
        # Components the head has learned on fakes AND that vary on reals more than its noise: a
        # head that cannot tell the reals apart would otherwise pull every camera to one point.
        signal = self.calibration.signal_fraction(self.queue)
        training_stats.report('Pose/real_signal_h', signal[0])
        dims = (self.calibration.trusted(self.min_slope) & (signal >= self.min_signal)).nonzero()[:, 0].tolist()
        self.dims = dims if cur_nimg >= self.start_kimg * 1000 and not step.pose_hold else []
        if not self.weight or not self.dims:
            return None
        target = self.calibration.debias(self.queue.to(z.device))[:, self.dims]
        latents = torch.randn([self.num_poses, z.shape[1]], generator=self.generator).to(z)
        pose = G.pose(latents, c[:1].expand(self.num_poses, -1), detach_w=True).pose[:, self.dims]   # [n, d]
        loss = sliced_wasserstein(pose, target, self.num_dirs) * self.weight
        training_stats.report('Loss/G/pose_dist', loss)
        return loss

    def image_term(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step,
                   est: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """λ_img · SW₂²(D_pose(B G(z)), queue) on the gated components: the law of the head's
        estimates on G's images (est [N, 2] with its graph into G, or rendered here) against its
        raw estimates on the reals. Both sides pass through the same head, so its shrinkage and
        bias cancel: no de-biasing, and the gradient reaches the whole generator (camera and
        field) through the image. None while off or while the gates of the last `__call__` are shut."""
        if not self.image_weight or not self.dims:
            return None
        if est is None:
            out = G(z, c, neural_rendering_resolution=step.resolution, render_schedule=step.render)
            est = self.d_input.pose(D, fake_pair(out), step.blur_sigma)
        loss = sliced_wasserstein(est[:, self.dims], self.queue.to(est)[:, self.dims], self.num_dirs)
        training_stats.report('Loss/G/pose_img_dist', loss)
        return loss * self.image_weight

    def state_dict(self) -> dict:
        """The queue, the latent generator and the open gates (the calibration is its owner's to save)."""
        return {'queue': self.queue.clone(), 'generator': self.generator.get_state(), 'dims': list(self.dims)}

    def load_state_dict(self, state: dict) -> None:
        self.queue = state['queue'].clone()
        self.generator.set_state(state['generator'])
        self.dims = list(state.get('dims', []))   # the image term reads the gates before __call__ runs
