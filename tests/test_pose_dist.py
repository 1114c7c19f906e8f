"""The pose-distribution term (training/losses/pose_dist.py, issue 15 item 2): the sliced
Wasserstein distance against hand-computed values and gradcheck, the head calibration against a
known regression, and the issue's toy: with an exact "head", the term moves a unimodal pose
learner into the data's two modes."""

import math

import pytest
import torch

from training.losses import PoF3DLoss
from training.losses.common import DInput, Step
from training.losses.pose_dist import HeadCalibration, PoseDistribution, sliced_wasserstein

from test_generator import make_G as narrow_G   # tests/ is on sys.path
from test_losses import Z_DIM, make_D, make_G, make_labels

MODES = (math.pi / 4, 3 * math.pi / 4)   # the benchmark's bimodal yaw


pytestmark = pytest.mark.usefixtures('single_thread')   # tiny tensors (tests/conftest.py)


def bimodal(n, seed, std=0.1):
    """[n, 2] poses: h at one of MODES (alternating) + noise, v = pi/2 + small noise."""
    g = torch.Generator().manual_seed(seed)
    h = torch.tensor(MODES).repeat(n // 2 + 1)[:n] + std * torch.randn(n, generator=g)
    v = math.pi / 2 + 0.05 * torch.randn(n, generator=g)
    return torch.stack([h, v], dim=1)


# ----------------------------------------------------------------------------------------
# Sliced Wasserstein.

def test_sliced_wasserstein_of_a_shift_is_half_its_square():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.3], [0.2, -1.0]], dtype=torch.float64)
    assert sliced_wasserstein(x, x).item() == pytest.approx(0, abs=1e-12)
    # shift d along h: each direction sees d cos(theta); the mean of cos^2 over kpi/K is 1/2
    for d in (0.5, 2.0):
        shifted = x + torch.tensor([d, 0.0], dtype=torch.float64)
        assert sliced_wasserstein(x, shifted, num_dirs=8).item() == pytest.approx(d * d / 2, rel=1e-9)


def test_sliced_wasserstein_matches_quantiles_of_a_larger_target():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64)
    assert sliced_wasserstein(x, target).item() == pytest.approx(0, abs=1e-12)


def test_sliced_wasserstein_in_one_dimension_is_w2_squared():
    x = torch.tensor([[0.0], [1.0], [5.0]], dtype=torch.float64)
    target = torch.tensor([[4.0], [0.5], [1.0]], dtype=torch.float64)   # sorted pairs: (0, .5) (1, 1) (5, 4)
    assert sliced_wasserstein(x, target).item() == pytest.approx((0.25 + 0 + 1) / 3, rel=1e-12)


