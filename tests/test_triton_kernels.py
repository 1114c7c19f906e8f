"""Equivalence tests for the Triton kernels `_triton_bias_act` and `_triton_upfirdn2d`.

On CPU the kernels run under the Triton interpreter (TRITON_INTERPRET=1, set below before
Triton is imported when there is no CUDA device); sizes are tiny because interpreting is slow.
The same tests run on CUDA when a device exists (compiled kernels need TRITON_INTERPRET=0
in the environment, since tests/conftest.py defaults it to 1). Every kernel test fails loudly if the kernel
fell back to the PyTorch path (the module-level filter turns its RuntimeWarning into an error),
so a passing test means the kernel itself produced the numbers.
"""

import importlib.util
import inspect
import os
import warnings

import pytest
import torch
import torch.nn.functional as F

if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')  # must precede the @triton.jit definitions

pytest.importorskip('triton')
from torch_utils import custom_ops  # noqa: E402

try:
    from torch_utils.ops import _triton_bias_act as kba
    from torch_utils.ops import _triton_upfirdn2d as kup
except custom_ops.KernelUnavailable as err:  # TRITON_INTERPRET=0 on a machine without CUDA
    pytest.skip(str(err), allow_module_level=True)

pytestmark = pytest.mark.filterwarnings('error::RuntimeWarning')

DEVICES = [
    pytest.param('cpu', marks=pytest.mark.skipif(os.environ.get('TRITON_INTERPRET') != '1',
                                                 reason='CPU kernels need TRITON_INTERPRET=1')),
    pytest.param('cuda', marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')]),
]
ACTS = list(kba.ACTIVATIONS)


@pytest.fixture(autouse=True)
def _fresh_kernels():
    custom_ops.reset()
    yield
    custom_ops.reset()


def _close(a, b, atol, rtol=1e-5):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)

# ----------------------------------------------------------------------------------------
# Our own references (independent of torch_utils/ops/bias_act.py and upfirdn2d.py).


def ref_bias_act(x, b, dim, act, alpha, gain, clamp):
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    funcs = {'linear': lambda v: v, 'relu': F.relu, 'lrelu': lambda v: F.leaky_relu(v, alpha),
             'tanh': torch.tanh, 'sigmoid': torch.sigmoid, 'elu': F.elu, 'selu': F.selu,
             'softplus': F.softplus, 'swish': lambda v: v * torch.sigmoid(v)}
    y = funcs[act](x) * gain
    return y.clamp(-clamp, clamp) if clamp >= 0 else y


def ref_upfirdn2d(x, f2d, upx, upy, downx, downy, padx0, padx1, pady0, pady1):
    N, C, H, W = x.shape
    z = x.new_zeros([N, C, H * upy, W * upx])
    z[:, :, ::upy, ::upx] = x  # zero insertion
    z = F.pad(z, [padx0, padx1, pady0, pady1])  # negative pads crop
    w = f2d.to(x.dtype).reshape(1, 1, *f2d.shape).repeat(C, 1, 1, 1)
    return F.conv2d(z, w, groups=C)[:, :, ::downy, ::downx]


def _grads(fn, inputs, create_graph=False):
    """Gradients of sum(fn(*inputs)**2) w.r.t. the inputs that require grad (None-safe)."""
    y = fn(*inputs)
    req = [t for t in inputs if t is not None and t.requires_grad]
    return y, torch.autograd.grad((y * y).sum(), req, create_graph=create_graph)


def _assert_kernels_ran(*names):
    for name in names:
        assert not custom_ops.is_disabled(name), f'{name} kernel fell back to the reference'

# ----------------------------------------------------------------------------------------
# bias_act

BA_CASES = [([2, 3, 4, 5], 1), ([6, 3], 1), ([3, 7], 0), ([2, 4, 3], 2)]  # (shape, dim)


