"""Per-tick training statistics of one run as a csv: G's camera law over kimg (and any other logged key).

The `*_training.csv` files under docs/data come from this script, e.g.

    python bench/training_curve.py --run out/pose_bench_head_uniform/runs/pof3d_indep \\
        --out docs/data/bench_i15_head_uniform_indep_training.csv

`--run` is a run folder holding `stats.jsonl` or a bench row folder holding one such run. A run still
training is fine: its last line may be half written and is skipped. Columns are named by the key's last
part (`Pose/h_std` -> `h_std`); a key a tick did not log leaves its cell empty.
"""

import glob
import json
import os
import sys

import click

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dnnlib.util import write_atomic  # noqa: E402

DEFAULT_KEYS = 'Pose/h_mean,Pose/h_std,Pose/v_std'


def find_stats(run: str) -> str:
    """The stats.jsonl of a run folder, or of the single run inside a bench row folder."""
    if os.path.isfile(os.path.join(run, 'stats.jsonl')):
        return os.path.join(run, 'stats.jsonl')
    found = sorted(glob.glob(os.path.join(glob.escape(run), '*', 'stats.jsonl')))
    if len(found) != 1:
        what = 'no' if not found else f'{len(found)}'
        raise click.BadParameter(f'{run}: {what} stats.jsonl found (expected one run)', param_hint='--run')
    return found[0]


def read_ticks(path: str) -> list:
    """The lines of stats.jsonl as dicts; a half-written last line is dropped, any other bad line is an error."""
    with open(path, encoding='utf-8') as f:
        lines = [line for line in f.read().split('\n') if line.strip()]
    ticks = []
    for i, line in enumerate(lines):
        try:
            ticks.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) - 1:
                break
            raise click.BadParameter(f'{path}: line {i + 1} is not JSON', param_hint='--run') from None
    return ticks


def value(tick: dict, key: str) -> str:
    entry = tick.get(key)
    mean = entry.get('mean') if isinstance(entry, dict) else entry
    return '' if mean is None else f'{float(mean):.4f}'


def curve_csv(ticks: list, keys: list) -> str:
    """One row per tick that logged the first key: kimg then the keys' means (4 decimals)."""
    header = ['kimg'] + [k.rsplit('/', 1)[-1] for k in keys]
    rows = [','.join(header)]
    for tick in ticks:
        if keys and keys[0] not in tick:
            continue
        kimg = tick.get('Progress/kimg', {}).get('mean')
        rows.append(','.join([f'{kimg:.3f}'] + [value(tick, k) for k in keys]))
    return '\n'.join(rows) + '\n'


@click.command()
@click.option('--run', required=True, type=click.Path(exists=True, file_okay=False), help='Run or bench row folder')
@click.option('--out', required=True, help='csv to write (atomically)')
@click.option('--keys', default=DEFAULT_KEYS, show_default=True, help='Comma-separated stats.jsonl keys')
def main(run, out, keys):
    keys = [k.strip() for k in keys.split(',') if k.strip()]
    if not keys:
        raise click.BadParameter('name at least one key', param_hint='--keys')
    ticks = read_ticks(find_stats(run))
    unknown = [k for k in keys if not any(k in t for t in ticks)]
    if unknown:
        raise click.BadParameter(f'not logged by this run: {", ".join(unknown)}', param_hint='--keys')
    text = curve_csv(ticks, keys)
    write_atomic(out, text.encode())
    print(f'{out}: {text.count(chr(10)) - 1} ticks')


if __name__ == '__main__':
    main()  # pylint: disable=no-value-for-parameter
