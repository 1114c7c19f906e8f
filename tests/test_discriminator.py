"""Tests for training/dual_discriminator.py and training/pose_head.py (SPEC §5).

The central check: the one-pass forward (pose and score from one trunk pass) equals the
reference's two-pass path (pose pass, then a score pass conditioned on sg(pose)) in
values and in D's parameter gradients. Also R1 double backward, the conditional and
unconditional variants, EG3D state-dict names, no input mutation and pickling.
CPU, 32-px images, 16-px raw images, 32 channels: a few seconds in all.
"""

import copy
import io
import os
import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_gradfix
from training import networks_stylegan2 as ns
from training.dual_discriminator import DualDiscriminator, filtered_resizing
from training.pose_head import PoseHead

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {'channel_base': 1024, 'channel_max': 32, 'num_fp16_res': 0, 'pose_head_channels': 64}


def make_D(c_dim=2, res=32, **kwargs):
    torch.manual_seed(0)
    D = DualDiscriminator(c_dim=c_dim, img_resolution=res, img_channels=3, **{**TINY, **kwargs})
    with torch.no_grad():  # non-zero biases everywhere (the pose head's start at 0)
        for name, p in D.named_parameters():
            if name.endswith('bias'):
                p.add_(0.1 * torch.randn_like(p))
    return D


def make_img(n=4, res=32, raw=16, requires_grad=False, seed=1):
    g = torch.Generator().manual_seed(seed)
    return {'image': torch.randn(n, 3, res, res, generator=g).requires_grad_(requires_grad),
            'image_raw': torch.randn(n, 3, raw, raw, generator=g).requires_grad_(requires_grad)}


def param_grads(D):
    return {name: (None if p.grad is None else p.grad.clone()) for name, p in D.named_parameters()}


# ---------------------------------------------------------------------------------------
# One pass == two passes (SPEC "Project decisions", §5.3).

def test_one_pass_equals_two_pass_values():
    D = make_D()
    img = make_img()
    out = D(img)
    pose_two = D.pose_only(img)
    score_two = D.score_given(img, pose_two.detach())
    torch.testing.assert_close(out['pose'], pose_two, rtol=0, atol=1e-6)
    torch.testing.assert_close(out['score'], score_two, rtol=0, atol=1e-6)
    assert out['score'].shape == (4, 1) and out['pose'].shape == (4, 2)
    assert out['pose'].requires_grad  # the pose output is NOT detached (pose losses train through it)


def test_one_pass_equals_two_pass_gradients():
    D = make_D()
    img = make_img()
    D.zero_grad(set_to_none=True)
    F.softplus(D(img)['score']).sum().backward()
    grads_one = param_grads(D)

    D.zero_grad(set_to_none=True)
    pose = D.pose_only(img).detach()
    F.softplus(D.score_given(img, pose)).sum().backward()
    grads_two = param_grads(D)

    for name, g1 in grads_one.items():
        g2 = grads_two[name]
        if name.startswith('pose_head.'):
            # sg(ĉ): the score never reaches the pose head, in either path.
            assert g1 is None and g2 is None, name
            continue
        assert g1 is not None and g2 is not None, name
        torch.testing.assert_close(g1, g2, rtol=1e-5, atol=1e-6, msg=name)


def test_pose_head_trained_by_pose_loss():
    D = make_D()
    img = make_img()
    target = torch.randn(4, 2)
    F.mse_loss(D(img)['pose'], target).backward()
    for name, p in D.named_parameters():
        if name.startswith('mapping.') or name.startswith('b4.fc.') or name.startswith('b4.out.'):
            assert p.grad is None, name  # the pose branches off before fc/out and the mapping
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name
    # pose_only gives the same prediction as the forward's pose
    torch.testing.assert_close(D.pose_only(img), D(img)['pose'], rtol=0, atol=0)


# ---------------------------------------------------------------------------------------
# R1 (SPEC §6.4): gradients w.r.t. both inputs, weight grads off, double backward.

@pytest.mark.parametrize('gradfix', [False, True])
def test_r1_double_backward(monkeypatch, gradfix):
    monkeypatch.setattr(conv2d_gradfix, 'enabled', gradfix)
    D = make_D()
    img = make_img(requires_grad=True)
    score = D(img)['score']
    with conv2d_gradfix.no_weight_gradients():
        r1_img, r1_raw = torch.autograd.grad(score.sum(), [img['image'], img['image_raw']], create_graph=True)
    assert r1_img.shape == img['image'].shape and r1_raw.shape == img['image_raw'].shape
    assert r1_raw.abs().sum() > 0  # the raw image reaches the score through the bilinear resize
    penalty = r1_img.square().sum(dim=[1, 2, 3]) + r1_raw.square().sum(dim=[1, 2, 3])
    (penalty.mean() * 0.5).backward()
    for name, p in D.named_parameters():
        if name.startswith('pose_head.') or name == 'b4.out.bias':
            continue  # sg(pose) / a constant offset of the score: no R1 gradient
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert D.b32.fromrgb.weight.grad.abs().sum() > 0 and D.b8.conv1.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------
# Variants: EG3D conditional (c_dim 25), unconditional (c_dim 0), linear pose head, skip.