def _ba_inputs(shape, dim, has_b, dtype, device, scale=2.0):
    g = torch.Generator().manual_seed(hash((tuple(shape), dim)) % 1000)
    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).to(device=device, dtype=dtype)
    b = torch.randn([shape[dim]], generator=g, dtype=torch.float64).to(device=device, dtype=dtype) if has_b else None
    return x.requires_grad_(), (b.requires_grad_() if b is not None else None)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('has_b', [False, True])
@pytest.mark.parametrize('clamp', [-1.0, 0.7])
@pytest.mark.parametrize('case', BA_CASES, ids=lambda c: f'{c[0]}d{c[1]}')
def test_bias_act_forward_backward(device, act, has_b, clamp, case):
    shape, dim = case
    x, b = _ba_inputs(shape, dim, has_b, torch.float32, device)
    args = (dim, act, 0.2, 1.4, clamp)
    y, g = _grads(lambda x, b: kba.bias_act(x, b, *args), (x, b))
    y_ref, g_ref = _grads(lambda x, b: ref_bias_act(x, b, *args), (x, b))
    _assert_kernels_ran('bias_act')
    assert y.shape == x.shape and y.dtype == x.dtype
    # fp32: tanh/sigmoid/softplus use exp-based formulas, a few ulp away from torch's libm.
    _close(y, y_ref, atol=1e-6)
    for a, r in zip(g, g_ref):
        _close(a, r, atol=1e-5)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('clamp', [-1.0, 0.7])
def test_bias_act_double_backward(device, act, clamp):
    """R1 differentiates D's input gradient again: grad of |d sum(y^2)/d(x, b)|^2."""
    x, b = _ba_inputs([2, 3, 4, 5], 1, True, torch.float32, device)
    args = (1, act, 0.2, 1.4, clamp)
    outs = []
    for fn in (kba.bias_act, ref_bias_act):
        _, g = _grads(lambda x, b, fn=fn: fn(x, b, *args), (x, b), create_graph=True)
        outs.append(torch.autograd.grad(sum((t * t).sum() for t in g), [x, b]))
    _assert_kernels_ran('bias_act')
    for a, r in zip(*outs):
        # Third-order products of fp32 values of size ~10: relative error is what stays small.
        _close(a, r, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('act', ['lrelu', 'tanh', 'elu', 'swish'])
def test_bias_act_gradgradcheck_fp64(device, act):
    """Finite differences in fp64 (the interpreter runs fp64 natively). Kernel scalars
    (alpha, gain, clamp) are fp32, which is consistent between forward and backward."""
    x, b = _ba_inputs([2, 3, 2], 1, True, torch.float64, device, scale=1.0)
    fn = lambda x, b: kba.bias_act(x, b, 1, act, 0.25, 1.5, 1.2)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))
    _assert_kernels_ran('bias_act')


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype,atol', [(torch.float64, 1e-6), (torch.float16, 2e-3), (torch.bfloat16, 2e-2)])
def test_bias_act_dtypes(device, dtype, atol):
    """fp64 is limited by the fp32 scalars (0.2 is not exact in fp32); half types by their
    own rounding of the fp32 result (one ulp at |y| ~ 4)."""
    for act in ['lrelu', 'tanh', 'softplus']:
        x, b = _ba_inputs([2, 3, 4, 5], 1, True, dtype, device)
        y = kba.bias_act(x, b, 1, act, 0.2, 1.4, 3.0)
        y_ref = ref_bias_act(x.double(), b.double(), 1, act, 0.2, 1.4, 3.0).to(dtype)
        assert y.dtype == dtype
        _close(y, y_ref, atol=atol, rtol=atol)
    _assert_kernels_ran('bias_act')


@pytest.mark.parametrize('device', DEVICES)
def test_bias_act_layouts(device):
    """channels_last is read in place (output keeps its strides); other strides are copied."""
    x, b = _ba_inputs([2, 3, 4, 5], 1, True, torch.float32, device)
    for xs in (x.detach().to(memory_format=torch.channels_last), x.detach().transpose(2, 3)):
        y = kba.bias_act(xs, b.detach(), 1, 'lrelu', 0.2, 1.4, -1.0)
        _close(y, ref_bias_act(xs, b.detach(), 1, 'lrelu', 0.2, 1.4, -1.0), atol=1e-6)
    assert y.is_contiguous() and kba.bias_act(x.detach().to(memory_format=torch.channels_last), b, 1,
                                              'relu', 0, 1, -1).is_contiguous(memory_format=torch.channels_last)
    _assert_kernels_ran('bias_act')


