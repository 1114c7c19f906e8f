"""R1 gradient penalty on reals, dual-discrimination form (SPEC §6.4), lazy `Dreg` phase.

    L_R1 = (γ/2) · mean_batch(‖∂s/∂image‖² + ‖∂s/∂image_raw‖²)

The gradients are taken w.r.t. the tensors D's score actually consumed (after the blur:
B x, or B(B x) with blur_mode='reference'; the raw image after its one blur), as EG3D's
in-place blur makes it. They are computed inside `no_weight_gradients()` (conv weight grads
are wasted work here) with create_graph=True, so the penalty back-propagates into D (double
backward). The conditioning is detached: the self-conditioned D scores with sg(D_pose(x)),
an EG3D D with the dataset label.
"""

from typing import Optional

import torch

from torch_utils import training_stats
from torch_utils.ops import conv2d_gradfix
from training.losses.common import DInput, ImagePair, Step, report_scores


class R1Penalty:
    """(γ/2)·R1 for D (SPEC §6.4). gamma = r1_gamma; 0 switches it off."""

    def __init__(self, d_input: DInput, gamma: float):
        self.d_input, self.gamma = d_input, gamma

    def __call__(self, D, real: ImagePair, c: Optional[torch.Tensor], step: Step) -> Optional[torch.Tensor]:
        """real: `common.real_pair(...)` -> scalar (None when gamma is 0)."""
        if not self.gamma:
            return None
        x = {k: v.detach().requires_grad_(True) for k, v in real.items()}
        score, used = self.d_input.score(D, x, step.blur_sigma, c)               # [N, 1]
        report_scores('real', score)
        with conv2d_gradfix.no_weight_gradients():
            g_img, g_raw = torch.autograd.grad(outputs=[score.sum()], inputs=[used['image'], used['image_raw']],
                                               create_graph=True, only_inputs=True, allow_unused=True,
                                               materialize_grads=True)  # zeros where D ignores an input
        penalty = g_img.square().sum([1, 2, 3]) + g_raw.square().sum([1, 2, 3])  # [N]
        loss = penalty * (self.gamma / 2)
        training_stats.report('Loss/r1_penalty', penalty)
        training_stats.report('Loss/D/reg', loss)
        return loss.mean()
