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

`--law bimodal|uniform` asks the question for a whole yaw law instead of one view: the data seen
at yaws θ_i (±θ, or 7 yaws evenly over [-θ, θ]) against a frame whose cameras sit at s·θ_i, with
the one deformation (a, b) that fits all views best (a grid search around the exact pair of the
largest yaw). With views at ±θ only, one deformation hides any s up to perspective; with a
continuum of views a·cos(sθ) = cos θ and b·sin(sθ) = sin θ cannot hold for every θ unless
s = 1, so a continuum pins the scale that two clusters leave free.

    python bench/pose_ambiguity.py --family head --yaw 45 --law uniform
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


def law_yaws(law: str, yaw: float) -> list:
    """The views of a law in degrees from the frontal view: the two clusters, or 7 even yaws."""
    return [-yaw, yaw] if law == 'bimodal' else [float(x) for x in np.linspace(-yaw, yaw, 7)]


def law_gap(fam, shapes, yaws: list, scale: float, ab: tuple, opts, fov: float, truths: list) -> tuple:
    """(image gap, silhouette gap) averaged over the law's views: the truth at θ against the object
    deformed by ab = (a, b) seen at scale·θ."""
    gaps = []
    for (image, mask), yaw in zip(truths, yaws):
        seen_image, seen_mask = views(Deformed(fam, *ab), shapes, scale * yaw, opts, fov)
        gaps.append(((seen_image - image).abs().mean().item(), (seen_mask != mask).float().mean().item()))
    return tuple(float(np.mean(g)) for g in zip(*gaps))


def best_deformation(fam, shapes, yaws: list, scale: float, opts, fov: float, truths: list) -> tuple:
    """((a, b), gaps) minimizing the law's image gap over a 5x5 grid spanning (1, 1) and the exact
    pair of the largest yaw, each widened by 10%."""
    t = math.radians(max(abs(y) for y in yaws))
    a0, b0 = math.cos(t) / math.cos(scale * t), math.sin(t) / math.sin(scale * t)
    grid = [(float(a), float(b)) for a in np.linspace(min(a0, 1) * 0.9, max(a0, 1) * 1.1, 5)
            for b in np.linspace(min(b0, 1) * 0.9, max(b0, 1) * 1.1, 5)]
    scored = [(law_gap(fam, shapes, yaws, scale, ab, opts, fov, truths), ab) for ab in grid]
    gaps, ab = min(scored)
    return ab, gaps


def law_table(fam, shapes, yaws: list, scales: list, opts, fov: float) -> None:
    """Print, per frame scale s, the law's gap with the same object and with the best deformation."""
    truths = [views(fam, shapes, y, opts, fov) for y in yaws]
    print(f'views at yaws {", ".join(f"{y:g}" for y in yaws)} deg, FOV {fov:g} deg, {opts.resolution} px, '
          f'{len(shapes)} objects: mean |image - truth| / silhouette share over the views\n')
    print('| frame scale s | same object at s·yaw | best deformation (a, b) | deformed object |\n|---|---|---|---|')
    for scale in scales:
        same = law_gap(fam, shapes, yaws, scale, (1.0, 1.0), opts, fov, truths)
        ab, best = best_deformation(fam, shapes, yaws, scale, opts, fov, truths)
        print(f'| {scale:g} | {same[0]:.4f} / {same[1]:.4f} | ({ab[0]:.2f}, {ab[1]:.2f}) | '
              f'{best[0]:.4f} / {best[1]:.4f} |')


@click.command()
@click.option('--family', type=click.Choice(sorted(FAMILIES)), default='head', show_default=True)
@click.option('--yaw', 'yaw', type=click.FloatRange(1, 80), default=45.0, show_default=True,
              help='The true yaw θ in degrees (from the frontal view)')
@click.option('--fov', type=click.FloatRange(1, 120), default=30.0, show_default=True, help='Camera FOV (degrees)')
@click.option('--resolution', type=click.IntRange(8, 256), default=32, show_default=True)
@click.option('--num', type=click.IntRange(1, 1024), default=64, show_default=True, help='Objects')
@click.option('--seed', type=int, default=0, show_default=True)
@click.option('--law', type=click.Choice(['none', 'bimodal', 'uniform']), default='none', show_default=True,
              help='Compare whole yaw laws (±yaw, or a continuum over [-yaw, yaw]) instead of one view')
@click.option('--scales', default='1,0.75,0.5', show_default=True, help='Frame scales s for --law')
def main(family, yaw, fov, resolution, num, seed, law, scales):
    """Print the image change of a yaw error, with and without the compensating deformation."""
    torch.set_num_threads(1)
    fam = FAMILIES[family]
    shapes = fam.sample(num, torch.Generator().manual_seed(seed))
    opts = RenderOptions(resolution=resolution)
    if law != 'none':
        try:
            scale_list = [float(x) for x in scales.split(',')]
        except ValueError:
            raise click.BadParameter(f'{scales!r} is not a comma-separated list of numbers',
                                     param_hint='--scales') from None
        if not all(0 < x <= 1 for x in scale_list):
            raise click.BadParameter(f'{scales!r}: every scale must be in (0, 1]', param_hint='--scales')
        law_table(fam, shapes, law_yaws(law, yaw), scale_list, opts, fov)
        return
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
