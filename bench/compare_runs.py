"""Same losses before and after a change: train the same short run with this tree and with
another git revision, at the same seed, and compare every logged loss tick by tick.

    python bench/compare_runs.py --baseline 77bb11e                 # synthetic preset, 0.2 kimg
    python bench/compare_runs.py --baseline 77bb11e --kimg 0.4 --extra "--pose_source dataset"

The data is make_synthetic.py's cars at the preset's 32 px (64 images, made once in --outdir).
Both runs use one thread and no metrics; the revision runs from a temporary git worktree. The
table lists each Loss/* and Pose/* statistic of the last tick and the largest relative
difference over all ticks; the exit code is 1 when that exceeds --rtol.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, cwd, log):
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONHASHSEED='0')
    with open(log, 'w') as f:
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f'Error: {" ".join(cmd[:3])}... failed in {cwd} (exit {proc.returncode}); see {log}')


def train(tree, outdir, data, args):
    cmd = [sys.executable, 'train.py', '--outdir', outdir, '--data', data, '--cfg', 'synthetic', '--kimg',
           str(args.kimg), '--tick', str(args.tick), '--snap', '1000', '--metrics', 'none', '--workers', '0',
           '--seed', str(args.seed), *shlex.split(args.extra)]
    os.makedirs(outdir, exist_ok=True)
    run(cmd, tree, os.path.join(outdir, 'train.log'))
    (run_dir,) = [os.path.join(outdir, d) for d in os.listdir(outdir) if os.path.isdir(os.path.join(outdir, d))]
    with open(os.path.join(run_dir, 'stats.jsonl')) as f:
        return [json.loads(line) for line in f if line.strip()]


def compare(before, after):
    """{statistic: (before at the last tick, after at the last tick, max relative difference)}."""
    if len(before) != len(after):
        sys.exit(f'Error: {len(before)} ticks before, {len(after)} after')
    keys = sorted(k for k in after[-1] if k.startswith(('Loss/', 'Pose/')))
    table = {}
    for key in keys:
        worst = 0.0
        for a, b in zip(before, after):
            if key in a and key in b:
                x, y = a[key]['mean'], b[key]['mean']
                worst = max(worst, abs(x - y) / max(abs(x), 1e-12))
        table[key] = (before[-1].get(key, {}).get('mean', float('nan')), after[-1][key]['mean'], worst)
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--baseline', required=True, help='git revision to compare with')
    parser.add_argument('--outdir', default=None, help='work folder [a temporary one]')
    parser.add_argument('--kimg', type=float, default=0.2)
    parser.add_argument('--tick', type=float, default=0.04)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--extra', default='', help='more train.py options for both runs')
    parser.add_argument('--rtol', type=float, default=1e-4, help='largest relative difference accepted')
    args = parser.parse_args()
    out = os.path.abspath(args.outdir or tempfile.mkdtemp(prefix='compare-runs-'))
    os.makedirs(out, exist_ok=True)
    data = os.path.join(out, 'data', 'car32_unlabeled.zip')
    if not os.path.exists(data):
        run([sys.executable, 'make_synthetic.py', '--outdir', os.path.dirname(data), '--num', '64', '--resolution',
             '32', '--seed', '0'], REPO, os.path.join(out, 'make_synthetic.log'))
    tree = os.path.join(out, 'baseline-tree')
    subprocess.run(['git', '-C', REPO, 'worktree', 'add', '--detach', tree, args.baseline], check=True,
                   capture_output=True)
    try:
        before = train(tree, os.path.join(out, 'before'), data, args)
    finally:
        subprocess.run(['git', '-C', REPO, 'worktree', 'remove', '--force', tree], capture_output=True)
    after = train(REPO, os.path.join(out, 'after'), data, args)
    table = compare(before, after)
    print(f'{len(after)} ticks, {args.kimg:g} kimg, seed {args.seed}: {args.baseline} (before) vs this tree (after)\n')
    print('| statistic | before (last tick) | after (last tick) | max relative difference |\n|---|---:|---:|---:|')
    for key, (x, y, worst) in table.items():
        print(f'| {key} | {x:.6g} | {y:.6g} | {worst:.2e} |')
    worst = max((w for *_, w in table.values()), default=0.0)
    print(f'\nlargest relative difference: {worst:.2e} (tolerance {args.rtol:g})')
    sys.exit(0 if worst <= args.rtol else 1)


if __name__ == '__main__':
    main()
