"""The mirror-symmetry extension term (training/losses/symmetry.py).

Its premise is camera geometry: the yaw-mirrored camera's ray through pixel (i, j) is the
reflection, through the mirror plane, of the original camera's ray through pixel (i, R-1-j).
So a scene symmetric about that plane renders to the horizontal flip. Checked exactly here
on the rays; the term itself is checked for switching off, sign, and where its gradient goes.
"""

import math

import pytest
import torch

from training.cameras import FOV_to_intrinsics, LookAtPose, flip_camera
from training.losses.common import Step
from training.losses.symmetry import MirrorSymmetry
from training.rendering.rays import sample_rays

from test_losses import Z_DIM, make_G, make_labels   # tests/ is on sys.path


@pytest.mark.parametrize('flip_type, axis', [('flip_both', 0), ('flip_both_shapenet', 2)])
def test_mirrored_camera_ray_is_the_reflected_ray_of_the_flipped_pixel(flip_type, axis):
    R = 5
    cam = LookAtPose(torch.tensor([[1.1]]), torch.tensor([[1.3]]), [0, 0, 0], radius=2.7).double()
    K = FOV_to_intrinsics(18.837).double().unsqueeze(0)
    o, d = sample_rays(cam, K, R)                                          # [1, R*R, 3]
    o2, d2 = sample_rays(flip_camera(cam, flip_type, True), K, R)
    reflect = torch.ones(3, dtype=torch.float64)
    reflect[axis] = -1
    flipped = lambda x: x.reshape(R, R, 3).flip(1)                          # noqa: E731  pixel (i, R-1-j)
    torch.testing.assert_close(o2.reshape(R, R, 3), flipped(o) * reflect, rtol=0, atol=1e-12)
    torch.testing.assert_close(d2.reshape(R, R, 3), flipped(d) * reflect, rtol=0, atol=1e-12)


def test_symmetry_term_switches_off_and_trains_backbone_and_pose():
    G = make_G(pose_source='learned')
    z, c = torch.randn(2, Z_DIM), make_labels(2)
    step = Step(blur_sigma=0, resolution=16)
    assert MirrorSymmetry(0.0)(G, None, z, c, step) is None
    loss = MirrorSymmetry(2.0)(G, None, z, c, step)
    assert loss.ndim == 0 and math.isfinite(loss.item()) and loss.item() > 0
    loss.backward()
    touched = {n for n, p in G.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith('backbone.synthesis.') for n in touched)
    assert any(n.startswith('pose_source.') for n in touched)
    assert any(n.startswith('decoder.') for n in touched)


def test_pof3d_loss_runs_the_symmetry_term_in_gmain():
    from training.dual_discriminator import DualDiscriminator
    from training.losses.pof3d import PoF3DLoss
    G = make_G(pose_source='learned')
    torch.manual_seed(0)
    D = DualDiscriminator(2, 32, 3, channel_base=512, channel_max=16, num_fp16_res=0, pose_head_channels=32)
    z, c = torch.randn(2, Z_DIM), make_labels(2)
    grads = []
    for weight in (0.0, 1.0):
        loss = PoF3DLoss('cpu', G, D, sym_weight=weight, neural_rendering_resolution_initial=16, flip_to_dis=False,
                         pose_gd_weight=0)
        loss.G_adv.weight = 0                                # only the symmetry term may write gradients
        for p in G.parameters():
            p.grad = None
        loss.accumulate_gradients('Gmain', torch.rand(2, 3, 32, 32), c, z, c, 1, 0)
        grads.append(sum(p.grad.abs().sum() for p in G.parameters() if p.grad is not None))
    assert grads[0] == 0 and grads[1] > 0
