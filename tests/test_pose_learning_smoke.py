"""bench/pose_learning.py --smoke end to end: every row trained, evaluated, plotted and tabled;
rows trained two at a time (--jobs 2); rerunning is a no-op (resume). ~5 minutes on an idle 2-core CPU,
more beside training runs."""

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'bench', 'pose_learning.py')
MODELS = ('pof3d', 'eg3d_gt', 'prior', 'campari', 'no_mirror', 'no_dcond', 'pof3d_sym', 'pof3d_lr001', 'pof3d_planes',
          'pof3d_density', 'pof3d_dist', 'pof3d_dist_planes', 'pof3d_levers',
          'pof3d_explore', 'pof3d_hold', 'pof3d_hold_explore', 'pof3d_hold_planes', 'pof3d_hold_planes_w10',
          'pof3d_hold_planes_img10', 'pof3d_debias', 'pof3d_freeze', 'pof3d_freeze_slope', 'pof3d_indep',
          'pof3d_indep_view', 'pof3d_indep_freeze', 'pof3d_indep_planes', 'pof3d_indep_planes_cg',
          'pof3d_indep_planes_cg_view', 'pof3d_cg')
KEYS = ('seconds', 'kimg', 'kid_est', 'depth_err', 'pose_err', 'pose_err_raw', 'pose_js', 'pose_js_raw', 'pose_js_sym',
        'view_gain', 'view_gain_estimator_slope', 'pose_err_view_js_yaw')


