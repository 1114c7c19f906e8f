"""Losses (SPEC §6): one small object per term, and the phase drivers.

    PoF3DLoss (pof3d.py)  pose_source 'learned'   (the reference's StyleGAN2LossPose)
    EG3DLoss  (eg3d.py)   pose_source 'dataset' / 'prior' / 'prior_residual'

Terms: GeneratorAdversarial, DiscriminatorFake, DiscriminatorReal (adversarial.py),
PoseRegularizer, PoseHeadLoss (pose.py), DensityRegularizer (density.py), R1Penalty (r1.py),
NormalConsistency, OpacityPrior, GeometryRegularizers (occupancy.py: GOF, SEEDS_SPEC §3.3).
Shared pieces: Step, DInput, real_pair (common.py); MirrorCamera, PoF3DFakes, EG3DFakes (fakes.py).
"""

from training.losses.adversarial import DiscriminatorFake, DiscriminatorReal, GeneratorAdversarial
from training.losses.common import BLUR_MODES, PHASES, DInput, Step, real_pair
from training.losses.density import DensityRegularizer
from training.losses.eg3d import EG3DLoss
from training.losses.fakes import EG3DFakes, MirrorCamera, PoF3DFakes
from training.losses.occupancy import GeometryRegularizers, NormalConsistency, OpacityPrior
from training.losses.pof3d import PoF3DLoss
from training.losses.pose import PoseHeadLoss, PoseRegularizer
from training.losses.r1 import R1Penalty

LOSS_CLASSES = {'learned': PoF3DLoss, 'dataset': EG3DLoss, 'prior': EG3DLoss, 'prior_residual': EG3DLoss}


def loss_class_for(pose_source: str):
    """The loss driver for a generator pose source (docs/model_api.md)."""
    if pose_source not in LOSS_CLASSES:
        raise ValueError(f'pose_source must be one of {sorted(LOSS_CLASSES)}, got {pose_source!r}')
    return LOSS_CLASSES[pose_source]


__all__ = ['BLUR_MODES', 'PHASES', 'DInput', 'DensityRegularizer', 'DiscriminatorFake', 'DiscriminatorReal',
           'EG3DFakes', 'EG3DLoss', 'GeneratorAdversarial', 'GeometryRegularizers', 'LOSS_CLASSES', 'MirrorCamera',
           'NormalConsistency', 'OpacityPrior', 'PoF3DFakes', 'PoF3DLoss', 'PoseHeadLoss', 'PoseRegularizer',
           'R1Penalty', 'Step', 'loss_class_for', 'real_pair']
