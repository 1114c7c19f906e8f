"""How well does D's pose head know the pose, and where are G's cameras? A diagnostic for PoF3D
runs (docs/benchmark.md).

For every network snapshot of a run directory, G renders `--num` fakes (G, not G_ema: the
network the losses train) and D's pose head reads them through the loss's own input path
(blur sigma of that kimg). Per pose component it prints the least-squares slope and the
correlation of D's estimate against G's camera ξ. On the labeled real images it prints the
correlation against the true pose (a learned frame may be mirrored, so a correlation near -1
is as good as +1). Last, G_ema's cameras for `--js-num` latents: the aligned joint and yaw-only
pose JS against all the true poses (metrics/pose_metrics.py) and the 10/50/90th percentiles of
the raw yaw, in degrees.

Why it matters: G's pose regularizer L3 = λ_gd·MSE(ξ, sg D_pose(G(ξ))) (SPEC §6.1.3) pulls each
camera toward D's estimate. If the head regresses toward the mean with slope s < 1, the pull
is 2·λ_gd·(1 - s)·(ξ - mean): the camera distribution contracts.

    python bench/pose_head_probe.py --run out/pose_bench/runs/pof3d --data out/pose_bench/data/car32_labeled.zip
    python bench/pose_head_probe.py --run preset=RUN_A --run no_l3=RUN_B --data ... --csv probe.csv --png probe.png
"""

import json
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
from metrics import pose_metrics  # noqa: E402
from training import schedules  # noqa: E402
from dnnlib.util import one_line  # noqa: E402
from training.dataset import ImageFolderDataset  # noqa: E402
from training.losses.common import DInput, fake_pair, real_pair  # noqa: E402


def snapshot_kimg(path: str) -> float:
    return run_files.snapshot_nimg(path) / 1000


def fit(x: np.ndarray, y: np.ndarray) -> tuple:
    """(slope of y on x, correlation) for [N] arrays; (nan, nan) when x is constant."""
    if x.std() == 0 or y.std() == 0:
        return float('nan'), float('nan')
    return float(np.cov(x, y)[0, 1] / np.var(x, ddof=1)), float(np.corrcoef(x, y)[0, 1])


def split_means(true: np.ndarray, est: np.ndarray) -> tuple:
    """Mean of `est` over the items whose `true` is below its median, and over the others ([N]
    arrays): where the head puts the data's two yaw modes (a bimodal law splits at its median)."""
    low = true < np.median(true)
    return float(est[low].mean()), float(est[~low].mean())


def load_reals(data: str, num: int) -> tuple:
    """Labeled zip -> (first `num` images [N, 3, H, W] in [-1, 1], their labels [N, 25], their
    true (h, v) [N, 2], every item's true (h, v) [M, 2])."""
    try:
        ds = ImageFolderDataset(path=data, use_labels=True)
    except (OSError, ValueError) as err:
        raise click.BadParameter(one_line(err), param_hint='--data') from None
    if not ds.has_labels:
        raise click.BadParameter(f'{data}: no camera labels (use the labeled zip)', param_hint='--data')
    n = min(num, len(ds))
    imgs = torch.from_numpy(np.stack([ds[i][0] for i in range(n)])).float() / 127.5 - 1
    labels = torch.from_numpy(np.stack([ds.get_label(i) for i in range(len(ds))])).float()
    every = pose_metrics.poses_from_cam2world(labels[:, :16].numpy())
    return imgs, labels[:n], every[:n], every


@torch.no_grad()
def probe(pkl: str, reals: tuple, blur: tuple, seed: int, js_num: int) -> dict:
    """One snapshot -> {kimg, xi_h_std, pred_h_std (deg), fake_{h,v}_{slope,corr}, real_{h,v}_corr,
    real_h_slope, real_h_low/high (deg: the head's mean yaw on the reals below / above the true
    median), js_aligned, js_yaw_aligned, h_p10/25/50/75/90 (deg)}."""
    G, D, G_ema = legacy.load_network(pkl, ('G', 'D', 'G_ema'))     # the file is read once
    if getattr(D, 'pose_head', None) is None:
        raise click.ClickException(f'{pkl}: D has no pose head (not a PoF3D run)')
    kimg = snapshot_kimg(pkl)
    sigma = schedules.blur_sigma(kimg * 1e3, *blur)
    imgs, labels, true_pose, every_pose = reals
    z = torch.randn(len(imgs), G.z_dim, generator=torch.Generator().manual_seed(seed))
    out = G(z, labels, neural_rendering_resolution=imgs.shape[-1])
    xi = out['pose'].numpy()
    d_input = DInput()
    pred = d_input.pose(D, fake_pair(out), sigma).numpy()
    pred_real = d_input.pose(D, real_pair(imgs, imgs.shape[-1], sigma), sigma).numpy()
    row = dict(kimg=kimg, xi_h_std=np.degrees(xi[:, 0].std()), pred_h_std=np.degrees(pred[:, 0].std()))
    for k, name in enumerate('hv'):
        row[f'fake_{name}_slope'], row[f'fake_{name}_corr'] = fit(xi[:, k], pred[:, k])
        row[f'real_{name}_corr'] = fit(true_pose[:, k], pred_real[:, k])[1]
    row['real_h_slope'] = fit(true_pose[:, 0], pred_real[:, 0])[0]
    row['real_h_low'], row['real_h_high'] = np.degrees(split_means(true_pose[:, 0], pred_real[:, 0]))
    z = torch.randn(js_num, G_ema.z_dim, generator=torch.Generator().manual_seed(seed + 1))
    cams = G_ema.pose(z, labels[torch.arange(js_num) % len(labels)]).cam2world
    gen = pose_metrics.poses_from_cam2world(cams.numpy())
    js = pose_metrics.pose_js_from_poses(gen, every_pose)
    row.update(js_aligned=js['value'], js_yaw_aligned=js['yaw'])
    quantiles = (10, 25, 50, 75, 90)
    row.update({f'h_p{q}': v for q, v in zip(quantiles, np.degrees(np.percentile(gen[:, 0], quantiles)))})
    return row