def test_bias_act_rejects_bad_arguments():
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match='unknown activation'):
        kba.bias_act(x, None, 1, 'gelu', 0, 1, -1)
    with pytest.raises(ValueError, match='b must have shape'):
        kba.bias_act(x, torch.zeros(4), 1, 'relu', 0, 1, -1)


def _dispatcher_ref(module, name, nargs):
    """torch_utils.ops.<module>.<name> if it exists with `nargs` positional parameters."""
    try:
        mod = importlib.import_module(f'torch_utils.ops.{module}')
    except ImportError as err:
        pytest.skip(f'torch_utils.ops.{module} not importable ({err})')
    fn = getattr(mod, name, None)
    if fn is None:
        pytest.skip(f'torch_utils.ops.{module}.{name} does not exist yet')
    if len(inspect.signature(fn).parameters) != nargs:
        pytest.skip(f'{name}{inspect.signature(fn)} does not take the {nargs} kernel-contract arguments')
    return fn


@pytest.mark.parametrize('act', ACTS)
def test_bias_act_matches_dispatcher_reference(act):
    ref = _dispatcher_ref('bias_act', '_bias_act_ref', 7)
    x, b = _ba_inputs([2, 3, 4, 5], 1, True, torch.float32, 'cpu')
    args = (1, act, 0.2, 1.4, 0.7)
    y, g = _grads(lambda x, b: kba.bias_act(x, b, *args), (x, b))
    y_ref, g_ref = _grads(lambda x, b: ref(x, b, *args), (x, b))
    _close(y, y_ref, atol=1e-6)
    for a, r in zip(g, g_ref):
        _close(a, r, atol=1e-5)

# ----------------------------------------------------------------------------------------
# upfirdn2d: (x shape, filter shape, upx, upy, downx, downy, padx0, padx1, pady0, pady1)

UFD_CASES = {
    'up2': ([2, 3, 5, 7], [4, 4], 2, 2, 1, 1, 2, 1, 2, 1),       # upsample2d with [1,3,3,1]
    'down2': ([2, 3, 8, 6], [4, 4], 1, 1, 2, 2, 1, 1, 1, 1),     # downsample2d with [1,3,3,1]
    'filter3x3': ([1, 2, 5, 4], [3, 3], 1, 1, 1, 1, 1, 1, 1, 1),  # up=1 down=1: filter only
    'f1x4': ([1, 2, 5, 6], [1, 4], 2, 1, 1, 1, 2, 1, 0, 0),      # separable x pass
    'f4x1': ([1, 2, 5, 6], [4, 1], 1, 1, 1, 2, 0, 0, 1, 2),      # separable y pass
    'negpad': ([1, 2, 7, 6], [4, 4], 2, 3, 1, 2, -1, 3, 2, -2),  # crops, mixed factors
    'odd': ([1, 1, 6, 9], [2, 3], 3, 1, 2, 3, 0, 2, 1, 1),       # up and down on one axis
    'wide': ([1, 1, 3, 70], [3, 3], 1, 1, 1, 1, 1, 1, 1, 1),     # several tiles along W
}


def _ufd_inputs(case, dtype, device):
    shape, fshape, *params = UFD_CASES[case]
    g = torch.Generator().manual_seed(len(case))
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    f = torch.randn(fshape, generator=g, dtype=torch.float64).to(device=device, dtype=dtype)
    return x.requires_grad_(), f, params


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('case', list(UFD_CASES))
def test_upfirdn2d_forward_backward(device, dtype, case):
    x, f, params = _ufd_inputs(case, dtype, device)
    y, (gx,) = _grads(lambda x: kup.upfirdn2d(x, f, *params), (x,))
    y_ref, (gx_ref,) = _grads(lambda x: ref_upfirdn2d(x, f, *params), (x,))
    _assert_kernels_ran('upfirdn2d')
    assert y.shape == y_ref.shape and gx.shape == x.shape and y.is_contiguous()
    atol = 1e-5 if dtype == torch.float32 else 1e-12  # fp32: sums of <= 16 products of O(1)
    _close(y, y_ref, atol=atol)
    _close(gx, gx_ref, atol=atol)


