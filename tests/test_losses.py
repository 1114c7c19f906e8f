"""Tests for training/schedules.py, training/blur.py and training/losses/ (SPEC §4.7, §6, §7).

- schedules: golden values (blur sigma, the sigma = 1 kernel taps, EMA beta, lazy-reg Adam);
- each loss term on a stub D (contract of docs/model_api.md) for its sign / direction, R1
  in closed form, the two blur modes' D calls;
- the terms through the real tiny TriPlaneGenerator + DualDiscriminator: finite, a weight of
  0 removes the term's gradient, L3 reaches only the pose learner, R1 double backward;
- the EG3D variant for the other pose sources.
CPU, 32-px images, 16-px raw, 8+8 ray samples, tiny channels.
"""

import math

import pytest
import torch

from torch_utils import training_stats
from training import blur, schedules
from training.cameras import FOV_to_intrinsics, LookAtPose
from training.dual_discriminator import DualDiscriminator
from training.generator import TriPlaneGenerator
from training.losses import (DInput, DiscriminatorFake, DiscriminatorReal, EG3DLoss, GeneratorAdversarial,
                             MirrorCamera, PoF3DFakes, PoF3DLoss, PoseRegularizer, R1Penalty, Step, loss_class_for,
                             real_pair)
from training.losses.common import effective_phase
from training.losses.fakes import mapping_condition

Z_DIM = 16
RK = dict(depth_resolution=8, depth_resolution_importance=8, ray_start=2.25, ray_end=3.3, box_warp=1,
          avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2], superresolution_module='SuperresolutionHybrid2X')


def make_G(pose_source='learned', seed=0, **kwargs):
    torch.manual_seed(seed)
    return TriPlaneGenerator(z_dim=Z_DIM, c_dim=25, w_dim=16, img_resolution=32, img_channels=3,
                             pose_source=pose_source, rendering_kwargs=RK, plane_resolution=16, plane_channels=8,
                             neural_rendering_resolution=16, channel_base=128, channel_max=16,
                             mapping_kwargs=dict(num_layers=2), **kwargs)


def make_D(c_dim=2, seed=0, **kwargs):
    torch.manual_seed(seed)
    return DualDiscriminator(c_dim, 32, 3, channel_base=512, channel_max=16, num_fp16_res=0, pose_head_channels=32,
                             **kwargs)


def make_labels(n, seed=0):
    """[n, 25] labels: look-at cameras around the FFHQ pivot + the FFHQ intrinsics."""
    g = torch.Generator().manual_seed(seed)
    h = math.pi / 2 + 0.3 * torch.randn(n, 1, generator=g)
    v = math.pi / 2 + 0.2 * torch.randn(n, 1, generator=g)
    cam2world = LookAtPose(h, v, [0, 0, 0.2], radius=2.7)
    return torch.cat([cam2world.reshape(n, 16), FOV_to_intrinsics(18.837).reshape(1, 9).repeat(n, 1)], dim=1)


@pytest.fixture(scope='module')
def nets():
    return make_G(), make_D()


def clear_grads(*modules):
    for m in modules:
        for p in m.parameters():
            p.grad = None


def grads(module):
    """name -> grad (None when untouched)."""
    return {n: p.grad for n, p in module.named_parameters()}


def touched(module):
    return {n for n, g in grads(module).items() if g is not None and g.abs().sum() > 0}


class StubD(torch.nn.Module):
    """The D contract on a few parameters: score = bias + a·Σimage + b·Σimage_raw (terms with a
    zero coefficient are absent: a = b = 0 ignores the input); pose = Linear(channel means).
    Records every call with the image it got."""

    c_dim, self_condition = 2, True

    def __init__(self, a=0.0, b=0.0, bias=0.0):
        super().__init__()
        self.a, self.b = a, b
        self.bias = torch.nn.Parameter(torch.tensor(float(bias)))
        self.pose_head = torch.nn.Linear(6, 2)
        self.calls = []

    def _pose(self, img):
        return self.pose_head(torch.cat([img['image'].mean([2, 3]), img['image_raw'].mean([2, 3])], dim=1))

    def _score(self, img):
        s = self.bias.expand(img['image'].shape[0])
        if self.a:
            s = s + self.a * img['image'].sum([1, 2, 3])
        if self.b:
            s = s + self.b * img['image_raw'].sum([1, 2, 3])
        return s[:, None]

    def forward(self, img, c=None, update_emas=False):
        self.calls.append(('forward', img))
        return {'score': self._score(img), 'pose': self._pose(img)}

    def pose_only(self, img):
        self.calls.append(('pose_only', img))
        return self._pose(img)

    def score_given(self, img, c):
        self.calls.append(('score_given', img))
        return self._score(img)


