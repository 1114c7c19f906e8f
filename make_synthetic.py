"""Make a synthetic dataset with ground truth: procedural cars or heads under a known pose law.

Writes three files into --outdir, atomically (temporary names, renamed at the end; an error
or Ctrl-C leaves none of them):
  <name>_labeled.zip    EG3D layout: {idx//1000:05d}/img{idx:08d}.png + dataset.json with the
                        true 25-float labels (cam2world row-major ++ normalized K row-major)
  <name>_unlabeled.zip  the same images; dataset.json has "labels": null
  <name>_gt.npz         pose [N, 2] float32 (h, v) rad as drawn (h not wrapped; the labels give
                        it modulo 2 pi), cam2world [N, 4, 4], intrinsics [N, 3, 3],
                        depth [N, R, R] float32 ray distance (inf on background), mask [N, R, R]
                        bool, family, pose_spec, seed, radius, fov, shape_params [N, D],
                        shape_param_names [D]
                        with --light mvn[...] also: light [N, 4] float32 (a, d, l_x, l_y) per
                        image, normals [N, R, R, 3] float32 unit world normals on the mask
                        (zero elsewhere), light_spec

Example:
  python make_synthetic.py --outdir data --family car --num 2000 --resolution 64 \\
      --pose 'mix:pi/2:0.3:0.5,3pi/2:0.3:0.5' --seed 0
The --pose grammar is documented in training/synthetic/poses.py, the --light grammar in
training/synthetic/lights.py (`python make_synthetic.py --help`).
"""

import contextlib
import io
import json
import os
import time
import zipfile

import click
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from dnnlib import cli
from training.cameras import Camera
from training.synthetic.lights import parse_light_spec
from training.synthetic.poses import make_cameras, parse_pose_spec
from training.synthetic.render import RenderOptions, render
from training.synthetic.shapes import FAMILIES

RAYS_PER_BATCH = 2 ** 20    # ~64 images of 64 px with 2x supersampling; bounds memory (~1 GB peak)
LIGHT_STREAM = 1            # lights come from their own RNG stream: the other draws stay as without them


def image_path(idx: int) -> str:
    """Archive name of image idx (EG3D dataset_tool layout)."""
    return f'{idx // 1000:05d}/img{idx:08d}.png'