@pytest.mark.parametrize('device', DEVICES)
def test_upfirdn2d_double_backward_and_gradcheck(device):
    x, f, params = _ufd_inputs('negpad', torch.float64, device)
    outs = []
    for fn in (kup.upfirdn2d, ref_upfirdn2d):
        _, (gx,) = _grads(lambda x, fn=fn: fn(x, f, *params), (x,), create_graph=True)
        outs.append(torch.autograd.grad((gx * gx).sum(), x)[0])
    _close(outs[0], outs[1], atol=1e-10)
    small = x.detach()[:, :1, :3, :4].clone().requires_grad_()
    fn = lambda x: kup.upfirdn2d(x, f, *params)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (small,))  # linear in x: gradgradcheck adds only time
    _assert_kernels_ran('upfirdn2d')


@pytest.mark.parametrize('device', DEVICES)
def test_upfirdn2d_strided_input(device):
    """x is read through its strides (channels_last, slices) without a copy."""
    x, f, params = _ufd_inputs('up2', torch.float32, device)
    for xs in (x.detach().to(memory_format=torch.channels_last), x.detach()[:, :, 1:, ::2]):
        _close(kup.upfirdn2d(xs, f, *params), ref_upfirdn2d(xs, f, *params), atol=1e-5)
    _assert_kernels_ran('upfirdn2d')


def test_upfirdn2d_rejects_bad_arguments():
    with pytest.raises(ValueError, match='empty output'):
        kup.upfirdn2d(torch.zeros(1, 1, 2, 2), torch.ones(4, 4), 1, 1, 1, 1, 0, 0, 0, 0)
    with pytest.raises(ValueError, match='up/down'):
        kup.upfirdn2d(torch.zeros(1, 1, 2, 2), torch.ones(1, 1), 0, 1, 1, 1, 0, 0, 0, 0)


@pytest.mark.parametrize('case', ['up2', 'down2', 'negpad'])
def test_upfirdn2d_matches_dispatcher_reference(case):
    ref = _dispatcher_ref('upfirdn2d', '_upfirdn2d_torch_2d', 10)
    x, f, params = _ufd_inputs(case, torch.float32, 'cpu')
    y, (gx,) = _grads(lambda x: kup.upfirdn2d(x, f, *params), (x,))
    y_ref, (gx_ref,) = _grads(lambda x: ref(x, f, *params), (x,))
    _close(y, y_ref, atol=1e-5)
    _close(gx, gx_ref, atol=1e-5)

# ----------------------------------------------------------------------------------------
# torch.library registration


@pytest.mark.parametrize('device', DEVICES)
def test_opcheck(device):
    """Schema, fake-tensor (meta) shapes/strides, autograd registration, AOT dispatch."""
    x, b = _ba_inputs([2, 3, 4], 1, True, torch.float32, device)
    dy = torch.randn_like(x)
    torch.library.opcheck(torch.ops.pof3d.bias_act.default, (x, b, 1, 'lrelu', 0.2, 1.4, 0.7))
    torch.library.opcheck(torch.ops.pof3d.bias_act.default, (x, None, 1, 'tanh', 0.0, 1.0, -1.0))
    torch.library.opcheck(torch.ops.pof3d.bias_act_grad.default,
                          (dy.requires_grad_(), x, b, 1, 'swish', 0.0, 1.0, 0.9))
    xu, f, params = _ufd_inputs('negpad', torch.float32, device)
    torch.library.opcheck(torch.ops.pof3d.upfirdn2d.default, (xu, f, *params))
    _assert_kernels_ran('bias_act', 'upfirdn2d')

# ----------------------------------------------------------------------------------------
# Fallback: any failure means one RuntimeWarning and the reference result, never a crash.