def probe_run(run: str, reals: tuple, every: int, seed: int, js_num: int, last: bool = False) -> list:
    """Rows of every `every`-th snapshot below the run directory `run`, oldest first (the newest
    alone with `last`)."""
    pkls = run_files.run_snapshots(run)
    with open(os.path.join(os.path.dirname(pkls[-1]), 'training_options.json')) as f:
        loss = json.load(f)['loss_kwargs']
    blur = (loss.get('blur_init_sigma', 0.0), loss.get('blur_fade_kimg', 0.0))
    return [probe(p, reals, blur, seed, js_num) for p in (pkls[-1:] if last else pkls[::every])]


def plot(table: dict, path: str) -> None:
    """PNG: G's yaw spread and D's estimate spread, the head's yaw slope, the aligned yaw JS over kimg."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    panels = [(('xi_h_std', 'pred_h_std'), 'yaw std (deg): G camera (solid), D estimate (dashed)'),
              (('fake_h_slope',), "slope of D's yaw estimate on G's yaw"),
              (('js_yaw_aligned',), 'JS yaw aligned (nats)')]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6))
    for ax, (keys, title) in zip(axes, panels):
        for i, (name, rows) in enumerate(table.items()):
            for key, style in zip(keys, ('-', '--')):
                ax.plot([r['kimg'] for r in rows], [r[key] for r in rows], style, color=f'C{i}',
                        label=name if style == '-' else None)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('kimg')
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    tmp = path + '.tmp.png'
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


@click.command()
@click.option('--run', 'runs', required=True, multiple=True,
              help='train.py run directory (or a folder of them); repeatable, as NAME=DIR to label it')
@click.option('--data', required=True, help='Labeled dataset zip (true camera labels)')
@click.option('--num', type=click.IntRange(min=8), default=256, show_default=True, help='Images per snapshot')
@click.option('--every', type=click.IntRange(min=1), default=1, show_default=True, help='Probe every k-th snapshot')
@click.option('--js-num', type=click.IntRange(min=100), default=20000, show_default=True,
              help='G_ema cameras for the JS and percentile columns')
@click.option('--seed', type=int, default=0, show_default=True)
@click.option('--last', is_flag=True, help='Probe only the newest snapshot of each run')
@click.option('--csv', 'csv_path', default=None, help='Also write the rows here (with a run column)')
@click.option('--png', 'png_path', default=None, help='Also plot the runs side by side here')
def main(runs, data, num, every, js_num, seed, last, csv_path, png_path):
    """Per snapshot: slope and correlation of D's pose estimate against G's camera, and G_ema's
    camera distribution against the true one."""
    torch.set_num_threads(1)
    reals = load_reals(data, num)
    table = {}
    for spec in runs:
        name, _, run = spec.rpartition('=') if '=' in spec else (spec, '', spec)
        table[name] = probe_run(run, reals, every, seed, js_num, last)
    keys = ['run'] + list(next(iter(table.values()))[0])
    lines = [[name] + [f'{r[k]:.5g}' for k in keys[1:]] for name, rows in table.items() for r in rows]
    print('| ' + ' | '.join(keys) + ' |\n|' + '---|' * len(keys))
    for line in lines:
        print('| ' + ' | '.join(f'{float(x):.3g}' if i else x for i, x in enumerate(line)) + ' |')
    if csv_path:
        text = ','.join(keys) + '\n' + ''.join(','.join(x) + '\n' for x in lines)
        dnnlib.util.write_atomic(csv_path, text.encode())
    if png_path:
        plot(table, png_path)


if __name__ == '__main__':
    main()