def test_conditional_c25_uses_given_c():
    D = make_D(c_dim=25, self_condition=False)
    img = make_img()
    c1, c2 = torch.randn(4, 25), torch.randn(4, 25)
    out = D(img, c1)
    assert out['score'].shape == (4, 1) and out['pose'].shape == (4, 2)
    torch.testing.assert_close(out['score'], D.score_given(img, c1), rtol=0, atol=1e-6)
    assert not torch.allclose(out['score'], D(img, c2)['score'])
    with pytest.raises(ValueError, match='pass c'):
        D(img)
    assert DualDiscriminator(25, 32, 3, self_condition=False, pose_head=False, **{
        k: v for k, v in TINY.items() if k != 'pose_head_channels'})(img, c1)['pose'] is None


@pytest.mark.parametrize('pose_head', [True, False])
def test_unconditional_c0(pose_head):
    D = make_D(c_dim=0, self_condition=False, pose_head=pose_head)
    img = make_img()
    out = D(img, torch.randn(4, 25))  # c is ignored when c_dim = 0
    assert out['score'].shape == (4, 1)
    assert (out['pose'] is not None) == pose_head
    torch.testing.assert_close(out['score'], D(img)['score'], rtol=0, atol=0)
    assert D.b4.out.out_features == 1
    assert not any(k.startswith('mapping.') for k in D.state_dict())
    if not pose_head:
        with pytest.raises(RuntimeError):
            D.pose_only(img)


def test_self_condition_ignores_given_c():
    D = make_D()
    img = make_img()
    torch.testing.assert_close(D(img, torch.randn(4, 2))['score'], D(img)['score'], rtol=0, atol=0)


def test_linear_pose_head_and_skip_architecture():
    D = make_D(dis_linear_pose=True)
    assert {k for k in D.state_dict() if k.startswith('pose_head.')} == {'pose_head.out.weight',
                                                                         'pose_head.out.bias'}
    assert D(make_img())['pose'].shape == (4, 2)
    D_skip = make_D(architecture='skip')
    out = D_skip(make_img())
    torch.testing.assert_close(out['score'], D_skip.score_given(make_img(), out['pose'].detach()),
                               rtol=0, atol=1e-6)


def test_pose_head_shapes_and_init():
    head = PoseHead(8192, 4096)
    n_params = sum(p.numel() for p in head.parameters())
    assert n_params == 8192 * 4096 + 4096 + 4096 * 2 + 2  # ~33.6 M (SPEC §5.2)
    assert head.fc.bias.abs().sum() == 0 and head.out.bias.abs().sum() == 0
    assert head.fc.activation == 'lrelu' and head.out.activation == 'linear'
    assert PoseHead(16, linear=True)(torch.randn(3, 16)).shape == (3, 2)


def test_matches_stylegan2_discriminator_on_six_channels():
    """The trunk + epilogue + projection is exactly a StyleGAN2 D on cat(image, resize(raw))."""
    D = make_D(c_dim=25, self_condition=False)
    ref = ns.Discriminator(c_dim=25, img_resolution=32, img_channels=6, channel_base=1024, channel_max=32,
                           num_fp16_res=0)
    missing, unexpected = ref.load_state_dict(D.state_dict(), strict=False)
    assert not missing
    assert all(k.startswith('pose_head.') or k == 'resample_filter' for k in unexpected)
    img, c = make_img(), torch.randn(4, 25)
    raw_up = F.interpolate(img['image_raw'], size=(32, 32), mode='bilinear', align_corners=False, antialias=False)
    expected = ref(torch.cat([img['image'], raw_up], dim=1), c)
    torch.testing.assert_close(D(img, c)['score'], expected, rtol=1e-5, atol=1e-6)


def test_config_errors():
    with pytest.raises(ValueError, match='c_dim must be 2'):
        DualDiscriminator(25, 32, 3, self_condition=True)
    with pytest.raises(ValueError, match='pose_head=True'):
        DualDiscriminator(2, 32, 3, self_condition=True, pose_head=False)
    with pytest.raises(ValueError, match='power of two'):
        DualDiscriminator(2, 48, 3)
    with pytest.raises(TypeError, match='image_raw'):
        make_D()({'image': torch.randn(4, 3, 32, 32)})


# ---------------------------------------------------------------------------------------
# Resizing, label noise, no mutation.

