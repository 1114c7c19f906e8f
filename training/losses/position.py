"""pi-GAN's position loss (SEEDS_SPEC §1.7, §6.1 `PositionLoss`), a small term off at weight 0.

    PositionLoss   λ_pos · MSE(D_pos(G z), (h, v))

(h, v) is the prior pose source's draw that the fake was rendered from (pi-GAN's (φ, θ); the
(h, v) of this codebase, §6.0) and D_pos the discriminator's pose head. The term is added on
both steps, as pi-GAN does (§1.7): on D's step the head learns to regress the pose of the fakes
(the fake is rendered without a graph); on G's step G is pushed to render images whose pose D
reads as the drawn one. Each step shares one render and one D pass with its adversarial term
(the score and the pose come from the same trunk pass). MSE: the mean over images and both
components (torch's mse_loss, as pi-GAN). Needs a D with a pose head (`--pos_weight > 0` builds
one) and the prior pose source (the target is its draw; training/config.py checks).
"""

from typing import Optional

import torch
import torch.nn.functional as F

from torch_utils import training_stats
from training.losses.common import fake_pair


def position_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean (pred - target)^2 over [N, 2] (the target carries no gradient)."""
    return F.mse_loss(pred, target.detach())


class PositionLoss:
    """λ_pos MSE(D_pos(fake), prior draw) (module docstring), with the adversarial fake term of
    the same step on the same D pass. d_input: common.DInput; fakes: fakes.EG3DFakes."""

    def __init__(self, d_input, fakes, weight: float = 0.0):
        self.d_input, self.fakes, self.weight = d_input, fakes, float(weight)

    def _score_and_pose(self, G, D, z, c, step, update_emas):
        """(fake output, score [N, 1], D_pose [N, 2] with its graph); D step (update_emas): the
        fake without a graph."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not update_emas):
            out, label = self.fakes(G, z, c, step, update_emas=update_emas)
        if out.pose is None:
            raise ValueError('PositionLoss needs the pose of the prior draw (a prior pose source)')
        d_out = D(self.d_input.prepare(fake_pair(out), step.blur_sigma), label, update_emas=update_emas)
        if d_out['pose'] is None:
            raise ValueError('PositionLoss needs a discriminator with a pose head (pose_head=True)')
        return out, d_out['score'], d_out['pose']

    def _term(self, pred, target, who: str) -> torch.Tensor:
        loss = position_mse(pred, target)
        training_stats.report(f'Loss/{who}/pos', loss)
        return loss * self.weight

    def generator(self, G, D, z, c, step, adversarial) -> Optional[torch.Tensor]:
        """G step: adversarial (GeneratorAdversarial) loss + λ_pos MSE, one render and one D pass."""
        out, score, pose = self._score_and_pose(G, D, z, c, step, update_emas=False)
        adv = adversarial._loss(out, score, step.topk_frac) if adversarial.weight else None
        pos = self._term(pose, out.pose, 'G')
        return pos if adv is None else adv + pos

    def discriminator(self, G, D, z, c, step, adversarial) -> Optional[torch.Tensor]:
        """D step: adversarial (DiscriminatorFake) loss + λ_pos MSE on a fake rendered without a graph."""
        out, score, pose = self._score_and_pose(G, D, z, c, step, update_emas=True)
        adv = adversarial._loss(score) if adversarial.weight else None
        pos = self._term(pose, out.pose, 'D')
        return pos if adv is None else adv + pos