# ---------------------------------------------------------------------------------------
# Schedules (SPEC §4.7, §6.1, §7).

def test_blur_sigma_schedule():
    assert schedules.blur_sigma(0, 10, 200) == 10
    assert schedules.blur_sigma(100_000, 10, 200) == pytest.approx(5)     # half of the fade
    assert schedules.blur_sigma(200_000, 10, 200) == 0                    # end of the fade
    assert schedules.blur_sigma(1e7, 10, 200) == 0
    assert schedules.blur_sigma(0, 10, 0) == 0                            # no fade: no blur


def test_blur_kernel_sigma_1_taps():
    # sigma = 1: K = floor(3) = 3, taps k = -3..3, weights 2^(-k^2) = 1/512, 1/16, 1/2, 1, 1/2, 1/16, 1/512;
    # sum = 1 + 2 (0.5 + 0.0625 + 0.001953125) = 2.12890625.
    raw = torch.tensor([1 / 512, 1 / 16, 1 / 2, 1, 1 / 2, 1 / 16, 1 / 512])
    torch.testing.assert_close(blur.blur_kernel(1.0), raw / 2.12890625)
    assert blur.blur_kernel(0.3) is None and blur.blur_kernel(0) is None   # floor(3 sigma) = 0
    assert blur.blur_kernel(2.0).shape == (13,)


def test_gaussian_blur_separable_out_of_place_identity():
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, 4] = 1
    before = x.clone()
    y = blur.gaussian_blur(x, 1.0)
    f = blur.blur_kernel(1.0)
    torch.testing.assert_close(y[0, 0, 1:8, 1:8], f[:, None] * f[None, :])   # impulse -> outer product
    assert torch.equal(x, before)                                             # out of place
    assert blur.gaussian_blur(x, 0.3) is x                               # identity below floor(3 sigma) = 1


def test_neural_rendering_resolution_and_swapping_prob():
    assert schedules.neural_rendering_resolution(123, 64) == 64
    assert schedules.neural_rendering_resolution(0, 64, 128, 1000) == 64
    assert schedules.neural_rendering_resolution(500_000, 64, 128, 1000) == 96
    assert schedules.neural_rendering_resolution(2e6, 64, 128, 1000) == 128
    assert schedules.swapping_prob(0, None, 1000) is None
    assert schedules.swapping_prob(0, 0.5, 1000) == 1
    assert schedules.swapping_prob(500_000, 0.5, 1000) == pytest.approx(0.75)
    assert schedules.swapping_prob(0, 0.5, 0) == 0.5


def test_ema_beta():
    # ema_nimg = min(10 kimg, 1000 * 0.05 = 50) -> beta = 0.5^(32/50)
    assert schedules.ema_beta(1000, 32, 10, 0.05) == pytest.approx(0.5 ** (32 / 50))
    assert schedules.ema_beta(10 ** 7, 32, 10, 0.05) == pytest.approx(0.5 ** (32 / 10_000))
    assert schedules.ema_beta(1000, 32, 10, None) == pytest.approx(0.5 ** (32 / 10_000))
    assert schedules.ema_beta(0, 32, 10, 0.05) == 0


