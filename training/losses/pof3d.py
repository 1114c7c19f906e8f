"""PoF3D's loss (the reference's `StyleGAN2LossPose`, SPEC §6) as a short phase driver.

    Gmain  L1 adversarial, L2 flipped adversarial (flip_to_dis), L3 pose regularizer (λ_gd, from
           pose_gd_start_kimg), the pose hold (pose_hold_kimg: until then no term moves G's
           camera: the renders use the detached camera, L3 and the distribution term wait; from
           pose_freeze_kimg on, or once D's pose head reads G's yaw from its renders at slope
           pose_freeze_slope, likewise: the camera law learned so far is kept), and the
           project's options (0 = paper): the mirror-symmetry render term (λ_sym), the density
           symmetry (`symmetry.py`), the pose-distribution term (`pose_dist.py`), the view
           consistency (λ_view, `pose.py`: the render must show its camera to D's head), G's
           score gradient through D's pose label (pose_cond_grad, `adversarial.py`),
           GOF's normal consistency and opacity prior (`occupancy.py`)
    Greg   density L1 (λ_dens)
    Dmain  L4 pose head (λ_cam) or L4' (λ_gd when λ_cam = 0), the head's exploration term
           (`pose_explore.py`, off by default), L5 fake, L6 flipped fake (flip_to_disd), L7 real
    Dreg   R1 (γ)

Each term is its own object (`adversarial.py`, `pose.py`, `density.py`, `r1.py`); the driver
calls them in the reference's order and back-propagates each one separately with
`(loss * gain).backward()`. Schedules (blur sigma, rendering resolution) are pure functions
of cur_nimg (`training/schedules.py`).

Choices (see `common.py` and `fakes.py`): blur_mode 'single' (default, one D pass on B x) or
'reference' (the double-blur quirk of SPEC §6.5); the mirror coin comes from a
`random.Random(seed)` owned by this object (the reference's is unseeded); `state_dict()`
holds its state for resume. With `share_render` (the default; `--share_render`, single blur
mode) L1 and L3 share one render and one D pass, and so do L4 and L5: per iteration 4 renders
and 5 D trunk passes instead of the reference's 6 and 12 (tests/test_model_equivalence.py counts them).
A behaviour choice, not only a speed one: the paired terms see one noise/jitter draw where
the reference draws twice (same expectation), and w_avg is updated once per Dmain, not twice.
"""

import math

import torch

from torch_utils import training_stats
from training import schedules
from training.losses.adversarial import DiscriminatorFake, DiscriminatorReal, GeneratorAdversarial
from training.losses.common import (DInput, Step, backward, check_unsupported, effective_phase, image_from_raw,
                                    real_pair)
from training.losses.density import DensityRegularizer
from training.losses.fakes import MirrorCamera, PoF3DFakes
from training.losses.occupancy import GeometryRegularizers
from training.losses.pose import PoseHeadLoss, PoseRegularizer, ViewConsistency
from training.losses.pose_dist import HeadCalibration, PoseDistribution
from training.losses.pose_explore import PoseHeadExplore
from training.losses.r1 import R1Penalty
from training.losses.symmetry import DensitySymmetry, MirrorSymmetry


