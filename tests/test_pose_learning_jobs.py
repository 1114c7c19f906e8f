"""bench/run_files.py's budgeted runner and bench/pose_learning.py's --jobs threads, with stand-in subprocesses
(the real rows run in tests/test_pose_learning_smoke.py)."""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench'))
import pose_learning  # noqa: E402
import run_files  # noqa: E402

import dnnlib  # noqa: E402

SLEEPER = [sys.executable, '-c', 'import time; time.sleep(60)']


def test_run_budgeted_abort_stops_the_child(tmp_path):
    abort, seen = threading.Event(), []
    threading.Timer(1.5, abort.set).start()
    start = time.monotonic()
    used = run_files.run_budgeted(SLEEPER, dict(os.environ), str(tmp_path / 'log'), str(tmp_path), 600,
                                      lambda s, pid, force: seen.append(pid), abort)
    assert 1.0 < used < 20 and time.monotonic() - start < 20
    pid = next(p for p in seen if p is not None)
    assert not os.path.exists(f'/proc/{pid}') or open(f'/proc/{pid}/stat').read().split()[2] == 'Z'
    assert seen[-1] is None           # the final progress call says no process runs any more


def test_train_model_after_abort_leaves_the_row_alone(tmp_path):
    ctx = dnnlib.EasyDict(abort=threading.Event(), lock=threading.Lock(), runs=str(tmp_path),
                          state_path=str(tmp_path / 'state.json'))
    ctx.abort.set()
    state = dict(models=dict(pof3d=dict(status='training', seconds=12.0)))
    pose_learning.train_model(ctx, state, 'pof3d')
    assert state == dict(models=dict(pof3d=dict(status='training', seconds=12.0)))
    assert not (tmp_path / 'state.json').exists() and not (tmp_path / 'pof3d').exists()


def test_save_row_from_threads_keeps_every_update(tmp_path):
    ctx = dnnlib.EasyDict(lock=threading.Lock(), state_path=str(tmp_path / 'state.json'))
    state = dict(models={})
    threads = [threading.Thread(target=lambda n=n: [pose_learning.save_row(ctx, state, f'row{n}', seconds=float(i))
                                                     for i in range(50)]) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads((tmp_path / 'state.json').read_text()) == {
        'models': {f'row{n}': {'seconds': 49.0} for n in range(4)}}


def test_curve_picks_spread_evenly_with_both_ends():
    assert pose_learning.curve_picks(0, 40) == []
    assert pose_learning.curve_picks(5, 40) == [0, 1, 2, 3, 4]
    assert pose_learning.curve_picks(10, 4) == [0, 3, 6, 9]
    picks = pose_learning.curve_picks(161, 40)
    assert len(picks) == 40 and picks[0] == 0 and picks[-1] == 160
    assert pose_learning.curve_picks(10, 1) == [9]          # one pick: the newest (view_gain_curve --points 1)
