"""Lint the tree with ruff (part of the test command, so CI enforces it)."""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_clean():
    ruff = shutil.which('ruff', path=os.path.dirname(sys.executable)) or shutil.which('ruff')
    if ruff is None:
        pytest.skip('ruff is not installed (setup.sh installs it)')
    res = subprocess.run([ruff, 'check', '--no-cache', REPO], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
