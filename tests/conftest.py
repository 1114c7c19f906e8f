"""pytest setup shared by all tests.

TRITON_INTERPRET must be set before anything imports triton: with it, Triton kernels run
on CPU tensors (interpreted), which is how CI checks the kernels without a GPU. It is set
only when there is no CUDA device, so that on a GPU machine the compiled kernels are the
ones tested (the CPU variants of the kernel tests then skip with a reason).
"""
import os
import sys

import torch  # importing torch does not import triton

if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

import pytest  # noqa: E402


@pytest.fixture
def single_thread():
    """Run a test with one intra-op thread (opt in: `pytestmark = pytest.mark.usefixtures(
    'single_thread')`). Tiny tensors gain nothing from threads, and on a small shared box
    (2 cores, other jobs running) OpenMP spin-waiting made some conv backward calls ~100x
    slower (measured: a 0.7 s gradgradcheck took 56 s with 2 threads under load). Not global:
    tests that compare bits with a subprocess need the default thread count."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)
