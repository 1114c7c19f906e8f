"""Pose losses of PoF3D (SPEC §6.1 L3, §6.3 L4 / L4'). MSE = mean over batch × 2.

    PoseRegularizer  (G)  L3  = λ_gd  · MSE(ξ_G^det(z), sg D_pose(B G(z)))
                          (--pose_gd_debias: the target corrected by the head's fit on fakes,
                          `pose_dist.HeadCalibration.correct`; --pose_gd_min_slope S: only the
                          components whose fit has slope >= S pull; project options)
    ViewConsistency  (G)  λ_view · MSE(D_pose(B G(z)), sg ξ_G(z)), through the render (extension)
    PoseHeadLoss     (D)  L4  = λ_cam · MSE(D_pose(B G(z)), sg ξ_G(z))
                          L4' = λ_gd  · MSE(D_pose(B G^det(z)), sg ξ_G^det(z))   (λ_gd > 0, λ_cam = 0)

ξ_G^det is the pose from the detach_w mapping call: the pose learner reads sg(w), so L3's
gradient reaches only the two pose-learner layers (SPEC §6.1.3). Its target is detached, so
the render and D's prediction carry no graph (computed under no_grad: same values, less memory).
In the D phase G gets no gradient, so L4' equals L4 numerically up to its weight and the
w_avg update (the reference renders L4 with update_emas=True).
"""

from typing import Optional

import torch
import torch.nn.functional as F

from torch_utils import training_stats
from training.generator_output import GeneratorOutput
from training.losses.common import DInput, Step, fake_pair
from training.losses.fakes import PoF3DFakes


class PoseRegularizer:
    """L3 for G (SPEC §6.1.3): pulls the pose learner toward D's pose estimate of G's own image.

    calibration (a `pose_dist.HeadCalibration`, None = the paper) serves two extensions. The head
    regresses toward the mean (slope b < 1 on fakes), so L3 sets each camera to b times its offset
    from the mean: it shrinks G's law by about b per round (issue 15, run 7).
    debias: the target is corrected, (est - a) / b, on the components trusted at `min_slope`.
    gate > 0: a component pulls only once the head's slope on it reaches `gate`; none: no term."""

    def __init__(self, d_input: DInput, weight: float, calibration=None, min_slope: float = 0.5,
                 debias: bool = False, gate: float = 0.0):
        if (debias or gate > 0) and calibration is None:
            raise ValueError('debias / gate need the head calibration')
        self.d_input, self.weight = d_input, weight
        self.calibration, self.min_slope, self.debias, self.gate = calibration, min_slope, debias, gate

    def __call__(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step) -> Optional[torch.Tensor]:
        """z [N, z_dim], c [N, 25] -> scalar (None when weight is 0 or step.pose_gd_on is False)."""
        if not self.weight or not step.pose_gd_on:
            return None
        with torch.no_grad():
            out = G(z, c, neural_rendering_resolution=step.resolution, render_schedule=step.render, detach_w=True)
            target = self.d_input.pose(D, fake_pair(out), step.blur_sigma)   # [N, 2] = sg D_pose(B G z)
        return self.given_target(G, z, c, target, step)

    def given_target(self, G, z: torch.Tensor, c: torch.Tensor, target: torch.Tensor,
                     step: Step) -> Optional[torch.Tensor]:
        """L3 with the target sg D_pose(B G(z)) [N, 2] computed elsewhere (shared renders)."""
        if not self.weight or not step.pose_gd_on:
            return None
        mask = None
        if self.gate > 0:
            mask = self.calibration.trusted(self.gate)
            training_stats.report('Pose/l3_on_h', mask[0].float())
            if not mask.any():
                return None
        pose = G.pose(z, c, detach_w=True).pose                               # [N, 2], graph: pose learner only
        target = target.detach()
        if self.debias:
            target = self.calibration.correct(target, self.min_slope)
        if mask is None:
            loss = F.mse_loss(pose, target) * self.weight
        else:   # the MSE's scale (mean over N x 2), the untrusted component contributing 0
            loss = ((pose - target).square() * mask.to(pose)).mean() * self.weight
        training_stats.report('Loss/G/posegloss', loss)
        return loss


class ViewConsistency:
    """G's render must show the camera it was rendered from (extension, issue 15, `--pose_view_weight`):
    λ_view · MSE(D_pose(B G(z)), sg ξ_G(z)), with the graph through the render into G (D is not
    trained in G's phase). InfoGAN's code term with the camera as the code and D's pose head, fit on
    G's renders by L4 / L4', as its recognizer. L3 moves the camera toward what the image shows; this
    moves what the image shows toward the camera, so that a view cannot ignore its camera (with
    `--pose_input noise` an object cannot counter-turn it either)."""

    def __init__(self, d_input: DInput, weight: float):
        self.d_input, self.weight, self.fakes = d_input, weight, PoF3DFakes()

    def __call__(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step) -> Optional[torch.Tensor]:
        """z [N, z_dim], c [N, 25] -> scalar (None when the weight is 0); renders G(z) itself."""
        if not self.weight:
            return None
        out, _ = self.fakes(G, z, c, step)
        return self.given_estimate(G, z, c, self.d_input.pose(D, fake_pair(out), step.blur_sigma))

    def given_estimate(self, G, z: torch.Tensor, c: torch.Tensor, est: torch.Tensor) -> Optional[torch.Tensor]:
        """The term from est = D_pose(B G(z)) [N, 2] with its graph into G (shared renders)."""
        if not self.weight:
            return None
        with torch.no_grad():
            target = G.pose(z, c).pose                                     # [N, 2] the camera G rendered
        loss = F.mse_loss(est, target) * self.weight
        training_stats.report('Loss/G/pose_view', loss)
        return loss


class PoseHeadLoss:
    """L4 / L4' for D (SPEC §6.3.1-2): regress G's raw (h, v) from the blurred fake.

    Trains D's trunk up to the epilogue conv plus the pose head. update_emas: render with
    w_avg tracking (True for L4 as the reference, False for L4'). observer(true [N, 2],
    estimate [N, 2]), if given, sees every (camera, prediction) pair without graph: the head's
    fit on fakes, which calibrates the pose-distribution term (`pose_dist.py`).
    """

    def __init__(self, d_input: DInput, weight: float, update_emas: bool = True, observer=None):
        self.d_input, self.weight, self.update_emas = d_input, weight, update_emas
        self.observer = observer

    def __call__(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step) -> Optional[torch.Tensor]:
        if not self.weight:
            return None
        with torch.no_grad():
            out = G(z, c, neural_rendering_resolution=step.resolution,
                    render_schedule=step.render, update_emas=self.update_emas)
        return self.given_prediction(self.d_input.pose(D, fake_pair(out), step.blur_sigma), out)

    def given_prediction(self, pred: torch.Tensor, out: GeneratorOutput) -> Optional[torch.Tensor]:
        """L4 from D's prediction pred [N, 2] (with its graph) of the fake `out` (shared renders)."""
        if not self.weight:
            return None
        loss = F.mse_loss(pred, out.pose.detach()) * self.weight
        training_stats.report('Loss/D/loss_Dcam', loss)
        if self.observer is not None:
            self.observer(out.pose.detach(), pred.detach())
        return loss
