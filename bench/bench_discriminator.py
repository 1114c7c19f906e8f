"""Benchmark the dual discriminator: one trunk pass (ours) vs the reference's two passes.

    python bench/bench_discriminator.py            # small and mid configs, CPU
    python bench/bench_discriminator.py --smoke    # small config, 1 iteration (CI)
    python bench/bench_discriminator.py --threads 1  # steadier on a shared CPU
    python bench/bench_discriminator.py --device cuda

What is timed: one D term of the Dmain phase (SPEC §6.3), forward + backward of
softplus(score).sum() for a batch of {image, image_raw}.
  one-pass:  out = D(img); the score is conditioned on sg(out['pose']) from the same pass.
  two-pass:  pose = D.pose_only(img) (grad mode on, as in the reference's cam_pred call),
             score = D.score_given(img, sg(pose)): a second full trunk pass.
The backward cost is the same in both; the speedup comes from the saved forward, shown
alone (forward of the score, no backward) in the last columns.
"""

import argparse
import os
import sys
import time
from typing import Callable, List

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from training.dual_discriminator import DualDiscriminator  # noqa: E402

CONFIGS = {  # name -> (img_resolution, raw resolution, DualDiscriminator kwargs)
    'small': (32, 16, {'channel_base': 1024, 'channel_max': 32, 'pose_head_channels': 64}),
    'mid': (64, 32, {'channel_base': 8192, 'channel_max': 256}),
}


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_pair(fns: List[Callable[[], None]], device: torch.device, iters: int, warmup: int) -> List[float]:
    """Median wall time in seconds of each fn over `iters` rounds after `warmup` rounds.

    The functions alternate within each round, so load from other processes on a shared
    machine hits both alike.
    """
    for _ in range(warmup):
        for fn in fns:
            fn()
    _sync(device)
    times: List[List[float]] = [[] for _ in fns]
    for _ in range(iters):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            _sync(device)
            ts.append(time.perf_counter() - t0)
    return [sorted(ts)[len(ts) // 2] for ts in times]


def bench_config(name: str, batch: int, device: torch.device, iters: int, warmup: int) -> dict:
    res, raw, kwargs = CONFIGS[name]
    torch.manual_seed(0)
    D = DualDiscriminator(c_dim=2, img_resolution=res, img_channels=3, **kwargs).to(device)
    img = {'image': torch.randn(batch, 3, res, res, device=device),
           'image_raw': torch.randn(batch, 3, raw, raw, device=device)}

    def one_pass():
        D.zero_grad(set_to_none=True)
        F.softplus(D(img)['score']).sum().backward()

    def two_pass():
        D.zero_grad(set_to_none=True)
        pose = D.pose_only(img).detach()
        F.softplus(D.score_given(img, pose)).sum().backward()

    t_one, t_two = time_pair([one_pass, two_pass], device, iters, warmup)
    f_one, f_two = time_pair([lambda: D(img), lambda: D.score_given(img, D.pose_only(img).detach())],
                             device, iters, min(warmup, 1))
    n_params = sum(p.numel() for p in D.parameters())
    return {'config': f'{name} ({res}px/raw {raw}, {n_params / 1e6:.2f}M params)', 'batch': batch,
            'one': t_one, 'two': t_two, 'speedup': t_two / t_one, 'f_one': f_one, 'f_two': f_two}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--smoke', action='store_true', help='small config, 1 iteration, no warmup (CI)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: torch default)')
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.smoke:
        runs = [('small', args.batch, 1, 0)]
    else:
        runs = [('small', args.batch, args.iters, 2), ('mid', args.batch, args.iters, 1)]

    print(f'device={device}  torch={torch.__version__}  threads={torch.get_num_threads()}')
    header = (f'{"config":<40} {"batch":>5} {"one-pass s":>11} {"two-pass s":>11} {"speedup":>8}'
              f' {"fwd one s":>10} {"fwd two s":>10}')
    print(header)
    print('-' * len(header))
    if args.smoke:
        print('(smoke run: 1 iteration without warmup; the timings are not meaningful)')
    for name, batch, iters, warmup in runs:
        r = bench_config(name, batch, device, iters, warmup)
        print(f'{r["config"]:<40} {r["batch"]:>5} {r["one"]:>11.4f} {r["two"]:>11.4f} {r["speedup"]:>7.2f}x'
              f' {r["f_one"]:>10.4f} {r["f_two"]:>10.4f}')


if __name__ == '__main__':
    main()
