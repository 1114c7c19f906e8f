"""bias_act reference: golden values, table defaults, gradcheck/gradgradcheck for every
activation, argument validation. CPU, float64 for the derivative checks."""

import math

import pytest
import torch

from torch_utils.ops import bias_act as ba

pytestmark = pytest.mark.usefixtures('single_thread')

ACTS = sorted(ba.activation_funcs)


def test_activation_table_defaults():
    t = ba.activation_funcs
    assert set(t) == {'linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus', 'swish'}
    assert t['lrelu'].def_alpha == 0.2
    for name in ('relu', 'lrelu', 'swish'):
        assert t[name].def_gain == pytest.approx(math.sqrt(2))
    for name in ('linear', 'tanh', 'sigmoid', 'elu', 'selu', 'softplus'):
        assert t[name].def_gain == 1.0
    assert [t[n].cuda_idx for n in ('linear', 'relu', 'lrelu', 'tanh', 'sigmoid', 'elu', 'selu',
                                     'softplus', 'swish')] == list(range(1, 10))
    assert not t['lrelu'].has_2nd_grad and t['tanh'].has_2nd_grad


def test_golden_lrelu_bias_gain_clamp():
    # x + b = [-19, -1, 0.5, 1.5, 4]; lrelu(0.2) -> [-3.8, -0.2, 0.5, 1.5, 4];
    # * sqrt(2) -> [-5.374, -0.28284, 0.70711, 2.12132, 5.65685]; clamp 2 -> below.
    x = torch.tensor([[-20.0, -2.0, -0.5, 0.5, 3.0]])
    y = ba.bias_act(x, torch.tensor([1.0]), dim=0, act='lrelu', clamp=2)
    s2 = math.sqrt(2)
    torch.testing.assert_close(y, torch.tensor([[-2.0, -0.2 * s2, 0.5 * s2, 2.0, 2.0]]))
    assert x.tolist() == [[-20.0, -2.0, -0.5, 0.5, 3.0]]  # input untouched


def test_golden_other_acts():
    x = torch.tensor([0.0, 1.0])
    # sigmoid(0) = 0.5; swish(1) * sqrt(2) = sigmoid(1) * sqrt(2) = 0.7310586 * 1.4142136
    torch.testing.assert_close(ba.bias_act(x, act='sigmoid'), torch.tensor([0.5, 0.7310586]))
    torch.testing.assert_close(ba.bias_act(x, act='swish'), torch.tensor([0.0, 0.7310586 * math.sqrt(2)]))
    # explicit alpha/gain override the table: lrelu(-1, alpha=0.5) * 3 = -1.5
    torch.testing.assert_close(ba.bias_act(torch.tensor([-1.0]), act='lrelu', alpha=0.5, gain=3),
                               torch.tensor([-1.5]))
    # relu with gain 1 and clamp 0 gives zeros
    assert ba.bias_act(torch.tensor([-1.0, 2.0]), act='relu', gain=1, clamp=0).abs().sum() == 0


def _inputs(seed=0):
    """x [2, 3, 4], b [3] in float64 with x + b kept >= 0.25 away from 0 (the relu kink)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 3, 4, generator=g, dtype=torch.float64)
    z = z + 0.25 * torch.sign(z)
    b = torch.randn(3, generator=g, dtype=torch.float64)
    return (z - b[None, :, None]), b


def _safe_clamp(y: torch.Tensor) -> float:
    """A clamp value halfway between two neighbouring |y| at the 3rd quartile (some outputs
    clamped, some not; relu's zeros stay below), so that no element sits on the kink."""
    v = y.abs().flatten().sort().values
    i = 3 * v.numel() // 4
    return float((v[i] + v[i + 1]) / 2)


@pytest.mark.parametrize('act', ACTS)
@pytest.mark.parametrize('use_clamp', [False, True])
def test_gradcheck_every_activation(act, use_clamp):
    x, b = _inputs()
    clamp = None
    if use_clamp:
        clamp = _safe_clamp(ba.bias_act(x, b, act=act, impl='ref'))
    x.requires_grad_(True)
    b.requires_grad_(True)
    fn = lambda x, b: ba.bias_act(x, b, dim=1, act=act, clamp=clamp, impl='ref')  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x, b))
    assert torch.autograd.gradgradcheck(fn, (x, b))


def test_dim_and_matches_resolved_ref():
    x = torch.randn(2, 5, 3)
    b = torch.randn(3)
    y = ba.bias_act(x, b, dim=-1, act='elu', gain=2.0)
    torch.testing.assert_close(y, torch.nn.functional.elu(x + b) * 2.0)
    torch.testing.assert_close(y, ba._bias_act_ref(x, b, 2, 'elu', 0.0, 2.0, -1.0))


@pytest.mark.parametrize('kwargs, match', [
    (dict(act='gelu'), 'unknown act'),
    (dict(b=torch.zeros(4)), 'length'),
    (dict(b=torch.zeros(3), dim=5), 'dim'),
    (dict(b=torch.zeros(3, dtype=torch.float64)), 'dtype'),
    (dict(clamp=-1.0), 'clamp'),
    (dict(impl='metal'), 'impl'),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ba.bias_act(torch.zeros(2, 3), **kwargs)
