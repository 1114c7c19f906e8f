"""The "pose distribution" figure: G's learned poses beside the dataset's (and D's estimates).

    python plot_pose_distribution.py --network network-snapshot-025000.pkl --data ffhq.zip \\
        --num 10000 --with-d --out out/pose_distribution.png

Sources, each as (h, v) in radians (SPEC §3.2 convention):
- generator: `--num` latents z = RandomState(--seed).randn; the camera G renders for each
  (G.pose(z).cam2world, after the safety clamp) converted back with cam2world_to_pose, so it is
  directly comparable with camera labels;
- dataset: the `<stem>_gt.npz` sidecar's 'pose' [N, 2] when there is one (synthetic data; or
  `--gt FILE`), else the camera labels of dataset.json (cam2world -> (h, v)); datasets whose
  labels carry only intrinsics have none;
- discriminator (`--with-d`): D's pose head on the real images (image + its bilinear
  downsample to the neural rendering resolution as image_raw, SPEC §5.1), raw (h, v).
h is wrapped into [h_mean - pi, h_mean + pi) (h_mean: G's frontal yaw) for every source.

Figure (PNG, matplotlib Agg): histograms of h and of v (density, shared bins), and the 2-D
joint histogram of the generator and of the dataset. Beside it, `<out stem>.json` holds the
counts: {'h': {'edges', 'counts': {source: [...]}}, 'v': {...}, 'joint': {'h_edges',
'v_edges', 'counts': {source: [[...]]}}, 'stats': {source: {h_mean, h_std, v_mean, v_std, n}}}.
Bins span the pooled range of all sources, so each source's counts sum to its sample count.
"""

import io
import os

import click
import numpy as np
import torch

from dnnlib import cli
from gen_samples_pose import DATASETS, dataset_intrinsics, frontal_label, pick_device, save_bytes, save_json
from metrics.pose_metrics import wrap_around
from training.cameras import cam2world_to_pose
from training.dataset import ImageFolderDataset
from training.dataset_gt import load_ground_truth


def wrap_h(h, center):
    """h into [center - pi, center + pi)."""
    return wrap_around(h, center)


@torch.no_grad()
def generator_poses(G, c, num, seed, batch):
    """[num, 2] (h, v) of the cameras G renders for RandomState(seed) latents."""
    z_all = np.random.RandomState(seed).randn(num, G.z_dim)
    out = []
    for start in range(0, num, batch):
        z = torch.from_numpy(z_all[start:start + batch]).to(c.device, torch.float32)
        cam = G.pose(z, c.expand(z.shape[0], -1), generator=torch.Generator(c.device).manual_seed(start)).cam2world
        h, v, _ = cam2world_to_pose(cam)
        out.append(torch.cat([h, v], dim=1).cpu().numpy())
    return np.concatenate(out)


def dataset_poses(data, gt):
    """[N, 2] (h, v) of the dataset (module docstring), or None when it has no poses."""
    truth = load_ground_truth(gt) if gt is not None else (load_ground_truth(data) if data is not None else None)
    if truth is not None and 'pose' in truth:
        pose = np.asarray(truth['pose'], np.float64)
        if pose.ndim != 2 or pose.shape[1] != 2:
            raise ValueError(f"{gt or data}: ground-truth 'pose' must be [N, 2] (h, v), got {list(pose.shape)}")
        return pose
    if data is None:
        return None
    labels = ImageFolderDataset(data).get_pose_labels()
    if labels is None:
        return None
    cam2world = torch.from_numpy(labels[:, :16].reshape(-1, 4, 4).astype(np.float64))
    if not (torch.linalg.vector_norm(cam2world[:, :3, 3], dim=1) > 1e-6).all():
        return None      # intrinsics-only labels (create_label_fov): no camera positions
    h, v, _ = cam2world_to_pose(cam2world)
    return torch.cat([h, v], dim=1).numpy()


