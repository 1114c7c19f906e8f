"""Tri-plane rendering: the PyTorch stages vs the fused Triton kernel, time and memory.

    python bench/bench_renderer.py            # CUDA: torch vs triton table; CPU: torch only
    python bench/bench_renderer.py --smoke    # tiny sizes, a few seconds (CI)
    python bench/bench_renderer.py --batch 8  # any size: --res, --coarse, --fine, --channels, --plane-res

Rows (per call, median ms over repeats after a warm-up that also pays for Triton compilation):
  fine pass   `render_triplane` over S = coarse + fine sorted samples (the renderer's last pass)
  renderer    `ImportanceRenderer`: coarse pass, importance sampling, fine pass
forward is under no_grad; forward+backward differentiates sum(rgb^2) + sum(depth) w.r.t.
planes, decoder params and rays (the pose learner's path). On CUDA, "peak MB" is
torch.cuda.max_memory_allocated during forward+backward minus what was allocated before.

On CPU the kernel only runs under the Triton interpreter, whose timings mean nothing, so the
script times the PyTorch stages and prints activation memory instead: the PyTorch stages'
measured saved-for-backward bytes (autograd saved-tensor hooks, unique storages) and the
kernel's analytic extra bytes at the chosen size.
"""

import argparse
import os
import sys
import time
from typing import Callable, List

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from torch_utils import custom_ops  # noqa: E402
from training.rendering import fused as tr  # noqa: E402
from training.rendering.decoder import OSGDecoder  # noqa: E402
from training.rendering.field import TriplaneField  # noqa: E402
from training.rendering.options import RenderingOptions  # noqa: E402
from training.rendering.renderer import ImportanceRenderer  # noqa: E402

