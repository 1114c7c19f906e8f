"""Every bench/ script runs end to end in its smoke mode and prints its table (CI keeps the
benchmarks from rotting; the numbers themselves are not checked)."""

import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize('script,args,expect', [
    ('bench_generator.py', ['--smoke'], '| tiny | 1 |'),
    ('bench_discriminator.py', ['--smoke'], 'small'),
    ('bench_ops.py', ['--size', 'small'], 'bias_act'),
    ('bench_renderer.py', ['--smoke'], 'fine pass'),
    ('throughput.py', ['--smoke'], 'training iteration'),
    ('profile_iteration.py', ['--smoke', '--top', '3'], 'self CPU ms'),
])
def test_bench_smoke(script, args, expect):
    env = dict(os.environ, POF3D_IMPL='')  # let the scripts pick their own paths
    res = subprocess.run([sys.executable, os.path.join(REPO, 'bench', script), *args], capture_output=True,
                         text=True, timeout=300, env=env, cwd=REPO)
    assert res.returncode == 0, res.stderr[-2000:]
    assert expect in res.stdout, res.stdout
