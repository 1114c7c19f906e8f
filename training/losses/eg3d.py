"""EG3D's loss for the non-learned pose sources (`dataset`, `prior`, `prior_residual`).

    Gmain  mean sp(-s(G z)) (+ the density symmetry of `--symmetry density`, `symmetry.py`; GOF's
           normal consistency and opacity prior, `occupancy.py`, when their weights are > 0;
           pi-GAN's position loss, `position.py`, when pos_weight > 0)
    Greg   density L1 (SPEC §6.2)
    Dmain  mean sp(s(G z)) + mean sp(-s(x)) (+ the position loss when pos_weight > 0)
    Dreg   (γ/2) R1 on image and image_raw (SPEC §6.4)

Differences from PoF3D's driver: no mirror terms and no pose losses; the mapping network
gets EG3D's generator pose conditioning, c swapped with a neighbour's with probability
`swapping_prob(cur_nimg, gpc_reg_prob, gpc_reg_fade_kimg)` (zeros when gpc_reg_prob is None,
SPEC §6.1, §4.9); a label-conditioned D (c_dim 25) scores reals with their dataset label and
fakes with the label of the camera they were rendered from. An unconditional D (c_dim 0,
the pi-GAN / CAMPARI baselines) gets no label. One D pass per image (blur_mode 'single').

Deviation: EG3D draws the swaps from the global torch RNG; here they come from a CPU
torch.Generator seeded with `seed` and saved by `state_dict()` (reproducible resume).
"""

from torch_utils import training_stats
from training import schedules
from training.losses.adversarial import DiscriminatorFake, DiscriminatorReal, GeneratorAdversarial
from training.losses.common import (DInput, Step, backward, check_unsupported, effective_phase, image_from_raw,
                                    real_pair)
from training.losses.density import DensityRegularizer
from training.losses.fakes import EG3DFakes
from training.losses.occupancy import GeometryRegularizers
from training.losses.position import PositionLoss
from training.losses.r1 import R1Penalty
from training.losses.symmetry import DensitySymmetry


