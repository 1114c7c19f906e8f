"""Snapshot files and budgeted train.py subprocesses, shared by the pose benchmarks
(bench/pose_learning.py, bench/pose_head_probe.py)."""

import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import click
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from metrics import metric_utils  # noqa: E402
from training import checkpoint  # noqa: E402

_TAG_RE = re.compile(r'-(\d+)(?:\.(\d{3}))?\.(?:pkl|pt)$')


def snapshot_nimg(path: str) -> int:
    """Images seen, from a snapshot's name: '...-000012.500.pkl' -> 12500 (None if not a snapshot)."""
    m = _TAG_RE.search(path)
    return None if m is None else int(m.group(1)) * 1000 + int(m.group(2) or 0)


def write_json(path, obj):
    metric_utils.write_atomic(path, (json.dumps(obj, indent=2) + '\n').encode())


def snapshots(model_dir, kind='network-snapshot', ext='pkl'):
    """[(nimg, path)] of a model's snapshot files in all its run directories, oldest first
    (nimg from the name, snapshot_nimg)."""
    found = [(snapshot_nimg(p), p) for p in glob.glob(os.path.join(glob.escape(model_dir), '*', f'{kind}-*.{ext}'))]
    return sorted((n, p) for n, p in found if n is not None)


def run_snapshots(run: str) -> list:
    """Paths of the network snapshots anywhere below `run` (a train.py run directory or a folder of
    them), oldest first; a usage error naming --run when there are none."""
    found = [p for p in glob.glob(os.path.join(glob.escape(run), '**', 'network-snapshot-*.pkl'), recursive=True)
             if snapshot_nimg(p) is not None]
    if not found:
        raise click.BadParameter(f'{run}: no network-snapshot-*.pkl below it', param_hint='--run')
    return sorted(found, key=snapshot_nimg)


def newest_snapshot(run: str) -> str:
    """`run` itself when it is a .pkl, else the newest network snapshot below it (run_snapshots)."""
    return run if run.endswith('.pkl') else run_snapshots(run)[-1]


def curve_picks(num: int, most: int) -> list:
    """Indices of at most `most` of num items, evenly spread, the last included (and the first when
    most >= 2)."""
    if not num:
        return []
    if most == 1:
        return [num - 1]
    return sorted({int(i) for i in np.round(np.linspace(0, num - 1, min(num, most)))})


def latest_state(model_dir):
    """The newest training state with its network pickle (what --resume auto continues), or None."""
    found = [p for _, p in snapshots(model_dir, 'training-state', 'pt')
             if os.path.isfile(checkpoint.network_pickle_for(p))]
    return found[-1] if found else None


