"""Helpers shared by the fast-path equivalence tests (tests/test_fastpath*.py)."""

import torch

from torch_utils import fastpath

F64 = torch.float64


def both(fn):
    """(reference result, fast result) of fn()."""
    with fastpath.override(False):
        ref = fn()
    with fastpath.override(True):
        fast = fn()
    return ref, fast


def assert_all_close(ref, fast, **tol):
    for a, b in zip(ref, fast):
        torch.testing.assert_close(b, a, **tol)
