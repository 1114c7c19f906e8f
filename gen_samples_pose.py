"""Images, learned poses, depth maps and shapes from a network pickle (SPEC §9).

    python gen_samples_pose.py --network network-snapshot-025000.pkl --seeds 0-3,7 --trunc 0.7 \\
        --outdir out --shapes --shape-res 128 --shape-format both --yaws -30,0,30

For each seed, z = RandomState(seed).randn(1, z_dim); the image is rendered at G's *own* pose,
the camera its pose learner gives z (from the untruncated w: truncation never changes the
pose, SPEC §12.5). Files in --outdir:
  seed{seed:04d}.png              RGB, uint8 = clamp(image*127.5 + 128)
  seed{seed:05d}_pose.npy         float32 [1, 4, 4] cam2world of that camera (the reference's file,
                                  5-digit name kept)
  seed{seed:04d}_pose.json        h, v, phi = arccos(1 - 2v/pi) in radians and degrees (h, v raw as
                                  the pose learner gives them; phi from v clamped to [1e-5, pi-1e-5]),
                                  radius, pivot, cam2world
  seed{seed:04d}_depth.npy        float32 [R, R]: the neural render's ray distance (image_depth)
  seed{seed:04d}_depth.png        16-bit grayscale of it: foreground pixels (finite depth < ray_end)
                                  min-max normalized, 0 = nearest, 65535 = farthest; background 65535
  seed{seed:04d}_yaw{Y}_pitch{P}.png   with --yaws / --pitches (every pair, Y/P in degrees)
  seed{seed:04d}.mrc / .ply       with --shapes (training/shapes.py: grid of side box_warp, raw
                                  field, border -1000, marching cubes at --shape-level): the density
                                  (tri-plane, pi-GAN; level 10) or GOF's occupancy logit (level
                                  logit(surface_level) = 0, the surface GOF renders)

--yaws / --pitches are offsets in degrees from the frontal pose (h, v) = (h_mean, pi/2): h =
h_mean + yaw, v = pi/2 + pitch (EG3D's convention: the pitch is added to v, the uniform-on-sphere
parameter, and a positive pitch moves the camera *below* the equator). h_mean is the pose
source's (pi/2 for FFHQ/cats, pi for ShapeNet). One list alone pairs with 0 for the other.

Intrinsics (--dataset, SPEC §9.2.1): ffhq, cats, synthetic: EG3D's FOV formula from --fov-deg
(a float; the reference's int option truncated 18.837 to 18, f = 4.465 instead of 4.263);
shapenetcars: f = 1.025390625. The conditioning label is the frontal look-at camera plus these
intrinsics; only the intrinsics matter for a learned pose. For an EG3D generator (pose source
'dataset') the image is rendered from that frontal camera instead.

--noise-mode defaults to 'const' (reproducible per seed; used for images and shapes alike). The
reference renders images with 'random' noise and shapes with 'const'.
At the end the max/min/median/mean of the recorded h and phi (pooled, as the reference prints
them) are printed, then per quantity.
"""

import io
import json
import math
import os
import re

import click
import numpy as np
import PIL.Image
import torch
from tqdm import tqdm

import legacy
from dnnlib import cli
from training import shapes
from training.cameras import Camera, FOV_to_intrinsics, LookAtPose, cam2world_to_pose, clamp_pose_v

SHAPENET_FOCAL = 1.025390625          # SPEC §3.3 / §9.2 step 1
DATASETS = ('ffhq', 'cats', 'shapenetcars', 'synthetic')


class IntRanges(click.ParamType):
    """'0-3,7' -> [0, 1, 2, 3, 7]."""
    name = 'ranges'

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        out = []
        for part in str(value).split(','):
            m = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
            if m is None or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
                self.fail(f'{value!r} is not a list of integers and ranges like 0-3,7', param, ctx)
            out += list(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
        return out


class FloatList(click.ParamType):
    """'-30,0,12.5' -> [-30.0, 0.0, 12.5]."""
    name = 'floats'

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        try:
            values = [float(x) for x in str(value).split(',')]
        except ValueError:
            self.fail(f'{value!r} is not a comma-separated list of numbers', param, ctx)
        if not all(math.isfinite(x) for x in values):
            self.fail(f'{value!r} holds a non-finite number', param, ctx)
        return values


def load_G(network, device):
    """G_ema of a pickle; a click error naming --network when it cannot be loaded."""
    try:
        return legacy.load_network(network, 'G_ema', device)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--network'") from e


def pick_device(device):
    return torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))


def dataset_intrinsics(dataset, fov_deg) -> torch.Tensor:
    """Normalized K [3, 3] for --dataset (SPEC §9.2 step 1)."""
    if dataset == 'shapenetcars':
        return torch.tensor([[SHAPENET_FOCAL, 0, 0.5], [0, SHAPENET_FOCAL, 0.5], [0, 0, 1]])
    return FOV_to_intrinsics(fov_deg)


