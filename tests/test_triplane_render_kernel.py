"""Fused tri-plane rendering (training/rendering/fused.py + _triton_triplane.py).

1. Without the kernel (`impl='torch'`) the fused op IS the renderer's stages (field query ->
   march_rays), bit for bit, and matches the reference port (tests/reference/rendering.py).
2. The Triton kernel equals the PyTorch stages, forward (rgb, depth, weight_sum, final
   transmittance, coarse weights, point query) and first-order backward (planes, decoder
   params, ray origins, directions, depths, query points).
3. Fallback: a failing load or launch gives one RuntimeWarning and the PyTorch result.

On CPU the kernels run under the Triton interpreter (TRITON_INTERPRET=1, tests/conftest.py),
so sizes are tiny: N <= 2, M <= 8 rays, S <= 6 samples, C <= 6 channels, 8x8 planes. Kernel
tests turn the fallback warning into an error, so a pass means the kernel made the numbers.
GPU variants are marked `gpu` and skip without a CUDA device.

Tolerances (fp32 everywhere):
  forward  atol 1e-5, rtol 1e-5: per-ray sequential sums vs torch's vectorised reductions,
           a different dot-product order in the decoder MLP, grid_sample's own rounding of
           the pixel coordinate, FMA contraction on GPU; measured <= 5e-7 on CPU.
  backward atol 1e-5, rtol 1e-4: as above, plus "later samples = total - running" (a
           cancellation of O(ulp(|L|)) per interval), atomic adds into the plane gradient
           (order not fixed on GPU) and per-program partial sums for the decoder params;
           measured <= 2e-6 absolute on gradients of O(1) on CPU.
"""

import os
import warnings

import pytest
import torch

from reference import rendering as reference   # tests/reference/rendering.py
from torch_utils import custom_ops
from training.cameras import FOV_to_intrinsics, LookAtPose
from training.rendering import fused as tr
from training.rendering.compositing import march_rays
from training.rendering.decoder import OSGDecoder
from training.rendering.field import TriplaneField
from training.rendering.options import RenderingOptions
from training.rendering.planes import cached_planes
from training.rendering.rays import sample_rays
from training.rendering.renderer import ImportanceRenderer

triton = pytest.importorskip('triton')

DEVICES = [
    pytest.param('cpu', marks=pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') != '1',
                                                 reason='CPU kernels need TRITON_INTERPRET=1')),
    pytest.param('cuda', marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')]),
]
FWD_TOL = dict(atol=1e-5, rtol=1e-5)
BWD_TOL = dict(atol=1e-5, rtol=1e-4)
BOX = 1.0


@pytest.fixture(autouse=True)
def _fresh_kernels():
    custom_ops.reset()
    yield
    custom_ops.reset()


