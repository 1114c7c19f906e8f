"""Training throughput and memory of this tree, optionally beside another git revision.

    python bench/throughput.py                           # synthetic preset, this tree
    python bench/throughput.py --configs synthetic,ffhq  # + FFHQ-256 at batch 2 (minutes on CPU)
    python bench/throughput.py --baseline 77bb11e        # before | after | speedup, same machine
    python bench/throughput.py --baseline 77bb11e --baseline-impl ref   # vs the reference port
    python bench/throughput.py --smoke                   # tiny synthetic, 1 repeat (CI)

`--baseline REV` checks REV out into a temporary git worktree and, config by config, runs its
own bench/throughput.py and this tree's in fresh processes, alternating for `--rounds` rounds
(medians per row), so that load from other processes hits both columns alike; the table then
has both columns and their ratio. Revisions up to 77bb11e
still carry the straightforward port of the reference algorithm behind a switch
(`--baseline-impl ref`: `POF3D_IMPL=ref` and `torch_utils.fastpath` off); since then the port
lives only beside the tests (tests/reference/), so "vs the port" means that baseline. It is our
port, not EG3D's own code (docs/performance.md gives the measured ratio of the two).

Rows (one markdown table per config; the networks are the preset's, random-initialized):
- G forward, s/image, no grad, eval mode, const noise, at batch 1 and 4; the breakdown
  mapping / backbone (tri-plane StyleGAN2) / rendering (rays, sampling, decoder,
  compositing) / super-resolution is measured stage by stage at batch 4.
- D fwd+bwd, s/image: the Dmain real term (blurred pair -> score -> softplus -> backward).
- training iteration, s: Gmain + Greg/4 + Dmain + Dreg/16 (the lazy intervals), each phase
  through training_loop.run_phase (zero_grad, accumulate, all-reduce, Adam step), at
  cur_nimg past the blur fade (steady state; `--cur-kimg 0` measures the blur window).
- peak memory: on CPU the peak RSS of a fresh process during its first full iteration (all
  four phases), minus its RSS after building the networks ("increment"), and the absolute
  peak; on CUDA torch.cuda.max_memory_allocated over one iteration.
- parameters; FLOPs per image of one G forward and one D forward (torch.utils.flop_counter:
  matmuls and convolutions only) and the FLOP/s that G forward and D forward achieve.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dnnlib  # noqa: E402
from dnnlib.cli import finite_float  # noqa: E402
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix  # noqa: E402
from training import config as config_lib, training_loop  # noqa: E402
from training.cameras import Camera, FOV_to_intrinsics, LookAtPose  # noqa: E402
from training.distributed import DistContext  # noqa: E402
from training.losses import loss_class_for  # noqa: E402
from training.losses.common import DInput, real_pair  # noqa: E402

THIS = 'this tree'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_BATCH = {'ffhq': 2, 'cats': 2, 'shapenet': 2}   # others: the preset's batch
SMOKE = dict(dataset_resolution=16, neural_rendering_resolution_initial=16, z_dim=16, w_dim=16, plane_resolution=16,
             plane_channels=8, cbase=256, cmax=16, depth_resolution=4, depth_resolution_importance=4,
             pose_head_channels=32)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# Setup.

def make_config(name, batch, smoke):
    overrides = dict(SMOKE) if smoke else {}
    return config_lib.build_config(name, batch=batch or DEFAULT_BATCH.get(name), workers=0, **overrides)


def build(config, device):
    """G, D (train mode), loss and the four phases, as training_loop sets them up."""
    torch.manual_seed(config.seed)
    conv2d_gradfix.enabled, grid_sample_gradfix.enabled = True, False   # training_loop.setup_backends
    G = dnnlib.util.construct_class_by_name(**config.G_kwargs()).train().requires_grad_(False).to(device)
    D = dnnlib.util.construct_class_by_name(**config.D_kwargs()).train().requires_grad_(False).to(device)
    loss = loss_class_for(config.model.pose_source)(device=device, G=G, D=D, seed=config.seed,
                                                    **config.loss_kwargs())
    return G, D, loss, training_loop.build_phases(config, G, D)


def labels(config, n, device):
    """[n, 25] frontal cameras with the preset's intrinsics (only the intrinsics matter)."""
    fov = config.data.create_label_fov or 18.837
    c2w = LookAtPose(torch.full([n, 1], math.pi / 2), torch.full([n, 1], math.pi / 2), torch.zeros(3), 2.7)
    return Camera(c2w, FOV_to_intrinsics(fov).unsqueeze(0).repeat(n, 1, 1)).to_label().to(device)


