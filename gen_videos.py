"""Orbit videos of a grid of seeds around G's learned pose distribution.

    python gen_videos.py --network network-snapshot-025000.pkl --seeds 0-3 --grid 2x2 \\
        --frames 120 --output out/orbit.mp4 --depth

The orbit is centred on the *learned* mean pose: (h_mu, v_mu) and their standard deviations
are estimated from G.pose of --pose-samples latents (z = RandomState(0).randn; raw h, v in
radians). Frame t of T renders every seed from the look-at camera at
    h = h_mu + yaw_range * sin(2 pi t / T),    v = v_mu + pitch_range * cos(2 pi t / T)
(G's radius and pivot; v clamped to [1e-5, pi - 1e-5]); yaw_range defaults to 2 std(h) and
pitch_range to 1 std(v). For an EG3D generator (no learned pose) the centre is (h_mean, pi/2)
and the defaults 0.3 / 0.1 rad. The seeds fill the grid row by row (COLSxROWS, e.g. 2x2); ws,
noise and the renderer's random draws are the same in every frame, so only the camera moves.

Relighting (--light-path orbit, a generator with shading 'lambertian', ShadeGAN SEEDS_SPEC §4.3):
the camera stays at the orbit's centre and the light moves instead. Frame t lights every seed with
    l = (a, d, r sin(2 pi t / T), r cos(2 pi t / T)),   L = normalize(l_x, l_y, 1) (world frame)
so L circles the +z axis at atan(r) from it (r = --light-range, 1: 45 degrees); a, d (k_a = a/2 +
1/2, k_d = d/2 + 1/2) are the means of G's light source (ShadeGAN's relighting demo varies l_x
with a, d fixed the same way, §4.3).

Output: an H.264 mp4 (imageio + imageio-ffmpeg, written atomically). Without ffmpeg the video
is written as a GIF beside it (same stem) with a one-line warning. --depth writes
`<stem>_depth.mp4` too: the neural render's ray distance mapped linearly from
[ray_start, ray_end] to white..black (near = bright), at the render resolution.
"""

import contextlib
import math
import os
import re

import click
import imageio
import numpy as np
import torch
from tqdm import tqdm

from dnnlib import cli
from gen_samples_pose import (
    DATASETS, IntRanges, camera_at, dataset_intrinsics, frontal_label, load_G, pick_device,
)
from training import shapes


def parse_grid(ctx, param, value):
    m = re.fullmatch(r'\s*(\d+)\s*x\s*(\d+)\s*', str(value))
    if m is None or int(m.group(1)) < 1 or int(m.group(2)) < 1:
        raise click.BadParameter(f'{value!r} is not COLSxROWS, e.g. 2x2')
    return int(m.group(1)), int(m.group(2))


def ffmpeg_available() -> bool:
    try:
        import imageio_ffmpeg
        return os.path.isfile(imageio_ffmpeg.get_ffmpeg_exe())
    except Exception:   # not installed, or no binary for this platform
        return False


@torch.no_grad()
def learned_pose_stats(G, c, num, batch=250):
    """(h_mu, h_std, v_mu, v_std) of G.pose over `num` latents, or None without a learned pose."""
    z_all = np.random.RandomState(0).randn(num, G.z_dim)
    poses = []
    for start in range(0, num, batch):
        z = torch.from_numpy(z_all[start:start + batch]).to(c.device, torch.float32)
        out = G.pose(z, c.expand(z.shape[0], -1), generator=torch.Generator(c.device).manual_seed(start))
        if out.pose is None:
            return None
        poses.append(out.pose.cpu().numpy())
    poses = np.concatenate(poses)
    return (float(poses[:, 0].mean()), float(poses[:, 0].std()), float(poses[:, 1].mean()),
            float(poses[:, 1].std()))


def orbit(center, yaw_range, pitch_range, frames):
    """[(h, v)] of the frames (module docstring)."""
    h_mu, v_mu = center
    return [(h_mu + yaw_range * math.sin(2 * math.pi * t / frames),
             v_mu + pitch_range * math.cos(2 * math.pi * t / frames)) for t in range(frames)]


def light_strengths(G):
    """(a, d) of G's light source: the law's means (mvn) or the constant light's (fixed)."""
    source = G.light_source
    return tuple(float(x) for x in (source.mean if hasattr(source, 'mean') else source.light)[:2])