@pytest.fixture
def kernel_only():
    """Any kernel fallback (a RuntimeWarning from custom_ops) fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter('error', RuntimeWarning)
        yield
    assert not custom_ops.is_disabled(tr.KERNEL_NAME)


def _scene(device='cpu', N=2, M=6, S=5, C=6, CO=4, seed=0, density_bias=0.0):
    """Planes, an OSGDecoder (lr_mul 0.5, so the runtime gains matter) and rays through the
    box [-0.5, 0.5]^3 that also sample outside it (points up to ~0.9 from the centre)."""
    g = torch.Generator().manual_seed(seed)
    planes = torch.randn(N, 3, C, 8, 8, generator=g)
    torch.manual_seed(seed)
    decoder = OSGDecoder(C, {'decoder_lr_mul': 0.5, 'decoder_output_dim': CO})
    with torch.no_grad():
        decoder.net[2].bias[0] += density_bias / 0.5  # runtime bias = stored * lr_mul
    origins = torch.randn(N, M, 3, generator=g) * 0.2 + torch.tensor([0.0, 0.0, 1.3])
    target = (torch.rand(N, M, 3, generator=g) - 0.5) * 1.2
    dirs = torch.nn.functional.normalize(target - origins, dim=-1)
    depths = torch.sort(torch.rand(N, M, S, 1, generator=g) * 1.6 + 0.4, dim=2).values
    to = dict(device=device)
    return planes.to(**to), decoder.to(**to), origins.to(**to), dirs.to(**to), depths.to(**to)


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(True) for t in tensors]


def _close(a, b, tol):
    torch.testing.assert_close(a, b, **tol)

# ----------------------------------------------------------------------------------------
# 1. Without the kernel, the fused op is the renderer's stages.


@pytest.mark.parametrize('axes', ['correct', 'legacy'])
@pytest.mark.parametrize('white_back', [False, True])
def test_torch_path_equals_renderer_stages_and_reference(axes, white_back):
    planes, decoder, origins, dirs, depths = _scene()
    N, M, S, _ = depths.shape
    field = TriplaneField(planes, decoder, axes, BOX)
    coords = torch.addcmul(origins.unsqueeze(-2), depths, dirs.unsqueeze(-2)).reshape(N, M * S, 3)
    rgb, sigma = field.query(coords)
    march = march_rays(rgb.reshape(N, M, S, -1), sigma.reshape(N, M, S, 1), depths, white_back=white_back)
    params = decoder.params()
    got = tr.render_triplane_full(planes, axes, params, origins, dirs, depths, BOX, white_back, impl='torch')
    expected = (march.features, march.depth, march.weights.sum(dim=2), march.final_transmittance)
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    assert torch.equal(tr.render_triplane_weights(planes, axes, params, origins, dirs, depths, BOX, impl='torch'),
                       march.weights)
    q_rgb, q_sigma = tr.query_triplane(planes, axes, params, coords, BOX, impl='torch')
    assert torch.equal(q_rgb, rgb) and torch.equal(q_sigma, sigma)
    # The reference port (grid_sample, plain MLP, interval colours): float32 rounding only.
    plane_axes = cached_planes(axes == 'legacy', planes.dtype, planes.device)
    ref = reference.render_planes(planes, plane_axes, params, origins, dirs, depths, BOX, white_back)
    for a, b in zip(got, (ref.features, ref.depth, ref.weights.sum(dim=2), ref.final_transmittance)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_osg_params_and_argument_checks():
    planes, decoder, origins, dirs, depths = _scene()
    w1, b1, w2, b2 = decoder.params()
    assert w1.shape == (64, 6) and w2.shape == (5, 64)
    _close(b2, decoder.net[2].bias * 0.5, dict(atol=0, rtol=0))
    assert TriplaneField(planes, torch.nn.Linear(3, 3), 'correct', BOX).kernel_inputs() is None
    with pytest.raises(ValueError, match='impl'):
        tr.render_triplane(planes, 'correct', (w1, b1, w2, b2), origins, dirs, depths, BOX, impl='cuda-fast')
    with pytest.raises(ValueError, match='plane_axes'):
        tr.render_triplane(planes, 'xyz', (w1, b1, w2, b2), origins, dirs, depths, BOX)
    with pytest.raises(ValueError, match=r'\[N, 3, C, H, W\]'):
        tr.render_triplane(planes[:, :2], 'correct', (w1, b1, w2, b2), origins, dirs, depths, BOX)


def test_force_reference_env(monkeypatch):
    planes, decoder, origins, *_ = _scene()
    monkeypatch.setenv('POF3D_IMPL', 'ref')
    assert not tr.kernel_ready('triton', planes, origins)
    monkeypatch.delenv('POF3D_IMPL')
    assert not tr.kernel_ready('auto', planes, origins)  # CPU tensors: PyTorch by default
    assert not tr.kernel_ready('torch', planes, origins)

# ----------------------------------------------------------------------------------------
# 2. Kernel == reference.


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('axes,white_back', [('correct', False), ('legacy', True)])
def test_kernel_forward(device, axes, white_back, kernel_only):
    planes, decoder, origins, dirs, depths = _scene(device)
    params = decoder.params()
    with torch.no_grad():
        got = tr.render_triplane_full(planes, axes, params, origins, dirs, depths, BOX, white_back, impl='triton')
        ref = tr.render_triplane_full(planes, axes, params, origins, dirs, depths, BOX, white_back, impl='torch')
        w = tr.render_triplane_weights(planes, axes, params, origins, dirs, depths, BOX, impl='triton')
        w_ref = tr.render_triplane_weights(planes, axes, params, origins, dirs, depths, BOX, impl='torch')
    assert 0.05 < ref.weight_sum.min() and ref.weight_sum.max() < 0.999  # neither empty nor opaque
    for a, b in zip(got, ref):
        assert a.shape == b.shape
        _close(a, b, FWD_TOL)
    _close(w, w_ref, FWD_TOL)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('axes,white_back,ray_grad,density_bias', [
    ('correct', True, True, 0.0),     # every input, translucent rays
    ('legacy', False, True, 6.0),     # nearly opaque rays: stresses "total - running"
    ('correct', False, False, 0.0),   # planes + decoder only (the RAY_GRAD=False kernel)
])
def test_kernel_backward(device, axes, white_back, ray_grad, density_bias, kernel_only):
    planes, decoder, origins, dirs, depths = _scene(device, density_bias=density_bias)
    params = [p.detach() for p in decoder.params()]
    inputs = [planes, *params] + ([origins, dirs, depths] if ray_grad else [])
    g = torch.Generator().manual_seed(1)
    results = []
    for impl in ('triton', 'torch'):
        leaves = _leaves(*inputs)
        rays = leaves[5:] if ray_grad else [origins, dirs, depths]
        out = tr.render_triplane_full(leaves[0], axes, leaves[1:5], *rays, BOX, white_back, impl=impl)
        if not results:
            coef = [torch.randn(o.shape, generator=g).to(device) for o in out]
        loss = sum((c * o).sum() for c, o in zip(coef, out))
        results.append((out, torch.autograd.grad(loss, leaves)))
    (out, grads), (out_ref, grads_ref) = results
    if density_bias:
        assert out_ref.weight_sum.mean() > 0.95
    for a, b in zip(out, out_ref):
        _close(a, b, FWD_TOL)
    names = ['planes', 'w1', 'b1', 'w2', 'b2', 'origins', 'dirs', 'depths']
    for name, a, b in zip(names, grads, grads_ref):
        assert b.abs().max() > 0, name
        torch.testing.assert_close(a, b, **BWD_TOL, msg=lambda m, name=name: f'{name}: {m}')


@pytest.mark.parametrize('device', DEVICES)
def test_kernel_point_query(device, kernel_only):
    planes, decoder, *_ = _scene(device, N=2, C=5, CO=3)
    coords = (torch.rand(2, 7, 3, generator=torch.Generator().manual_seed(3)) - 0.5).to(device) * 1.4
    params = [p.detach() for p in decoder.params()]
    results = []
    for impl in ('triton', 'torch'):
        leaves = _leaves(planes, *params, coords)
        rgb, sigma = tr.query_triplane(leaves[0], 'legacy', leaves[1:5], leaves[5], BOX, impl=impl)
        loss = (rgb * torch.linspace(-1, 1, rgb.numel(), device=device).reshape(rgb.shape)).sum() + sigma.square().sum()
        results.append(((rgb, sigma), torch.autograd.grad(loss, leaves)))
    for a, b in zip(results[0][0], results[1][0]):
        _close(a, b, FWD_TOL)
    for a, b in zip(results[0][1], results[1][1]):
        _close(a, b, BWD_TOL)


@pytest.mark.parametrize('device', DEVICES)
def test_renderer_fused_path(device, kernel_only):
    """ImportanceRenderer with impl='triton' (coarse weights kernel -> importance -> fine kernel;
    run_model through the point-query kernel) == impl='torch', gradients to the pose included."""
    planes, decoder, *_ = _scene(device, N=1, C=4, CO=4)
    opts = dict(ray_start=0.9, ray_end=1.9, box_warp=BOX, depth_resolution=4, depth_resolution_importance=2)
    results = []
    for impl in ('triton', 'torch'):
        p = _leaves(planes)[0]
        h = torch.full([1, 1], 1.7, device=device, requires_grad=True)
        v = torch.full([1, 1], 1.4, device=device, requires_grad=True)
        origins, dirs = sample_rays(LookAtPose(h, v, [0, 0, 0], 1.4), FOV_to_intrinsics(30.0, device=device)[None], 2)
        renderer = ImportanceRenderer(RenderingOptions(**opts, impl=impl))
        field = TriplaneField(p, decoder, 'correct', BOX)
        o = renderer(field, origins, dirs, generator=torch.Generator(device).manual_seed(2))
        q_sigma = renderer.query(field, origins[:, :3] * 0.3, dirs[:, :3])[1]
        loss = o.features.square().sum() + o.depth.sum() + o.weight_sum.sum() + q_sigma.sum()
        results.append((o, torch.autograd.grad(loss, [p, h, v, *decoder.parameters()])))
    for a, b in zip(results[0][0], results[1][0]):
        _close(a, b, FWD_TOL)
    for a, b in zip(results[0][1], results[1][1]):
        _close(a, b, BWD_TOL)


@pytest.mark.parametrize('device', DEVICES)
def test_opcheck(device, kernel_only):
    """Schema, fake tensors, autograd registration and AOT dispatch of the custom ops."""
    planes, decoder, origins, dirs, depths = _scene(device, N=1, M=3, S=3, C=4, CO=2)
    k = tr._load_kernel()
    proj = tr._projection(cached_planes(False, torch.float32, planes.device)).contiguous()
    params = [p.detach().contiguous() for p in decoder.params()]
    cl = planes.permute(0, 1, 3, 4, 2).contiguous()
    t = depths.squeeze(-1).contiguous()
    torch.library.opcheck(torch.ops.pof3d.triplane_render.default,
                          (cl.requires_grad_(), proj, *params, origins, dirs, t, 2.0))
    torch.library.opcheck(torch.ops.pof3d.triplane_render_weights.default, (cl, proj, *params, origins, dirs, t, 2.0),
                          test_utils=('test_schema', 'test_faketensor'))
    torch.library.opcheck(torch.ops.pof3d.triplane_query.default, (cl, proj, *params, origins * 0.3, 2.0))
    sums = [x.detach() for x in torch.ops.pof3d.triplane_render(cl, proj, *params, origins, dirs, t, 2.0)]
    torch.library.opcheck(torch.ops.pof3d.triplane_render_backward.default,
                          ([torch.ones_like(x) for x in sums], sums, cl.detach(), proj, *params, origins, dirs, t,
                           2.0, True), test_utils=('test_schema', 'test_faketensor'))
    assert k.KERNEL_NAME == tr.KERNEL_NAME

# ----------------------------------------------------------------------------------------
# 3. Fallback.


class _FailingKernel:
    """Stands in for a @triton.jit function: `kernel[grid](...)` raises."""
    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            raise RuntimeError('simulated launch failure')
        return launch


def _record(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        out = fn()
    return out, [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_fallback_when_loading_fails(monkeypatch):
    def loader():
        raise ImportError('simulated: triton is broken')
    monkeypatch.setattr(tr, '_load_kernel', loader)
    planes, decoder, origins, dirs, depths = _scene()
    params = decoder.params()
    run = lambda: tr.render_triplane(planes, 'correct', params, origins, dirs, depths, BOX, impl='triton')  # noqa: E731
    out, caught = _record(run)
    assert len(caught) == 1 and 'simulated' in str(caught[0].message)
    ref = tr.render_triplane(planes, 'correct', params, origins, dirs, depths, BOX, impl='torch')
    assert all(torch.equal(a, b) for a, b in zip(out, ref))
    assert _record(run)[1] == []


@pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') != '1', reason='CPU kernels need TRITON_INTERPRET=1')
@pytest.mark.parametrize('which', ['_render_fwd_kernel', '_render_bwd_kernel'])
def test_fallback_when_launch_fails(monkeypatch, which):
    k = tr._load_kernel()
    monkeypatch.setattr(k, which, _FailingKernel())
    planes, decoder, origins, dirs, depths = _scene(N=1, M=4, S=4, C=4)
    params = [p.detach() for p in decoder.params()]

    def run(impl):
        leaves = _leaves(planes, *params, origins)
        out = tr.render_triplane(leaves[0], 'correct', leaves[1:5], leaves[5], dirs, depths, BOX, impl=impl)
        return out, torch.autograd.grad(sum(o.sum() for o in out), leaves)
    (out, grads), caught = _record(lambda: run('triton'))
    assert len(caught) == 1 and 'simulated launch failure' in str(caught[0].message)
    assert custom_ops.is_disabled(tr.KERNEL_NAME)
    out_ref, grads_ref = run('torch')
    for a, b in zip(list(out) + list(grads), list(out_ref) + list(grads_ref)):
        _close(a, b, BWD_TOL)
    assert _record(lambda: run('triton'))[1] == []


@pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') != '1', reason='CPU kernels need TRITON_INTERPRET=1')
def test_gpu_self_check_accepts_the_kernel_and_catches_a_wrong_one():
    # The loader runs this check on the first CUDA use; here it runs under the interpreter.
    kern = tr._load_kernel()
    tr._self_check(kern, torch.device('cpu'))

    class Wrong:  # a "miscompiled" kernel: features off by 1%
        @staticmethod
        def render_sums(*args):
            feat, dsum, wsum, tfin = kern.render_sums(*args)
            return feat * 1.01, dsum, wsum, tfin
    with pytest.raises(RuntimeError, match='self-check failed'):
        tr._self_check(Wrong, torch.device('cpu'))