def test_lazy_reg_adam_kwargs():
    d = schedules.lazy_reg_adam_kwargs(0.002, (0, 0.99), 16)
    assert d['lr'] == pytest.approx(0.002 * 16 / 17) and d['lr'] == pytest.approx(0.0018824, abs=1e-7)
    assert d['betas'] == (0, pytest.approx(0.99 ** (16 / 17))) and d['betas'][1] == pytest.approx(0.99059, abs=1e-5)
    g = schedules.lazy_reg_adam_kwargs(0.0025, (0, 0.99), 4)
    assert g['lr'] == pytest.approx(0.002) and g['betas'][1] == pytest.approx(0.99199, abs=1e-5)
    assert schedules.lazy_reg_adam_kwargs(0.0025, (0, 0.99), None) == dict(lr=0.0025, betas=(0, 0.99))


# ---------------------------------------------------------------------------------------
# Terms on a stub D: signs, directions, closed forms, blur modes.

def test_adversarial_signs_and_directions(nets):
    G, _ = nets
    z, c, step = torch.randn(2, Z_DIM), make_labels(2), Step(0.0, 16)
    real = real_pair(torch.rand(2, 3, 32, 32) * 2 - 1, 16, 0.0)
    d_in, fakes = DInput(), PoF3DFakes()
    values = {}
    for bias in (-1.0, 1.0):
        D = StubD(bias=bias)
        torch.manual_seed(0)
        l_g = GeneratorAdversarial(d_in, fakes)(G, D, z, c, step)
        l_d = DiscriminatorFake(d_in, fakes)(G, D, z, c, step)
        l_r = DiscriminatorReal(d_in)(D, real, None, step)
        values[bias] = (l_g.item(), l_d.item(), l_r.item())
        for loss, sign in ((l_g, -1), (l_d, 1), (l_r, -1)):
            D.bias.grad = None
            loss.backward()
            assert torch.sign(D.bias.grad) == sign          # d loss / d score
        assert l_d > 0 and l_g > 0 and l_r > 0               # softplus
    assert values[1.0][0] < values[-1.0][0]                  # G loss falls as D scores fakes higher
    assert values[1.0][1] > values[-1.0][1]                  # D fake loss rises
    assert values[1.0][2] < values[-1.0][2]                  # D real loss falls
    assert values[1.0][0] == pytest.approx(math.log1p(math.exp(-1.0)))   # the stub's score is exactly 1
    clear_grads(G)


@pytest.mark.parametrize('blur_mode,sigma', [('single', 0.0), ('single', 2.0), ('reference', 2.0)])
def test_r1_closed_form(blur_mode, sigma):
    # score = bias + a Σimage + b Σimage_raw: ∂s/∂(consumed image) = a everywhere, whatever the blur
    # -> penalty = a²·3·32·32 + b²·3·16·16 = 0.25·3072 + 0.0625·768 = 816, loss = γ/2 · 816 = 4080 (γ = 10).
    real = real_pair(torch.randn(2, 3, 32, 32), 16, sigma)
    loss = R1Penalty(DInput(blur_mode), gamma=10)(StubD(a=0.5, b=0.25), real, None, Step(sigma, 16))
    assert loss.item() == pytest.approx(4080, rel=1e-5)
    zero = R1Penalty(DInput(blur_mode), gamma=10)(StubD(bias=3.0), real, None, Step(sigma, 16))
    assert zero.item() == 0                                           # D ignores its input
    assert R1Penalty(DInput(), gamma=0)(StubD(a=1.0), real, None, Step(sigma, 16)) is None


def test_blur_modes_d_calls():
    # One D pass for 'single' (the reference's two passes, label then score, give the same score:
    # tests/test_model_equivalence.py checks it on the real D).
    x = {'image': torch.randn(2, 3, 32, 32), 'image_raw': torch.randn(2, 3, 16, 16)}
    once = blur.gaussian_blur(x['image'], 2.0)
    twice = blur.gaussian_blur(once, 2.0)
    D = StubD(a=0.1)
    DInput('single').score(D, x, 2.0)
    assert [k for k, _ in D.calls] == ['forward']
    torch.testing.assert_close(D.calls[0][1]['image'], once)
    assert D.calls[0][1]['image_raw'] is x['image_raw']                # raw never blurred here
    D = StubD(a=0.1)
    DInput('reference').score(D, x, 2.0)
    assert [k for k, _ in D.calls] == ['pose_only', 'score_given']      # label from B x, score on B(B x)
    torch.testing.assert_close(D.calls[0][1]['image'], once)
    torch.testing.assert_close(D.calls[1][1]['image'], twice)
    D = StubD(a=0.1)
    DInput('reference').score(D, x, 0.3)                                # floor(3 sigma) = 0: one pass
    assert [k for k, _ in D.calls] == ['forward']
    with pytest.raises(ValueError):
        DInput('double')


