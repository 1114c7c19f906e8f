"""What view does G's image show from each camera yaw? The camera -> view map of a learned-pose run.

view_gain (metrics/view_gain.py) fits one slope per object over ±15°; on two clusters of views a
field can make every camera near a cluster show that cluster's view (a snapping map) and still
score a slope near 1 on average. This reads the map itself: for a network snapshot (G_ema of the
newest below `--run`), `--num` objects of G, each rendered from every yaw of `--yaws` (its own
pitch kept, constant noise), read by the pose-learning bench's pose estimator (trained on the
labeled zip, cached in `--cache`). Per camera yaw it prints the mean / std / p10 / p50 / p90 of
the yaws the images show (unwrapped around the camera yaw).

The estimator only saw the data's views. `--calib` checks that it reads the camera yaws of the
sweep anyway: a labeled zip of the same object family over a wide yaw law (make_synthetic.py
`--pose uniform:...`); its images with a true yaw within half a sweep step of each camera yaw
give the estimator's reading of real objects there (the table's last columns).

    python make_synthetic.py --outdir /tmp/car_wide --family car --num 600 --resolution 32 \\
        --pose 'uniform:h_min=pi/8,h_max=7pi/8' --seed 5
    python bench/view_map.py --run out/pose_bench_car_bimodal_cg/runs/pof3d_indep_planes_cg \\
        --data out/pose_bench_car_bimodal_cg/data/car32_labeled.zip --cache out/pose_bench_car_bimodal_cg/cache \\
        --calib /tmp/car_wide/car32_labeled.zip
"""

import os
import sys

import click
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import dnnlib  # noqa: E402
import legacy  # noqa: E402
import run_files  # noqa: E402
from dnnlib.util import one_line  # noqa: E402
from metrics import estimators, metric_utils, pose_metrics  # noqa: E402

from pose_head_probe import load_reals  # noqa: E402
from pose_score_probe import render_at  # noqa: E402


def summary(yaws_deg: np.ndarray) -> tuple:
    """(mean, std, p10, p50, p90) of readings in degrees; NaNs when there are none."""
    if len(yaws_deg) == 0:
        return (float('nan'),) * 5
    return (float(np.mean(yaws_deg)), float(np.std(yaws_deg)), *np.percentile(yaws_deg, [10, 50, 90]).tolist())


def read_yaws(est, images: torch.Tensor, around_deg) -> np.ndarray:
    """images [N, 3, H, W] in [-1, 1] -> the estimator's yaws (degrees) on the branch nearest around_deg
    (a float, or one per image)."""
    yaw = est(metric_utils.quantize(images))['pose'][:, 0].double().numpy()
    return np.degrees(pose_metrics.wrap_around(yaw, np.radians(around_deg)))


def view_map(G, est, z, c, pose, yaws_deg, resolution) -> list:
    """[(camera yaw, readings [N] deg)]: each object z [N, z_dim] (label c, own pose [N, 2] radians)
    rendered from every yaw of yaws_deg with its pitch kept."""
    rows = []
    for yaw in yaws_deg:
        moved = torch.cat([torch.full_like(pose[:, :1], float(np.radians(yaw))), pose[:, 1:]], dim=1)
        with torch.no_grad():
            image = render_at(G, z, c, moved, resolution)['image']
        rows.append((float(yaw), read_yaws(est, image, yaw)))
    return rows


def calibration(true_deg: np.ndarray, read_deg: np.ndarray, yaws_deg, half_width: float) -> list:
    """[(camera yaw, readings of the items whose true yaw lies within half_width of it)] (degrees)."""
    return [(float(y), read_deg[np.abs(true_deg - y) <= half_width]) for y in yaws_deg]


def calib_readings(est, calib: str) -> tuple:
    """A labeled zip -> (true yaws, estimated yaws) in degrees, the estimates on the truth's branch."""
    imgs, _, true_pose, _ = load_reals(calib, 10 ** 9)
    true = np.degrees(true_pose[:, 0])
    with torch.no_grad():
        read = np.concatenate([read_yaws(est, imgs[i:i + 256], true[i:i + 256]) for i in range(0, len(imgs), 256)])
    return true, read


def report(pkl: str, rows: list, calib_rows=None) -> str:
    """The markdown table."""
    head = '| camera yaw (deg) | views: mean | std | p10 | p50 | p90 |'
    sep = '|---|---|---|---|---|---|'
    if calib_rows is not None:
        head, sep = head + ' true objects: n | mean | std |', sep + '---|---|---|'
    lines = [f'snapshot {pkl} ({run_files.snapshot_nimg(pkl) / 1000:g} kimg), {len(rows[0][1])} objects', '',
             head, sep]
    for i, (yaw, read) in enumerate(rows):
        line = f'| {yaw:.0f} | ' + ' | '.join(f'{x:.1f}' for x in summary(read)) + ' |'
        if calib_rows is not None:
            ref = calib_rows[i][1]
            line += f' {len(ref)} | ' + ' | '.join(f'{x:.1f}' for x in summary(ref)[:2]) + ' |'
        lines.append(line)
    return '\n'.join(lines) + '\n'


def parse_yaws(text: str) -> tuple:
    try:
        yaws = tuple(float(x) for x in text.split(','))
    except ValueError:
        raise click.BadParameter(f'{text!r}: comma-separated degrees', param_hint='--yaws') from None
    return yaws


@click.command()
@click.option('--run', required=True, help='train.py run directory (or a snapshot .pkl)')
@click.option('--data', required=True, help='Labeled dataset zip (labels for G; trains the estimator)')
@click.option('--cache', default=None, help='Metrics cache folder (the estimator) [default: the dnnlib cache]')
@click.option('--est-steps', type=click.IntRange(min=1), default=None,
              help="Estimator training steps [default: the estimator's; a bench's --smoke uses 20]")
@click.option('--calib', default=None, help='Labeled zip over a wide yaw law: the estimator on true objects')
@click.option('--num', type=click.IntRange(min=1), default=96, show_default=True, help='Objects')
@click.option('--yaws', default='30,45,60,75,90,105,120,135,150', show_default=True, help='Camera yaws (deg)')
@click.option('--seed', type=int, default=3, show_default=True)
@click.option('--out', 'out_path', default=None, help='Also write the report here (markdown)')
def main(run, data, cache, est_steps, calib, num, yaws, seed, out_path):
    """The yaws G's images show when its camera sits at each of --yaws."""
    torch.set_num_threads(1)
    yaws_deg = parse_yaws(yaws)
    try:
        pkl = run_files.newest_snapshot(run)
        G = legacy.load_network(pkl, ('G_ema',))[0]
        imgs, labels, _, _ = load_reals(data, num)
        kwargs = dict(class_name='training.dataset.ImageFolderDataset', path=data, resolution=imgs.shape[-1],
                      use_labels=True)
        est = estimators.load_or_train('pose', steps=est_steps, cache_dir=cache, dataset_kwargs=kwargs)
        z = torch.randn(len(imgs), G.z_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            pose = G.pose(z, labels).pose
        rows = view_map(G, est, z, labels, pose, yaws_deg, imgs.shape[-1])
        half = min(np.diff(sorted(yaws_deg)).min() / 2, 5.0) if len(yaws_deg) > 1 else 5.0
        calib_rows = None if calib is None else calibration(*calib_readings(est, calib), yaws_deg, half)
    except (OSError, ValueError) as err:
        raise click.ClickException(one_line(err)) from None
    text = report(pkl, rows, calib_rows)
    print(text, end='')
    if out_path:
        dnnlib.util.write_atomic(out_path, text.encode())


if __name__ == '__main__':
    main()
