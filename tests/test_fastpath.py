"""The fast PyTorch paths (torch_utils/fastpath.py) against the reference port they replace.

Every fast formulation computes the reference's function; what may differ is float rounding
where sums are regrouped. Tolerances, and why:
- float64 checks use 1e-10..1e-12: any larger difference is a bug, not rounding;
- float32 checks of a whole generator / loss phase use rtol 1e-4 on values and 2e-4 on
  gradient norms: the fast path reassociates sums (FIR filter convolutions, the per-sample
  colour sum, blocked weight-gradient GEMMs) and float32 rounding (~6e-8 per op) compounds
  through ~20 layers and the volume-rendering product; measured: values ~1e-6, gradients
  <= 2e-5 relative (Gmain, the worst), so the bounds leave a 10x margin;
- operations that only move data (merging samples, the plane mean, the one-pass D) are
  compared for exact equality.
The StyleGAN2 layers and upfirdn2d have no switch: tests/test_fastpath_layers.py compares them
with the port kept in tests/reference/; so do the loss-phase checks here for D's passes.
"""

import contextlib
from unittest import mock

import pytest
import torch

from reference import losses as reference_losses   # tests/reference/losses.py
from torch_utils import fastpath
from torch_utils.ops import conv2d_gradfix
from training.rendering import decoder as decoder_module
from training.rendering.decoder import OSGDecoder
from training.rendering import samplers
from training.rendering.compositing import coarse_weights, march_importance, march_rays

from fastpath_helpers import F64, assert_all_close, both   # tests/fastpath_helpers.py
from training.losses.common import DInput

pytestmark = pytest.mark.usefixtures('single_thread')


# ---------------------------------------------------------------------------------------------
# The switch.

def test_switch_resolution_order(monkeypatch):
    monkeypatch.delenv('POF3D_FASTPATH', raising=False)
    monkeypatch.delenv('POF3D_IMPL', raising=False)
    assert fastpath.enabled()                               # default: on
    monkeypatch.setenv('POF3D_IMPL', 'ref')
    assert not fastpath.enabled()                           # "the reference everywhere"
    monkeypatch.setenv('POF3D_FASTPATH', '1')
    assert fastpath.enabled()                               # an explicit value wins
    for off in ('0', 'false', 'OFF', 'no'):
        monkeypatch.setenv('POF3D_FASTPATH', off)
        assert not fastpath.enabled()
    with fastpath.override(True):                           # the context wins over the environment
        assert fastpath.enabled()
        with fastpath.override(False):
            assert not fastpath.enabled()
        assert fastpath.enabled()
    assert not fastpath.enabled()
    fastpath.set_enabled(True)
    try:
        assert fastpath.enabled()
    finally:
        fastpath.set_enabled(None)
    assert not fastpath.enabled()


# ---------------------------------------------------------------------------------------------
# Decoder: plane mean on the stored layout, recomputed blocked MLP.

def _decoder_case(dtype):
    torch.manual_seed(0)
    dec = OSGDecoder(8, {'decoder_lr_mul': 0.5, 'decoder_output_dim': 6}).to(dtype)
    with torch.no_grad():
        for p in dec.parameters():
            p.normal_()
    # The layout sample_from_planes returns: a permuted view of [N, P, C, M] memory.
    feats = torch.randn(2, 3, 8, 37, dtype=dtype).permute(0, 1, 3, 2).requires_grad_(True)
    return dec, feats


@pytest.mark.parametrize('chunk', [8, 10 ** 6])
def test_decoder_fast_matches_reference(monkeypatch, chunk):
    # Blocks of 8 rows (10 blocks for 74 rows) and one block; float64: same function to 1e-12.
    monkeypatch.setattr(decoder_module._RecomputedDecoder, 'CHUNK', chunk)
    dec, feats = _decoder_case(F64)

    def run():
        dec.zero_grad(set_to_none=True)
        feats.grad = None
        out = dec(feats)
        (out['rgb'].square().sum() + out['sigma'].sin().sum()).backward()
        return [out['rgb'].detach(), out['sigma'].detach(), feats.grad] + [p.grad for p in dec.parameters()]
    assert_all_close(*both(run), rtol=1e-12, atol=1e-12)


