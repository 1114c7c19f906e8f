"""torch.profiler table of one training iteration (all four phases).

    python bench/profile_iteration.py                        # synthetic, top 15 ops
    python bench/profile_iteration.py --top 30 --shapes
    python bench/profile_iteration.py --smoke                # tiny config (CI)

The iteration is the one bench/throughput.py times (training_loop.run_phase for Gmain, Greg,
Dmain and Dreg on fixed random reals), after one unprofiled warm-up iteration. Rows are
aten ops sorted by self CPU time; --shapes groups them by input shape as well, which tells
which convolution or which [N, M, S, C] tensor an entry is. docs/performance.md quotes it.
"""

import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput  # noqa: E402


def profile_iteration(args, device):
    config = throughput.make_config(args.config, args.batch, args.smoke)
    G, D, loss, phases = throughput.build(config, device)
    steps = throughput.phase_steps(config, G, D, loss, phases, throughput.steady_nimg(loss, args.cur_kimg), device)
    for fn, _ in steps.values():   # warm-up
        fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=args.shapes) as prof:
        for fn, _ in steps.values():
            fn()
    print(f'\n### {args.config}: one iteration (every phase once), threads {torch.get_num_threads()}\n')
    averages = prof.key_averages(group_by_input_shape=args.shapes)
    total = sum(e.self_cpu_time_total for e in averages)
    print('| op | input shapes | calls | self CPU ms | % |' if args.shapes else '| op | calls | self CPU ms | % |')
    print('|---|---|---:|---:|---:|' if args.shapes else '|---|---:|---:|---:|')
    for e in sorted(averages, key=lambda e: -e.self_cpu_time_total)[:args.top]:
        shapes = f' {str(e.input_shapes)[:90]} |' if args.shapes else ''
        print(f'| {e.key} |{shapes} {e.count} | {e.self_cpu_time_total / 1e3:.1f} | '
              f'{100 * e.self_cpu_time_total / total:.1f} |')
    print(f'\ntotal self CPU time {total / 1e6:.2f} s (profiler overhead included)')


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default='synthetic')
    parser.add_argument('--batch', type=int, default=None)
    parser.add_argument('--top', type=int, default=15)
    parser.add_argument('--shapes', action='store_true', help='group by input shapes')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--cur-kimg', type=throughput.finite_float, default=None)
    parser.add_argument('--smoke', action='store_true')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    profile_iteration(args, torch.device('cpu'))


if __name__ == '__main__':
    main()
