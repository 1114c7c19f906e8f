"""The view gain (metrics/view_gain.py) over a run's snapshots: does G's camera law shrink while its
images keep turning, i.e. does the field take over the camera's job? (docs/benchmark.md, issue 15)

Per picked snapshot (G_ema): view_gain (slope of the estimated yaw over a ±15° sweep of G's own
camera; ±1 = the images turn as the data's views do), the camera's share of the views G shows, and
the yaw spreads of G's cameras, of its images and of the data (degrees). The pose estimator is the
pose-learning bench's (trained on the labeled zip, cached in --cache; a bench's own cache/ reuses
the one it already trained).

    python bench/view_gain_curve.py --run hold_planes=out/pose_bench_head_i15/runs/pof3d_hold_planes \\
        --data out/pose_bench_head_i15/data/head32_labeled.zip --cache out/pose_bench_head_i15/cache \\
        --points 8 --csv docs/data/bench_i15_view_gain_curves.csv
"""

import os
import sys

import click
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import dnnlib  # noqa: E402
import legacy  # noqa: E402
import run_files  # noqa: E402
from metrics import metric_main  # noqa: E402

KEYS = ('view_gain', 'view_gain_camera_share', 'view_gain_camera_std', 'view_gain_image_std', 'view_gain_data_std',
        'view_gain_std', 'view_gain_estimator_slope', 'view_gain_inner', 'view_gain_inner_frac')


@click.command()
@click.option('--run', 'runs', required=True, multiple=True,
              help='train.py run directory (or a folder of them); repeatable, as NAME=DIR to label it')
@click.option('--data', required=True, help='Labeled dataset zip (true camera labels; trains the estimator)')
@click.option('--cache', default=None, help='Metrics cache folder (the estimator) [default: the dnnlib cache]')
@click.option('--points', type=click.IntRange(min=1), default=8, show_default=True,
              help='Snapshots per run (1: the newest)')
@click.option('--num', type=click.IntRange(min=2), default=200, show_default=True, help='Latents per snapshot')
@click.option('--est-steps', type=click.IntRange(min=1), default=None,
              help="Estimator training steps [default: the estimator's; a bench's --smoke uses 20]")
@click.option('--csv', 'csv_path', default=None, help='Also write the rows here')
def main(runs, data, cache, points, num, est_steps, csv_path):
    """The view gain of evenly spread snapshots of each run."""
    torch.set_num_threads(1)
    if not os.path.isfile(data):
        raise click.BadParameter(f'{data}: no such file', param_hint='--data')
    dataset_kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=data, use_labels=True)
    lines = []
    print('| run | kimg | ' + ' | '.join(KEYS) + ' |\n|' + '---|' * (len(KEYS) + 2), flush=True)
    for spec in runs:
        name, _, run = spec.rpartition('=') if '=' in spec else (spec, '', spec)
        pkls = run_files.run_snapshots(run)
        for i in run_files.curve_picks(len(pkls), points):
            try:
                G = legacy.load_network(pkls[i], 'G_ema', 'cpu')
                res = metric_main.calc_metric('view_gain', metric_kwargs=dict(num_gen=num, est_steps=est_steps),
                                              G=G, device='cpu', dataset_kwargs=dataset_kwargs, cache_dir=cache,
                                              num_workers=0).results
            except (OSError, ValueError) as err:
                raise click.ClickException(dnnlib.util.one_line(err)) from None
            row = [name, f'{run_files.snapshot_nimg(pkls[i]) / 1000:.3f}'] + [f'{res[k]:.4g}' for k in KEYS]
            lines.append(row)
            print('| ' + ' | '.join(row) + ' |', flush=True)
    if csv_path:
        text = 'run,kimg,' + ','.join(KEYS) + '\n' + ''.join(','.join(r) + '\n' for r in lines)
        dnnlib.util.write_atomic(csv_path, text.encode())


if __name__ == '__main__':
    main()