def test_mirror_coin_is_seeded_and_resumable():
    cams = LookAtPose(torch.full([1, 1], 1.0), torch.full([1, 1], 1.2), [0, 0, 0.2], radius=2.7)
    a, b = MirrorCamera(seed=3), MirrorCamera(seed=3)
    seq_a = [a(cams) for _ in range(8)]
    assert all(torch.equal(x, y) for x, y in zip(seq_a, [b(cams) for _ in range(8)]))
    assert len({tuple(x.flatten().tolist()) for x in seq_a}) == 2        # both mirrors drawn
    state = a.state_dict()
    nxt = [a(cams) for _ in range(4)]
    b.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(nxt, [b(cams) for _ in range(4)]))


def test_phase_mapping_and_helpers():
    assert effective_phase('Greg', g_reg=False, d_reg=True) == 'none'
    assert effective_phase('Gboth', g_reg=False, d_reg=True) == 'Gmain'
    assert effective_phase('Dboth', g_reg=True, d_reg=False) == 'Dmain'
    with pytest.raises(ValueError):
        effective_phase('Gfoo', True, True)
    c = make_labels(3)
    assert torch.equal(mapping_condition(c, None), torch.zeros_like(c))
    assert torch.equal(mapping_condition(c, 1.0), torch.roll(c, 1, 0))
    assert torch.equal(mapping_condition(c, 0.0), c)
    assert loss_class_for('learned') is PoF3DLoss and loss_class_for('prior') is EG3DLoss
    from training.loss_pose import StyleGAN2LossPose
    assert StyleGAN2LossPose is PoF3DLoss


# ---------------------------------------------------------------------------------------
# Through the real tiny G and D.

def test_all_terms_finite_and_reported(nets):
    G, D = nets
    loss = PoF3DLoss('cpu', G, D, r1_gamma=1, blur_init_sigma=2, blur_fade_kimg=1, blur_mode='reference',
                     neural_rendering_resolution_initial=16, seed=0)
    real_img, c = torch.rand(2, 3, 32, 32) * 2 - 1, make_labels(2)
    before = real_img.clone()
    stats = training_stats.Collector(regex='(Loss|Pose)/.*')
    for phase in ('Gmain', 'Greg', 'Dmain', 'Dreg'):
        loss.accumulate_gradients(phase, real_img, c, torch.randn(2, Z_DIM), c, gain=1, cur_nimg=100)
    stats.update()
    expected = ['Loss/scores/fake', 'Loss/signs/fake', 'Loss/G/loss', 'Loss/G/loss_flip', 'Loss/G/posegloss',
                'Loss/G/reg', 'Loss/D/loss_Dcam', 'Loss/D/loss_Dgen', 'Loss/D/loss_Dgen_flip', 'Loss/D/loss',
                'Loss/D/reg', 'Loss/r1_penalty', 'Loss/scores/real', 'Pose/h_mean', 'Pose/h_std', 'Pose/v_mean',
                'Pose/v_std', 'Pose/clamped_frac']
    for name in expected:
        assert stats.num(name) > 0 and math.isfinite(stats.mean(name)), name
    assert stats.mean('Loss/D/loss_Dgen') > 0 and stats.mean('Loss/r1_penalty') >= 0
    for module in (G, D):
        assert all(torch.isfinite(g).all() for g in grads(module).values() if g is not None)
    assert torch.equal(real_img, before)                     # the caller's tensors are never modified
    clear_grads(G, D)


