"""Tests for training/networks_stylegan2.py: equalized-lr math, modulated conv forms,
G/D build + forward/backward, state-dict names, pickles that load without `training`,
and an R1-style double backward. CPU, small configs."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from torch_utils.ops import upfirdn2d
from training import networks_stylegan2 as ns

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small channel counts so that everything runs in seconds on two CPU cores.
SMALL = {'channel_base': 1024, 'channel_max': 64, 'num_fp16_res': 0}


def make_G(res=32, c_dim=0, **synthesis_kwargs):
    kwargs = {**SMALL, 'conv_clamp': None, **synthesis_kwargs}
    return ns.Generator(z_dim=16, c_dim=c_dim, w_dim=32, img_resolution=res, img_channels=3,
                        mapping_kwargs={'num_layers': 2}, **kwargs)


def make_D(res=32, c_dim=0, **kwargs):
    return ns.Discriminator(c_dim=c_dim, img_resolution=res, img_channels=3,
                            mapping_kwargs={'num_layers': 2}, **{**SMALL, **kwargs})


def assert_all_grads_finite(module, exclude=()):
    for name, p in module.named_parameters():
        if name in exclude:
            continue
        assert p.grad is not None, f'{name} got no gradient'
        assert torch.isfinite(p.grad).all(), f'{name} has a non-finite gradient'


# ---------------------------------------------------------------------------------------
# Equalized-lr layers and the mapping network.

def test_fully_connected_equalized_lr_hand_computation():
    torch.manual_seed(0)
    lrm = 0.1
    fc = ns.FullyConnectedLayer(4, 3, lr_multiplier=lrm, bias_init=0.5)
    assert torch.equal(fc.bias.detach(), torch.full([3], 0.5))  # stored as bias_init
    x = torch.randn(5, 4)
    # Runtime weight = stored * lrm / sqrt(fan_in) = stored * 0.1 / 2; bias = stored * 0.1 = 0.05.
    expected = x @ (fc.weight.detach() * 0.05).t() + 0.05
    torch.testing.assert_close(fc(x).detach(), expected, rtol=1e-6, atol=1e-6)

    fc_act = ns.FullyConnectedLayer(4, 3, activation='lrelu', lr_multiplier=lrm)
    pre = x @ (fc_act.weight.detach() * 0.05).t()
    expected = torch.nn.functional.leaky_relu(pre, 0.2) * np.sqrt(2)  # lrelu: slope 0.2, gain sqrt(2)
    torch.testing.assert_close(fc_act(x).detach(), expected, rtol=1e-6, atol=1e-6)


def test_fully_connected_init_scale():
    torch.manual_seed(0)
    fc = ns.FullyConnectedLayer(256, 256, lr_multiplier=0.01)
    # Stored N(0, 1)/lrm => std 100 (65k samples: ~0.3% standard error).
    assert abs(fc.weight.std().item() - 100) < 2
    assert fc.weight_gain == pytest.approx(0.01 / 16) and fc.bias_gain == 0.01


def test_normalize_2nd_moment():
    torch.manual_seed(0)
    x = torch.randn(6, 10) * 7
    y = ns.normalize_2nd_moment(x)
    torch.testing.assert_close(y.square().mean(dim=1), torch.ones(6))
    torch.testing.assert_close(ns.normalize_2nd_moment(3 * x), y)  # scale invariant
    assert torch.equal(x, x.clone())  # input untouched (no in-place op)


def test_mapping_truncation_and_w_avg():
    torch.manual_seed(0)
    mapping = ns.MappingNetwork(z_dim=8, c_dim=2, w_dim=8, num_ws=5, num_layers=2)
    z, c = torch.randn(4, 8), torch.randn(4, 2)
    w_avg = torch.randn(8)
    mapping.w_avg.copy_(w_avg)
    ws = mapping(z, c)
    assert ws.shape == (4, 5, 8)
    assert torch.equal(ws[:, 0], ws[:, 4])  # one w broadcast to all ws
    torch.testing.assert_close(mapping(z, c, truncation_psi=0), w_avg.expand(4, 5, 8))

    half = mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(half[:, :2], w_avg + 0.5 * (ws[:, :2] - w_avg))
    torch.testing.assert_close(half[:, 2:], ws[:, 2:])  # cutoff: later ws untouched

    mapping(z, c, update_emas=True)  # w_avg <- beta * w_avg + (1 - beta) * mean(w)
    beta = mapping.w_avg_beta
    torch.testing.assert_close(mapping.w_avg, beta * w_avg + (1 - beta) * ws[:, 0].mean(dim=0))


# ---------------------------------------------------------------------------------------
# Modulated convolution: the grouped (fused) and per-sample-scaling forms agree.

@pytest.mark.parametrize('up', [1, 2])
@pytest.mark.parametrize('demodulate', [True, False])
def test_modulated_conv_fused_matches_unfused(up, demodulate):
    torch.manual_seed(0)
    x, weight = torch.randn(3, 6, 8, 8), torch.randn(5, 6, 3, 3)
    styles = torch.randn(3, 6)
    noise = torch.randn(3, 1, 8 * up, 8 * up)
    kwargs = {'noise': noise, 'up': up, 'padding': 1, 'resample_filter': upfirdn2d.setup_filter([1, 3, 3, 1]),
              'demodulate': demodulate, 'flip_weight': up == 1}
    fused = ns.modulated_conv2d(x, weight, styles, fused_modconv=True, **kwargs)
    unfused = ns.modulated_conv2d(x, weight, styles, fused_modconv=False, **kwargs)
    assert fused.shape == (3, 5, 8 * up, 8 * up)
    # float32 sums over 54 products: agreement to ~1e-6 relative, 1e-5 leaves margin.
    torch.testing.assert_close(fused, unfused, rtol=1e-5, atol=1e-5)


def test_modulated_conv_demodulation_normalizes_output_scale():
    # With demodulation the output no longer depends on the scale of the styles.
    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 4, 6, 6), torch.randn(3, 4, 3, 3), torch.randn(2, 4)
    a = ns.modulated_conv2d(x, weight, styles, padding=1)
    b = ns.modulated_conv2d(x, weight, 10 * styles, padding=1)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('fused', [True, False])
def test_modulated_conv_fp16_prenormalization(fused):
    # Unnormalized, the unfused form would convolve fp16 activations scaled by styles ~1e3
    # with weights ~1e2 and overflow fp16 (max 65504); the inf-norm pre-normalization keeps
    # both forms finite and close to the fp32 result.
    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 4, 8, 8), 100 * torch.randn(3, 4, 3, 3), 1000 * torch.randn(2, 4)
    ref = ns.modulated_conv2d(x, weight, styles, padding=1, fused_modconv=fused)
    half = ns.modulated_conv2d(x.half(), weight, styles, padding=1, fused_modconv=fused)
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), ref, rtol=1e-2, atol=1e-2)  # fp16 has ~3 decimal digits


# ---------------------------------------------------------------------------------------
# Generator and discriminator build, run and train.

@pytest.mark.parametrize('res', [32, 64])
def test_generator_discriminator_forward_backward(res):
    torch.manual_seed(0)
    G, D = make_G(res, c_dim=3), make_D(res, c_dim=3)
    z, c = torch.randn(4, 16), torch.randn(4, 3)
    img = G(z, c, noise_mode='random', fused_modconv=False)
    assert img.shape == (4, 3, res, res) and img.dtype == torch.float32
    logits = D(img, c)
    assert logits.shape == (4, 1)
    (img * torch.randn_like(img)).sum().add(logits.sum()).backward()
    assert_all_grads_finite(G)
    assert_all_grads_finite(D)
    assert G.num_ws == G.synthesis.num_ws == 2 * int(np.log2(res)) - 2


@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_synthesis_architectures(architecture):
    torch.manual_seed(0)
    G = make_G(32, architecture=architecture)
    img = G(torch.randn(2, 16), None, noise_mode='const')
    assert img.shape == (2, 3, 32, 32) and torch.isfinite(img).all()
    img.square().mean().backward()
    assert_all_grads_finite(G)
    keys = G.state_dict().keys()
    assert ('synthesis.b8.torgb.weight' in keys) == (architecture == 'skip')
    assert ('synthesis.b8.skip.weight' in keys) == (architecture == 'resnet')
    assert 'synthesis.b32.torgb.weight' in keys  # the last block always has ToRGB


@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_discriminator_architectures(architecture):
    torch.manual_seed(0)
    D = make_D(32, architecture=architecture)
    D(torch.randn(4, 3, 32, 32), None).sum().backward()
    assert_all_grads_finite(D)
    assert ('b16.fromrgb.weight' in D.state_dict()) == (architecture == 'skip')


def test_discriminator_freeze_layers():
    # b32 has fromrgb, conv0, conv1, skip (layers 0-3); freezing 3 turns them into buffers
    # with unchanged state-dict names.
    D = make_D(32, block_kwargs={'freeze_layers': 3})
    params = dict(D.named_parameters())
    assert 'b32.conv1.weight' not in params and 'b32.skip.weight' in params
    assert 'b32.conv1.weight' in D.state_dict() and D.b32.num_layers == 4


def test_noise_modes_and_fused_generator():
    torch.manual_seed(0)
    G = make_G(32)
    with torch.no_grad():
        for layer in G.modules():  # strengths start at 0; make noise visible
            if isinstance(layer, ns.SynthesisLayer):
                layer.noise_strength.fill_(0.5)
        z = torch.randn(2, 16)
        const_a = G(z, None, noise_mode='const')
        const_b = G(z, None, noise_mode='const', fused_modconv=False)
        rand_a, rand_b = G(z, None, noise_mode='random'), G(z, None, noise_mode='random')
        none = G(z, None, noise_mode='none')
    torch.testing.assert_close(const_a, const_b, rtol=1e-4, atol=1e-4)  # whole G, fused vs unfused
    assert not torch.allclose(rand_a, rand_b) and not torch.allclose(none, const_a)
    with pytest.raises(ValueError, match='noise_mode'):
        G(z, None, noise_mode='bogus')


def test_discriminator_projection_score():
    torch.manual_seed(0)
    D = make_D(32, c_dim=2)
    img, c = torch.randn(4, 3, 32, 32), torch.randn(4, 2)
    with torch.no_grad():
        x = None
        for res in D.block_resolutions:
            x, _ = getattr(D, f'b{res}')(x, img)
        epi = D.b4
        out = epi.out(epi.fc(epi.conv(epi.mbstd(x)).flatten(1)))  # [N, cmap_dim]
        cmap = D.mapping(None, c)
        expected = (out * cmap).sum(dim=1, keepdim=True) / np.sqrt(64)
        torch.testing.assert_close(D(img, c), expected)
    assert D.b4.out.out_features == 64 and make_D(32).b4.out.out_features == 1


def test_minibatch_std_layer():
    x = torch.randn(8, 6, 4, 4)
    y = ns.MinibatchStdLayer(group_size=4)(x)
    assert y.shape == (8, 7, 4, 4)
    # Sample 0 is grouped with samples 2, 4, 6 (groups are strided by N/G = 2).
    group = x[0::2]
    std = (group.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(y[0, 6], std.expand(4, 4))
    with pytest.raises(ValueError, match='divisible'):
        ns.MinibatchStdLayer(group_size=4)(torch.randn(6, 6, 4, 4))


def test_r1_double_backward():
    torch.manual_seed(0)
    D = make_D(32, c_dim=2)
    img = torch.randn(4, 3, 32, 32, requires_grad=True)
    logits = D(img, torch.randn(4, 2))
    (r1_grad,) = torch.autograd.grad(logits.sum(), img, create_graph=True)
    r1_grad.square().sum(dim=[1, 2, 3]).mean().backward()
    # d(logits)/d(img) does not depend on the final bias, so it alone gets no R1 gradient.
    assert_all_grads_finite(D, exclude=['b4.out.bias'])
    assert D.b32.conv0.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------
# State-dict names match StyleGAN2/EG3D checkpoints.

def test_state_dict_keys():
    G_keys = set(make_G(32, c_dim=3).state_dict())
    for key in ['synthesis.b4.const', 'synthesis.b4.conv1.weight', 'synthesis.b4.conv1.noise_const',
                'synthesis.b4.conv1.noise_strength', 'synthesis.b4.resample_filter',
                'synthesis.b8.conv0.affine.weight', 'synthesis.b8.conv0.affine.bias',
                'synthesis.b8.conv0.resample_filter', 'synthesis.b8.conv1.bias', 'synthesis.b8.torgb.weight',
                'synthesis.b8.torgb.affine.weight', 'synthesis.b32.torgb.bias',
                'mapping.fc0.weight', 'mapping.fc1.bias', 'mapping.embed.weight', 'mapping.w_avg']:
        assert key in G_keys, key
    assert 'synthesis.b4.conv0.weight' not in G_keys

    D_keys = set(make_D(32, c_dim=2).state_dict())
    for key in ['b32.fromrgb.weight', 'b32.fromrgb.bias', 'b32.conv0.weight', 'b32.conv1.weight',
                'b32.skip.weight', 'b32.resample_filter', 'b16.conv0.weight', 'b8.conv1.bias',
                'b4.conv.weight', 'b4.fc.weight', 'b4.fc.bias', 'b4.out.weight', 'b4.out.bias',
                'mapping.embed.weight', 'mapping.fc0.weight', 'mapping.fc1.weight']:
        assert key in D_keys, key
    assert not any(k.startswith('b4.mbstd') for k in D_keys)  # mbstd has no parameters
    assert 'b16.fromrgb.weight' not in D_keys and 'b32.skip.bias' not in D_keys
    assert 'mapping.w_avg' not in D_keys
    assert not any(k.startswith('mapping.') for k in make_D(32).state_dict())


# ---------------------------------------------------------------------------------------
# Pickles carry their source: a fresh process rebuilds G and D without `training`.

_FRESH_PROCESS_SCRIPT = '''
import pickle, sys
import torch
sys.path.insert(0, {repo!r})  # torch_utils/dnnlib only; the networks come from the pickle
with open({pkl!r}, 'rb') as f:
    nets = pickle.load(f)
assert 'training' not in sys.modules, sorted(m for m in sys.modules if m.startswith('training'))
assert type(nets['G']).__module__.startswith('_imported_module_')
inputs = torch.load({inputs!r})
with torch.no_grad():
    img = nets['G'](inputs['z'], inputs['c'], noise_mode='const')
    logits = nets['D'](inputs['img'], inputs['c'])
torch.save({{'img': img, 'logits': logits}}, {outputs!r})
'''


def test_pickle_loads_in_fresh_process_without_training(tmp_path):
    torch.manual_seed(0)
    G, D = make_G(32, c_dim=3).eval(), make_D(32, c_dim=3).eval()
    with torch.no_grad():
        for p in G.parameters():  # non-trivial noise strengths and biases
            p.add_(0.1 * torch.randn_like(p))
    inputs = {'z': torch.randn(4, 16), 'c': torch.randn(4, 3), 'img': torch.randn(4, 3, 32, 32)}
    with torch.no_grad():
        img = G(inputs['z'], inputs['c'], noise_mode='const')
        logits = D(inputs['img'], inputs['c'])
    paths = {name: str(tmp_path / f'{name}.pkl') for name in ['pkl', 'inputs', 'outputs']}
    with open(paths['pkl'], 'wb') as f:
        pickle.dump({'G': G, 'D': D}, f)
    torch.save(inputs, paths['inputs'])

    script = textwrap.dedent(_FRESH_PROCESS_SCRIPT.format(repo=REPO, **paths))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    res = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    outputs = torch.load(paths['outputs'])
    assert torch.equal(outputs['img'], img)
    assert torch.equal(outputs['logits'], logits)
