"""Per-image forward time of the tri-plane generator, with its breakdown.

    python bench/bench_generator.py                 # tiny + small configs, batch 1 and 4
    python bench/bench_generator.py --smoke         # one tiny iteration (CI)
    python bench/bench_generator.py --configs ffhq  # EG3D/PoF3D FFHQ-256 size (slow on CPU)

Prints one row per (config, batch): seconds per image for mapping, plane backbone,
rendering (rays + sampling + decoder + compositing), super-resolution, the whole no-grad
forward, and forward+backward of image.sum(); plus the parameter count.
Timings are medians over --repeats runs after one warm-up.
"""

import argparse
import math
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training.cameras import Camera, FOV_to_intrinsics, LookAtPose  # noqa: E402
from training.generator import TriPlaneGenerator  # noqa: E402

_RENDER = dict(ray_start=2.25, ray_end=3.3, box_warp=1, avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0])

CONFIGS = {
    # 32 px, no SR: the scale of the CPU preset.
    'tiny': dict(img=32, nr=32, planes=32, plane_ch=16, base=1024, cmax=64, zdim=64, samples=(12, 12), sr=None),
    # SPEC's "small" reference point, with a 64-px plane backbone instead of 256.
    'small': dict(img=64, nr=32, planes=64, plane_ch=32, base=8192, cmax=256, zdim=512, samples=(24, 24),
                  sr='SuperresolutionHybrid2X'),
    # FFHQ-256 as in the paper (NR 64, 48+48 samples, SR4X, 256-px planes).
    'ffhq': dict(img=256, nr=64, planes=256, plane_ch=32, base=32768, cmax=512, zdim=512, samples=(48, 48),
                 sr='SuperresolutionHybrid4X'),
}


def build(cfg):
    rk = dict(_RENDER, depth_resolution=cfg['samples'][0], depth_resolution_importance=cfg['samples'][1],
              superresolution_module=cfg['sr'])
    G = TriPlaneGenerator(z_dim=cfg['zdim'], c_dim=25, w_dim=cfg['zdim'], img_resolution=cfg['img'],
                          img_channels=3, rendering_kwargs=rk, plane_resolution=cfg['planes'],
                          plane_channels=cfg['plane_ch'], neural_rendering_resolution=cfg['nr'],
                          channel_base=cfg['base'], channel_max=cfg['cmax'], num_fp16_res=0,
                          mapping_kwargs=dict(num_layers=2))
    return G.eval().requires_grad_(False)


def frontal_label(batch):
    c2w = LookAtPose(torch.full([batch, 1], math.pi / 2), torch.full([batch, 1], math.pi / 2),
                     torch.zeros(3), 2.7)
    K = FOV_to_intrinsics(18.837).unsqueeze(0).repeat(batch, 1, 1)
    return Camera(c2w, K).to_label()


def timed(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(G, batch, repeats):
    """Seconds per image for each stage and for the whole forward / forward+backward."""
    z = torch.randn(batch, G.z_dim)
    c = frontal_label(batch)
    R = G.neural_rendering_resolution
    with torch.no_grad():
        ws = G.mapping(z, c)
        planes = G._planes(ws, False, 'const', {})
        pose = G.pose(z, c)
        feats, _ = G._render(planes, pose.cam2world, Camera.from_label(c).intrinsics, R, None)
        t = {
            'mapping': timed(lambda: G.mapping(z, c), repeats),
            'backbone': timed(lambda: G._planes(ws, False, 'const', {}), repeats),
            'render': timed(lambda: G._render(planes, pose.cam2world, Camera.from_label(c).intrinsics, R, None),
                            repeats),
            'sr': (timed(lambda: G.superresolution(feats[:, :3], feats, ws, noise_mode='none'), repeats)
                   if G.superresolution is not None else 0.0),
            'forward': timed(lambda: G(z, c, noise_mode='const'), repeats),
        }
    G.requires_grad_(True)
    t['fwd+bwd'] = timed(lambda: G(z, c, noise_mode='const')['image'].sum().backward(), repeats)
    G.requires_grad_(False)
    return {k: v / batch for k, v in t.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--configs', default='tiny,small', help='comma list of ' + ','.join(CONFIGS))
    parser.add_argument('--batches', default='1,4')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=0, help='torch intra-op threads (0 = default)')
    parser.add_argument('--smoke', action='store_true', help='one tiny batch-1 run (timings meaningless)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs, batches, repeats = args.configs.split(','), [int(b) for b in args.batches.split(',')], args.repeats
    if args.smoke:
        configs, batches, repeats = ['tiny'], [1], 1
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        parser.error(f'unknown config(s) {unknown}; choose from {list(CONFIGS)}')

    torch.manual_seed(0)
    cols = ['mapping', 'backbone', 'render', 'sr', 'forward', 'fwd+bwd']
    print(f'device cpu, torch {torch.__version__}, threads {torch.get_num_threads()}; seconds per image')
    print('| config | batch | params | ' + ' | '.join(cols) + ' |')
    print('|' + '---|' * (3 + len(cols)))
    for name in configs:
        G = build(CONFIGS[name])
        params = sum(p.numel() for p in G.parameters())
        for batch in batches:
            t = measure(G, batch, repeats)
            print(f'| {name} | {batch} | {params / 1e6:.2f}M | ' + ' | '.join(f'{t[k]:.4f}' for k in cols) + ' |')
    if args.smoke:
        print('(smoke run: one repeat, timings are not meaningful)')


if __name__ == '__main__':
    main()