class EG3DLoss:
    """EG3D `StyleGAN2Loss` with the `accumulate_gradients` interface (SPEC §6, §7).

    gpc_reg_prob: None = no generator pose conditioning (mapping label zeros); a float p =
    swap probability faded from 1 to p over gpc_reg_fade_kimg.
    """

    def __init__(self, device, G, D, augment_pipe=None, r1_gamma=10, density_reg=0.25, density_reg_p_dist=0.004,
                 reg_type='l1', blur_init_sigma=10, blur_fade_kimg=200, neural_rendering_resolution_initial=64,
                 neural_rendering_resolution_final=None, neural_rendering_resolution_fade_kimg=1000,
                 gpc_reg_prob=None, gpc_reg_fade_kimg=1000, style_mixing_prob=0, pl_weight=0, seed=0,
                 symmetry_density_weight=0.0, flip_type='flip_both', render_schedule=None, geometry=None,
                 pos_weight=0.0, topk=None, resolution_stages=None):
        check_unsupported(style_mixing_prob, pl_weight)
        self.device, self.G, self.D = device, G, D
        self.r1_gamma, self.density_reg = r1_gamma, density_reg
        self.blur_init_sigma, self.blur_fade_kimg = blur_init_sigma, blur_fade_kimg
        self.nrr = (neural_rendering_resolution_initial, neural_rendering_resolution_final,
                    neural_rendering_resolution_fade_kimg)
        self.gpc_reg_prob, self.gpc_reg_fade_kimg = gpc_reg_prob, gpc_reg_fade_kimg
        self.render_schedule = render_schedule   # schedules.render_schedule's constants, or None
        self.topk = topk                         # schedules.topk_fraction's constants, or None (pi-GAN)
        self.resolution_stages = resolution_stages   # schedules.stage_resolution's, or None (pi-GAN)
        self.image_from_raw = image_from_raw(G)
        self.d_conditional = getattr(D, 'c_dim', 0) > 0 and not getattr(D, 'self_condition', False)

        d_input = DInput('single', augment_pipe)
        self.fakes = EG3DFakes(self.d_conditional, seed)
        self.G_adv = GeneratorAdversarial(d_input, self.fakes)
        self.G_density = DensityRegularizer(density_reg, density_reg_p_dist, reg_type=reg_type)
        self.G_sym_density = DensitySymmetry(symmetry_density_weight, flip_type)   # --symmetry density
        self.G_geometry = GeometryRegularizers(**(geometry or {}))   # GOF (SEEDS_SPEC §3.3), off by default
        if self.G_geometry.on:
            self.G_geometry.check(G.renderer.options)
        self.D_fake = DiscriminatorFake(d_input, self.fakes)
        self.D_real = DiscriminatorReal(d_input)
        self.D_r1 = R1Penalty(d_input, r1_gamma)
        self.pos = PositionLoss(d_input, self.fakes, pos_weight)   # pi-GAN (SEEDS_SPEC §1.7), off by default

    def step(self, cur_nimg: float) -> Step:
        """Schedule values at cur_nimg (SPEC §4.7, §6.1)."""
        return Step(blur_sigma=schedules.blur_sigma(cur_nimg, self.blur_init_sigma, self.blur_fade_kimg),
                    resolution=schedules.render_resolution(cur_nimg, self.nrr, self.resolution_stages),
                    render=(schedules.render_schedule(cur_nimg, **self.render_schedule)
                            if self.render_schedule else None),
                    swapping_prob=schedules.swapping_prob(cur_nimg, self.gpc_reg_prob, self.gpc_reg_fade_kimg),
                    topk_frac=schedules.topk_fraction(cur_nimg, **self.topk) if self.topk else 1.0)

    def accumulate_gradients(self, phase, real_img, real_c, gen_z, gen_c, gain, cur_nimg):
        """real_img [N, 3, H, H] in [-1, 1], real_c [N, 25], gen_z [N, z_dim], gen_c [N, 25]."""
        phase = effective_phase(phase, self.density_reg > 0, self.r1_gamma > 0)
        G, D, step = self.G, self.D, self.step(cur_nimg)
        real_label = real_c if self.d_conditional else None
        if phase in ('Gmain', 'Gboth'):
            if self.pos.weight:   # the adversarial term and the position loss share one render and D pass
                backward(self.pos.generator(G, D, gen_z, gen_c, step, self.G_adv), gain)
            else:
                backward(self.G_adv(G, D, gen_z, gen_c, step), gain)
            backward(self.G_geometry(G, gen_z, gen_c, step, cur_nimg), gain)
            if self.G_sym_density.weight:   # guarded: the mapping label draws from the swap RNG
                backward(self.G_sym_density(G, gen_z, self.fakes.mapping_condition(gen_c, step)), gain)
        if phase in ('Greg', 'Gboth'):
            backward(self.G_density(G, gen_z, self.fakes.mapping_condition(gen_c, step)), gain)
        if phase in ('Dmain', 'Dboth'):
            loss_gen = backward(self.pos.discriminator(G, D, gen_z, gen_c, step, self.D_fake) if self.pos.weight
                                else self.D_fake(G, D, gen_z, gen_c, step), gain)
            real = real_pair(real_img, step.resolution, step.blur_sigma, self.image_from_raw)
            loss_real = backward(self.D_real(D, real, real_label, step), gain)
            training_stats.report('Loss/D/loss', loss_gen + loss_real)
        if phase in ('Dreg', 'Dboth'):
            real = real_pair(real_img, step.resolution, step.blur_sigma, self.image_from_raw)
            backward(self.D_r1(D, real, real_label, step), gain)

    def state_dict(self) -> dict:
        """RNG state for resume (the swap draws)."""
        return {'fakes': self.fakes.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.fakes.load_state_dict(state['fakes'])
