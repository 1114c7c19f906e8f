"""How well do single views pin the yaw's scale? A check of the depth-yaw ambiguity on the
synthetic families (docs/benchmark.md, issue 15).

Under orthographic projection a point (x, z) of an object seen at yaw θ lands at x cos θ + z sin θ.
The same object squeezed in width by a = cos θ / cos θ' and stretched in depth by
b = sin θ / sin θ', seen at yaw θ', puts every point at the same place, so its view is identical
up to perspective, shading and which parts hide which. A generator can then explain data seen at
±θ with cameras at ±θ' and a deformed object: the scale of the camera law is not pinned by the
images of one view cluster. This script renders `--num` objects of a family at yaw θ (the
truth) and compares them with (1) the same objects at θ + δ (how much a small yaw error changes
the image) and (2) the deformed objects at θ' (how well the deformation hides a yaw error): the
mean absolute pixel difference in [0, 1] and the share of pixels whose silhouette differs.

    python bench/pose_ambiguity.py --family head --yaw 45 --fov 30
"""

import math
import os
import sys

import click
import numpy as np
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from training.synthetic import FAMILIES, RenderOptions, make_cameras  # noqa: E402
from training.synthetic.render import render  # noqa: E402


class Deformed:
    """A family whose objects are scaled by (a, 1, b) in the object frame (x: width, z: depth)."""

    def __init__(self, family, a: float, b: float):
        self.family, self.scale = family, torch.tensor([a, 1.0, b])
        self.half_extent = tuple(float(h * s) for h, s in zip(family.half_extent, self.scale))

    def sdf(self, points: torch.Tensor, params: torch.Tensor):
        """A lower bound of the deformed distance (the scale's smallest factor): safe to trace."""
        dist, part = self.family.sdf(points / self.scale, params)
        return dist * float(self.scale.min().clamp(max=1.0)), part


def views(family, shapes, yaw_deg: float, opts: RenderOptions, fov: float) -> tuple:
    """(images [N, R, R, 3] in [0, 1], masks [N, R, R] bool): the objects at azimuth pi/2 + yaw,
    on the equator."""
    n = len(shapes)
    camera = make_cameras(np.full(n, math.pi / 2 + math.radians(yaw_deg)), np.full(n, math.pi / 2), fov=fov)
    out = render(family, shapes, camera, opts)
    return out.image.float() / 255, out.mask


@click.command()
@click.option('--family', type=click.Choice(sorted(FAMILIES)), default='head', show_default=True)
@click.option('--yaw', 'yaw', type=click.FloatRange(1, 80), default=45.0, show_default=True,
              help='The true yaw θ in degrees (from the frontal view)')
@click.option('--fov', type=click.FloatRange(1, 120), default=30.0, show_default=True, help='Camera FOV (degrees)')
@click.option('--resolution', type=click.IntRange(8, 256), default=32, show_default=True)
@click.option('--num', type=click.IntRange(1, 1024), default=64, show_default=True, help='Objects')
@click.option('--seed', type=int, default=0, show_default=True)
def main(family, yaw, fov, resolution, num, seed):
    """Print the image change of a yaw error, with and without the compensating deformation."""
    torch.set_num_threads(1)
    fam = FAMILIES[family]
    shapes = fam.sample(num, torch.Generator().manual_seed(seed))
    opts = RenderOptions(resolution=resolution)
    truth = views(fam, shapes, yaw, opts, fov)

    def gap(seen) -> str:
        """'image gap / silhouette gap': mean |pixel - truth| and the share of pixels whose
        object mask differs from the truth's."""
        return f'{float((seen[0] - truth[0]).abs().mean()):.4f} / {float((seen[1] != truth[1]).float().mean()):.4f}'

    print(f'{family}, {num} objects, true yaw {yaw:g} deg, FOV {fov:g} deg, {resolution} px: '
          'mean |image - truth| (pixel values in [0, 1])\n')
    print('| camera yaw (deg) | same object: image / silhouette | deformation (a, b) | deformed object: image / '
          'silhouette |\n|---|---|---|---|')
    for cam in (yaw + 5, yaw + 2.5, yaw - 2.5, yaw - 5, yaw - 10, yaw - 15, yaw - 25):
        t, c = math.radians(yaw), math.radians(cam)
        a, b = math.cos(t) / math.cos(c), math.sin(t) / math.sin(c)
        deformed = gap(views(Deformed(fam, a, b), shapes, cam, opts, fov))
        print(f'| {cam:g} | {gap(views(fam, shapes, cam, opts, fov))} | ({a:.2f}, {b:.2f}) | {deformed} |')


if __name__ == '__main__':
    main()