def steady_nimg(loss, cur_kimg):
    """cur_nimg to measure at: given, or just past the blur fade (the steady state)."""
    if cur_kimg is not None:
        return int(cur_kimg * 1000)
    return int(loss.blur_fade_kimg * 1000) + 1


# ---------------------------------------------------------------------------------------------
# Measured steps; each returns a callable that runs once (the timing loop calls it per impl).

def g_forward_steps(G, c):
    """{name: fn} for the stages of one no-grad G forward for labels c [batch, 25] (eval mode,
    const noise)."""
    z = torch.randn(c.shape[0], G.z_dim, device=c.device)
    cam = Camera.from_label(c)
    R = G.neural_rendering_resolution
    with torch.no_grad():
        ws = G.mapping(z, c)
        planes = G._planes(ws, False, 'const', {})
        c2w = G.pose(z, c).cam2world
        feats, _ = G._render(planes, c2w, cam.intrinsics, R, None)

    def no_grad(fn):
        def run():
            with torch.no_grad():
                fn()
        return run
    steps = {'mapping': no_grad(lambda: G.mapping(z, c)),
             'backbone': no_grad(lambda: G._planes(ws, False, 'const', {})),
             'rendering': no_grad(lambda: G._render(planes, c2w, cam.intrinsics, R, None)),
             'forward': no_grad(lambda: G(z, c, noise_mode='const'))}
    if G.superresolution is not None:
        sr_noise = G.rendering_kwargs['superresolution_noise_mode']
        steps['superres'] = no_grad(lambda: G.superresolution(feats[:, :3], feats, ws, noise_mode=sr_noise))
    return steps


def d_fwd_bwd_step(D, loss, config, batch, cur_nimg, device):
    """The Dmain real term: score of a (blurred) real pair -> softplus -> backward into D."""
    res = config.data.dataset_resolution
    img = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    step = loss.step(cur_nimg)
    pair = real_pair(img, step.resolution, step.blur_sigma)
    d_input = DInput(config.loss.blur_mode)

    def run():
        D.requires_grad_(True)
        D.zero_grad(set_to_none=True)
        score, _ = d_input.score(D, pair, step.blur_sigma)
        torch.nn.functional.softplus(-score).sum().backward()
        D.requires_grad_(False)
    return run


def phase_steps(config, G, D, loss, phases, cur_nimg, device):
    """{phase name: (fn, interval)}: one run_phase call each, on fixed random reals/latents."""
    ctx = DistContext(rank=0, world_size=1, device=device)
    B, res = config.batch, config.data.dataset_resolution
    gen = torch.Generator().manual_seed(1)
    reals = ((torch.rand(B, 3, res, res, generator=gen) * 2 - 1).to(device).split(config.chunk),
             labels(config, B, device).split(config.chunk))
    latents = (torch.randn(B, G.z_dim, generator=gen).to(device).split(config.chunk), reals[1])
    counters = training_loop.Counters(cur_nimg=cur_nimg, batch_idx=0)
    steps = {}
    for idx, phase in enumerate(phases):
        steps[phase.name] = (lambda p=phase, i=idx: training_loop.run_phase(ctx, config, p, i, loss, reals, latents,
                                                                             counters), phase.interval)
    return steps


# ---------------------------------------------------------------------------------------------
# Timing, FLOPs, memory.