def run(outdir, *args):
    start = time.time()
    res = subprocess.run([sys.executable, SCRIPT, '--smoke', '--curves', '--outdir', str(outdir), *args], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return time.time() - start, res.stdout


@pytest.mark.timeout(1500)   # 28 rows plus the probes; beside training runs more than pytest.ini's 600 s
def test_pose_learning_smoke(tmp_path):
    outdir = tmp_path / 'bench'
    _, stdout = run(outdir, '--jobs', '2', '--curve-points', '2')   # two rows train at once (the threads path)
    results = json.loads((outdir / 'results.json').read_text())
    assert sorted(results['models']) == sorted(MODELS)
    for name, row in results['models'].items():
        for key in KEYS:
            assert isinstance(row[key], float), (name, key)
        assert row['kimg'] > 0 and row['seconds'] > 0, name
        assert 0 <= row['pose_js'] <= 0.7 and 0 <= row['pose_js_raw'] <= 0.7, name
    assert set(results['floors']) == {'pose_err_gt', 'depth_err_gt'}

    table = [line for line in (outdir / 'results.md').read_text().splitlines() if line.startswith('| ')]
    assert len(table) == 1 + len(MODELS)          # header + one row per model (separator starts '|-')
    assert table[0].rstrip(' |').endswith("view gain | views' yaw JS")
    assert all(len(r.split('|')) == len(table[0].split('|')) for r in table)
    for name in MODELS:
        for stem in (f'pose_{name}.png', f'pose_{name}.json', f'samples_{name}.png'):
            assert (outdir / stem).stat().st_size > 0, stem
    for stem in ('samples_all.png', 'curves.png', 'curves.csv'):
        assert (outdir / stem).stat().st_size > 0, stem
    curve_rows = [line.split(',') for line in (outdir / 'curves.csv').read_text().splitlines()[1:]]
    assert {r[0] for r in curve_rows} == set(MODELS)
    for name, row in results['models'].items():      # at most --curve-points a row, the final snapshot included
        kimgs = [float(r[1]) for r in curve_rows if r[0] == name]
        assert len(kimgs) <= 2 and abs(max(kimgs) - row['kimg']) < 1e-6, (name, kimgs, row['kimg'])

    # Rerun: nothing to train or evaluate; the snapshots and the recorded seconds stay as they were.
    snaps = sorted(glob.glob(str(outdir / 'runs' / '*' / '*' / '*.pkl')))
    state = json.loads((outdir / 'state.json').read_text())
    seconds, stdout = run(outdir, '--curve-points', '2')
    assert seconds < 60, seconds
    assert '] training:' not in stdout and '] evaluating' not in stdout, stdout
    assert sorted(glob.glob(str(outdir / 'runs' / '*' / '*' / '*.pkl'))) == snaps
    assert json.loads((outdir / 'state.json').read_text())['models'] == state['models']

    # The D pose-head probe reads the same run: one table row per snapshot; a D without a head fails in one line.
    probe = os.path.join(REPO, 'bench', 'pose_head_probe.py')
    csv_path = outdir / 'probe.csv'
    data = str(outdir / 'data' / 'car32_labeled.zip')
    res = subprocess.run([sys.executable, probe, '--run', str(outdir / 'runs' / 'pof3d'), '--data', data,
                          '--num', '16', '--every', '1000', '--js-num', '200', '--csv', str(csv_path),
                          '--png', str(outdir / 'probe.png')],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    header, *rows = csv_path.read_text().splitlines()
    assert header.split(',')[:3] == ['run', 'kimg', 'xi_h_std'] and len(rows) == 1
    assert all(abs(float(x)) < 1e3 for x in rows[0].split(',')[1:])
    assert (outdir / 'probe.png').stat().st_size > 0
    assert header.split(',')[-5:] == ['h_p10', 'h_p25', 'h_p50', 'h_p75', 'h_p90']
    quantiles = [float(x) for x in rows[0].split(',')[-5:]]
    assert quantiles == sorted(quantiles)
    res = subprocess.run([sys.executable, probe, '--run', str(outdir / 'runs' / 'pof3d'), '--data', data, '--last',
                          '--num', '16', '--js-num', '200', '--csv', str(csv_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    newest = max(float(os.path.basename(p)[17:-4]) for p in glob.glob(str(outdir / 'runs' / 'pof3d' / '*' /
                                                                            'network-snapshot-*.pkl')))
    header, *rows = csv_path.read_text().splitlines()
    assert len(rows) == 1 and float(rows[0].split(',')[1]) == newest      # --last: the newest snapshot alone
    res = subprocess.run([sys.executable, probe, '--run', str(outdir / 'runs' / 'eg3d_gt'), '--data', data,
                          '--num', '16'], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and 'no pose head' in res.stderr and 'Traceback' not in res.stderr, res.stderr

    # The score probe on the newest snapshot: the sweep and the binned ascents, into a file too;
    # a D that is not self-conditioned on a pose head fails in one line.
    score_probe = os.path.join(REPO, 'bench', 'pose_score_probe.py')
    report = outdir / 'score_probe.md'
    res = subprocess.run([sys.executable, score_probe, '--run', str(outdir / 'runs' / 'pof3d'), '--data', data,
                          '--num', '4', '--yaws', '45,135', '--out', str(report)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    text = report.read_text()
    assert text == res.stdout and '| 45 |' in text and '| 135 |' in text and 'corr(ascent, yaw - mean) | 4 |' in text
    res = subprocess.run([sys.executable, score_probe, '--run', str(outdir / 'runs' / 'eg3d_gt'), '--data', data,
                          '--num', '4'], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and 'not self-conditioned' in res.stderr and 'Traceback' not in res.stderr, res.stderr

    # The camera -> view map with the bench's cached estimator, calibrated on the labeled zip itself.
    report = outdir / 'view_map.md'
    res = subprocess.run([sys.executable, os.path.join(REPO, 'bench', 'view_map.py'), '--run',
                          str(outdir / 'runs' / 'pof3d_indep_planes_cg'), '--data', data, '--cache',
                          str(outdir / 'cache'), '--est-steps', '20', '--calib', data, '--num', '4', '--yaws', '45,135',
                          '--out', str(report)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = [line.split('|')[1:-1] for line in report.read_text().splitlines() if line.startswith('| 45 ')
            or line.startswith('| 135 ')]
    assert report.read_text() == res.stdout and len(rows) == 2 and all(len(r) == 9 for r in rows)
    assert all(0 < float(r[1]) < 360 and int(r[6]) > 0 for r in rows)   # views read; true items near each yaw
    res = subprocess.run([sys.executable, os.path.join(REPO, 'bench', 'view_map.py'), '--run', str(outdir / 'nothing'),
                          '--data', data], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and 'no network-snapshot' in res.stderr and 'Traceback' not in res.stderr, res.stderr

    # The view gain over the run's snapshots, with the bench's cached estimator (retraining it would time out).
    curve = os.path.join(REPO, 'bench', 'view_gain_curve.py')
    csv_path = outdir / 'view_gain.csv'
    res = subprocess.run([sys.executable, curve, '--run', f'p={outdir / "runs" / "pof3d"}', '--data', data,
                          '--cache', str(outdir / 'cache'), '--est-steps', '20', '--points', '2', '--num', '4',
                          '--csv', str(csv_path)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    header, *rows = csv_path.read_text().splitlines()
    num_snaps = len(glob.glob(str(outdir / 'runs' / 'pof3d' / '*' / 'network-snapshot-*.pkl')))
    assert header.split(',')[:3] == ['run', 'kimg', 'view_gain'] and len(rows) == min(2, num_snaps)
    assert {r.split(',')[0] for r in rows} == {'p'} and float(rows[-1].split(',')[1]) == newest
    assert all(np.isfinite(float(x)) for x in rows[-1].split(',')[2:5])
    res = subprocess.run([sys.executable, curve, '--run', str(outdir / 'data'), '--data', data],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and 'no network-snapshot' in res.stderr and 'Traceback' not in res.stderr