def test_pose_regularizer_updates_only_pose_learner(nets):
    G, D = nets
    clear_grads(G, D)
    loss = PoseRegularizer(DInput(), weight=1.0)(G, D, torch.randn(2, Z_DIM), make_labels(2), Step(0.0, 16))
    loss.backward()
    assert loss.item() > 0
    assert touched(G) == {n for n, _ in G.named_parameters() if n.startswith('pose_source.')}
    assert len(touched(G)) == 4 and not touched(D)
    assert PoseRegularizer(DInput(), weight=0)(G, D, torch.randn(2, Z_DIM), make_labels(2), Step(0.0, 16)) is None
    clear_grads(G, D)


def _only(loss, keep):
    """Switch off every term of a PoF3DLoss except those named in `keep` (weights to 0)."""
    for name in ('G_adv', 'G_adv_flip', 'G_pose', 'D_pose', 'D_fake', 'D_fake_flip', 'D_real'):
        if name not in keep:
            getattr(loss, name).weight = 0
    return loss


@pytest.mark.parametrize('pose_gd_weight', [0.0, 1.0])
def test_zero_weight_removes_pose_gradients(nets, pose_gd_weight):
    G, D = nets
    z, c, real = torch.randn(2, Z_DIM), make_labels(2), torch.rand(2, 3, 32, 32)
    clear_grads(G, D)
    loss = _only(PoF3DLoss('cpu', G, D, pose_gd_weight=pose_gd_weight, neural_rendering_resolution_initial=16),
                 keep={'G_pose'})
    loss.accumulate_gradients('Gmain', real, c, z, c, 1, 0)
    pose_learner = {n for n, _ in G.named_parameters() if n.startswith('pose_source.')}
    assert touched(G) == (pose_learner if pose_gd_weight else set())
    # D side: L4 alone touches the pose head; with λ_cam = λ_gd = 0 it is gone.
    clear_grads(G, D)
    loss = _only(PoF3DLoss('cpu', G, D, dis_cam_weight=pose_gd_weight, pose_gd_weight=0,
                           neural_rendering_resolution_initial=16), keep={'D_pose'})
    loss.accumulate_gradients('Dmain', real, c, z, c, 1, 0)
    t = touched(D)
    if pose_gd_weight:
        assert {'pose_head.fc.weight', 'pose_head.out.weight', 'b4.conv.weight', 'b32.conv0.weight'} <= t
        assert not any(n.startswith(('mapping.', 'b4.fc', 'b4.out')) for n in t)   # score path untouched
    else:
        assert t == set()
    assert not touched(G)
    clear_grads(G, D)


@pytest.mark.parametrize('detach_pose', [False, True])
def test_flip_term_reaches_pose_learner_through_mirrored_camera(nets, detach_pose):
    G, D = nets
    z, c = torch.randn(2, Z_DIM), make_labels(2)
    clear_grads(G, D)
    loss = _only(PoF3DLoss('cpu', G, D, detach_pose=detach_pose, neural_rendering_resolution_initial=16),
                 keep={'G_adv_flip'})
    loss.accumulate_gradients('Gmain', torch.rand(2, 3, 32, 32), c, z, c, 1, 0)
    t = touched(G)
    assert 'backbone.synthesis.b16.conv0.weight' in t
    assert any(n.startswith('pose_source.') for n in t) == (not detach_pose)   # SPEC §6.1.2
    clear_grads(G, D)


def test_adversarial_fakes_leave_pose_head_alone_and_regs_switch_off(nets):
    G, D = nets
    z, c, real = torch.randn(2, Z_DIM), make_labels(2), torch.rand(2, 3, 32, 32)
    clear_grads(G, D)
    loss = _only(PoF3DLoss('cpu', G, D, r1_gamma=0, density_reg=0, neural_rendering_resolution_initial=16),
                 keep={'D_fake', 'D_real'})
    loss.accumulate_gradients('Dmain', real, c, z, c, 1, 0)
    t = touched(D)
    assert 'b4.out.weight' in t and 'mapping.fc0.weight' in t
    assert not any(n.startswith('pose_head.') for n in t)          # the score uses sg(pose)
    clear_grads(D)
    loss.accumulate_gradients('Dreg', real, c, z, c, 16, 0)        # r1_gamma = 0 -> no-op
    loss.accumulate_gradients('Greg', real, c, z, c, 4, 0)         # density_reg = 0 -> no-op
    assert not touched(D) and not touched(G)