def test_filtered_resizing_modes():
    x = torch.randn(2, 3, 16, 16)
    f = make_D().resample_filter
    plain = F.interpolate(x, size=(32, 32), mode='bilinear', align_corners=False, antialias=False)
    assert torch.equal(filtered_resizing(x, 32, f), plain)                  # default 'none'
    # PoF3D never antialiases (SPEC §12.4): EG3D's 'antialiased' is the same plain resize.
    assert torch.equal(filtered_resizing(x, 32, f, filter_mode='antialiased'), plain)
    antialiased = F.interpolate(x[..., ::2, ::2], size=(4, 4), mode='bilinear', align_corners=False, antialias=True)
    assert not torch.equal(filtered_resizing(x[..., ::2, ::2], 4, f, filter_mode='antialiased'), antialiased)
    classic = filtered_resizing(x, 32, f, filter_mode='classic')
    assert classic.shape == (2, 3, 32, 32) and torch.isfinite(classic).all()
    # A constant image stays constant away from the zero-padded border.
    const = filtered_resizing(torch.ones(1, 1, 16, 16), 32, f, filter_mode='classic')
    torch.testing.assert_close(const[..., 4:-4, 4:-4], torch.ones(1, 1, 24, 24))
    with pytest.raises(ValueError, match='filter_mode'):
        filtered_resizing(x, 32, f, filter_mode='lanczos')


def test_raw_at_full_resolution_is_not_resampled():
    D = make_D()
    img = make_img(raw=32)
    torch.testing.assert_close(D(img)['score'], D.score_given(img, D.pose_only(img).detach()), rtol=0, atol=1e-6)


def test_disc_c_noise():
    D = make_D(c_dim=25, self_condition=False, disc_c_noise=1.0)
    img, c = make_img(), torch.randn(4, 25)
    c_copy = c.clone()
    torch.manual_seed(5)
    s1 = D(img, c)['score']
    torch.manual_seed(5)
    s2 = D(img, c)['score']
    s3 = D(img, c)['score']
    assert torch.equal(s1, s2) and not torch.equal(s1, s3)
    assert torch.equal(c, c_copy)


def test_input_dict_not_mutated():
    D = make_D()
    img = make_img(requires_grad=True)
    snapshot = {k: v.detach().clone() for k, v in img.items()}
    ids = {k: id(v) for k, v in img.items()}
    versions = {k: v._version for k, v in img.items()}
    out = D(img)
    D.pose_only(img)
    D.score_given(img, out['pose'].detach())
    assert set(img) == {'image', 'image_raw'}
    for k, v in img.items():
        assert id(v) == ids[k] and v._version == versions[k] and torch.equal(v.detach(), snapshot[k]), k


# ---------------------------------------------------------------------------------------
# Names and persistence.

def test_state_dict_keys():
    keys = set(make_D().state_dict())
    for key in ['b32.fromrgb.weight', 'b32.conv0.weight', 'b32.skip.weight', 'b16.conv1.bias', 'b8.conv1.weight',
                'b4.conv.weight', 'b4.fc.weight', 'b4.out.weight', 'mapping.embed.weight', 'mapping.fc7.weight',
                'resample_filter', 'pose_head.fc.weight', 'pose_head.fc.bias', 'pose_head.out.weight',
                'pose_head.out.bias']:
        assert key in keys, key
    assert 'mapping.fc8.weight' not in keys and 'b16.fromrgb.weight' not in keys  # 8 mapping layers; fromRGB once
    sd = make_D().state_dict()
    assert sd['b32.fromrgb.weight'].shape == (32, 6, 1, 1)  # 6 channels: image + resized image_raw
    assert sd['b4.out.weight'].shape == (32, 32)            # cmap_dim = channels at 4×4
    assert sd['pose_head.fc.weight'].shape == (64, 32 * 16)


def test_pickle_round_trip():
    D = make_D().eval()
    img = make_img()
    with torch.no_grad():
        ref = D(img)
    buf = io.BytesIO()
    pickle.dump(D, buf)
    D2 = pickle.loads(buf.getvalue())
    assert type(D2).__name__ == 'DualDiscriminator' and D2.init_kwargs.pose_head_channels == 64
    D3 = copy.deepcopy(D)
    with torch.no_grad():
        for other in (D2, D3):
            out = other(img)
            assert torch.equal(out['score'], ref['score']) and torch.equal(out['pose'], ref['pose'])


_FRESH_PROCESS_SCRIPT = '''
import pickle, sys
import torch
sys.path.insert(0, {repo!r})  # torch_utils/dnnlib only; the networks come from the pickle
with open({pkl!r}, 'rb') as f:
    D = pickle.load(f)
assert 'training' not in sys.modules, sorted(m for m in sys.modules if m.startswith('training'))
with torch.no_grad():
    out = D(torch.load({inputs!r}))
torch.save(out, {outputs!r})
'''


def test_pickle_loads_in_fresh_process_without_training(tmp_path):
    D = make_D().eval()
    img = make_img()
    with torch.no_grad():
        ref = D(img)
    paths = {name: str(tmp_path / f'{name}.pkl') for name in ['pkl', 'inputs', 'outputs']}
    with open(paths['pkl'], 'wb') as f:
        pickle.dump(D, f)
    torch.save(img, paths['inputs'])
    script = textwrap.dedent(_FRESH_PROCESS_SCRIPT.format(repo=REPO, **paths))
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    res = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    out = torch.load(paths['outputs'])
    assert torch.equal(out['score'], ref['score']) and torch.equal(out['pose'], ref['pose'])