def encode_png(image: np.ndarray) -> bytes:
    """uint8 HWC -> PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format='png')
    return buf.getvalue()


@contextlib.contextmanager
def atomic_outputs(paths):
    """Yield a temporary path for each final path; rename them all on success, delete on failure.

    Failure includes KeyboardInterrupt. The temporaries sit in the final folder (same file
    system); that folder is created if missing, and removed again on failure if it was created.
    """
    folder = os.path.dirname(paths[0]) or '.'
    created = not os.path.isdir(folder)
    os.makedirs(folder, exist_ok=True)
    temps = [os.path.join(os.path.dirname(p), f'.{os.path.basename(p)}.tmp{os.getpid()}') for p in paths]
    done = []
    try:
        yield temps
        for tmp, final in zip(temps, paths):
            os.replace(tmp, final)
            done.append(final)
    except BaseException:
        for p in temps + done:
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(folder)
        raise


def sample_scene(family_name, num, pose_spec, seed, fov, radius, bg_jitter=0.0):
    """Everything random, drawn up front from the seed (so batching cannot change it).

    Returns (h [num], v [num] float64 rad, Camera [num] float32, ShapeBatch, background [num, 3] or None).
    """
    h, v = parse_pose_spec(pose_spec).sample(num, np.random.default_rng(seed))
    camera = make_cameras(h, v, radius=radius, fov=fov)
    generator = torch.Generator().manual_seed(seed)
    shapes = FAMILIES[family_name].sample(num, generator)
    background = None
    if bg_jitter > 0:   # mild per-image grey level of the background
        background = (1 - bg_jitter * torch.rand(num, 1, generator=generator)).expand(num, 3)
    return h, v, camera, shapes, background


def sample_lights(light_spec: str, num: int, seed: int):
    """Per-image lights [num, 4] float32 (a, d, l_x, l_y) of the --light law, or None for 'fixed'
    (SEEDS_SPEC §6.4); drawn from the stream (seed, LIGHT_STREAM)."""
    law = parse_light_spec(light_spec)
    if law is None:
        return None
    return torch.from_numpy(law.sample(num, np.random.default_rng([seed, LIGHT_STREAM])).astype(np.float32))


def write_images(zip_paths, family, shapes, camera, opts: RenderOptions, background=None, progress=True,
                 light=None):
    """Render in batches into the labeled and unlabeled zips (zip_paths, in that order).

    light: optional per-image lights [N, 4] (`render`). Returns (depth [N, R, R] float32,
    mask [N, R, R] bool, seconds spent rendering, normals [N, R, R, 3] float32 zero off the
    mask, or None unless opts.normals).
    """
    n, R = camera.batch_size, opts.resolution
    batch = max(1, RAYS_PER_BATCH // (R * opts.supersample) ** 2)
    depth, mask = np.empty((n, R, R), np.float32), np.empty((n, R, R), bool)
    normals = np.zeros((n, R, R, 3), np.float32) if opts.normals else None
    labels = camera.to_label().numpy()
    seconds = 0.0
    with zipfile.ZipFile(zip_paths[0], 'w', zipfile.ZIP_STORED) as zl, \
            zipfile.ZipFile(zip_paths[1], 'w', zipfile.ZIP_STORED) as zu, \
            tqdm(total=n, unit='img', disable=not progress, desc=f'rendering {family.name}') as bar:
        for start in range(0, n, batch):
            sl = slice(start, min(start + batch, n))
            t0 = time.perf_counter()
            out = render(family, shapes.select(sl), Camera(camera.cam2world[sl], camera.intrinsics[sl]), opts,
                         None if background is None else background[sl], None if light is None else light[sl])
            seconds += time.perf_counter() - t0
            depth[sl], mask[sl] = out.depth.numpy(), out.mask.numpy()
            if normals is not None:   # GT normals only where the object is (the mask)
                normals[sl] = out.normals.numpy() * mask[sl, :, :, None]
            for i, img in enumerate(out.image.numpy()):
                data = encode_png(img)
                zl.writestr(image_path(start + i), data)
                zu.writestr(image_path(start + i), data)
            bar.update(sl.stop - sl.start)
        zl.writestr('dataset.json', json.dumps(
            {'labels': [[image_path(i), [float(x) for x in labels[i]]] for i in range(n)]}))
        zu.writestr('dataset.json', json.dumps({'labels': None}))
    return depth, mask, seconds, normals


def make_dataset(outdir, name, family_name, num, resolution, pose_spec, seed, fov, radius, supersample,
                 bg_jitter=0.0, progress=True, light_spec='fixed'):
    """Sample, render and write the three outputs; returns (paths, seconds spent rendering)."""
    family = FAMILIES[family_name]
    h, v, camera, shapes, background = sample_scene(family_name, num, pose_spec, seed, fov, radius, bg_jitter)
    light = sample_lights(light_spec, num, seed)
    opts = RenderOptions(resolution=resolution, supersample=supersample, normals=light is not None)
    paths = [os.path.join(outdir, f'{name}_{suffix}') for suffix in ('labeled.zip', 'unlabeled.zip', 'gt.npz')]
    with atomic_outputs(paths) as tmp:
        depth, mask, seconds, normals = write_images(tmp[:2], family, shapes, camera, opts, background, progress,
                                                     light)
        extra = {} if light is None else dict(light=light.numpy(), normals=normals, light_spec=np.array(light_spec))
        with open(tmp[2], 'wb') as f:
            np.savez_compressed(
                f, pose=np.stack([h, v], axis=1).astype(np.float32), cam2world=camera.cam2world.numpy(),
                intrinsics=camera.intrinsics.numpy(), depth=depth, mask=mask, family=np.array(family_name),
                pose_spec=np.array(pose_spec), seed=np.array(seed), radius=np.array(radius), fov=np.array(fov),
                shape_params=shapes.params.numpy(), shape_param_names=np.array([p[0] for p in family.PARAMS]),
                **extra)
    return paths, seconds


@click.command()
@click.option('--outdir', required=True, type=click.Path(file_okay=False), help='Output folder (created).')
@click.option('--family', type=click.Choice(sorted(FAMILIES)), default='car', show_default=True)
@click.option('--num', type=click.IntRange(min=1), default=1000, show_default=True, help='Number of images.')
@click.option('--resolution', type=click.IntRange(min=4), default=64, show_default=True, help='Image side (px).')
@click.option('--pose', 'pose_spec', default='gaussian', show_default=True,
              help="Pose law, e.g. 'gaussian:h_std=0.3,v_std=0.15', 'uniform:h_min=0,h_max=2pi', "
                   "'mix:pi/2:0.2:0.5,0:0.2:0.25,pi:0.2:0.25' (h_mean:h_std:weight[:v_mean:v_std]).")
@click.option('--seed', type=int, default=0, show_default=True)
@click.option('--fov', type=cli.Float(min=0.1, max=179), default=30.0, show_default=True,
              help="Degrees, EG3D's formula (f = 1/(tan(fov*3.14159/360)*1.414)): 30 -> f = 2.64.")
@click.option('--radius', type=cli.Float(min=0.9, max=1e3), default=2.7, show_default=True,
              help='Camera distance from the origin (world units; objects fit in [-0.5, 0.5]^3).')
@click.option('--supersample', type=click.IntRange(min=1), default=2, show_default=True,
              help='Anti-aliasing: s x s rays per pixel.')
@click.option('--bg-jitter', type=cli.UNIT_FLOAT, default=0.0, show_default=True,
              help='Per-image background grey level in [1 - jitter, 1] (0: pure white).')
@click.option('--light', 'light_spec', default='fixed', show_default=True,
              help="Lighting: 'fixed' (symmetric fixed lights) or 'mvn[:KEY=VALUE,...]', a light "
                   "l = (a, d, l_x, l_y) per image from a Gaussian, pure Lambertian (SEEDS_SPEC §6.4); "
                   "l and the normals go into the npz.")
@click.option('--name', default=None, help='File name prefix [default: FAMILY + RESOLUTION, e.g. car64].')
@click.option('--threads', type=click.IntRange(min=0), default=1, show_default=True,
              help='torch CPU threads (0: torch default). The renderer runs many small ops; on a '
                   'shared 2-core box 2 threads were measured up to 10x slower than 1 under load.')
def main(outdir, family, num, resolution, pose_spec, seed, fov, radius, supersample, bg_jitter, light_spec, name,
         threads):
    """Make a synthetic dataset of procedural cars or heads with known poses and depth.

    \b
    Writes into OUTDIR (atomically: all three files, or none):
      NAME_labeled.zip    PNGs + dataset.json with the true 25-float labels
      NAME_unlabeled.zip  the same PNGs; dataset.json labels null
      NAME_gt.npz         pose (h, v), cam2world, intrinsics, depth, mask, ...

    \b
    --pose grammar (angles in radians; VALUE is a float or a multiple
    of pi such as pi/2, 3pi/4, 0.5*pi):
      gaussian[:KEY=VALUE,...]  h_mean (pi/2) h_std (0.3) v_mean (pi/2) v_std (0.15)
      uniform[:KEY=VALUE,...]   h_min (0) h_max (2pi) v_min (pi/2-0.3) v_max (pi/2+0.3)
      mix:MODE,MODE,...         MODE = h_mean:h_std:weight[:v_mean:v_std]
    h = pi/2 is the frontal view (camera on +z), h = pi the camera on +x;
    v = pi/2 is the equator, v < pi/2 looks from above.

    \b
    --light grammar (SEEDS_SPEC §4.3: k_a = a/2 + 1/2, k_d = d/2 + 1/2,
    L = normalize(l_x, l_y, 1) in the world frame, colour = albedo *
    (k_a + k_d max(0, n.L)), no sky factor):
      fixed                     the fixed symmetric lights (default)
      mvn[:KEY=VALUE,...]       l ~ N(mean, diag(std^2)) per image; KEYS:
                                a_mean (-0.4) d_mean (0.2) lx_mean (0)
                                ly_mean (0.3) a_std (0.1) d_std (0.1)
                                lx_std (0.5) ly_std (0.3)
    """
    for option, parse, spec in (('--pose', parse_pose_spec, pose_spec), ('--light', parse_light_spec, light_spec)):
        try:
            parse(spec)
        except ValueError as err:
            raise click.ClickException(f'{option}: {err}') from None
    name = name or f'{family}{resolution}'
    if threads > 0:
        torch.set_num_threads(threads)
    cli.prepare_output(outdir, '--outdir', is_dir=True)   # make_dataset makes the folder (or removes it)
    with cli.output_errors('--outdir', outdir):
        paths, seconds = make_dataset(outdir, name, family, num, resolution, pose_spec, seed, fov, radius,
                                      supersample, bg_jitter, light_spec=light_spec)
    click.echo(f'rendered {num} images of {resolution} px (supersample {supersample}) in {seconds:.1f} s: '
               f'{num / max(seconds, 1e-9):.1f} img/s')
    for p in paths:
        click.echo(f'wrote {p}')


if __name__ == '__main__':
    main()