def stop(proc, timeout=30):
    """SIGINT (train.py unwinds, closing its files), then SIGTERM, then SIGKILL."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass


def stop_orphan(pid, model_dir):
    """A train.py left running by a bench killed outright (SIGKILL) would race the resumed one."""
    try:
        with open(f'/proc/{int(pid)}/cmdline', 'rb') as f:
            argv = f.read().split(b'\0')
    except (OSError, TypeError, ValueError):
        return
    if any(a.endswith(b'train.py') for a in argv) and os.fsencode(model_dir) in argv:
        os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + 30
        while os.path.exists(f'/proc/{int(pid)}') and time.monotonic() < deadline:
            time.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process pid, all its threads (/proc/pid/stat fields 14-15);
    0 once it is gone. Worker subprocesses are not counted: budget with --workers 0."""
    try:
        with open(f'/proc/{int(pid)}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def open_row(runs: str, rec: dict, name: str, save):
    """(model_dir, progress) for training row `name` whose state record is `rec`: its folder under
    `runs` (made; a train.py left behind by a killed bench is stopped), and a progress(seconds, pid,
    force) callback for run_budgeted that calls save(seconds=rec's base + seconds, pid=pid) at most
    every 10 s unless forced."""
    model_dir = os.path.join(runs, name)
    os.makedirs(model_dir, exist_ok=True)
    stop_orphan(rec.get('pid'), model_dir)
    base, last_save = rec['seconds'], [-1e9]

    def progress(used, pid, force):
        if force or used - last_save[0] >= 10:
            last_save[0] = used
            save(seconds=base + used, pid=pid)
    return model_dir, progress


def finish_row(model_dir: str):
    """After a row's training: keep only its newest training state (resume needs no other; the
    pickles stay for curves) and return (kimg, network pickle) of it."""
    final = latest_state(model_dir)
    if final is None:
        raise click.ClickException(f'{model_dir}: no snapshot after training; see its train_stdout.log')
    for _, path in snapshots(model_dir, 'training-state', 'pt'):
        if path != final:
            os.remove(path)
    kimg = checkpoint.load_training_state(final)['counters']['cur_nimg'] / 1000
    return kimg, checkpoint.network_pickle_for(final)


def bench_layout(ctx, stem: str) -> None:
    """The paths of a bench's output folder on ctx (outdir set): data/, runs/, cache/, the
    labeled and unlabeled zips data/{stem}_*.zip, state.json, the detector, the eval dataset."""
    ctx.data, ctx.runs, ctx.cache = (os.path.join(ctx.outdir, x) for x in ('data', 'runs', 'cache'))
    ctx.zips = {kind: os.path.join(ctx.data, f'{stem}_{kind}.zip') for kind in ('labeled', 'unlabeled')}
    ctx.state_path, ctx.detector = os.path.join(ctx.outdir, 'state.json'), os.path.join(ctx.cache, 'detector.pt')
    ctx.eval_kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=ctx.zips['labeled'],
                           resolution=ctx.resolution, use_labels=True)


def load_state(ctx, settings: dict) -> dict:
    """ctx.state_path's state (new: no rows), its settings checked against `settings` (a resumed
    bench must not mix settings: a usage error naming them)."""
    state = json.load(open(ctx.state_path)) if os.path.isfile(ctx.state_path) else dict(models={})
    if state.setdefault('settings', settings) != settings:
        diff = sorted(k for k in settings if state['settings'].get(k) != settings[k])
        raise click.UsageError(f'{ctx.outdir} was made with other settings ({", ".join(diff)}); use a new --outdir')
    os.makedirs(ctx.cache, exist_ok=True)
    return state


def run_budgeted(cmd, env, log_path, model_dir, budget_s, progress, abort=None, cpu_clock=False):
    """Run cmd until it exits, the budget stops it (module docstring) or the threading.Event abort
    is set; progress(seconds, pid, force) is called about every second. Returns the seconds used:
    wall-clock, or with cpu_clock the process's CPU seconds (rows that share a busy machine then
    get the same compute, whatever else runs beside them)."""
    with open(log_path, 'ab') as log:
        # SIGINT back to default in the child: a background job (`cmd &`, nohup) inherits it ignored.
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    start, seen, seen_at, interval, stopped = time.monotonic(), latest_state(model_dir), None, None, False
    used = [0.0]

    def clock():
        used[0] = max(used[0], cpu_seconds(proc.pid)) if cpu_clock else time.monotonic() - start
        return used[0]

    progress(0.0, proc.pid, True)
    try:
        while proc.poll() is None:
            time.sleep(1.0)
            elapsed = clock()
            newest = latest_state(model_dir)
            fresh = newest != seen
            if fresh:
                interval = None if seen_at is None else elapsed - seen_at
                seen, seen_at = newest, elapsed
            next_too_late = fresh and interval is not None and elapsed + interval > budget_s
            no_snapshot_ever = seen is None and elapsed > budget_s + max(120.0, budget_s)
            if (seen is not None and (elapsed >= budget_s or next_too_late)) or no_snapshot_ever:
                stop(proc)
                stopped = True
            if abort is not None and abort.is_set():
                stop(proc)
                return clock() if not cpu_clock else used[0]
            progress(elapsed, proc.pid, False)
    finally:
        stop(proc)
        progress(used[0] if cpu_clock else clock(), None, True)
    if not stopped and proc.returncode != 0:
        raise click.ClickException(f'train.py exited with code {proc.returncode}; see {log_path}')
    return used[0] if cpu_clock else clock()