class PoF3DLoss:
    """EG3D's `accumulate_gradients` interface over the PoF3D terms (SPEC §6, weights §6.6).

    G: TriPlaneGenerator with pose_source 'learned'; D: DualDiscriminator with a pose head,
    self-conditioned (c_dim 2). Defaults follow the FFHQ script where the reference CLI
    default would not train (dis_cam_weight 2, pose_gd_weight 1). blur_fade_kimg is in kimg
    as given (the training loop scales it by batch / 32, SPEC §4.7). seed: seeds the mirror
    coin; pass seed * num_gpus + rank. share_render: L1/L3 and L4/L5 share a render (module
    docstring); False draws a render per term as the reference does. render_schedule: the
    constants of `schedules.render_schedule` (pi-GAN's density noise, GOF's window), or None.
    """

    def __init__(self, device, G, D, augment_pipe=None, r1_gamma=10, dis_cam_weight=2.0, pose_gd_weight=1.0,
                 flip_to_dis=True, flip_to_disd=True, flip_to_disd_weight=1.0, flip_type='flip_both',
                 detach_pose=False, density_reg=0.25, density_reg_p_dist=0.004, reg_type='l1',
                 blur_init_sigma=10, blur_fade_kimg=200, blur_mode='single',
                 neural_rendering_resolution_initial=64, neural_rendering_resolution_final=None,
                 neural_rendering_resolution_fade_kimg=1000, style_mixing_prob=0, pl_weight=0, seed=0,
                 sym_weight=0.0, symmetry_density_weight=0.0, pose_dist_weight=0.0, pose_dist_start_kimg=0.0,
                 pose_dist_min_slope=0.5, pose_gd_start_kimg=0.0, pose_gd_debias=False, share_render=True,
                 render_schedule=None, geometry=None, pose_explore_weight=0.0, pose_explore_range=math.pi / 2,
                 pose_hold_kimg=0.0, topk=None, pose_gd_min_slope=0.0, resolution_stages=None,
                 pose_img_dist_weight=0.0, pose_freeze_kimg=0.0, pose_freeze_slope=0.0,
                 pose_view_weight=0.0, pose_cond_grad=False):
        check_unsupported(style_mixing_prob, pl_weight)
        if (dis_cam_weight > 0 or pose_gd_weight > 0) and getattr(D, 'pose_head', True) is None:
            raise ValueError('dis_cam_weight / pose_gd_weight > 0 need a discriminator with a pose head')
        self.device, self.G, self.D = device, G, D
        self.r1_gamma, self.density_reg = r1_gamma, density_reg
        self.blur_init_sigma, self.blur_fade_kimg = blur_init_sigma, blur_fade_kimg
        self.pose_hold_kimg = pose_hold_kimg           # G's camera held at its initial law (extension)
        self.pose_freeze_kimg = pose_freeze_kimg       # ... and from here on at its learned one (0: never)
        self.pose_freeze_slope = pose_freeze_slope     # ... or from when the head reads G's yaw at this slope
        self.frozen_since = None                       # nimg at which the slope latched the freeze
        self.pose_gd_start_kimg = max(pose_gd_start_kimg, pose_hold_kimg)   # L3 waits (extension; 0 = paper)
        self.render_schedule = render_schedule   # schedules.render_schedule's constants, or None
        self.topk = topk                         # schedules.topk_fraction's constants, or None (pi-GAN)
        self.resolution_stages = resolution_stages   # schedules.stage_resolution's, or None (pi-GAN)
        self.image_from_raw = image_from_raw(G)
        self.nrr = (neural_rendering_resolution_initial, neural_rendering_resolution_final,
                    neural_rendering_resolution_fade_kimg)

        self.blur_mode = blur_mode
        self.share_render = bool(share_render)
        d_input = DInput(blur_mode, augment_pipe)
        self.mirror = MirrorCamera(flip_type, seed)
        plain, flipped = PoF3DFakes(), PoF3DFakes(self.mirror, detach_pose)
        w_f = flip_to_disd_weight if flip_to_disd else 1.0   # scales both D fake terms (SPEC §12.6)
        cg = bool(pose_cond_grad)   # extension: G's score gradient also through D's pose label
        self.G_adv = GeneratorAdversarial(d_input, plain, 1.0, 'fake', cg)                             # L1
        self.G_adv_flip = GeneratorAdversarial(d_input, flipped, float(flip_to_dis), 'fake_flip', cg)  # L2
        # The head's fit on fakes (L4's pairs): de-biases the extensions' use of its estimates.
        self.calibration = (HeadCalibration() if pose_dist_weight or pose_img_dist_weight or pose_gd_debias
                            or pose_gd_min_slope > 0 or pose_freeze_slope > 0 else None)
        self.G_pose = PoseRegularizer(d_input, pose_gd_weight,                                     # L3
                                      self.calibration, pose_dist_min_slope, pose_gd_debias, pose_gd_min_slope)
        self.G_view = ViewConsistency(d_input, pose_view_weight)                                   # extension
        self.G_sym = MirrorSymmetry(sym_weight, flip_type)                                         # extension
        self.G_sym_density = DensitySymmetry(symmetry_density_weight, flip_type)                   # extension
        self.G_pose_dist = PoseDistribution(d_input, pose_dist_weight, max(pose_dist_start_kimg, pose_hold_kimg),
                                            pose_dist_min_slope, self.calibration, seed=seed,
                                            image_weight=pose_img_dist_weight)
        self.G_density = DensityRegularizer(density_reg, density_reg_p_dist, reg_type=reg_type)
        self.G_geometry = GeometryRegularizers(**(geometry or {}))   # GOF (SEEDS_SPEC §3.3), off by default
        if self.G_geometry.on:
            self.G_geometry.check(G.renderer.options)
        cam_weight = dis_cam_weight if dis_cam_weight > 0 else pose_gd_weight                      # L4 or L4'
        self.D_pose = PoseHeadLoss(d_input, cam_weight, update_emas=dis_cam_weight > 0,
                                   observer=None if self.calibration is None else self.calibration.update)
        self.D_explore = PoseHeadExplore(d_input, pose_explore_weight, pose_explore_range, seed)   # extension
        self.D_fake = DiscriminatorFake(d_input, plain, w_f, 'fake')                               # L5
        self.D_fake_flip = DiscriminatorFake(d_input, flipped, w_f if flip_to_disd else 0.0, 'fake_flip')  # L6
        self.D_real = DiscriminatorReal(d_input)                                                   # L7
        self.D_r1 = R1Penalty(d_input, r1_gamma)

    def step(self, cur_nimg: float) -> Step:
        """Schedule values at cur_nimg (SPEC §4.7)."""
        return Step(blur_sigma=schedules.blur_sigma(cur_nimg, self.blur_init_sigma, self.blur_fade_kimg),
                    resolution=schedules.render_resolution(cur_nimg, self.nrr, self.resolution_stages),
                    render=(schedules.render_schedule(cur_nimg, **self.render_schedule)
                            if self.render_schedule else None),
                    pose_gd_on=cur_nimg >= self.pose_gd_start_kimg * 1000 and not self._frozen(cur_nimg),
                    pose_hold=cur_nimg < self.pose_hold_kimg * 1000 or self._frozen(cur_nimg),
                    topk_frac=schedules.topk_fraction(cur_nimg, **self.topk) if self.topk else 1.0)

    def _frozen(self, cur_nimg: float) -> bool:
        by_slope = self.frozen_since is not None and self.frozen_since <= cur_nimg
        return by_slope or 0 < self.pose_freeze_kimg * 1000 <= cur_nimg

    def _latch_freeze(self, cur_nimg: float) -> None:
        """--pose_freeze_slope: freeze for good the first time, past the hold, that the head's running
        fit on G's renders has yaw slope >= S. Label-free: the renders then show the camera they were
        asked for (the view gain has formed): where docs/benchmark.md run 12 had learned the data's law.
        Under DDP the ranks latch together (any rank's fit suffices), so they keep one camera law."""
        if self.pose_freeze_slope <= 0 or self.frozen_since is not None or cur_nimg < self.pose_hold_kimg * 1000:
            return
        ready = torch.tensor(float(self.calibration.trusted(self.pose_freeze_slope)[0]), device=self.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(ready, op=torch.distributed.ReduceOp.MAX)
        if ready.item() > 0:
            self.frozen_since = float(cur_nimg)
            print(f"pose freeze: D's pose head reads G's yaw at slope >= {self.pose_freeze_slope:g}; "
                  f'the camera law is frozen from {cur_nimg / 1000:.1f} kimg on')

    def _report_pose_state(self, cur_nimg: float) -> None:
        """Pose/head_slope_{h,v}: the head's running fit on G's renders (when kept); Pose/frozen: 1 once
        G's camera law is frozen (when a freeze option is on)."""
        if self.calibration is not None:
            _, slope, _, calibrated = self.calibration.fit()
            for i, name in enumerate('hv'):
                if calibrated[i]:
                    training_stats.report(f'Pose/head_slope_{name}', float(slope[i]))
        if self.pose_freeze_kimg > 0 or self.pose_freeze_slope > 0:
            training_stats.report('Pose/frozen', float(self._frozen(cur_nimg)))

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        """real_img [N, 3, H, H] in [-1, 1], real_c [N, 25] (unused: D labels itself),
        gen_z [N, z_dim], gen_c [N, 25] (intrinsics only), gain = the phase interval."""
        del real_c
        self._latch_freeze(cur_nimg)
        phase = effective_phase(phase, self.density_reg > 0, self.r1_gamma > 0)
        G, D, step = self.G, self.D, self.step(cur_nimg)
        if phase in ('Gmain', 'Gboth'):
            self._g_main(G, D, gen_z, gen_c, step, gain)   # with the image-level pose term (its gates: last step's)
            backward(self.G_sym_density(G, gen_z, gen_c), gain)
            backward(self.G_pose_dist(G, D, gen_z, gen_c, real_img, step, cur_nimg), gain)
            backward(self.G_geometry(G, gen_z, gen_c, step, cur_nimg), gain)
        if phase in ('Greg', 'Gboth'):
            backward(self.G_density(G, gen_z, gen_c), gain)
        if phase in ('Dmain', 'Dboth'):
            adv = self._d_fakes(G, D, gen_z, gen_c, step, gain)
            backward(self.D_explore(G, D, gen_z, gen_c, step), gain)   # issue 15: the head explores yaws
            real = real_pair(real_img, step.resolution, step.blur_sigma, self.image_from_raw)
            adv.append(backward(self.D_real(D, real, None, step), gain))
            training_stats.report('Loss/D/loss', sum(x for x in adv if x is not None))
            self._report_pose_state(cur_nimg)
        if phase in ('Dreg', 'Dboth'):
            real = real_pair(real_img, step.resolution, step.blur_sigma, self.image_from_raw)
            backward(self.D_r1(D, real, None, step), gain)

    def shared_renders(self) -> bool:
        """`share_render` in single blur mode: L1 and L3 share G's render and D's pass in Gmain,
        L4 and L5 in Dmain: 2 renders per phase instead of 3. Same terms and expectations; the
        reference draws new noise and jitter for every render (SPEC §6), here the paired terms
        see the same draw, and w_avg is updated once per Dmain, not twice."""
        return self.share_render and self.blur_mode == 'single'

    def _g_main(self, G, D, z, c, step, gain) -> None:
        """L1, L2, L3, the symmetry and the image-level pose terms, each back-propagated (L1 + L3 +
        the image term together when shared: D's pose estimate of G's render, with its graph)."""
        if self.shared_renders():
            l1, est = self.G_adv.with_pose(G, D, z, c, step)
            backward(_total(l1, self.G_pose.given_target(G, z, c, est, step),
                            self.G_pose_dist.image_term(G, D, z, c, step, est),
                            self.G_view.given_estimate(G, z, c, est)), gain)
            terms = (self.G_adv_flip, self.G_sym)
        else:
            terms = (self.G_adv, self.G_adv_flip, self.G_pose, self.G_sym, self.G_pose_dist.image_term, self.G_view)
        for term in terms:
            backward(term(G, D, z, c, step), gain)

    def _d_fakes(self, G, D, z, c, step, gain) -> list:
        """L4, L5, L6 back-propagated (L4 + L5 together when shared); returns [L5, L6] detached."""
        if self.shared_renders():
            l5, pred, out = self.D_fake.with_pose(G, D, z, c, step)
            backward(_total(self.D_pose.given_prediction(pred, out), l5), gain)
            return [None if l5 is None else l5.detach(), backward(self.D_fake_flip(G, D, z, c, step), gain)]
        backward(self.D_pose(G, D, z, c, step), gain)
        return [backward(term(G, D, z, c, step), gain) for term in (self.D_fake, self.D_fake_flip)]

    def state_dict(self) -> dict:
        """RNG and running state for resume (the mirror coin, the pose-distribution term)."""
        state = {'mirror': self.mirror.state_dict(), 'pose_dist': self.G_pose_dist.state_dict(),
                 'pose_explore': self.D_explore.state_dict(), 'frozen_since': self.frozen_since}
        if self.calibration is not None:
            state['calibration'] = self.calibration.state_dict()
        return state

    def load_state_dict(self, state: dict) -> None:
        self.mirror.load_state_dict(state['mirror'])
        if 'pose_dist' in state:   # training states written before the extensions lack these
            self.G_pose_dist.load_state_dict(state['pose_dist'])
        if 'pose_explore' in state:
            self.D_explore.load_state_dict(state['pose_explore'])
        self.frozen_since = state.get('frozen_since')
        saved = state.get('calibration', state.get('pose_dist', {}).get('calibration'))   # older: under pose_dist
        if self.calibration is not None and saved is not None:
            self.calibration.load_state_dict(saved)


def _total(*losses):
    """Sum of the terms that are on (None: all off). One backward of a sum = separate backwards."""
    on = [x for x in losses if x is not None]
    return sum(on[1:], on[0]) if on else None