def light_orbit(strengths, light_range, frames):
    """[(a, d, l_x, l_y)] of the frames of --light-path orbit (module docstring)."""
    a, d = strengths
    return [(a, d, light_range * math.sin(2 * math.pi * t / frames), light_range * math.cos(2 * math.pi * t / frames))
            for t in range(frames)]


def check_light_path(G, light_path):
    """A one-line usage error for relighting a generator without a shading stage."""
    if light_path != 'none' and getattr(G, 'shading', 'none') == 'none':
        raise click.UsageError(f"--light-path {light_path} relights a generator with shading 'lambertian' "
                               f'(--cfg shadegan); this network has no shading stage')


def views(G, center, opts, frames):
    """[(h, v, light or None)] per frame: the camera orbit, or the fixed centre camera under a
    moving light (--light-path orbit)."""
    if opts['light_path'] == 'none':
        return [(h, v, None) for h, v in orbit(center, opts['yaw_range'], opts['pitch_range'], frames)]
    return [(*center, light) for light in light_orbit(light_strengths(G), opts['light_range'], frames)]


def tile(images: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """[N, H, W, C] (N = cols*rows) -> [rows*H, cols*W, C]."""
    n, h, w, ch = images.shape
    return images.reshape(rows, cols, h, w, ch).transpose(0, 2, 1, 3, 4).reshape(rows * h, cols * w, ch)


def depth_frames(depth: torch.Tensor, near, far) -> np.ndarray:
    """depth [N, 1, R, R] -> uint8 [N, R, R, 3], near = 255, far = 0."""
    x = ((far - depth) / (far - near)).clamp(0, 1) * 255
    return x.round().to(torch.uint8).repeat(1, 3, 1, 1).permute(0, 2, 3, 1).cpu().numpy()


class _Video:
    def __init__(self, path, writer):
        self.path, self.writer = path, writer

    def append(self, frame):
        self.writer.append_data(frame)


@contextlib.contextmanager
def open_video(path, fps):
    """A _Video writing `path` (mp4 via ffmpeg; a GIF with the same stem when ffmpeg is
    unavailable), atomically: nothing appears under the name unless the block succeeds."""
    if not ffmpeg_available():
        path = os.path.splitext(path)[0] + '.gif'
        click.echo(f'warning: ffmpeg (imageio-ffmpeg) is unavailable; writing {path} instead', err=True)
    with shapes.atomic_output(path) as tmp:
        if path.endswith('.gif'):
            writer = imageio.get_writer(tmp, mode='I', duration=1000 / fps, loop=0)
        else:
            writer = imageio.get_writer(tmp, fps=fps, codec='libx264', macro_block_size=2, quality=8)
        try:
            yield _Video(path, writer)
        finally:
            writer.close()


def render_video(G, ws, c, frames, grid, writers, opts):
    """Render every frame of `frames` [(h, v, light or None)] (`views`); writers = (rgb
    VideoWriter, depth VideoWriter or None)."""
    n = ws.shape[0]
    rk = G.rendering_kwargs
    device = ws.device
    for h, v, light in tqdm(frames, desc='frames', unit='frame'):
        cam = camera_at(G, h, v, device).expand(n, -1, -1)
        light = None if light is None else torch.tensor(light, device=device).expand(n, 4)
        out = G.synthesis(ws, c.expand(n, -1), cam2world=cam, noise_mode=opts['noise_mode'], light=light,
                          generator=torch.Generator(device).manual_seed(0))
        rgb = (out['image'].permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu().numpy()
        writers[0].append(tile(rgb, *grid))
        if writers[1] is not None:
            near = rk['ray_start'] if rk['ray_start'] != 'auto' else float(out['image_depth'].min())
            far = rk['ray_end'] if rk['ray_end'] != 'auto' else float(out['image_depth'].max())
            writers[1].append(tile(depth_frames(out['image_depth'], float(near), float(far)), *grid))


@click.command()
@click.option('--network', required=True, help='Network pickle (path or URL); G_ema is used.')
@click.option('--seeds', type=IntRanges(), default='0-3', show_default=True, help='Seeds; COLS*ROWS of them.')
@click.option('--grid', type=str, callback=parse_grid, default='2x2', show_default=True, help='COLSxROWS.')
@click.option('--frames', type=click.IntRange(min=1), default=120, show_default=True, help='Frames per video.')
@click.option('--fps', type=click.IntRange(min=1), default=30, show_default=True)
@click.option('--trunc', 'truncation_psi', type=cli.FLOAT, default=1, show_default=True)
@click.option('--trunc-cutoff', 'truncation_cutoff', type=int, default=14, show_default=True)
@click.option('--yaw-range', type=cli.NONNEG_FLOAT, default=None,
              help='Yaw amplitude, radians [default: 2 std of learned h].')
@click.option('--pitch-range', type=cli.NONNEG_FLOAT, default=None,
              help='v amplitude, radians [default: 1 std of learned v].')
@click.option('--pose-samples', type=click.IntRange(min=2), default=1000, show_default=True)
@click.option('--dataset', type=click.Choice(DATASETS), default='ffhq', show_default=True, help='Intrinsics.')
@click.option('--fov-deg', type=cli.FOV_DEG, default=18.837, show_default=True)
@click.option('--noise-mode', type=click.Choice(['const', 'random', 'none']), default='const', show_default=True)
@click.option('--light-path', type=click.Choice(['none', 'orbit']), default='none', show_default=True,
              help="orbit: relight (shading 'lambertian'): fixed camera at the centre, the light circles.")
@click.option('--light-range', type=cli.NONNEG_FLOAT, default=1.0, show_default=True,
              help='--light-path orbit: radius r of (l_x, l_y); the light is atan(r) off the +z axis.')
@cli.bool_flag('--depth', help='Also write <stem>_depth.mp4.')
@click.option('--output', required=True, help='Output video path (.mp4).')
@cli.ignored_option('--reload_modules', why='networks are always rebuilt from this code by legacy.py')
@click.option('--device', default=None, help='torch device (default: cuda if available, else cpu).')
def main(network, seeds, grid, frames, fps, truncation_psi, truncation_cutoff, yaw_range, pitch_range, pose_samples,
         dataset, fov_deg, noise_mode, light_path, light_range, depth, output, device):
    """Orbit videos of a grid of seeds around the learned pose distribution."""
    if len(seeds) != grid[0] * grid[1]:
        raise click.BadParameter(f'{len(seeds)} seeds for a {grid[0]}x{grid[1]} grid (need {grid[0] * grid[1]})',
                                 param_hint="'--seeds'")
    cli.prepare_output(output, '--output', extensions=('.mp4', '.gif'))
    device = pick_device(device)
    G = load_G(network, device)
    check_light_path(G, light_path)
    c = frontal_label(G, dataset_intrinsics(dataset, fov_deg), device)
    with torch.no_grad():
        stats = learned_pose_stats(G, c, pose_samples)
        if stats is None:
            stats = (G.rendering_kwargs['h_mean'], 0.15, math.pi / 2, 0.1)
        yaw_range = 2 * stats[1] if yaw_range is None else yaw_range
        pitch_range = stats[3] if pitch_range is None else pitch_range
        click.echo(f'learned pose: h {stats[0]:.4f} +- {stats[1]:.4f}, v {stats[2]:.4f} +- {stats[3]:.4f} rad; '
                   f'orbit yaw +-{yaw_range:.4f}, pitch +-{pitch_range:.4f}')
        z = torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])).to(device,
                                                                                                    torch.float32)
        ws = G.mapping(z, c.expand(len(seeds), -1), truncation_psi=truncation_psi,
                       truncation_cutoff=truncation_cutoff)
        try:
            with contextlib.ExitStack() as stack:
                writers = [stack.enter_context(open_video(output, fps)), None]
                if depth:
                    stem, ext = os.path.splitext(output)
                    writers[1] = stack.enter_context(open_video(f'{stem}_depth{ext}', fps))
                frame_views = views(G, (stats[0], stats[2]), dict(light_path=light_path, light_range=light_range,
                                                                  yaw_range=yaw_range, pitch_range=pitch_range), frames)
                render_video(G, ws, c, frame_views, grid, writers, dict(noise_mode=noise_mode))
        except OSError as e:
            raise click.BadParameter(f'{output}: cannot write the video ({e})', param_hint="'--output'") from e
    click.echo('wrote ' + ', '.join(w.path for w in writers if w is not None))


if __name__ == '__main__':
    main()
