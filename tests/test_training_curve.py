"""bench/training_curve.py end to end: stats.jsonl in, the per-tick csv out (hand values), bad input as one line."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO, 'bench', 'training_curve.py')


def tick(kimg, **pose):
    row = {'Progress/kimg': {'num': 1, 'mean': kimg, 'std': 0.0}, 'timestamp': 1.0}
    row.update({f'Pose/{k}': {'num': 8, 'mean': v, 'std': 0.1} for k, v in pose.items()})
    return json.dumps(row)


def make_run(root, lines):
    run = root / 'row' / '00000-synthetic-x-gpus1-batch8-gamma1'
    run.mkdir(parents=True)
    (run / 'stats.jsonl').write_text('\n'.join(lines))
    return root / 'row', run


def cli(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120)


def test_csv_from_row_folder_and_run_folder(tmp_path):
    lines = [tick(0.0), tick(0.504, h_mean=1.5, h_std=0.8, v_std=0.2),
             tick(1.008, h_mean=1.25, h_std=0.7, v_std=0.15, head_slope_h=0.5),
             '{"Progress/kimg": {"mean": 1.5']                    # the line being written now
    row, run = make_run(tmp_path, lines)
    out = tmp_path / 'curve.csv'
    res = cli('--run', str(row), '--out', str(out))
    assert res.returncode == 0, res.stderr
    # The tick without pose statistics and the half line are skipped.
    assert out.read_text() == 'kimg,h_mean,h_std,v_std\n0.504,1.5000,0.8000,0.2000\n1.008,1.2500,0.7000,0.1500\n'
    res = cli('--run', str(run), '--out', str(out), '--keys', 'Pose/h_std,Pose/head_slope_h')
    assert res.returncode == 0, res.stderr
    assert out.read_text() == 'kimg,h_std,head_slope_h\n0.504,0.8000,\n1.008,0.7000,0.5000\n'


def test_bad_input_is_one_line_and_writes_nothing(tmp_path):
    row, _ = make_run(tmp_path, [tick(0.5, h_std=0.8), 'not json', tick(1.0, h_std=0.7)])
    out = tmp_path / 'curve.csv'
    res = cli('--run', str(row), '--out', str(out))
    assert res.returncode == 2 and 'line 2 is not JSON' in res.stderr and 'Traceback' not in res.stderr
    assert not out.exists()

    good, _ = make_run(tmp_path / 'b', [tick(0.5, h_std=0.8)])
    res = cli('--run', str(good), '--out', str(out), '--keys', 'Pose/h_std,Pose/nope')
    assert res.returncode == 2 and 'Pose/nope' in res.stderr and not out.exists()

    res = cli('--run', str(tmp_path / 'b'), '--out', str(out))       # no run directly inside
    assert res.returncode == 2 and 'no stats.jsonl' in res.stderr and not out.exists()
