"""fma: value, broadcasting gradients (summed back to operand shapes), double backward."""

import pytest
import torch

from torch_utils.ops import fma

pytestmark = pytest.mark.usefixtures('single_thread')


def test_value_and_shape():
    a, b, c = torch.tensor([[2.0], [3.0]]), torch.tensor([10.0, 20.0]), torch.tensor(1.0)
    # [[2*10+1, 2*20+1], [3*10+1, 3*20+1]]
    torch.testing.assert_close(fma.fma(a, b, c), torch.tensor([[21.0, 41.0], [31.0, 61.0]]))


@pytest.mark.parametrize('sa, sb, sc', [((2, 1, 3), (4, 1), (3,)), ((4, 3), (4, 3), (1, 1)),
                                        ((1,), (2, 3), (2, 1))])
def test_gradcheck_broadcasting(sa, sb, sc):
    g = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True) for s in (sa, sb, sc))
    out = fma.fma(a, b, c)
    torch.testing.assert_close(out, a * b + c)
    for t, grad in zip((a, b, c), torch.autograd.grad(out.square().sum(), (a, b, c))):
        assert grad.shape == t.shape
    assert torch.autograd.gradcheck(fma.fma, (a, b, c))
    assert torch.autograd.gradgradcheck(fma.fma, (a, b, c))


def test_validation():
    with pytest.raises(ValueError, match='broadcast'):
        fma.fma(torch.zeros(2), torch.zeros(3), torch.zeros(1))
    with pytest.raises(ValueError, match='Tensor'):
        fma.fma(torch.zeros(2), 2.0, torch.zeros(1))