def time_interleaved(fn_for, impls, repeats, device, warmup=1):
    """{impl: median seconds} of fn_for(impl)(); impls alternate within every repeat."""
    times = {impl: [] for impl in impls}
    for rep in range(warmup + repeats):
        for impl in impls:
            fn = fn_for(impl)
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            if rep >= warmup:
                times[impl].append(time.perf_counter() - t0)
    return {impl: statistics.median(ts) for impl, ts in times.items()}


def count_flops(fn):
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    return counter.get_total_flops()


def read_rss_mb():
    """(current RSS, peak RSS) of this process in MB, from /proc (Linux)."""
    values = {}
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(('VmRSS:', 'VmHWM:')):
                values[line.split(':')[0]] = int(line.split()[1]) / 1024
    return values.get('VmRSS', float('nan')), values.get('VmHWM', float('nan'))


def memory_probe(args):
    """Child process: one full iteration (all phases) from a fresh start; prints JSON."""
    config, device = make_config(args.configs, args.batch, args.smoke), torch.device(args.device)
    G, D, loss, phases = build(config, device)
    steps = phase_steps(config, G, D, loss, phases, steady_nimg(loss, args.cur_kimg), device)
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')   # reset the peak RSS to the current RSS
    except OSError:
        pass
    base, _ = read_rss_mb()
    for fn, _ in steps.values():
        fn()
    _, peak = read_rss_mb()
    print(json.dumps(dict(base=base, peak=peak)))