HIDDEN = 64  # OSG decoder hidden width
FULL = dict(batch=4, res=64, coarse=48, fine=48, channels=32, plane_res=256, out=32)
SMOKE = dict(batch=1, res=4, coarse=4, fine=4, channels=8, plane_res=16, out=8)


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_ms(fn: Callable[[], None], device, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    _sync(device)
    times: List[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) * 1e3)
    return sorted(times)[len(times) // 2]


def make_inputs(cfg, device):
    g = torch.Generator().manual_seed(0)
    N, R, C = cfg['batch'], cfg['res'], cfg['channels']
    planes = torch.randn(N, 3, C, cfg['plane_res'], cfg['plane_res'], generator=g).to(device)
    torch.manual_seed(0)
    decoder = OSGDecoder(C, {'decoder_lr_mul': 1, 'decoder_output_dim': cfg['out']}).to(device)
    M, S = R * R, cfg['coarse'] + cfg['fine']
    origins = (torch.randn(N, M, 3, generator=g) * 0.05 + torch.tensor([0.0, 0.0, 2.7])).to(device)
    target = (torch.rand(N, M, 3, generator=g) - 0.5) * 0.6
    dirs = torch.nn.functional.normalize(target.to(device) - origins, dim=-1)
    depths = torch.sort(torch.rand(N, M, S, 1, generator=g) * 1.05 + 2.25, dim=2).values.to(device)
    return planes, decoder, origins, dirs, depths


def bench_case(fwd, fwd_bwd, device, repeats):
    """(forward ms, forward+backward ms, peak MB of forward+backward or None on CPU)."""
    def f():
        with torch.no_grad():
            fwd()
    t_f = time_ms(f, device, repeats)
    t_fb = time_ms(fwd_bwd, device, repeats)
    peak = None
    if device.type == 'cuda':
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fwd_bwd()
        _sync(device)
        peak = (torch.cuda.max_memory_allocated(device) - base) / 2 ** 20
    return t_f, t_fb, peak


def cases(cfg, device, impl):
    planes, decoder, origins, dirs, depths = make_inputs(cfg, device)
    params = decoder.params()
    renderer = ImportanceRenderer(RenderingOptions(ray_start=2.25, ray_end=3.3, box_warp=1.0,
                                                   depth_resolution=cfg['coarse'],
                                                   depth_resolution_importance=cfg['fine'], impl=impl))

    def fine(grad):
        p = planes.detach().requires_grad_(grad)
        o, d = origins.detach().requires_grad_(grad), dirs.detach().requires_grad_(grad)
        w = [t.detach().requires_grad_(grad) for t in params]
        rgb, depth, _ = tr.render_triplane(p, 'correct', w, o, d, depths, 1.0, impl=impl)
        if grad:
            (rgb.square().sum() + depth.sum()).backward()

    def full(grad):
        p = planes.detach().requires_grad_(grad)
        o, d = origins.detach().requires_grad_(grad), dirs.detach().requires_grad_(grad)
        field = TriplaneField(p, decoder, 'correct', 1.0)
        out = renderer(field, o, d, generator=torch.Generator(device).manual_seed(0))
        if grad:
            (out.features.square().sum() + out.depth.sum()).backward()
    return {'fine pass': (lambda: fine(False), lambda: fine(True)),
            'renderer': (lambda: full(False), lambda: full(True))}


def kernel_bytes(cfg):
    """(kernel extra bytes, P points) of one render with gradients (fp32), P = batch x res^2 x
    (coarse + fine). The kernel stores nothing per sample: a channels-last copy of the planes,
    per-ray sums (CO + 3) and, in backward, per-program decoder-gradient partials (one program
    per 16 rays). Both paths hold a plane-gradient buffer of the planes' size in backward."""
    N, M, S, C, CO = cfg['batch'], cfg['res'] ** 2, cfg['coarse'] + cfg['fine'], cfg['channels'], cfg['out']
    params = HIDDEN * (C + 1) + (1 + CO) * (HIDDEN + 1)
    return (N * 3 * C * cfg['plane_res'] ** 2 + N * M * (CO + 3) + -(-N * M // 16) * params) * 4, N * M * S


def measured_saved_bytes(cfg):
    """The PyTorch stages' saved-for-backward bytes (unique storages) for one fine pass, on CPU."""
    planes, decoder, origins, dirs, depths = make_inputs(cfg, torch.device('cpu'))
    params = [t.detach().requires_grad_() for t in decoder.params()]
    planes.requires_grad_()
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        storages[s.data_ptr()] = s.nbytes()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        tr.render_triplane(planes, 'correct', params, origins.requires_grad_(), dirs, depths, 1.0, impl='torch')
    inputs = planes.numel() * 4  # the planes are saved for backward but exist anyway
    return sum(storages.values()) - inputs


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--impl', choices=['both', 'torch', 'triton'], default='both')
    parser.add_argument('--smoke', action='store_true', help='tiny sizes (CI)')
    parser.add_argument('--repeats', type=int, default=None)
    for key in FULL:
        parser.add_argument('--' + key.replace('_', '-'), type=int, default=None)
    args = parser.parse_args(argv)
    cfg = dict(SMOKE if args.smoke else FULL)
    cfg.update({k: getattr(args, k) for k in FULL if getattr(args, k) is not None})
    repeats = args.repeats or (1 if args.smoke else 5)
    device = torch.device(args.device)
    impls = ['torch', 'triton'] if args.impl == 'both' else [args.impl]
    if device.type != 'cuda' and 'triton' in impls:
        print('note: the Triton kernel needs a CUDA device (on CPU it only runs interpreted, whose '
              'timings are meaningless); timing the PyTorch stages only.')
        impls = ['torch']
    print(f'device={device} torch={torch.__version__} size={cfg}')
    print('| case | impl | fwd ms | fwd+bwd ms | peak MB (fwd+bwd) |')
    print('|---|---|---|---|---|')
    for impl in impls:
        for name, (fwd, fwd_bwd) in cases(cfg, device, impl).items():
            t_f, t_fb, peak = bench_case(fwd, fwd_bwd, device, repeats)
            fell = impl == 'triton' and custom_ops.is_disabled(tr.KERNEL_NAME)
            peak_s = f'{peak:.1f}' if peak is not None else 'n/a (CPU)'
            print(f'| {name} | {impl}{" (fell back to torch)" if fell else ""} | {t_f:.2f} | {t_fb:.2f} | {peak_s} |')
    ker_b, points = kernel_bytes(cfg)
    print(f'\nactivation memory (fp32, P = {points} sample points = batch x res^2 x (coarse+fine)):')
    print(f'kernel, analytic (planes copy + per-ray sums + bwd partials): {ker_b / 2 ** 20:.1f} MB, '
          f'{ker_b / points:.0f} B per point')
    if device.type != 'cuda':
        saved = measured_saved_bytes(cfg)
        print(f'torch stages, measured saved-for-backward bytes of one fine pass: {saved} '
              f'({saved / 2 ** 20:.1f} MB, {saved / points:.0f} B per point; excludes transients)')


if __name__ == '__main__':
    main()