def mbstd_group(D):
    """D's minibatch-stddev group size (1 when it has none)."""
    mbstd = getattr(D.b4, 'mbstd', None)
    return int(mbstd.group_size or 1) if mbstd is not None else 1


@torch.no_grad()
def discriminator_poses(D, data, raw_resolution, batch, max_images, device):
    """[N, 2] raw (h, v) D's pose head predicts for the dataset's real images.

    D's minibatch-stddev layer mixes statistics over groups of images (4 in every preset), so a
    prediction depends a little on its group, as in training. Batches are a multiple of the
    group size; the last one is filled up with images from the start and those rows dropped.
    """
    from training.dual_discriminator import filtered_resizing
    if D.pose_head is None:
        raise click.BadParameter('this discriminator has no pose head', param_hint="'--with-d'")
    dataset = ImageFolderDataset(data, resolution=D.img_resolution)
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    group = mbstd_group(D)
    batch = max(group, batch // group * group)
    out = []
    for start in range(0, n, batch):
        count = min(batch, n - start)
        rows = [(start + i) % n for i in range(-(-count // group) * group)]   # pad to a whole group
        img = torch.from_numpy(np.stack([dataset[i][0] for i in rows])).to(device, torch.float32) / 127.5 - 1
        if img.shape[1] != D.img_channels:
            raise click.BadParameter(f'{data}: images have {img.shape[1]} channels, D expects {D.img_channels}',
                                     param_hint="'--data'")
        raw = filtered_resizing(img, size=raw_resolution, f=D.resample_filter)
        out.append(D.pose_only({'image': img, 'image_raw': raw})[:count].cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def histograms(sources, bins):
    """Shared-bin 1-D (h, v) and 2-D histograms of {name: [N, 2]} -> the JSON dict."""
    pooled = np.concatenate(list(sources.values()))
    edges = []
    for k in range(2):
        lo, hi = float(pooled[:, k].min()), float(pooled[:, k].max())
        if hi - lo < 1e-6:
            lo, hi = lo - 0.5, hi + 0.5
        edges.append(np.linspace(lo, hi, bins + 1))
    result = {'h': {'edges': edges[0].tolist(), 'counts': {}}, 'v': {'edges': edges[1].tolist(), 'counts': {}},
              'joint': {'h_edges': edges[0].tolist(), 'v_edges': edges[1].tolist(), 'counts': {}}, 'stats': {}}
    for name, p in sources.items():
        result['h']['counts'][name] = np.histogram(p[:, 0], edges[0])[0].tolist()
        result['v']['counts'][name] = np.histogram(p[:, 1], edges[1])[0].tolist()
        result['joint']['counts'][name] = np.histogram2d(p[:, 0], p[:, 1], bins=edges)[0].astype(int).tolist()
        result['stats'][name] = dict(n=len(p), h_mean=float(p[:, 0].mean()), h_std=float(p[:, 0].std()),
                                     v_mean=float(p[:, 1].mean()), v_std=float(p[:, 1].std()))
    return result


def plot(hist, title) -> bytes:
    """The figure as PNG bytes."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    joint_names = [n for n in ('generator', 'dataset') if n in hist['joint']['counts']]
    fig, axes = plt.subplots(1, 2 + len(joint_names), figsize=(4.2 * (2 + len(joint_names)), 3.6))
    for ax, key, label in ((axes[0], 'h', 'h (yaw, rad)'), (axes[1], 'v', 'v (rad)')):
        edges = np.array(hist[key]['edges'])
        for name, counts in hist[key]['counts'].items():
            density = np.array(counts) / max(sum(counts), 1) / np.diff(edges)
            ax.stairs(density, edges, label=f'{name} (n={sum(counts)})')
        ax.set_xlabel(label)
        ax.set_ylabel('density')
        ax.legend(fontsize=7)
    for ax, name in zip(axes[2:], joint_names):
        counts = np.array(hist['joint']['counts'][name], dtype=np.float64)
        extent = [hist['joint']['h_edges'][0], hist['joint']['h_edges'][-1],
                  hist['joint']['v_edges'][0], hist['joint']['v_edges'][-1]]
        ax.imshow(counts.T, origin='lower', extent=extent, aspect='auto', cmap='viridis')
        ax.set_xlabel('h (rad)')
        ax.set_ylabel('v (rad)')
        ax.set_title(f'{name}: joint (h, v)')
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format='png', dpi=100)
    plt.close(fig)
    return buf.getvalue()


def load_networks(network, with_d, device):
    """(G_ema, D or None) from one read of the pickle; a click error naming --network."""
    import legacy
    try:
        nets = legacy.load_network(network, ('G_ema', 'D') if with_d else ('G_ema',), device)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--network'") from e
    return nets[0], (nets[1] if with_d else None)


@click.command()
@click.option('--network', required=True, help='Network pickle (path or URL).')
@click.option('--data', default=None, help='Dataset zip/folder (camera labels, images for --with-d).')
@click.option('--gt', default=None, help='Ground-truth npz with pose [N, 2] [default: <data stem>_gt.npz].')
@click.option('--num', type=click.IntRange(min=1), default=10000, show_default=True, help='Generator samples.')
@click.option('--seed', type=int, default=0, show_default=True)
@click.option('--bins', type=click.IntRange(min=1), default=40, show_default=True)
@click.option('--batch', type=click.IntRange(min=1), default=256, show_default=True)
@cli.bool_flag('--with-d', 'with_d', help="Add D's pose estimates on the real images.")
@click.option('--max-images', type=click.IntRange(min=1), default=None, help='Cap on real images for --with-d.')
@click.option('--dataset', type=click.Choice(DATASETS), default='ffhq', show_default=True, help='Intrinsics.')
@click.option('--fov-deg', type=cli.FOV_DEG, default=18.837, show_default=True)
@click.option('--out', 'out_path', required=True, help='Output PNG; the JSON goes beside it.')
@click.option('--device', default=None, help='torch device (default: cuda if available, else cpu).')
def main(network, data, gt, num, seed, bins, batch, with_d, max_images, dataset, fov_deg, out_path, device):
    """Plot G's learned pose distribution beside the dataset's."""
    for opt, path in (('--data', data), ('--gt', gt)):
        if path is not None and not os.path.exists(path):
            raise click.BadParameter(f'{path}: no such file or directory', param_hint=f"'{opt}'")
    if with_d and data is None:
        raise click.BadParameter('--with-d needs --data (the real images)', param_hint="'--with-d'")
    cli.prepare_output(out_path, '--out', extensions=('.png',))
    device = pick_device(device)
    G, D = load_networks(network, with_d, device)
    center = float(G.rendering_kwargs['h_mean'])
    c = frontal_label(G, dataset_intrinsics(dataset, fov_deg), device)
    sources = {'generator': generator_poses(G, c, num, seed, batch)}
    try:
        real = dataset_poses(data, gt)
    except (OSError, ValueError) as e:
        raise click.BadParameter(' '.join(str(e).split()), param_hint="'--data'") from e
    if real is not None:
        sources['dataset'] = real
    if with_d:
        sources['discriminator'] = discriminator_poses(D, data, G.neural_rendering_resolution,
                                                       batch, max_images, device)
    sources = {k: np.stack([wrap_h(p[:, 0], center), p[:, 1]], axis=1) for k, p in sources.items()}
    hist = histograms(sources, bins)
    hist.update(network=network, data=data, num_samples=num, h_wrap_center=center, units='radians')
    with cli.output_errors('--out', out_path):
        save_bytes(out_path, plot(hist, f'{os.path.basename(network)}: pose distribution'))
        save_json(os.path.splitext(out_path)[0] + '.json', hist)
    for name, s in hist['stats'].items():
        click.echo(f'{name:>13}: n {s["n"]:6d}  h {s["h_mean"]:.4f} +- {s["h_std"]:.4f}  '
                   f'v {s["v_mean"]:.4f} +- {s["v_std"]:.4f}')


if __name__ == '__main__':
    main()
