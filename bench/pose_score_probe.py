"""Which camera yaws does PoF3D's D find real, and which way does its score push G's cameras?
A diagnostic for learned-pose runs (docs/benchmark.md run 25, `--pose_cond_grad`).

For a network snapshot (the newest below `--run`): `--num` objects of G (not G_ema: the network
the losses train), each rendered from G's own camera and from every yaw of `--yaws` (pitch and
everything else kept), with constant synthesis noise. D scores each render as in training
(self-conditioned on its own pose estimate, no blur), and reads its pose. Then, at G's own
cameras, the per-sample derivative of the score with respect to the camera yaw two ways:

- image path: D's label held (sg D_pose(x), what PoF3D's G feels);
- full: through the label too (what G feels with `--pose_cond_grad true`).

Per yaw bin of G's cameras it prints the mean ascent of each (a positive value pushes the
bin's cameras to larger yaws), and corr(ascent, yaw - mean yaw): > 0 spreads G's camera law,
< 0 contracts it.

    python bench/pose_score_probe.py --run out/pose_bench_car_bimodal_ip/runs/pof3d_indep_planes \
        --data out/pose_bench_car_bimodal_ip/data/car32_labeled.zip
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
from training.losses.common import fake_pair, real_pair  # noqa: E402
from training.pose_sources import pose_to_camera  # noqa: E402

from pose_head_probe import load_reals  # noqa: E402

BIN_EDGES_DEG = (0, 40, 60, 80, 90, 100, 120, 140, 180)


def render_at(G, z, c, pose, resolution):
    """G's render of objects z [N, z_dim] from the learned source's camera at pose [N, 2] (h, v)
    radians, with constant synthesis noise and the same ray jitter at every call (so that renders
    differ only by their cameras): the fake pair D reads."""
    src = G.pose_source
    cam2world, _ = pose_to_camera(pose, src.radius, src.pivot)
    return fake_pair(G(z, c, cam2world=cam2world, neural_rendering_resolution=resolution, noise_mode='const',
                       generator=torch.Generator(z.device).manual_seed(0)))


def yaw_sweep(G, D, z, c, pose, yaws, resolution) -> list:
    """[(yaw, mean score, mean estimated yaw)] for every yaw (radians) in `yaws`, each object's
    pitch kept (pose [N, 2])."""
    rows = []
    for yaw in yaws:
        moved = torch.cat([torch.full_like(pose[:, :1], float(yaw)), pose[:, 1:]], dim=1)
        with torch.no_grad():
            out = D(render_at(G, z, c, moved, resolution))
        rows.append((float(yaw), out['score'].mean().item(), out['pose'][:, 0].mean().item()))
    return rows


def camera_gradients(G, D, z, c, pose, resolution):
    """(yaw [N], image-path ascent [N], full ascent [N]): d score / d h per sample at pose [N, 2],
    with D's pose label detached and with its graph (numpy)."""
    leaf = pose.detach().clone().requires_grad_(True)
    x = render_at(G, z, c, leaf, resolution)                  # one render, both derivatives
    full = torch.autograd.grad(D(x, cond_grad=True)['score'].sum(), leaf, retain_graph=True)[0][:, 0]
    image = torch.autograd.grad(D(x)['score'].sum(), leaf)[0][:, 0]
    return leaf[:, 0].detach().numpy(), image.numpy(), full.numpy()


def spread_corr(yaw: np.ndarray, ascent: np.ndarray) -> float:
    """corr(ascent, yaw - mean): > 0 the score spreads the camera law, < 0 it contracts it."""
    if yaw.std() == 0 or ascent.std() == 0:
        return float('nan')
    return float(np.corrcoef(ascent, yaw - yaw.mean())[0, 1])


def binned(yaw: np.ndarray, *values: np.ndarray, edges_deg=BIN_EDGES_DEG) -> list:
    """[(lo, hi, count, mean of each value)] over the yaw bins [lo, hi) in degrees that hold samples."""
    deg = np.degrees(yaw)
    rows = []
    for lo, hi in zip(edges_deg[:-1], edges_deg[1:]):
        k = (deg >= lo) & (deg < hi)
        if k.any():
            rows.append((lo, hi, int(k.sum()), *(float(v[k].mean()) for v in values)))
    return rows