def measure_memory(args, name, batch, device, one_iteration):
    """Peak memory of one full iteration: CUDA in process, CPU in a fresh child process."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        one_iteration()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
        return peak - before / 2 ** 20, peak
    cmd = [sys.executable, os.path.abspath(__file__), '--memory-probe', '--configs', name,
           '--threads', str(args.threads), '--device', 'cpu']
    cmd += ['--batch', str(batch)] + (['--smoke'] if args.smoke else [])
    cmd += ['--cur-kimg', str(args.cur_kimg)] if args.cur_kimg is not None else []
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    probe = json.loads(out.strip().splitlines()[-1])
    return probe['peak'] - probe['base'], probe['peak']


# ---------------------------------------------------------------------------------------------
# One config -> one table.

def bench_config(args, name, impls, device):
    config = make_config(name, args.batch, args.smoke)
    G, D, loss, phases = build(config, device)
    cur_nimg = steady_nimg(loss, args.cur_kimg)
    rows = {}
    G.eval()
    for batch in (1, 4):
        steps = g_forward_steps(G, labels(config, batch, device))
        wanted = ['forward'] if batch == 1 else list(steps)
        for stage in wanted:
            t = time_interleaved(lambda impl, f=steps[stage]: f, impls, args.repeats, device)
            label = f'G forward, batch {batch}' if stage == 'forward' else f'  {stage} (batch 4)'
            rows[f'{label}, s/img'] = {k: v / batch for k, v in t.items()}
    g_flops = {impl: count_flops_impl(impl, g_forward_steps(G, labels(config, 1, device))['forward']) for impl in impls}
    rows['G forward FLOP/s (batch 1)'] = {k: g_flops[k] / rows['G forward, batch 1, s/img'][k] for k in impls}
    G.train()
    d_step = d_fwd_bwd_step(D, loss, config, config.batch, cur_nimg, device)
    t = time_interleaved(lambda impl: d_step, impls, args.repeats, device)
    rows[f'D fwd+bwd (batch {config.batch}), s/img'] = {k: v / config.batch for k, v in t.items()}
    d_flops, d_fwd = d_forward_flops(D, loss, config, cur_nimg, device, impls)
    rows['D forward FLOP/s (batch 1)'] = {k: d_flops[k] / d_fwd[k] for k in impls}
    total = {impl: 0.0 for impl in impls}
    steps = phase_steps(config, G, D, loss, phases, cur_nimg, device)
    for phase_name, (fn, interval) in steps.items():
        t = time_interleaved(lambda impl, f=fn: f, impls, args.repeats, device)
        rows[f'  {phase_name} (every {interval}), s'] = t
        for impl in impls:
            total[impl] += t[impl] / interval
    rows[f'training iteration (batch {config.batch}, amortized), s'] = total
    rows['training images/s'] = {k: config.batch / v for k, v in total.items()}
    if not args.no_memory:
        mem = {impl: measure_memory(args, name, config.batch, device, lambda: [fn() for fn, _ in steps.values()])
               for impl in impls}
        unit = 'CUDA max allocated' if device.type == 'cuda' else 'RSS'
        rows[f'peak {unit} increment, one iteration, MB'] = {k: v[0] for k, v in mem.items()}
        rows[f'peak {unit}, MB'] = {k: v[1] for k, v in mem.items()}
    params = {'G': sum(p.numel() for p in G.parameters()), 'D': sum(p.numel() for p in D.parameters())}
    return config, rows, params, {'G': g_flops[THIS], 'D': d_flops[THIS]}


def count_flops_impl(impl, fn):
    return count_flops(fn)


def d_forward_flops(D, loss, config, cur_nimg, device, impls):
    """({impl: FLOPs}, {impl: s}) of one D score forward (as the loss scores) at batch 1."""
    res = config.data.dataset_resolution
    pair = real_pair(torch.rand(1, 3, res, res, device=device) * 2 - 1, loss.step(cur_nimg).resolution, 0)
    d_input = DInput(config.loss.blur_mode)

    def run():
        with torch.no_grad():
            d_input.score(D, pair, 0)
    flops = {impl: count_flops_impl(impl, run) for impl in impls}
    return flops, time_interleaved(lambda impl: run, impls, 3, device)


# ---------------------------------------------------------------------------------------------
# Output.

def fmt(value, key):
    if 'FLOP/s' in key:
        return f'{value / 1e9:.2f} G'
    if 'MB' in key:
        return f'{value:.0f}'
    if 'images/s' in key:
        return f'{value:.3g}'
    return f'{value:.4f}' if value < 10 else f'{value:.1f}'


def print_table(name, config, rows, params, flops, impls):
    print(f'\n### {name}: {config.data.dataset_resolution} px, planes {config.model.plane_resolution}^2 x '
          f'{config.model.plane_channels}, R {config.rendering.neural_rendering_resolution_initial}, '
          f'{config.rendering.depth_resolution}+{config.rendering.depth_resolution_importance} samples, '
          f'batch {config.batch}\n')
    both = len(impls) == 2
    print('| measurement | ' + ' | '.join(impls) + (f' | speedup ({impls[0]} / {impls[1]}) |' if both else ' |'))
    print('|---|' + '---:|' * (len(impls) + both))
    for key, values in rows.items():
        line = f'| {key} | ' + ' | '.join(fmt(values[i], key) if i in values else 'n/a' for i in impls)
        if both and all(i in values for i in impls):
            ratio = values[impls[0]] / values[impls[1]]
            better = ratio if ('FLOP/s' not in key and 'images/s' not in key) else 1 / ratio
            line += f' | {better:.2f}x' if 'MB' not in key else f' | {1 / ratio:.2f} of {impls[0]}'
        elif both:
            line += ' | |'
        print(line + ' |')
    print(f"\nparameters: G {params['G'] / 1e6:.2f} M, D {params['D'] / 1e6:.2f} M; FLOPs per image "
          f"(matmul + conv, FlopCounterMode): G {flops['G'] / 1e9:.3f} G, D {flops['D'] / 1e9:.3f} G")


# ---------------------------------------------------------------------------------------------
# Another revision, measured by its own script.

def parse_table(text):
    """{measurement: value} of the first markdown table an earlier throughput.py printed
    (its last value column; '1.23 G' is read as 1.23e9)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if not line.startswith('| ') or cells[0] in ('measurement', '') or cells[0].startswith('---'):
            continue
        values = [c for c in cells[1:] if c and not c.endswith(('x', 'of ref'))]
        if values:
            number = values[-1].split()[0]
            rows[cells[0]] = float(number) * (1e9 if values[-1].endswith(' G') else 1)
    return rows