def test_r1_through_dual_discriminator_double_backward(nets):
    _, D = nets
    clear_grads(D)
    x = torch.randn(2, 3, 32, 32)
    real = real_pair(x, 16, 0.0)
    loss = R1Penalty(DInput(), gamma=2.0)(D, real, None, Step(0.0, 16))
    # independent computation of (γ/2)·mean(‖∂s/∂image‖² + ‖∂s/∂image_raw‖²)
    img = {k: v.clone().requires_grad_(True) for k, v in real.items()}
    gi, gr = torch.autograd.grad(D(img)['score'].sum(), [img['image'], img['image_raw']])
    expected = (gi.square().sum([1, 2, 3]) + gr.square().sum([1, 2, 3])).mean()
    torch.testing.assert_close(loss, expected.detach(), rtol=1e-4, atol=1e-8)
    loss.backward()                                                # double backward into D
    t = touched(D)
    assert {'b32.conv0.weight', 'b4.conv.weight', 'b4.fc.weight', 'mapping.fc0.weight'} <= t
    assert not any(n.startswith('pose_head.') for n in t)
    clear_grads(D)


def test_blur_modes_agree_without_blur(nets):
    G, D = nets
    real = real_pair(torch.rand(2, 3, 32, 32), 16, 0.0)
    single = DiscriminatorReal(DInput('single'))(D, real, None, Step(0.0, 16))
    ref = DiscriminatorReal(DInput('reference'))(D, real, None, Step(0.0, 16))
    torch.testing.assert_close(single, ref)
    blurred = real_pair(real['image'], 16, 2.0)
    a = DiscriminatorReal(DInput('single'))(D, blurred, None, Step(2.0, 16))
    b = DiscriminatorReal(DInput('reference'))(D, blurred, None, Step(2.0, 16))
    assert torch.isfinite(a) and torch.isfinite(b) and a.item() != b.item()


# ---------------------------------------------------------------------------------------
# EG3D variant (dataset / prior pose sources).

def test_eg3d_loss_dataset_source():
    G = make_G('dataset')
    D = make_D(c_dim=25, pose_head=False, self_condition=False)
    loss = EG3DLoss('cpu', G, D, r1_gamma=1, gpc_reg_prob=0.5, gpc_reg_fade_kimg=1,
                    neural_rendering_resolution_initial=16, blur_init_sigma=2, blur_fade_kimg=1)
    assert loss.d_conditional and loss.step(500).swapping_prob == pytest.approx(0.75)
    c = make_labels(2)
    out, label = loss.fakes(G, torch.randn(2, Z_DIM), c, loss.step(0))
    torch.testing.assert_close(label, c)                  # the dataset camera is the D label
    stats = training_stats.Collector(regex='Loss/.*')
    for phase in ('Gmain', 'Greg', 'Dmain', 'Dreg'):
        loss.accumulate_gradients(phase, torch.rand(2, 3, 32, 32), c, torch.randn(2, Z_DIM), c, 1, 100)
    stats.update()
    for name in ('Loss/G/loss', 'Loss/G/reg', 'Loss/D/loss_Dgen', 'Loss/D/loss', 'Loss/r1_penalty'):
        assert stats.num(name) > 0 and math.isfinite(stats.mean(name)), name
    assert touched(G) and touched(D)


def test_eg3d_loss_prior_source_unconditional_d():
    G = make_G('prior_residual')
    D = make_D(c_dim=0, pose_head=False, self_condition=False)
    loss = EG3DLoss('cpu', G, D, neural_rendering_resolution_initial=16)
    assert not loss.d_conditional
    c = make_labels(2)
    loss.accumulate_gradients('Gmain', torch.rand(2, 3, 32, 32), c, torch.randn(2, Z_DIM), c, 1, 0)
    assert any(n.startswith('pose_source.fc') for n in touched(G))   # the residual MLP trains