def _deg(x: torch.Tensor) -> str:
    """'mean ± std deg' of radians [N]."""
    return f'{np.degrees(x.mean().item()):.1f} ± {np.degrees(x.std().item()):.1f} deg'


def probe(pkl: str, data: str, num: int, yaws_deg: tuple, seed: int) -> str:
    """The markdown report of one snapshot."""
    G, D = legacy.load_network(pkl, ('G', 'D'))
    if getattr(D, 'pose_head', None) is None or not getattr(D, 'self_condition', False):
        raise click.ClickException(f'{pkl}: D is not self-conditioned on a pose head (not a PoF3D run)')
    imgs, labels, _, _ = load_reals(data, num)
    resolution = imgs.shape[-1]
    n = len(imgs)
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    c = labels[:n]
    with torch.no_grad():
        pose = G.pose(z, c).pose
        real = D(real_pair(imgs, resolution, 0.0))
        own = D(render_at(G, z, c, pose, resolution))
    real_yaw, own_yaw = _deg(real['pose'][:, 0]), _deg(pose[:, 0])
    lines = [f'snapshot {pkl} ({run_files.snapshot_nimg(pkl) / 1000:g} kimg), {n} objects', '',
             f"reals: mean score {real['score'].mean().item():+.3f}, D's yaw {real_yaw}",
             f"G's cameras: yaw {own_yaw}, mean score {own['score'].mean().item():+.3f}", '',
             "| render yaw (deg) | D's mean score | D's mean yaw (deg) |", '|---|---|---|']
    for yaw, score, est in yaw_sweep(G, D, z, c, pose, np.radians(yaws_deg), resolution):
        lines.append(f'| {np.degrees(yaw):.0f} | {score:+.3f} | {np.degrees(est):.1f} |')
    yaw, image, full = camera_gradients(G, D, z, c, pose, resolution)
    lines += ['', "| G's yaw bin (deg) | cameras | ascent, image path (PoF3D) | ascent, full (--pose_cond_grad) |",
              '|---|---|---|---|']
    lines += [f'| {lo}-{hi} | {k} | {a:+.3f} | {b:+.3f} |' for lo, hi, k, a, b in binned(yaw, image, full)]
    corr = (spread_corr(yaw, image), spread_corr(yaw, full))
    lines.append(f'| corr(ascent, yaw - mean) | {len(yaw)} | {corr[0]:+.3f} | {corr[1]:+.3f} |')
    return '\n'.join(lines) + '\n'


@click.command()
@click.option('--run', required=True, help='train.py run directory (or a snapshot .pkl)')
@click.option('--data', required=True, help='Labeled dataset zip (for the reals and the intrinsics)')
@click.option('--num', type=click.IntRange(min=2), default=256, show_default=True, help='Objects (and reals)')
@click.option('--yaws', default='20,35,45,55,70,80,90,100,110,125,135,145,160', show_default=True,
              help='Render yaws (deg) for the score sweep')
@click.option('--seed', type=int, default=1, show_default=True)
@click.option('--out', 'out_path', default=None, help='Also write the report here (markdown)')
def main(run, data, num, yaws, seed, out_path):
    """D's score over the camera yaw and the score's push on G's cameras, with and without D's pose label's gradient."""
    torch.set_num_threads(1)
    try:
        yaws_deg = tuple(float(x) for x in yaws.split(','))
    except ValueError:
        raise click.BadParameter(f'{yaws!r}: comma-separated degrees', param_hint='--yaws') from None
    pkl = run_files.newest_snapshot(run)
    try:
        text = probe(pkl, data, num, yaws_deg, seed)
    except OSError as err:
        raise click.ClickException(one_line(err)) from None
    print(text, end='')
    if out_path:
        dnnlib.util.write_atomic(out_path, text.encode())


if __name__ == '__main__':
    main()
