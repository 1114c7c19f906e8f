"""Whole networks and loss phases (tiny synthetic preset) against the reference port.

The package runs one body per stage; the reference formulations live in tests/reference/
(renderer, D's two trunk passes, StyleGAN2 layers). Here the renderer and D's passes are
swapped for those references inside a real generator / loss phase, so the comparison covers
how the stages compose. Tolerances: float32 values rtol 1e-4 and gradient norms 2e-4: the
package reassociates sums (the per-sample colour sum, blocked weight-gradient GEMMs) and
float32 rounding (~6e-8 per op) compounds through ~20 layers and the volume-rendering
product; measured: values ~1e-6, gradients <= 2e-5 relative (Gmain, the worst), a 10x margin.
"""


import contextlib
import dataclasses
from unittest import mock

import pytest
import torch

from reference import losses as reference_losses   # tests/reference/losses.py
from reference import rendering as reference_rendering   # tests/reference/rendering.py
from torch_utils.ops import conv2d_gradfix
from training.losses.common import DInput
from training.rendering.renderer import ImportanceRenderer, RenderOutput

pytestmark = pytest.mark.usefixtures('single_thread')


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


def assert_all_close(expected, got, **tol):
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, **tol)


def _reference_render(self, field, ray_origins, ray_directions, generator=None, channels=None, schedule=None):
    """ImportanceRenderer.forward as the reference port computes it (tests/reference/rendering.py)."""
    opts = dataclasses.asdict(self.options)
    features, depth, weight_sum = reference_rendering.importance_render(field.planes, field.decoder, ray_origins,
                                                                        ray_directions, opts, generator)
    return RenderOutput(features if channels is None else features[..., :channels], depth, weight_sum, None)


def _reference_renderer():
    return mock.patch.object(ImportanceRenderer, 'forward', _reference_render)


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
    with _reference_renderer():
        ref_out, ref_g = run()
    fast_out, fast_g = run()
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
    """With on: a loss phase as the reference port runs it: the renderer's reference, D's two
    passes (tests/reference/losses.py) and a render per term (share_render off)."""
    if not on:
        yield
        return
    with _reference_renderer(), mock.patch.object(DInput, 'score', reference_losses.score), \
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


def test_generator_is_deterministic(tiny):
    config, G, D, loss, _ = tiny
    z = torch.randn(2, G.z_dim)
    c = torch.zeros(2, 25)
    c[:, 16:25] = torch.tensor([2.6, 0, 0.5, 0, 2.6, 0.5, 0, 0, 1])
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