def _run_table(script, args, name, impl_flag):
    """{measurement: value} printed by `script` (a throughput.py) for config `name`."""
    cmd = [sys.executable, script, '--configs', name, '--repeats', str(args.repeats), '--threads',
           str(args.threads), '--device', args.device]
    if impl_flag and '--impl' in open(script).read():
        cmd += ['--impl', impl_flag]
    cmd += ['--batch', str(args.batch)] if args.batch else []
    cmd += ['--cur-kimg', str(args.cur_kimg)] if args.cur_kimg is not None else []
    cmd += (['--no-memory'] if args.no_memory else []) + (['--smoke'] if args.smoke else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    return parse_table(subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout)


def paired_rows(args, name):
    """({row: median}, {row: median}) of the baseline revision and this tree on config `name`:
    `--rounds` rounds, each running the baseline's script, then this tree's, as fresh processes,
    so that load from other processes hits both columns alike."""
    tmp = tempfile.mkdtemp(prefix='throughput-baseline-')
    subprocess.run(['git', '-C', REPO, 'worktree', 'add', '--detach', tmp, args.baseline], check=True,
                   capture_output=True)
    runs = {'before': [], 'after': []}
    try:
        for _ in range(args.rounds):
            runs['before'].append(_run_table(os.path.join(tmp, 'bench', 'throughput.py'), args, name,
                                             args.baseline_impl))
            runs['after'].append(_run_table(os.path.abspath(__file__), args, name, None))
    finally:
        subprocess.run(['git', '-C', REPO, 'worktree', 'remove', '--force', tmp], capture_output=True)
    return tuple({k: statistics.median(r[k] for r in rs if k in r) for k in rs[0]} for rs in runs.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--configs', default='synthetic', help='comma list of presets: ' + ','.join(config_lib.PRESETS))
    parser.add_argument('--baseline', default=None, help='git revision to measure beside this tree')
    parser.add_argument('--baseline-impl', default='fast', choices=['ref', 'fast'],
                        help="the baseline's switch where it has one (up to 77bb11e): ref = the reference port")
    parser.add_argument('--rounds', type=int, default=3, help='with --baseline: alternating rounds (medians)')
    parser.add_argument('--batch', type=int, default=None, help='training batch (default: preset; ffhq/cats: 2)')
    parser.add_argument('--repeats', type=int, default=3, help='timed repeats per measurement (median)')
    parser.add_argument('--threads', type=int, default=1, help='torch intra-op threads')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cur-kimg', type=finite_float, default=None,
                        help='schedules at this kimg (default: past blur)')
    parser.add_argument('--no-memory', action='store_true', help='skip the peak-memory measurement')
    parser.add_argument('--smoke', action='store_true', help='tiny synthetic config, 1 repeat (CI)')
    parser.add_argument('--memory-probe', action='store_true', help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_probe:
        return memory_probe(args)
    if args.smoke:
        args.repeats = 1
    label = f'{args.baseline}' + (' (port)' if args.baseline_impl == 'ref' else '') if args.baseline else None
    impls = (label, THIS) if args.baseline else (THIS,)
    device = torch.device(args.device)
    names = [n for n in args.configs.split(',') if n]
    unknown = [n for n in names if n not in config_lib.PRESETS]
    if unknown:
        parser.error(f'unknown config(s) {unknown}; choose from {sorted(config_lib.PRESETS)}')
    note = ' (smoke run: timings meaningless)' if args.smoke else ''
    print(f'device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, '
          f'load average at start {os.getloadavg()[0]:.2f}{note}')
    for name in names:
        config, rows, params, flops = bench_config(args, name, (THIS,), device)
        if args.baseline:   # both columns from alternating fresh processes (this process only labels)
            before, after = paired_rows(args, name)
            ours = {key.strip(): key for key in rows}   # the parsed tables lost the indentation
            rows = {ours.get(key, key): {label: value, THIS: after[key]} for key, value in before.items()
                    if key in after}
        print_table(name + (' (smoke)' if args.smoke else ''), config, rows, params, flops, impls)
    print(f'\nload average at end {os.getloadavg()[0]:.2f}')


if __name__ == '__main__':
    main()
