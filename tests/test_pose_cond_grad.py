"""--pose_cond_grad (training/losses/adversarial.py GeneratorAdversarial): G's adversarial gradient
also flows through the self-conditioned D's pose label, s(x) = f(x, D_pose(x)) instead of
f(x, sg D_pose(x)) (issue 15, docs/benchmark.md run 25). D's phases are unchanged."""

import pytest
import torch
import torch.nn.functional as F

from training.losses import PoF3DLoss
from training.losses.adversarial import GeneratorAdversarial
from training.losses.common import DInput, Step, fake_pair
from training.losses.fakes import PoF3DFakes

from test_losses import Z_DIM, make_D, make_G, make_labels

pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)


def _pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {'image': (torch.rand(3, 3, 32, 32, generator=g) * 2 - 1).requires_grad_(True),
            'image_raw': (torch.rand(3, 3, 16, 16, generator=g) * 2 - 1).requires_grad_(True)}


def _grads(score, pair):
    return torch.autograd.grad(score.sum(), [pair['image'], pair['image_raw']])


def test_same_score_and_its_gradient_is_the_full_derivative():
    """The score's value is unchanged; its image gradient is that of the two-pass composition
    score_given(x, pose_only(x)) with the label's graph kept, and without cond_grad that of the
    composition with the label detached. The two differ (the label path carries gradient)."""
    D, pair = make_D(), _pair()
    plain, full = D(pair)['score'], D(pair, cond_grad=True)['score']
    torch.testing.assert_close(full, plain)
    want_full = _grads(D.score_given(pair, D.pose_only(pair)), pair)
    want_plain = _grads(D.score_given(pair, D.pose_only(pair).detach()), pair)
    for got, want in zip(_grads(full, pair), want_full):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    for got, want in zip(_grads(plain, pair), want_plain):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    gap = (want_full[0] - want_plain[0]).abs().max() / want_plain[0].abs().max()
    assert gap > 1e-3, gap


@pytest.mark.parametrize('blur_mode,sigma', [('single', 0.0), ('single', 1.0), ('reference', 1.0)])
def test_d_input_score_keeps_the_label_graph_in_every_blur_mode(blur_mode, sigma):
    D, pair = make_D(), _pair(1)
    d_input = DInput(blur_mode)
    plain, _ = d_input.score(D, pair, sigma)
    full, _ = d_input.score(D, pair, sigma, cond_grad=True)
    torch.testing.assert_close(full, plain)
    g_plain, g_full = _grads(plain, pair)[0], _grads(full, pair)[0]
    assert not torch.allclose(g_plain, g_full, rtol=1e-3, atol=1e-6)


def _pose_grad(term, G, D, z, c, step):
    G.zero_grad(set_to_none=True)
    torch.manual_seed(0)                       # the same render noise in every call
    term(G, D, z, c, step).backward()
    return torch.cat([p.grad.flatten() for p in G.pose_source.parameters() if p.grad is not None])


def test_generator_term_hand_composition_reaches_the_camera():
    """L1 with cond_grad = mean softplus(-score_given(x, pose_only(x))) on the same render: the
    pose learner's gradient matches, and differs from the paper's (label detached)."""
    G, D = make_G(), make_D()
    for p in D.parameters():
        p.requires_grad_(False)
    z, c, step = torch.randn(4, Z_DIM), make_labels(4), Step(blur_sigma=0, resolution=16)
    d_input = DInput('single')
    got = _pose_grad(GeneratorAdversarial(d_input, PoF3DFakes(), 1.0, 'fake', cond_grad=True), G, D, z, c, step)
    paper = _pose_grad(GeneratorAdversarial(d_input, PoF3DFakes(), 1.0, 'fake'), G, D, z, c, step)

    def by_hand(G, D, z, c, step):
        x = d_input.prepare(fake_pair(G(z, c, neural_rendering_resolution=16)), 0)
        return F.softplus(-D.score_given(x, D.pose_only(x))).mean()
    want = _pose_grad(by_hand, G, D, z, c, step)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-8)
    assert not torch.allclose(got, paper, rtol=1e-3, atol=1e-8)


def _loss_grads(flag, phase, share_render):
    G, D = make_G(), make_D()
    z, c, reals = torch.randn(4, Z_DIM), make_labels(4), torch.rand(4, 3, 32, 32) * 2 - 1
    loss = PoF3DLoss('cpu', G, D, neural_rendering_resolution_initial=16, pose_cond_grad=flag,
                     share_render=share_render)
    module = G if phase == 'Gmain' else D
    for net in (G, D):
        net.requires_grad_(net is module)
    torch.manual_seed(0)
    loss.accumulate_gradients(phase, reals, c, z, c, 1, 0)
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


@pytest.mark.parametrize('share_render', [True, False])
def test_through_the_driver_g_changes_and_d_does_not(share_render):
    """PoF3DLoss(pose_cond_grad=True): G's phase gradient changes; D's phase is the paper's exactly
    (the option never lets the score train D's pose head)."""
    g_off, g_on = (_loss_grads(flag, 'Gmain', share_render) for flag in (False, True))
    assert g_on.shape == g_off.shape and not torch.allclose(g_on, g_off, rtol=1e-3, atol=1e-8)
    d_off, d_on = (_loss_grads(flag, 'Dmain', share_render) for flag in (False, True))
    assert torch.equal(d_on, d_off)