def test_decoder_fast_forward_matches_and_saves_only_its_input():
    # float32: the output layer runs as separate rgb / sigma GEMMs (another kernel, so another
    # summation order inside the 64-term dot products): agreement to float32 rounding.
    dec, feats = _decoder_case(torch.float32)
    with torch.no_grad():
        ref, fast = both(lambda: dec(feats))
    torch.testing.assert_close(fast['rgb'], ref['rgb'], rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(fast['sigma'], ref['sigma'], rtol=1e-5, atol=1e-5)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        with fastpath.override(True):
            dec(feats)
    assert max(saved) <= feats.numel() // 3   # the averaged input [N*M, C]; no hidden layer


def test_decoder_fast_path_refuses_double_backward():
    dec, feats = _decoder_case(F64)
    with fastpath.override(True):
        out = dec(feats)
        g, = torch.autograd.grad(out['sigma'].sum(), feats, create_graph=True)
        with pytest.raises(RuntimeError):
            g.sum().backward()


@pytest.mark.parametrize('white_back', [False, True])
def test_render_of_fewer_channels_matches_the_sliced_full_render(white_back):
    # The generator without super-resolution reads only RGB: the fast path's output layer then
    # computes 3 of the decoder's feature channels; the reference renders all and slices.
    from training.rendering.renderer import ImportanceRenderer
    dec, _ = _decoder_case(F64)
    g = torch.Generator().manual_seed(1)
    planes = torch.randn(2, 3, 8, 8, 8, generator=g, dtype=F64).requires_grad_(True)
    origins = torch.randn(2, 1, 3, generator=g, dtype=F64).expand(2, 9, 3) * 0.1 + torch.tensor([0, 0, -2.0], dtype=F64)
    dirs = torch.nn.functional.normalize(torch.randn(2, 9, 3, generator=g, dtype=F64) * 0.2
                                         + torch.tensor([0, 0, 1.0], dtype=F64), dim=-1)
    opts = dict(ray_start=1.0, ray_end=3.0, box_warp=1.6, depth_resolution=5, depth_resolution_importance=4,
                white_back=white_back)

    def run():
        dec.zero_grad(set_to_none=True)
        planes.grad = None
        feats, depth, _ = ImportanceRenderer()(planes, dec, origins, dirs, opts, channels=3,
                                               generator=torch.Generator().manual_seed(2))
        (feats.square().sum() + depth.sum()).backward()
        return [feats.detach(), depth.detach(), planes.grad] + [p.grad for p in dec.parameters()]
    ref, fast = both(run)
    assert ref[0].shape == fast[0].shape == (2, 9, 3)
    assert_all_close(ref, fast, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Tri-plane sampling + plane mean as one weighted gather (sample_plane_mean).

def _plane_case(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    planes = torch.randn(2, 3, 5, 8, 8, generator=g, dtype=dtype).requires_grad_(True)
    coords = (torch.rand(2, 400, 3, generator=g, dtype=dtype) - 0.5) * 1.7      # some beyond the box
    # Points on texel centres and edges, the box faces, and far outside (all-zero corners).
    special = torch.tensor([[0.0, 0.0, 0.0], [0.65, -0.65, 0.1], [1 / 16, 3 / 16, -5 / 16], [0.7, 0.66, -0.72],
                            [-0.65 - 1 / 8, 0.2, 0.3], [5.0, -7.0, 0.0], [0.65, 0.65, 0.65]], dtype=dtype)
    coords = torch.cat([coords, special.expand(2, -1, -1)], dim=1).requires_grad_(True)
    return planes, coords


@pytest.mark.parametrize('legacy', [False, True])
def test_sample_plane_mean_matches_grid_sample_then_mean(legacy):
    # Forward: the same bilinear weights summed in another order (float64: 1e-12). Backward is
    # the reference's own grid_sampler_2d_backward: plane gradients exact, point gradients
    # through the projection's transpose (1e-12).
    from training.rendering.planes import generate_planes, sample_from_planes, sample_plane_mean
    planes, coords = _plane_case(F64)
    with fastpath.override(False):
        ref = sample_from_planes(generate_planes(legacy, dtype=F64), planes, coords, box_warp=1.3).mean(dim=1)
    fast = sample_plane_mean(legacy, planes, coords, 1.3).reshape(ref.shape)
    torch.testing.assert_close(fast, ref, rtol=0, atol=1e-12)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, (planes, coords), g)
    fast_grads = torch.autograd.grad(fast, (planes, coords), g)
    assert_all_close(ref_grads, fast_grads, rtol=1e-12, atol=1e-12)


def test_sample_plane_mean_float32_and_blocks(monkeypatch):
    # Blocks of 64 points (several per sample) give the same rows as one block; float32 within
    # rounding of the reference (~6e-8 relative per term, 12 terms).
    from training.rendering import planes as ts
    planes, coords = _plane_case(torch.float32, seed=1)
    with torch.no_grad():
        with fastpath.override(False):
            ref = ts.sample_from_planes(ts.generate_planes(False), planes, coords, box_warp=1.3).mean(dim=1)
        whole = ts.sample_plane_mean(False, planes, coords, 1.3)
        monkeypatch.setattr(ts._PlaneMeanSample, 'CHUNK', 64)
        blocked = ts.sample_plane_mean(False, planes, coords, 1.3)
    assert torch.equal(whole, blocked)
    torch.testing.assert_close(whole.reshape(ref.shape), ref, rtol=1e-5, atol=2e-6)


def test_sample_plane_mean_non_finite_points_give_nan_like_grid_sample():
    # An unsafe camera can put NaN / inf into the points; grid_sample returns NaN there (and
    # must not index out of range).
    from training.rendering import planes as ts
    planes = torch.randn(1, 3, 2, 4, 4)
    inf, nan = float('inf'), float('nan')
    coords = torch.tensor([[[nan, 0, 0], [inf, 0.1, 0.1], [0.1, 0.2, 0.3], [0.1, -inf, 0.2]]])
    with torch.no_grad():
        with fastpath.override(False):
            ref = ts.sample_from_planes(ts.generate_planes(False), planes, coords, box_warp=1.0).mean(dim=1)
        fast = ts.sample_plane_mean(False, planes, coords, 1.0).reshape(ref.shape)
    torch.testing.assert_close(fast, ref, equal_nan=True)


# ---------------------------------------------------------------------------------------------
# Ray marching and the importance merge.

def _samples(N=2, M=5, S1=6, S2=4, C=3, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    d1 = torch.sort(torch.rand(N, M, S1, 1, generator=g, dtype=dtype) * 2 + 1, dim=-2).values
    d2 = torch.rand(N, M, S2, 1, generator=g, dtype=dtype) * 2 + 1
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=dtype).requires_grad_(True)  # noqa: E731
    return d1, rnd(N, M, S1, C), rnd(N, M, S1, 1), d2, rnd(N, M, S2, C), rnd(N, M, S2, 1)


@pytest.mark.parametrize('white_back', [False, True])
def test_march_importance_fast_matches_unify_then_march(white_back):
    d1, c1, s1, d2, c2, s2 = _samples()

    def run():
        out = march_importance(d1, c1, s1, d2, c2, s2, white_back=white_back)
        loss = (out.features * torch.arange(3, dtype=F64)).sum() + out.depth.sum() + out.weights.square().sum()
        return [out.features, out.depth, out.weights, out.final_transmittance,
                *torch.autograd.grad(loss, (c1, s1, c2, s2))]
    assert_all_close(*both(run), rtol=1e-10, atol=1e-12)


def test_march_importance_without_grad_matches():
    d1, c1, s1, d2, c2, s2 = _samples(dtype=torch.float32, seed=1)
    with torch.no_grad():
        ref, fast = both(lambda: march_importance(d1, c1, s1, d2, c2, s2))
    assert_all_close(ref, fast, rtol=1e-5, atol=1e-6)   # float32, colour sum in another order


def test_march_rays_and_coarse_weights_fast_match():
    d, c, s = _samples(S2=1)[:3]

    def run():
        out = march_rays(c, s, d)
        return [*out, *torch.autograd.grad(out.features.square().sum() + out.depth.sum(), (c, s))]
    assert_all_close(*both(run), rtol=1e-10, atol=1e-12)
    ref, fast = both(lambda: coarse_weights(c, s, d))
    assert torch.equal(ref, fast)   # the same ops, without the compositing


def test_importance_samples_unchanged_by_the_fast_path():
    d, c, s = _samples(S2=1)[:3]
    with torch.no_grad():
        ref, fast = both(lambda: samplers.sample_importance(d, coarse_weights(c, s, d), 5,
                                                            generator=torch.Generator().manual_seed(3)))
    assert torch.equal(ref, fast)


# ---------------------------------------------------------------------------------------------
# Whole networks (tiny synthetic preset): generator, discriminator pass, loss phases.

@pytest.fixture(scope='module')
def tiny():
    from training import config as config_lib, training_loop
    from training.losses import loss_class_for
    import dnnlib
    config = config_lib.build_config('synthetic', dataset_resolution=16, neural_rendering_resolution_initial=16,
                                     z_dim=16, w_dim=16, plane_resolution=16, plane_channels=8, cbase=256, cmax=16,
                                     depth_resolution=6, depth_resolution_importance=6, pose_head_channels=32,
                                     batch=4)
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**config.G_kwargs()).train().requires_grad_(False)
    D = dnnlib.util.construct_class_by_name(**config.D_kwargs()).train().requires_grad_(False)
    loss = loss_class_for('learned')(device=torch.device('cpu'), G=G, D=D, seed=0, **config.loss_kwargs())
    return config, G, D, loss, training_loop


def _grads(module):
    return [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in module.parameters()]


def _close_in_norm(ref, fast, rtol):
    worst = max(float((a - b).norm()) / (float(a.norm()) + 1e-12) for a, b in zip(ref, fast))
    print(f'worst relative gradient difference {worst:.2e}')
    for a, b in zip(ref, fast):
        assert float((a - b).norm()) <= rtol * float(a.norm()) + 1e-7, (float((a - b).norm()), float(a.norm()))


def test_generator_forward_and_backward_match(tiny):
    config, G, _, _, _ = tiny
    from training.cameras import Camera, FOV_to_intrinsics, LookAtPose
    z = torch.randn(4, G.z_dim, generator=torch.Generator().manual_seed(1))
    c2w = LookAtPose(torch.full([4, 1], 1.6), torch.full([4, 1], 1.5), torch.zeros(3), 2.7)
    c = Camera(c2w, FOV_to_intrinsics(30.0).unsqueeze(0).repeat(4, 1, 1)).to_label()

    def run():
        G.requires_grad_(True)
        G.zero_grad(set_to_none=True)
        out = G(z, c, generator=torch.Generator().manual_seed(2))
        (out['image'].square().mean() + out['image_depth'].mean()).backward()
        G.requires_grad_(False)
        return [out['image'].detach(), out['image_depth'].detach()], _grads(G)
    (ref_out, ref_g), (fast_out, fast_g) = both(run)
    assert_all_close(ref_out, fast_out, rtol=1e-4, atol=1e-5)
    _close_in_norm(ref_g, fast_g, 2e-4)


def test_discriminator_one_pass_equals_reference_two_passes(tiny):
    config, _, D, loss, _ = tiny
    img = {'image': torch.rand(4, 3, 16, 16) * 2 - 1, 'image_raw': torch.rand(4, 3, 16, 16) * 2 - 1}

    def run(score_fn):
        D.requires_grad_(True)
        D.zero_grad(set_to_none=True)
        score, _ = score_fn(DInput('single'), D, img, 0.0)
        score.square().sum().backward()
        D.requires_grad_(False)
        return [score.detach()] + _grads(D)
    ref, got = run(reference_losses.score), run(DInput.score)
    assert_all_close(ref, got, rtol=1e-6, atol=1e-7)   # same trunk on the same input


@contextlib.contextmanager
def _reference_port(loss, on):
    """With on: a loss phase as the reference port runs it: the renderer's reference (fast path
    off), D's two passes (tests/reference/losses.py) and a render per term (share_render off)."""
    if not on:
        with fastpath.override(True):
            yield
        return
    with fastpath.override(False), mock.patch.object(DInput, 'score', reference_losses.score), \
            mock.patch.object(loss, 'share_render', False):
        yield


@pytest.mark.parametrize('phase', ['Gmain', 'Greg', 'Dmain', 'Dreg'])
def test_loss_phase_gradients_match(tiny, phase, monkeypatch):
    config, G, D, loss, training_loop = tiny
    monkeypatch.setattr(conv2d_gradfix, 'enabled', True)   # as the training loop runs (R1 no-weight-grads)
    module = G if phase.startswith('G') else D
    g = torch.Generator().manual_seed(4)
    real = torch.rand(4, 3, 16, 16, generator=g) * 2 - 1
    z = torch.randn(4, G.z_dim, generator=g)
    c = torch.zeros(4, 25)
    c[:, 16:25] = torch.tensor([2.6, 0, 0.5, 0, 2.6, 0.5, 0, 0, 1])

    # Every render draws the same noise and jitter (share_render shares L1/L3 and L4/L5 renders
    # where the reference draws anew: same expectation, and here the same numbers).
    forward = G.forward
    monkeypatch.setattr(G, 'forward', lambda *a, **k: (torch.manual_seed(5), forward(*a, **k))[1])
    calls = []
    monkeypatch.setattr(D, '_features', _counted(D._features, calls))   # one call = one trunk pass

    def run(reference):
        torch.manual_seed(5)
        loss.mirror.rng.seed(0)
        module.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        calls.clear()
        with _reference_port(loss, reference):
            loss.accumulate_gradients(phase, real, c, z, c, gain=1, cur_nimg=0)   # cur_nimg 0: blur on
        module.requires_grad_(False)
        return _grads(module), len(calls)
    (ref, ref_calls), (fast, fast_calls) = run(True), run(False)
    _close_in_norm(ref, fast, 2e-4)
    # D trunk passes: the reference's 5 + 7 per iteration (two per scored image, one per pose
    # label) against 2 + 3 (one-pass D, shared renders). R1 (Dreg) is one pass on both paths.
    assert (ref_calls, fast_calls) == {'Gmain': (5, 2), 'Dmain': (7, 3)}.get(phase, (ref_calls, fast_calls))


def _counted(fn, calls):
    def wrapper(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)
    return wrapper


@pytest.mark.parametrize('phase', ['Gmain', 'Dmain'])
def test_share_render_saves_one_render_per_phase(tiny, phase, monkeypatch):
    # The loss config's share_render (default on) reaches the loss and saves a render per phase.
    config, G, D, _, _ = tiny
    from training import config as config_lib
    from training.losses import loss_class_for
    renders = []
    monkeypatch.setattr(G, 'forward', _counted(G.forward, renders))
    z = torch.randn(4, G.z_dim)
    c = torch.zeros(4, 25)
    c[:, 16:25] = torch.tensor([2.6, 0, 0.5, 0, 2.6, 0.5, 0, 0, 1])
    counts = []
    for share in (False, True):
        kwargs = config_lib.replace(config, share_render=share).loss_kwargs()
        loss = loss_class_for('learned')(device=torch.device('cpu'), G=G, D=D, seed=0, **kwargs)
        assert loss.shared_renders() == share
        renders.clear()
        loss.accumulate_gradients(phase, torch.zeros(4, 3, 16, 16), c, z, c, gain=1, cur_nimg=0)
        counts.append(len(renders))
    G.zero_grad(set_to_none=True)
    D.zero_grad(set_to_none=True)
    assert counts == [3, 2]


def test_fast_path_is_deterministic(tiny):
    config, G, D, loss, _ = tiny
    z = torch.randn(2, G.z_dim)
    c = torch.zeros(2, 25)
    c[:, 16:25] = torch.tensor([2.6, 0, 0.5, 0, 2.6, 0.5, 0, 0, 1])
    with fastpath.override(True):
        outs = []
        for _ in range(2):
            torch.manual_seed(7)
            G.requires_grad_(True)
            G.zero_grad(set_to_none=True)
            out = G(z, c)
            out['image'].sum().backward()
            outs.append([out['image'].detach()] + _grads(G))
            G.requires_grad_(False)
    for a, b in zip(*outs):
        assert torch.equal(a, b)