def _failing_launcher(*args, **kwargs):
    raise RuntimeError('simulated launch failure')


class _FailingKernel:
    """Stands in for a @triton.jit function: `kernel[grid](...)` raises."""
    def __getitem__(self, grid):
        return _failing_launcher


def _record(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        out = fn()
    return out, [w for w in caught if issubclass(w.category, RuntimeWarning)]


def test_fallback_when_loading_fails():
    def loader():
        raise ImportError('simulated: triton is broken')
    x, b = _ba_inputs([2, 3], 1, True, torch.float32, 'cpu')
    run = lambda: custom_ops.get_kernel('bias_act_test_fail', loader)  # noqa: E731
    kern, caught = _record(run)
    assert kern is None and len(caught) == 1 and 'simulated' in str(caught[0].message)
    assert _record(run) == (None, [])


def test_fallback_when_dispatcher_cannot_load(monkeypatch):
    """Through the public dispatcher: a loader that raises gives one warning + the reference."""
    _dispatcher_ref('bias_act', '_bias_act_ref', 7)
    dispatch = importlib.import_module('torch_utils.ops.bias_act')

    def loader():
        raise ImportError('simulated: triton is broken')
    monkeypatch.setattr(dispatch, '_load_kernel', loader)
    x, b = _ba_inputs([2, 3], 1, True, torch.float32, 'cpu')
    run = lambda: dispatch.bias_act(x, b, act='lrelu', clamp=0.5, impl='triton')  # noqa: E731
    y, caught = _record(run)
    assert len(caught) == 1 and 'simulated' in str(caught[0].message)
    _close(y, ref_bias_act(x, b, 1, 'lrelu', 0.2, 2 ** 0.5, 0.5), atol=1e-6)
    assert _record(run)[1] == []


@pytest.mark.parametrize('which', ['_bias_act_fwd_kernel', '_bias_act_grad_kernel'])
def test_fallback_when_bias_act_launch_fails(monkeypatch, which):
    monkeypatch.setattr(kba, which, _FailingKernel())
    x, b = _ba_inputs([2, 3, 4], 1, True, torch.float32, 'cpu')
    args = (1, 'tanh', 0.2, 1.4, 0.7)
    (y, g), caught = _record(lambda: _grads(lambda x, b: kba.bias_act(x, b, *args), (x, b)))
    assert len(caught) == 1 and 'simulated launch failure' in str(caught[0].message)
    assert custom_ops.is_disabled('bias_act')
    y_ref, g_ref = _grads(lambda x, b: ref_bias_act(x, b, *args), (x, b))
    _close(y, y_ref, atol=1e-6)
    for a, r in zip(g, g_ref):
        _close(a, r, atol=1e-5)
    (y2, _), caught = _record(lambda: _grads(lambda x, b: kba.bias_act(x, b, *args), (x, b)))
    assert caught == []
    _close(y2, y_ref, atol=1e-6)


def test_fallback_when_upfirdn2d_launch_fails(monkeypatch):
    monkeypatch.setattr(kup, '_upfirdn2d_kernel', _FailingKernel())
    x, f, params = _ufd_inputs('negpad', torch.float32, 'cpu')
    run = lambda: custom_ops.call('upfirdn2d', lambda: kup.upfirdn2d(x, f, *params),  # noqa: E731
                                  lambda: ref_upfirdn2d(x, f, *params))
    y, caught = _record(run)
    assert len(caught) == 1 and custom_ops.is_disabled('upfirdn2d')
    _close(y, ref_upfirdn2d(x, f, *params), atol=1e-5)
    y2, caught = _record(run)
    assert caught == [] and torch.equal(y2, y)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the no-device path')
def test_import_fails_loudly_without_device_or_interpreter(monkeypatch):
    monkeypatch.setenv('TRITON_INTERPRET', '0')
    spec = importlib.util.spec_from_file_location('_probe_bias_act', kba.__file__)
    with pytest.raises(custom_ops.KernelUnavailable, match='CUDA'):
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
