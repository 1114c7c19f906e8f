"""Albedo against shading over a ShadeGAN run's snapshots: does the field's Lambertian term add a
shape, or noise? A diagnostic for `--shading lambertian` runs (docs/seed_methods.md).

For every network snapshot of a run directory, G_ema renders `--num` samples twice from the same
latents, cameras and lights: with shading ratio 0 (the albedo alone) and 1 (fully shaded). It
prints each one's pixel std and mean |∂x| (the mean absolute difference of horizontal neighbours,
in [-1, 1] units: noise shows as a large value); with `--png`, a grid whose rows are the
snapshots, albedo on the left and shaded on the right. Reals of the synthetic heads: std 0.53,
mean |∂x| 0.079.

    python bench/shading_probe.py --run out/seed_bench_20d/runs/shadegan --png probe.png
"""

import glob
import json
import os
import sys

import click
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import legacy  # noqa: E402
from training.cameras import FOV_to_intrinsics  # noqa: E402
from training.rendering.options import RenderSchedule  # noqa: E402


def stats(image: torch.Tensor) -> tuple:
    """image [N, 3, H, W] in [-1, 1] -> (pixel std, mean |x[..., 1:] - x[..., :-1]|)."""
    return float(image.std()), float((image[..., 1:] - image[..., :-1]).abs().mean())


def probe(pkl: str, num: int, fov: float) -> tuple:
    """({'albedo': (std, dx), 'shaded': (std, dx)}, [2, num, 3, H, W]) for one snapshot."""
    with open(pkl, 'rb') as f:
        G = legacy.load_network_pkl(f)['G_ema'].eval()
    if getattr(G, 'shading', 'none') == 'none':
        raise click.ClickException(f'{pkl}: the generator has no shading stage (--shading none)')
    z = torch.randn(num, G.z_dim, generator=torch.Generator().manual_seed(0))
    c = torch.zeros(num, 25)
    c[:, :16] = torch.eye(4).flatten()
    c[:, 16:] = FOV_to_intrinsics(fov).reshape(-1)
    images = []
    with torch.no_grad():
        for ratio in (0.0, 1.0):
            schedule = RenderSchedule(shading_ratio=ratio)
            images.append(G(z, c, render_schedule=schedule, generator=torch.Generator().manual_seed(1)).image)
    return dict(albedo=stats(images[0]), shaded=stats(images[1])), torch.stack(images)


@click.command()
@click.option('--run', required=True, type=click.Path(exists=True, file_okay=False), help='A train.py output folder')
@click.option('--num', type=click.IntRange(1, 64), default=6, show_default=True, help='Samples per snapshot')
@click.option('--png', type=click.Path(dir_okay=False), default=None, help='Write the albedo | shaded grid here')
@click.option('--fov', type=click.FloatRange(0.1, 179), default=None,
              help="Camera FOV in degrees [default: the run's --create_label_fov, else make_synthetic.py's 30]")
def main(run, num, png, fov):
    """Print albedo and shaded image statistics for every snapshot of RUN."""
    torch.set_num_threads(1)
    pkls = sorted(glob.glob(os.path.join(run, '**', 'network-snapshot-*.pkl'), recursive=True))
    if not pkls:
        raise click.ClickException(f'--run {run}: no network-snapshot-*.pkl in it')
    options = os.path.join(os.path.dirname(pkls[0]), 'training_options.json')
    if fov is None and os.path.exists(options):
        fov = json.load(open(options))['config']['data'].get('create_label_fov')
    print('| snapshot | albedo std | albedo mean abs dx | shaded std | shaded mean abs dx |\n|---|---|---|---|---|')
    rows = []
    for pkl in pkls:
        values, images = probe(pkl, num, fov or 30.0)
        print(f'| {os.path.basename(pkl)} | ' + ' | '.join(f'{v:.3f}' for v in (*values['albedo'], *values['shaded']))
              + ' |')
        rows.append(torch.cat([torch.cat(list(images[0]), -1), torch.cat(list(images[1]), -1)], -1))
    if png:
        import PIL.Image
        grid = ((torch.cat(rows, -2).permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        tmp = png + '.tmp.png'
        PIL.Image.fromarray(np.ascontiguousarray(grid)).save(tmp)
        os.replace(tmp, png)


if __name__ == '__main__':
    main()