def test_sliced_wasserstein_gradcheck():
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    target = torch.randn(9, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.autograd.gradcheck(lambda a: sliced_wasserstein(a, target, num_dirs=5), (x,))


# ----------------------------------------------------------------------------------------
# Head calibration.

def test_calibration_recovers_a_shrunk_noisy_head_and_debiases_to_the_true_law():
    g = torch.Generator().manual_seed(0)
    a, b, noise = torch.tensor([0.3, 0.1]), torch.tensor([0.6, 0.8]), torch.tensor([0.05, 0.02])
    head = lambda t: a + b * t + noise * torch.randn(t.shape, generator=g)   # noqa: E731
    calib = HeadCalibration(decay=0.98)
    for _ in range(400):   # fakes: G's law (unimodal, wide), their estimates
        true = torch.stack([1.5 + 0.6 * torch.randn(8, generator=g), 1.5 + 0.3 * torch.randn(8, generator=g)], 1)
        calib.update(true, head(true))
    fa, fb, fnoise, calibrated = calib.fit()
    assert calibrated.all()
    torch.testing.assert_close(fb.float(), b, atol=0.05, rtol=0)
    torch.testing.assert_close(fa.float(), a, atol=0.1, rtol=0)
    assert calib.trusted(0.5).tolist() == [True, True] and calib.trusted(0.7).tolist() == [False, True]
    real = bimodal(4000, 1)                         # the data's law: bimodal, never seen by the fit
    est = head(real)
    assert est[:, 0].std() < 0.7 * real[:, 0].std()   # raw estimates are compressed ...
    fixed = calib.debias(est)                       # ... the de-biased ones are not
    torch.testing.assert_close(fixed.mean(0), real.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(fixed[:, 0].std(), real[:, 0].std(), atol=0.05, rtol=0)
    near = [((fixed[:, 0] - m).abs() < 0.3).float().mean() for m in MODES]
    assert min(near) > 0.4                          # both modes kept


def test_a_component_that_never_varies_is_not_calibrated():
    calib = HeadCalibration(decay=0.9)
    for _ in range(50):
        calib.update(torch.tensor([[1.0, 2.0], [1.2, 2.0]]), torch.tensor([[1.1, 2.3], [1.3, 2.4]]))
    _, b, _, calibrated = calib.fit()
    assert calibrated.tolist() == [True, False] and b[1] == 1
    est = torch.tensor([[1.0, 2.5], [2.0, 2.7]])
    torch.testing.assert_close(calib.debias(est)[:, 1], est[:, 1])   # left as estimated


# ----------------------------------------------------------------------------------------
# The term.

class ExactHead:
    """A stand-in D whose pose head is exact: real 'images' carry their pose in pixel (0, 0)."""

    def pose_only(self, img):
        return img['image'][:, :2, 0, 0]


def real_batch(poses):
    img = torch.zeros(poses.shape[0], 3, 16, 16)
    img[:, :2, 0, 0] = poses
    return img


def calibrated_term(weight=1.0, **kwargs):
    term = PoseDistribution(DInput(), weight, queue_size=256, **kwargs)
    for k in range(100):
        true = bimodal(8, 100 + k, std=0.5)
        term.calibration.update(true, true)
    return term


def test_the_term_waits_for_the_head_and_the_start_kimg():
    G, step, c = make_G(), Step(blur_sigma=0, resolution=16), make_labels(8)
    z, reals = torch.randn(8, Z_DIM), real_batch(bimodal(8, 0))
    assert PoseDistribution(DInput(), 0.0)(G, ExactHead(), z, c, reals, step, 0) is None
    assert PoseDistribution(DInput(), 1.0)(G, ExactHead(), z, c, reals, step, 0) is None   # uncalibrated
    late = calibrated_term(start_kimg=2.0)
    assert late(G, ExactHead(), z, c, reals, step, 1000) is None
    assert late(G, ExactHead(), z, c, reals, step, 2000) is not None


def test_a_head_that_has_not_learned_the_pitch_matches_the_yaw_alone():
    G, step, c = make_G(), Step(blur_sigma=0, resolution=16), make_labels(8)
    term = PoseDistribution(DInput(), 1.0, queue_size=64)
    for k in range(100):
        true = bimodal(8, 100 + k, std=0.5)
        term.calibration.update(true, torch.stack([true[:, 0], torch.full([8], 1.5)], 1))   # pitch estimate constant
    assert term.calibration.trusted(0.5).tolist() == [True, False]
    z, reals = torch.randn(8, Z_DIM), real_batch(bimodal(8, 0))
    loss = term(G, ExactHead(), z, c, reals, step, 0)
    # the same as the 1-D W2 on h between the pose batch and the (exactly calibrated) queue
    term.generator.set_state(torch.Generator().manual_seed(0).get_state())
    latents = torch.randn([64, Z_DIM], generator=term.generator)
    h = G.pose(latents, c[:1].expand(64, -1)).pose[:, :1]
    expected = sliced_wasserstein(h, term.calibration.debias(term.queue)[:, :1])
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-6)


def test_an_exact_head_moves_a_unimodal_learner_into_both_modes():
    """The issue's toy: G's cameras start as one narrow frontal mode between the data's two; the
    term alone (Adam on a pose learner with lr multiplier 1, 300 steps) makes their law bimodal."""
    G = narrow_G(pose_kwargs=dict(init_gain=0.2, lr_multiplier_pose=1.0))
    step, c = Step(blur_sigma=0, resolution=16), make_labels(8)
    term = calibrated_term(num_poses=64)
    probe, probe_c = torch.randn(512, Z_DIM, generator=torch.Generator().manual_seed(9)), make_labels(512)

    def shares(h):   # fraction within 0.3 of each mode, fraction within 0.2 of the middle
        return [((h - m).abs() < 0.3).float().mean().item() for m in MODES], \
            ((h - math.pi / 2).abs() < 0.2).float().mean().item()

    near0, middle0 = shares(G.pose(probe, probe_c).pose[:, 0].detach())
    assert max(near0) < 0.05 and middle0 > 0.6                               # unimodal, frontal
    opt = torch.optim.Adam(G.pose_source.parameters(), lr=0.05)
    for k in range(300):
        opt.zero_grad()
        term(G, ExactHead(), torch.randn(8, Z_DIM), c, real_batch(bimodal(8, 1000 + k)), step, 0).backward()
        opt.step()
    near, middle = shares(G.pose(probe, probe_c).pose[:, 0].detach())
    assert min(near) > 0.2, near                                             # both modes populated
    assert middle / 0.4 < min(near) / 0.6, (near, middle)                    # denser at the modes than between


def test_only_the_pose_learner_gets_gradient_and_resume_is_exact():
    G, step, c = make_G(), Step(blur_sigma=0, resolution=16), make_labels(8)
    term = calibrated_term()
    reals, z = real_batch(bimodal(8, 5)), torch.randn(8, Z_DIM)
    term(G, ExactHead(), z, c, reals, step, 0).backward()
    touched = {n for n, p in G.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched and all(n.startswith('pose_source.') for n in touched)
    resumed = PoseDistribution(DInput(), 1.0, queue_size=256)
    resumed.load_state_dict(term.state_dict())
    resumed.calibration.load_state_dict(term.calibration.state_dict())
    a = term(G, ExactHead(), z, c, reals, step, 0)
    b = resumed(G, ExactHead(), z, c, reals, step, 0)
    assert torch.equal(a, b)


def test_pof3d_loss_calibrates_in_dmain_and_applies_the_term_in_gmain():
    G, D = make_G(), make_D()
    z, c, reals = torch.randn(4, Z_DIM), make_labels(4), torch.rand(4, 3, 32, 32) * 2 - 1
    loss = PoF3DLoss('cpu', G, D, pose_dist_weight=1.0, pose_dist_min_slope=-10.0,
                     neural_rendering_resolution_initial=16)
    assert loss.G_pose_dist.calibration.weight == 0
    for _ in range(3):
        loss.accumulate_gradients('Dmain', reals, c, z, c, 1, 0)
    assert loss.G_pose_dist.calibration.weight > 0      # L4's (camera, estimate) pairs were observed
    assert loss.G_pose_dist.calibration is loss.calibration and not loss.G_pose.debias and loss.G_pose.gate == 0
    assert loss.state_dict()['calibration']['weight'] == loss.calibration.weight
    loss.G_pose_dist.calibration.weight.fill_(1.0)      # declare it calibrated (slope gate at -10) ...
    loss.G_pose_dist.min_signal = 0.0                   # ... and sighted on these random reals
    for p in G.parameters():
        p.grad = None
    loss.G_adv.weight = loss.G_adv_flip.weight = loss.G_pose.weight = 0
    loss.accumulate_gradients('Gmain', reals, c, z, c, 1, 0)
    touched = {n for n, p in G.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert touched and all(n.startswith('pose_source.') for n in touched)


@pytest.mark.parametrize('shared', [True, False])
def test_l3_waits_for_pose_gd_start_kimg(shared, monkeypatch):
    """--pose_gd_start_kimg: no L3 gradient (the only term left on) before it, some after; on
    both the shared-render and the separate path."""
    G, D = make_G(), make_D()
    z, c, reals = torch.randn(4, Z_DIM), make_labels(4), torch.rand(4, 3, 32, 32) * 2 - 1
    loss = PoF3DLoss('cpu', G, D, pose_gd_start_kimg=1.0, neural_rendering_resolution_initial=16, flip_to_dis=False)
    monkeypatch.setattr(loss, 'shared_renders', lambda: shared)
    loss.G_adv.weight = 0
    grads = []
    for nimg in (999, 1000):
        for p in G.parameters():
            p.grad = None
        loss.accumulate_gradients('Gmain', reals, c, z, c, 1, nimg)
        grads.append(sum(float(p.grad.abs().sum()) for p in G.pose_source.parameters() if p.grad is not None))
    assert grads[0] == 0 and grads[1] > 0


def test_correct_undoes_a_shrunk_head_per_sample_on_trusted_components():
    calib = HeadCalibration(decay=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):   # est = 0.2 + 0.5 true on h; pitch estimates constant (untrusted)
        true = torch.stack([1.5 + 0.5 * torch.randn(8, generator=g), 1.5 + 0.2 * torch.randn(8, generator=g)], 1)
        calib.update(true, torch.stack([0.2 + 0.5 * true[:, 0], torch.full([8], 1.6)], 1))
    est = torch.tensor([[0.95, 1.6], [1.2, 1.7]])
    torch.testing.assert_close(calib.correct(est, 0.3), torch.tensor([[1.5, 1.6], [2.0, 1.7]]), atol=1e-4, rtol=0)
    torch.testing.assert_close(calib.correct(est, 0.6), est)   # slope 0.5 not trusted at 0.6


def test_debiased_l3_targets_the_corrected_estimate():
    """--pose_gd_debias: L3 = MSE(pose, correct(D's estimate)); off, the raw estimate."""
    from training.losses.pose import PoseRegularizer
    G, z, c = make_G(), torch.randn(4, Z_DIM), make_labels(4)
    step = Step(blur_sigma=0, resolution=16)
    calib = HeadCalibration(decay=0.9)
    for _ in range(100):
        true = bimodal(8, 7, std=0.5)
        calib.update(true, 0.3 + 0.5 * true)
    target = torch.tensor([[1.0, 1.1], [1.2, 1.0], [0.9, 1.05], [1.1, 1.1]])
    pose = G.pose(z, c).pose.detach()
    raw = PoseRegularizer(DInput(), 1.0).given_target(G, z, c, target, step)
    fixed = PoseRegularizer(DInput(), 1.0, calib, 0.3, debias=True).given_target(G, z, c, target, step)
    torch.testing.assert_close(raw, ((pose - target) ** 2).mean())
    torch.testing.assert_close(fixed, ((pose - (target - 0.3) / 0.5) ** 2).mean(), atol=1e-4, rtol=1e-4)
    loss = PoF3DLoss('cpu', G, make_D(), pose_gd_debias=True, neural_rendering_resolution_initial=16)
    assert loss.G_pose.calibration is loss.calibration and loss.G_pose_dist.weight == 0



def test_l3_gate_waits_for_the_heads_slope_per_component():
    """--pose_gd_min_slope S: a component of L3 pulls only once the head's slope on it is >= S;
    none trusted: no term (None); the loss keeps the MSE's scale, the other component adding 0."""
    from training.losses.pose import PoseRegularizer
    G, z, c = make_G(), torch.randn(4, Z_DIM), make_labels(4)
    step = Step(blur_sigma=0, resolution=16)
    target = torch.tensor([[1.0, 1.1], [1.2, 1.0], [0.9, 1.05], [1.1, 1.1]])
    pose = G.pose(z, c).pose.detach()
    calib = HeadCalibration(decay=0.9)
    gated = PoseRegularizer(DInput(), 2.0, calib, gate=0.6)
    assert gated.given_target(G, z, c, target, step) is None                 # nothing fitted yet
    for _ in range(100):                                                       # h: slope 0.8, v: slope 0.3
        true = bimodal(8, 7, std=0.5)
        calib.update(true, torch.stack([0.1 + 0.8 * true[:, 0], 0.3 * true[:, 1]], 1))
    loss = gated.given_target(G, z, c, target, step)
    torch.testing.assert_close(loss, 2.0 * ((pose[:, 0] - target[:, 0]) ** 2).sum() / 8)
    assert PoseRegularizer(DInput(), 2.0, calib, gate=0.9).given_target(G, z, c, target, step) is None
    both = PoseRegularizer(DInput(), 2.0, calib, gate=0.2).given_target(G, z, c, target, step)
    torch.testing.assert_close(both, 2.0 * ((pose - target) ** 2).mean())
    grads = torch.autograd.grad(loss, [p for p in G.parameters() if p.requires_grad], allow_unused=True)
    assert any(g is not None and g.abs().sum() > 0 for g in grads)            # it reaches the pose learner
    with pytest.raises(ValueError, match='calibration'):
        PoseRegularizer(DInput(), 1.0, gate=0.5)
    loss3 = PoF3DLoss('cpu', G, make_D(), pose_gd_min_slope=0.7, neural_rendering_resolution_initial=16)
    assert loss3.G_pose.calibration is loss3.calibration is not None and loss3.G_pose.gate == 0.7

def test_a_head_blind_on_reals_does_not_pull_the_cameras_to_a_point():
    """A head calibrated on fakes (slope 1, noise std 0.2) whose real estimates vary less than its
    noise carries no pose information on them: the term stays off instead of targeting a point."""
    G, step, c = make_G(), Step(blur_sigma=0, resolution=16), make_labels(8)
    term = PoseDistribution(DInput(), 1.0, queue_size=64)
    g = torch.Generator().manual_seed(3)
    for k in range(100):
        true = bimodal(8, 100 + k, std=0.5)
        term.calibration.update(true, true + 0.2 * torch.randn(true.shape, generator=g))
    blind = torch.tensor([[1.6, 1.57]]).repeat(8, 1) + 0.01 * torch.randn(8, 2, generator=g)
    for _ in range(8):
        assert term(G, ExactHead(), torch.randn(8, Z_DIM), c, real_batch(blind), step, 0) is None
    assert term.calibration.signal_fraction(term.queue).max() < 0.5
    sighted = PoseDistribution(DInput(), 1.0, queue_size=64, calibration=term.calibration)
    assert sighted(G, ExactHead(), torch.randn(8, Z_DIM), c, real_batch(bimodal(8, 0)), step, 0) is not None