def camera_at(G, h, v, device) -> torch.Tensor:
    """Look-at cam2world [1, 4, 4] at (h, v) radians with G's radius and pivot (v clamped)."""
    rk = G.rendering_kwargs
    h = torch.tensor([[float(h)]], device=device)
    v = clamp_pose_v(torch.tensor([[float(v)]], device=device))
    return LookAtPose(h, v, rk['avg_camera_pivot'], rk['avg_camera_radius'])


def frontal_label(G, K, device) -> torch.Tensor:
    """c [1, 25]: the frontal camera (h_mean, pi/2) and intrinsics K."""
    c2w = camera_at(G, G.rendering_kwargs['h_mean'], math.pi / 2, device)
    return Camera(c2w, K.to(device)[None]).to_label()


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """image [1, 3, H, W] in ~[-1, 1] -> uint8 [H, W, 3] (clamp(x*127.5 + 128), SPEC §9.2 step 8)."""
    return (image[0].permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()


def depth_to_uint16(depth: np.ndarray, far=None) -> np.ndarray:
    """depth [H, W] ray distance -> uint16: foreground (finite, < far) min-max normalized to
    0 (nearest) .. 65535 (farthest); background 65535."""
    fg = np.isfinite(depth)
    if far is not None:
        fg &= depth < far
    out = np.full(depth.shape, 65535, dtype=np.uint16)
    if fg.any():
        lo, hi = float(depth[fg].min()), float(depth[fg].max())
        scaled = (depth[fg] - lo) / (hi - lo) if hi > lo else np.zeros(int(fg.sum()))
        out[fg] = np.round(scaled * 65535).astype(np.uint16)
    return out


def save_png(path, array):
    buf = io.BytesIO()
    PIL.Image.fromarray(array).save(buf, format='PNG')
    save_bytes(path, buf.getvalue())


def save_npy(path, array):
    buf = io.BytesIO()
    np.save(buf, array)
    save_bytes(path, buf.getvalue())


def save_json(path, obj):
    save_bytes(path, (json.dumps(obj, indent=2) + '\n').encode())


def save_bytes(path, data: bytes):
    with shapes.atomic_output(path) as tmp, open(tmp, 'wb') as f:
        f.write(data)


def pose_record(seed, pose, c2w, G) -> dict:
    """The JSON of one seed's pose: raw h, v and phi (radians and degrees), camera."""
    h, v = (float(x) for x in pose)
    phi = math.acos(1 - 2 * float(clamp_pose_v(torch.tensor(v))) / math.pi)
    rk = G.rendering_kwargs
    rec = dict(seed=seed, h=h, v=v, phi=phi, h_deg=math.degrees(h), v_deg=math.degrees(v), phi_deg=math.degrees(phi),
               radius=float(rk['avg_camera_radius']), pivot=[float(x) for x in rk['avg_camera_pivot']],
               cam2world=c2w[0].tolist())
    return rec


def render(G, ws, c, c2w, opts, generator):
    return G.synthesis(ws, c, cam2world=c2w, noise_mode=opts['noise_mode'], generator=generator)


def generate_seed(G, seed, c, opts, device) -> dict:
    """Every file of one seed (see the module docstring); returns its pose record."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(device, torch.float32)
    gen = torch.Generator(device=device).manual_seed(seed)
    pose_out = G.pose(z, c, generator=gen)
    c2w = pose_out.cam2world
    pose = pose_out.pose[0] if pose_out.pose is not None else torch.cat(cam2world_to_pose(c2w)[:2], 1)[0]
    ws = G.mapping(z, c, truncation_psi=opts['truncation_psi'], truncation_cutoff=opts['truncation_cutoff'])
    out = render(G, ws, c, c2w, opts, gen)
    stem = os.path.join(opts['outdir'], f'seed{seed:04d}')
    save_png(stem + '.png', to_uint8(out['image']))
    save_npy(os.path.join(opts['outdir'], f'seed{seed:05d}_pose.npy'), c2w.cpu().numpy().astype(np.float32))
    record = pose_record(seed, pose.tolist(), c2w.cpu(), G)
    save_json(stem + '_pose.json', record)
    depth = out['image_depth'][0, 0].cpu().numpy().astype(np.float32)
    save_npy(stem + '_depth.npy', depth)
    far = G.rendering_kwargs['ray_end']
    save_png(stem + '_depth.png', depth_to_uint16(depth, None if far == 'auto' else float(far)))
    for yaw, pitch in opts['angles']:
        cam = camera_at(G, G.rendering_kwargs['h_mean'] + math.radians(yaw), math.pi / 2 + math.radians(pitch), device)
        img = render(G, ws, c, cam, opts, torch.Generator(device=device).manual_seed(seed))['image']
        save_png(f'{stem}_yaw{yaw:g}_pitch{pitch:g}.png', to_uint8(img))
    if opts['shapes']:
        info = shapes.export_shape(G, ws, stem, opts['shape_res'], opts['shape_formats'], opts['shape_level'],
                                   noise_mode=opts['noise_mode'])
        if info['faces'] == 0:
            tqdm.write(f'seed {seed}: the raw field never crosses --shape-level {opts["shape_level"]:g} '
                       f'(range {info["volume_range"]}); the .ply is empty')
    return record


def summarize(records) -> str:
    """The reference's printout: max/min/median/mean over the recorded h and phi (pooled),
    then per quantity."""
    hs = np.array([r['h'] for r in records])
    phis = np.array([r['phi'] for r in records])
    lines = []
    for name, x in (('h and phi pooled', np.concatenate([hs, phis])), ('h', hs), ('phi', phis)):
        lines.append(f'{name:>16}: max {x.max():.4f}  min {x.min():.4f}  median {np.median(x):.4f}  '
                     f'mean {x.mean():.4f}  (radians)')
    return '\n'.join(lines)


def angle_pairs(yaws, pitches):
    if yaws is None and pitches is None:
        return []
    return [(y, p) for y in (yaws or [0.0]) for p in (pitches or [0.0])]


@torch.no_grad()
def generate_all(G, seeds, c, opts, device) -> list:
    """generate_seed for every seed; when one fails (a full disk), the files it had already
    written are removed, so every seed in outdir has its complete set of files."""
    records = []
    for seed in tqdm(seeds, desc='seeds', unit='seed'):
        before = set(os.listdir(opts['outdir']))
        try:
            records.append(generate_seed(G, seed, c, opts, device))
        except BaseException:
            for name in set(os.listdir(opts['outdir'])) - before:
                os.remove(os.path.join(opts['outdir'], name))
            raise
    return records


@click.command()
@click.option('--network', 'network', required=True, help='Network pickle (path or URL); G_ema is used.')
@click.option('--seeds', type=IntRanges(), required=True, help='Seeds, e.g. 0-3,7.')
@click.option('--trunc', 'truncation_psi', type=cli.FLOAT, default=1, show_default=True, help='Truncation psi.')
@click.option('--trunc-cutoff', 'truncation_cutoff', type=int, default=14, show_default=True,
              help='Truncate the first N ws (14 = all at 256^2).')
@click.option('--outdir', required=True, help='Output folder (created).')
@click.option('--dataset', type=click.Choice(DATASETS), default='ffhq', show_default=True,
              help='Intrinsics preset.')
@click.option('--fov-deg', type=cli.FOV_DEG, default=18.837, show_default=True,
              help='FOV for ffhq/cats/synthetic (EG3D formula).')
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@cli.bool_flag('--shapes', 'do_shapes', help='Also export the density volume / mesh (--shapes, --shapes true|false).')
@click.option('--shape-res', type=click.IntRange(min=2), default=512, show_default=True, help='Grid N.')
@click.option('--shape-format', type=click.Choice(['.mrc', '.ply', 'both']), default='.mrc', show_default=True)
@click.option('--shape-level', type=cli.FLOAT, default=None,
              help=f'Iso level of the .ply surface in the raw field [default: {shapes.DEFAULT_LEVEL:g} (density); '
                   f'logit of the surface level (0) for an occupancy generator].')
@click.option('--yaws', type=FloatList(), default=None, help='Extra views: yaw offsets in degrees, e.g. -30,0,30.')
@click.option('--pitches', type=FloatList(), default=None, help='Extra views: pitch offsets in degrees.')
@cli.ignored_option('--reload_modules', why='networks are always rebuilt from this code by legacy.py')
@cli.ignored_option('--class', 'class_idx', why='unused by PoF3D')
@cli.ignored_option('--self_pose', why='unused by PoF3D; the learned pose is always used')
@click.option('--device', default=None, help='torch device (default: cuda if available, else cpu).')
def main(network, seeds, truncation_psi, truncation_cutoff, outdir, dataset, fov_deg, noise_mode, do_shapes,
         shape_res, shape_format, shape_level, yaws, pitches, device):
    """Generate images, poses, depth maps (and shapes) at G's learned poses."""
    device = pick_device(device)
    G = load_G(network, device)
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as e:
        raise click.BadParameter(f'{outdir}: cannot create the folder ({e.strerror})', param_hint="'--outdir'") from e
    opts = dict(outdir=outdir, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                noise_mode=noise_mode, angles=angle_pairs(yaws, pitches), shapes=do_shapes, shape_res=shape_res,
                shape_formats=('.mrc', '.ply') if shape_format == 'both' else (shape_format,),
                shape_level=shapes.surface_level(G) if shape_level is None else shape_level)
    c = frontal_label(G, dataset_intrinsics(dataset, fov_deg), device)
    with cli.output_errors('--outdir', outdir):   # e.g. a full disk: one line
        records = generate_all(G, seeds, c, opts, device)
    print(summarize(records))



if __name__ == '__main__':
    main()
