"""--pose_view_weight (training/losses/pose.py ViewConsistency): G's render must show its camera to D's
pose head, through the render (InfoGAN's code term with the camera as the code; issue 15)."""

import pytest
import torch

from torch_utils import training_stats
from training.losses import PoF3DLoss
from training.losses.common import DInput, Step, fake_pair
from training.losses.pose import PoseRegularizer, ViewConsistency

from test_losses import Z_DIM, make_D, make_G, make_labels

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)
STEP = Step(blur_sigma=0, resolution=16)


def _grad_sums(G):
    """{'pose': summed |grad| of the pose learner, 'field': of the backbone's synthesis} (None -> 0)."""
    def total(params):
        return sum(p.grad.abs().sum().item() for p in params if p.grad is not None)
    return {'pose': total(G.pose_source.parameters()), 'field': total(G.backbone.synthesis.parameters())}


def test_hand_value_and_it_moves_the_field_where_l3_moves_only_the_camera():
    G, D = make_G(), make_D()
    z, c = torch.randn(4, Z_DIM), make_labels(4)
    d_input = DInput('single', None)
    est = d_input.pose(D, fake_pair(G(z, c, neural_rendering_resolution=16)), 0)
    loss = ViewConsistency(d_input, 2.0).given_estimate(G, z, c, est)
    torch.testing.assert_close(loss, 2.0 * (est - G.pose(z, c).pose).square().mean())
    G.zero_grad(set_to_none=True)
    loss.backward()
    view = _grad_sums(G)
    G.zero_grad(set_to_none=True)
    PoseRegularizer(d_input, 2.0)(G, D, z, c, Step(blur_sigma=0, resolution=16, pose_gd_on=True)).backward()
    l3 = _grad_sums(G)
    assert view['field'] > 0 and view['pose'] > 0      # through the render: the object and its camera
    assert l3['field'] == 0 and l3['pose'] > 0          # L3: the camera only
    assert ViewConsistency(d_input, 0.0)(G, D, z, c, STEP) is None


def test_descending_it_makes_the_head_read_the_camera():
    """D fixed: a few steps of G on the term alone bring D's estimate of G's render toward G's camera."""
    G, D = make_G(), make_D()
    for p in D.parameters():
        p.requires_grad_(False)
    z, c = torch.randn(8, Z_DIM), make_labels(8)
    term = ViewConsistency(DInput('single', None), 1.0)
    opt = torch.optim.Adam(G.parameters(), lr=0.01)
    losses = []
    for _ in range(8):
        opt.zero_grad(set_to_none=True)
        torch.manual_seed(0)                        # the same render noise each step
        loss = term(G, D, z, c, STEP)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize('share_render', [True, False])
def test_through_the_loss_driver_both_render_paths(share_render):
    G, D = make_G(), make_D()
    z, c, reals = torch.randn(4, Z_DIM), make_labels(4), torch.rand(4, 3, 32, 32) * 2 - 1
    grads = []
    for weight in (0.0, 10.0):
        loss = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_view_weight=weight,
                         share_render=share_render)
        G.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        stats = training_stats.Collector(regex='Loss/G/pose_view')
        loss.accumulate_gradients('Gmain', reals, c, z, c, 1, 0)
        stats.update()
        grads.append(_grad_sums(G)['field'])
        assert (stats.num('Loss/G/pose_view') > 0) == (weight > 0)
    assert grads[1] != grads[0]
