"""The image-level pose-distribution term (`PoseDistribution.image_term`, --pose_img_dist_weight):
D's pose estimates on G's images against its estimates on the reals, on the gated components,
through the render. Hand values, the gates, resume, the claim that a shrinking head needs no
de-biasing, and PoF3DLoss on both render paths."""

import math

import pytest
import torch

from training.losses import PoF3DLoss
from training.losses.common import DInput, Step
from training.losses.pose_dist import PoseDistribution, sliced_wasserstein

from test_losses import Z_DIM, make_D, make_G, make_labels
from test_pose_dist import MODES, ExactHead, bimodal, real_batch

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)

CENTER = math.pi / 2


class ShrinkHead(ExactHead):
    """A head that reads every pose at half its offset from the frontal view: est = C + (p - C) / 2."""

    def pose_only(self, img):
        return CENTER + (super().pose_only(img) - CENTER) * 0.5


def shrink(pose):
    return CENTER + (pose - CENTER) * 0.5


def fed_term(head, image_weight=1.0, weight=0.0, batches=40, **kwargs):
    """A term whose calibration saw `head` on fakes and whose queue holds its estimates of bimodal reals."""
    term = PoseDistribution(DInput(), weight, queue_size=256, min_slope=0.3, image_weight=image_weight, **kwargs)
    for k in range(100):
        true = bimodal(8, 100 + k, std=0.5)
        term.calibration.update(true, head.pose_only({'image': real_batch(true)}))
    G, step, c = make_G(), Step(blur_sigma=0, resolution=16), make_labels(8)
    for k in range(batches):
        term(G, head, torch.randn(8, Z_DIM), c, real_batch(bimodal(8, 500 + k)), step, 0)
    return term


def test_image_term_is_off_until_the_gates_open_and_resumes_them():
    step = Step(blur_sigma=0, resolution=16)
    est = torch.full([8, 2], CENTER, requires_grad=True)
    assert PoseDistribution(DInput(), 1.0).image_term(None, None, None, None, step, est) is None   # weight 0
    fresh = PoseDistribution(DInput(), 0.0, image_weight=1.0)
    assert fresh.image_term(None, None, None, None, step, est) is None                            # no gates yet
    late = fed_term(ExactHead(), start_kimg=2.0)
    assert late.dims == [] and late.image_term(None, None, None, None, step, est) is None         # before 2 kimg
    term = fed_term(ExactHead())
    assert term.dims == [0, 1]
    resumed = PoseDistribution(DInput(), 0.0, queue_size=256, image_weight=1.0)
    resumed.load_state_dict(term.state_dict())
    assert resumed.dims == [0, 1]
    torch.testing.assert_close(resumed.image_term(None, None, None, None, step, est),
                               term.image_term(None, None, None, None, step, est))


def test_image_term_is_the_weighted_sliced_w2_against_the_raw_queue_with_a_gradient():
    term = fed_term(ExactHead(), image_weight=3.0)
    est = bimodal(8, 7, std=0.3).requires_grad_(True)
    loss = term.image_term(None, None, None, None, Step(blur_sigma=0, resolution=16), est)
    torch.testing.assert_close(loss, 3.0 * sliced_wasserstein(est, term.queue))
    loss.backward()
    assert est.grad.abs().sum() > 0
    term.dims = [0]                                      # a head trusted on the yaw alone: a 1-D W2 on h
    yaw_only = term.image_term(None, None, None, None, Step(blur_sigma=0, resolution=16), est)
    torch.testing.assert_close(yaw_only, 3.0 * sliced_wasserstein(est[:, :1], term.queue[:, :1]))


def test_a_shrinking_head_needs_no_debiasing():
    """Cameras start as one frontal mode; the head reads reals and fakes at half their offset.
    Matching its readings of the fakes to its readings of the reals recovers the TRUE two modes,
    where matching the cameras themselves to its raw readings of the reals would halve them."""
    term = fed_term(ShrinkHead())
    assert term.queue[:, 0].std() < 0.5 * bimodal(256, 0, std=0.5)[:, 0].std() * 1.1   # the readings are shrunk
    g = torch.Generator().manual_seed(3)
    cameras = torch.stack([CENTER + 0.1 * torch.randn(64, generator=g), torch.full([64], CENTER)], 1)
    cameras.requires_grad_(True)
    opt = torch.optim.Adam([cameras], lr=0.02)
    step = Step(blur_sigma=0, resolution=16)
    for _ in range(400):
        idx = torch.randperm(64, generator=g)[:8]
        opt.zero_grad()
        term.image_term(None, None, None, None, step, shrink(cameras[idx])).backward()
        opt.step()
    h = cameras[:, 0].detach()
    near = [((h - m).abs() < 0.35).float().mean().item() for m in MODES]
    assert min(near) > 0.3, near                                           # both true modes populated
    assert abs(h[h < CENTER].median().item() - MODES[0]) < 0.2             # at the true, unshrunk places
    assert abs(h[h > CENTER].median().item() - MODES[1]) < 0.2


@pytest.mark.parametrize('shared', [True, False])
def test_pof3d_loss_sends_the_image_term_through_the_render(shared):
    """Gmain with every other G term off: the term reaches the pose learner AND the field."""
    G, D = make_G(), make_D()
    z, c = torch.randn(4, Z_DIM), make_labels(4)
    loss = PoF3DLoss('cpu', G, D, pose_img_dist_weight=1.0, neural_rendering_resolution_initial=16,
                     share_render=shared)
    assert loss.calibration is not None and loss.G_pose_dist.image_weight == 1.0
    loss.G_pose_dist.queue = bimodal(64, 1)
    loss.G_pose_dist.dims = [0]                          # the gates as an open __call__ leaves them
    loss.G_adv.weight = loss.G_adv_flip.weight = loss.G_pose.weight = 0
    for p in G.parameters():
        p.grad = None
    loss.G_pose_dist.weight = 0                          # the camera term off: only the image term
    loss._g_main(G, D, z, c, loss.step(0), 1)
    touched = {n for n, p in G.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert any(n.startswith('pose_source.') for n in touched)
    assert any(not n.startswith('pose_source.') for n in touched)
