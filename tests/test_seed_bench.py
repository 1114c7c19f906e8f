"""bench/seed_methods.py: the CPU-second budget clock (bench/run_files.py) and, marked slow, the bench end
to end on two rows (the rows and their results: docs/seed_methods.md)."""

import json
import os
import subprocess
import sys
import threading
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, 'bench'))
import run_files  # noqa: E402

BUSY = [sys.executable, '-c', 'import time\nt = time.process_time()\nwhile time.process_time() - t < 3: pass']
SLEEPER = [sys.executable, '-c', 'import time; time.sleep(60)']


def test_cpu_seconds_counts_compute_not_sleep():
    busy, idle = subprocess.Popen(BUSY), subprocess.Popen(SLEEPER)
    try:
        time.sleep(2.0)
        spent_busy, spent_idle = run_files.cpu_seconds(busy.pid), run_files.cpu_seconds(idle.pid)
    finally:
        busy.kill(), idle.kill(), busy.wait(), idle.wait()
    assert 0.3 < spent_busy <= 2.5, spent_busy     # a spinning process (at least a share of one core)
    assert spent_idle < 0.3, spent_idle             # a sleeping one: start-up only
    assert run_files.cpu_seconds(2 ** 22 + 12345) == 0.0   # no such process


def test_run_budgeted_cpu_clock_reports_cpu_seconds(tmp_path):
    """A sleeping child under the CPU clock: 2 s of wall time, almost no CPU seconds used."""
    abort, seen = threading.Event(), []
    threading.Timer(2.0, abort.set).start()
    used = run_files.run_budgeted(SLEEPER, dict(os.environ), str(tmp_path / 'log'), str(tmp_path), 600,
                                  lambda s, pid, force: seen.append(s), abort, cpu_clock=True)
    assert used < 0.5 and max(seen) < 0.5, (used, seen)


@pytest.mark.slow
def test_seed_bench_smoke(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, 'bench', 'seed_methods.py'), '--smoke', '--outdir', str(tmp_path),
           '--models', 'pigan,gof', '--curves', '--curve-points', '2']
    res = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    results = json.loads((tmp_path / 'results.json').read_text())
    assert sorted(results['models']) == ['gof', 'pigan']
    for name, row in results['models'].items():
        assert row['kimg'] > 0 and 0 < row['seconds'] < 60, name     # 20 CPU s budget + the last tick
        for key in ('kid_est', 'depth_err', 'depth_var_weighted', 'pose_err', 'reproj_err', 'reproj_mask'):
            assert isinstance(row['metrics'][key], float), (name, key)
        assert (tmp_path / f'samples_{name}.png').stat().st_size > 0
    assert set(results['floors']) == {'pose_err_gt', 'depth_err_gt', 'normal_err_gt'}
    table = [line for line in (tmp_path / 'results.md').read_text().splitlines() if line.startswith('| ')]
    assert len(table) == 3
    for stem in ('samples_all.png', 'curves.png'):
        assert (tmp_path / stem).stat().st_size > 0, stem
    curve = [line.split(',') for line in (tmp_path / 'curves.csv').read_text().splitlines()]
    assert curve[0] == ['model', 'kimg', 'kid_est', 'depth_err', 'reproj_err']
    for name, row in results['models'].items():      # at most 2 points a row, the final snapshot among them
        kimgs = [float(r[1]) for r in curve[1:] if r[0] == name]
        assert 1 <= len(kimgs) <= 2 and abs(max(kimgs) - row['kimg']) < 1e-6, (name, kimgs)
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)   # resume: nothing to do
    assert rerun.returncode == 0 and '] training:' not in rerun.stdout and '] evaluating' not in rerun.stdout


def test_schedule_args_rescale_the_presets_step_schedules_to_the_budget():
    """GOF at 20 CPU-minutes and 3 s/step buys 400 of the preset's 25 000 steps (ratio 0.016): the
    warm start 500 -> 8 steps, the window decay ln 4 / 12 500 -> / 0.016, the noise fade 5000 -> 80."""
    import math
    import seed_methods
    args = seed_methods.schedule_args('gof', 1200)
    got = dict(zip(args[::2], map(float, args[1::2])))
    assert got['--window_warmup_steps'] == pytest.approx(8)
    assert got['--window_decay'] == pytest.approx(math.log(4) / 12500 / 0.016, rel=1e-5)
    assert got['--opacity_growth'] == pytest.approx(math.log(10) / 25000 / 0.016, rel=1e-5)
    assert got['--density_noise_fade_steps'] == pytest.approx(80)
    shade = seed_methods.schedule_args('shadegan', 1200)   # 324 steps: shading not from step 10.8 but from half the row
    shade = dict(zip(shade[::2], map(float, shade[1::2])))
    assert shade['--shading_start_steps'] == pytest.approx(1200 / 3.7 / 2, rel=1e-5)
    assert shade['--shading_ramp_steps'] == pytest.approx(1200 / 3.7 / 2 * 333 / 833, rel=1e-5)
    assert shade['--density_noise_fade_steps'] == pytest.approx(5000 * 1200 / 3.7 / 25000, rel=1e-5)
    long = dict(zip(*[iter(seed_methods.schedule_args('shadegan', 7200))] * 2))   # 1946 steps: from step 200
    assert float(long['--shading_start_steps']) == pytest.approx(200)
    assert float(long['--shading_ramp_steps']) == pytest.approx(80, rel=1e-2)
    tri = dict(zip(*[iter(seed_methods.schedule_args('shadegan_triplane', 7200))] * 2))   # the tri-plane: step 400
    assert float(tri['--shading_start_steps']) == pytest.approx(400)
    assert seed_methods.schedule_args('volumegan', 1200) == []     # no step schedule measured for it
    assert seed_methods.schedule_args('gof', 1e9) == []            # the budget buys the preset's steps
