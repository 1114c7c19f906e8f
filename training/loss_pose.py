"""EG3D/PoF3D-familiar module name: the reference's `training.loss_pose.StyleGAN2LossPose`
is `training.losses.pof3d.PoF3DLoss` here (SPEC §6)."""

from training.losses.pof3d import PoF3DLoss

StyleGAN2LossPose = PoF3DLoss

__all__ = ['PoF3DLoss', 'StyleGAN2LossPose']
