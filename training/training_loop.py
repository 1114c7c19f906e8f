"""The training loop (SPEC §7), as a short list of named steps.

    main(ctx, config, outdir, resume, plan)   per process: run dir, log.txt, then training_loop
    training_loop:
        setup (data, G/D/G_ema, loss, Adam per module) -> [restore the training state]
        for each iteration:
            reals = next batch; for each phase due (Gmain, Greg, Dmain, Dreg; lazy regularization):
                zero_grad, requires_grad, accumulate over batch_gpu chunks, flat all-reduce / num_gpus
                (and / chunks, see run_phase), nan_to_num, Adam step
            EMA update (pure ema_beta(cur_nimg))
            maybe tick (stats, log, TensorBoard) -> maybe snapshot -> maybe metrics

Randomness (a deliberate change from EG3D, which seeds each rank once with seed * gpus + rank
and lets the streams run): everything random in an iteration is derived from (seed,
iteration, phase, chunk). The latents z and the generator labels c of a phase are drawn for the
whole batch from a generator seeded with (seed, batch_idx, phase) and each rank takes its
slice; the global torch RNG (G's noise, ray jitter, importance samples, density-reg points) is
re-seeded with (seed, batch_idx, phase, global chunk index) before every chunk; the networks are
initialized from `seed` alone. Each rank reads the same contiguous slice of the global batch of
reals that a single process reads as that chunk. Hence --gpus N trains like one process with the
same batch and batch_gpu (up to float reduction order), and a resumed run draws exactly what
the uninterrupted run draws. The loss's own RNG (PoF3D's mirror coin) is a per-rank stream
(seed * gpus + rank) saved in the training state, as are the global RNG states of every rank.
"""

import copy
import dataclasses
import importlib
import json
import time

import numpy as np
import torch

import dnnlib
from torch_utils import misc, training_stats
from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix
from training import checkpoint, optim_groups, reporting, schedules
from training.distributed import RankSlicedSampler
from training.losses import loss_class_for


@dataclasses.dataclass
class Counters:
    cur_nimg: int = 0          # real images shown so far (all ranks)
    cur_tick: int = 0          # index of the next tick
    batch_idx: int = 0         # iterations done
    tick_start_nimg: int = 0   # cur_nimg at the last tick


@dataclasses.dataclass
class Phase:
    name: str                  # Gmain | Greg | Gboth | Dmain | Dreg | Dboth
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int              # runs when batch_idx % interval == 0; also the loss gain
    lr_ratios: tuple = ()      # each param group's lr / the net's lr (lazy-reg scale, mapping split)


def derive_seed(*ints) -> int:
    """A 63-bit seed from non-negative ints (numpy SeedSequence)."""
    a, b = np.random.SeedSequence([int(x) for x in ints]).generate_state(2, np.uint32)
    return (int(a) << 31) ^ int(b)


# ---------------------------------------------------------------------------------------------
# Setup steps.

def setup_backends(ctx, config):
    np.random.seed((config.seed * ctx.world_size + ctx.rank) % (1 << 31))
    torch.manual_seed(config.seed * ctx.world_size + ctx.rank)
    torch.backends.cudnn.benchmark = not config.nobench
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    conv2d_gradfix.enabled = True
    grid_sample_gradfix.enabled = False


def build_data(ctx, config, start_batch):
    training_set = dnnlib.util.construct_class_by_name(**config.training_set_kwargs())
    sampler = RankSlicedSampler(training_set, ctx.rank, ctx.world_size, config.batch, config.seed, start_batch)
    workers = config.data.workers
    loader = torch.utils.data.DataLoader(training_set, sampler=sampler, batch_size=config.batch_per_gpu,
                                         num_workers=workers, pin_memory=ctx.device.type == 'cuda',
                                         prefetch_factor=2 if workers > 0 else None)
    return training_set, iter(loader)


def build_networks(ctx, config, network_pickle=None, allow_exec=False):
    """G, D (train mode) and G_ema; initialized from `config.seed` alone (same on every rank and
    for any number of GPUs), then from the pickle if given, then broadcast from rank 0 (EG3D)."""
    torch.manual_seed(config.seed)
    G = dnnlib.util.construct_class_by_name(**config.G_kwargs()).train().requires_grad_(False).to(ctx.device)
    D = dnnlib.util.construct_class_by_name(**config.D_kwargs()).train().requires_grad_(False).to(ctx.device)
    G_ema = copy.deepcopy(G).eval()
    if network_pickle is not None:
        data = checkpoint.load_network_pickle(network_pickle, allow_exec)
        for name, module in (('G', G), ('D', D), ('G_ema', G_ema)):
            if data.get(name) is not None:   # legacy.py returns an official PoF3D D as None
                misc.copy_params_and_buffers(data[name], module, require_all=False)
    if ctx.distributed:
        for tensor in [t for m in (G, D, G_ema) for t in misc.params_and_buffers(m)]:
            torch.distributed.broadcast(tensor, src=0)
    return G, D, G_ema


def build_phases(config, G, D):
    o = config.optim
    phases = []
    m = config.model
    for name, module, lr, interval in (('G', G, o.g_lr, config.g_reg_interval()),
                                       ('D', D, o.dlr, o.d_reg_interval)):
        adam = schedules.lazy_reg_adam_kwargs(lr, o.betas, interval)
        split = dict(mapping_lr_mul=m.mapping_lr_mul, legacy=m.mapping_lr_legacy) if name == 'G' else {}
        opt = torch.optim.Adam(optim_groups.param_groups(module, adam.pop('lr'), **split), eps=o.eps, **adam)
        ratios = tuple(g['lr'] / lr for g in opt.param_groups)   # kept by --lr_stages
        if interval:
            phases += [Phase(name + 'main', module, opt, 1, ratios), Phase(name + 'reg', module, opt, interval, ratios)]
        else:
            phases += [Phase(name + 'both', module, opt, 1, ratios)]
    return phases


# ---------------------------------------------------------------------------------------------
# Per-iteration steps.

def next_reals(batches, ctx, config):
    img, c = next(batches)
    img = (img.to(ctx.device).to(torch.float32) / 127.5 - 1).split(config.chunk)
    return img, c.to(ctx.device).split(config.chunk)


def phase_latents(ctx, config, training_set, batch_idx, phase_idx, z_dim):
    """z [batch, z_dim] and labels c of random dataset items for the whole batch; this rank's chunks."""
    gen = torch.Generator().manual_seed(derive_seed(config.seed, batch_idx, phase_idx))
    z = torch.randn([config.batch, z_dim], generator=gen)
    idx = torch.randint(len(training_set), [config.batch], generator=gen).tolist()
    c = torch.from_numpy(np.stack([training_set.get_label(i) for i in idx]))
    lo, hi = ctx.rank * config.batch_per_gpu, (ctx.rank + 1) * config.batch_per_gpu
    return z[lo:hi].to(ctx.device).split(config.chunk), c[lo:hi].to(ctx.device).split(config.chunk)


def run_phase(ctx, config, phase, phase_idx, loss, reals, latents, counters):
    """One optimizer step on the mean gradient over all chunks of all ranks: the chunks' gradients
    accumulate, then one flat all-reduce (EG3D: sum / num_gpus, no DDP wrapper) and a division by
    the chunks per rank. EG3D skips the latter, so its gradient scale grows with batch/(gpus*batch_gpu);
    the mean makes --batch-gpu a pure memory setting (same result with the default batch_gpu)."""
    phase.opt.zero_grad(set_to_none=True)
    phase.module.requires_grad_(True)
    num_chunks = len(reals[0])
    for k, (real_img, real_c, gen_z, gen_c) in enumerate(zip(*reals, *latents)):
        torch.manual_seed(derive_seed(config.seed, counters.batch_idx, phase_idx, ctx.rank * num_chunks + k))
        loss.accumulate_gradients(phase=phase.name, real_img=real_img, real_c=real_c, gen_z=gen_z, gen_c=gen_c,
                                  gain=phase.interval, cur_nimg=counters.cur_nimg)
    phase.module.requires_grad_(False)
    params = [p for p in phase.module.parameters() if p.numel() > 0 and p.grad is not None]
    if params:
        flat = ctx.all_reduce_mean_(torch.cat([p.grad.flatten() for p in params]))
        if num_chunks > 1:
            flat /= num_chunks
        misc.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
        for p, g in zip(params, flat.split([p.numel() for p in params])):
            p.grad = g.reshape(p.shape)
        if config.optim.grad_clip > 0:   # pi-GAN family: the whole net's norm, per step (SEEDS_SPEC §1.7)
            torch.nn.utils.clip_grad_norm_(params, config.optim.grad_clip)
    if config.optim.lr_stages:
        set_stage_lr(config, phase, counters.cur_nimg)
    phase.opt.step()


def set_stage_lr(config, phase, cur_nimg):
    """The curriculum's lr of this phase's net (--lr_stages, schedules.stage_lrs) into each of its
    param groups, times the group's ratio: a pure function of images seen, so resume is exact."""
    o = config.optim
    lrs = schedules.stage_lrs(cur_nimg, config.batch, o.g_lr, o.dlr, o.lr_stages)
    lr = lrs[0] if phase.name.startswith('G') else lrs[1]
    for group, ratio in zip(phase.opt.param_groups, phase.lr_ratios):
        group['lr'] = lr * ratio


@torch.no_grad()
def update_ema(config, G, G_ema, cur_nimg, ema_rampup):
    """G_ema <- G + beta (G_ema - G) for parameters; buffers copied."""
    beta = schedules.ema_beta(cur_nimg, config.batch, config.ema_kimg(), ema_rampup)
    for p_ema, p in zip(G_ema.parameters(), G.parameters()):
        p_ema.copy_(p.lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers()):
        b_ema.copy_(b)


# ---------------------------------------------------------------------------------------------
# Maintenance steps.

def save_snapshot(ctx, config, run_dir, tag, nets, phases, loss, counters, training_set_kwargs):
    """Network pickle, then training state (rank 0 writes; every rank contributes its RNG state)."""
    if ctx.distributed:
        for module in nets.values():
            misc.check_ddp_consistency(module, ignore_regex=r'.*\.[^.]+_(avg|ema)')
    ranks = ctx.all_gather_object(dict(rng=checkpoint.rng_state(), loss=loss.state_dict()))
    if ctx.rank != 0:
        return None
    pkl = f'{run_dir}/{checkpoint.NETWORK_FMT.format(tag=tag)}'
    checkpoint.save_network_pickle(pkl, nets['G'], nets['D'], nets['G_ema'], training_set_kwargs)
    optimizers = {p.name[0]: p.opt for p in phases}
    state = dict(counters=dataclasses.asdict(counters), data=dict(batches_consumed=counters.batch_idx),
                 optimizers={k: opt.state_dict() for k, opt in optimizers.items()}, ranks=ranks,
                 config=config.to_dict(), network_pickle=pkl.rsplit('/', 1)[-1])
    checkpoint.save_training_state(f'{run_dir}/{checkpoint.STATE_FMT.format(tag=tag)}', state)
    return pkl


_metrics_note_printed = []


def load_metric_main():
    """The `metrics.metric_main` module, or None when the project has none (yet)."""
    try:
        return importlib.import_module('metrics.metric_main')
    except ModuleNotFoundError as err:
        if err.name not in ('metrics', 'metrics.metric_main'):
            raise
        return None


def run_metrics(ctx, config, G_ema, training_set_kwargs, run_dir, pkl, reporter, kimg, trust_pickle=False):
    """The metrics hook: metrics.metric_main.calc_metric per metric, if that module exists."""
    metric_main = load_metric_main()
    if metric_main is None:
        if ctx.rank == 0 and not _metrics_note_printed:
            print(f'Note: metrics {list(config.metrics)} skipped: metrics/metric_main.py is not available.')
            _metrics_note_printed.append(True)
        return
    G = copy.deepcopy(G_ema).eval().requires_grad_(False)
    for metric in config.metrics:
        result = metric_main.calc_metric(metric=metric, G=G, dataset_kwargs=training_set_kwargs,
                                         num_gpus=ctx.world_size, rank=ctx.rank, device=ctx.device,
                                         trust_pickle=trust_pickle)
        if ctx.rank == 0:
            metric_main.report_metric(result, run_dir=run_dir, snapshot_pkl=pkl)
            reporter.write_metrics(result.results, kimg)


def restore(ctx, saved, phases, loss):
    for p in phases:
        p.opt.load_state_dict(saved['optimizers'][p.name[0]])
    mine = saved['ranks'][ctx.rank]
    loss.load_state_dict(mine['loss'])
    checkpoint.set_rng_state(mine['rng'])


# ---------------------------------------------------------------------------------------------


def maintenance(run, counters, reals, done):
    """Tick: stats, status line, TensorBoard; snapshot and metrics when due. Returns the counters
    as they are after the tick (what a training state saved now resumes from)."""
    ctx, config, reporter = run.ctx, run.config, run.reporter
    tick, kimg = counters.cur_tick, counters.cur_nimg / 1e3
    fields = reporting.report_tick(tick, counters.cur_nimg, run.start_time, run.tick_start_time,
                                   counters.tick_start_nimg, run.maintenance_sec, ctx.device)
    maintenance_start = time.time()
    # The schedule's R of the last iteration becomes the networks' default for inference and
    # the pickles (SPEC §4.7); training passes R to every forward as an argument.
    resolution = run.loss.step(counters.cur_nimg - config.batch).resolution
    for name in ('G', 'G_ema'):
        run.nets[name].set_neural_rendering_resolution(resolution)
    counters = dataclasses.replace(counters, cur_tick=tick + 1, tick_start_nimg=counters.cur_nimg)
    run.stats.update()
    if ctx.rank == 0:
        print(reporting.status_line(dict(fields, time_str=dnnlib.util.format_time(fields['Timing/total_sec']))))
        run.progress.mark()
        reporter.write_stats(run.stats.as_dict(), kimg, time.time())
        reporter.pose_histograms(run.nets['G_ema'], run.nets['D'], reals[0][0], kimg)
    if done or tick % config.snap == 0:
        fine = any(float(x) != int(x) for x in (config.tick, config.kimg))   # sub-kimg runs: distinct names
        tag = checkpoint.snapshot_tag(counters.cur_nimg, fine=fine)
        if ctx.rank == 0:
            reporter.save_fakes(run.nets['G_ema'], tag, kimg, config.chunk)
        pkl = save_snapshot(ctx, config, run.run_dir, tag, run.nets, run.phases, run.loss, counters, run.set_kwargs)
        if config.metrics:
            run_metrics(ctx, config, run.nets['G_ema'], run.set_kwargs, run.run_dir, pkl, reporter, kimg,
                        run.plan.trust_pickle)
    run.tick_start_time = time.time()
    run.maintenance_sec = run.tick_start_time - maintenance_start
    return counters


def training_loop(ctx, config, run_dir, plan):
    # Setup: counters (from the training state when resuming), data, networks, loss, optimizers.
    setup_backends(ctx, config)
    saved = checkpoint.load_training_state(plan.state, plan.trust_pickle) if plan.state else None
    counters = Counters(**saved['counters']) if saved else Counters()
    if counters.cur_nimg >= config.kimg * 1000:
        print(f'Nothing to do: the run is at {counters.cur_nimg / 1e3:g} kimg of {config.kimg:g}.')
        return
    training_set, batches = build_data(ctx, config, counters.batch_idx)
    G, D, G_ema = build_networks(ctx, config, checkpoint.network_pickle_for(plan.state) if saved else plan.network,
                                 plan.trust_pickle)
    loss = loss_class_for(config.model.pose_source)(device=ctx.device, G=G, D=D,
                                                    seed=config.seed * ctx.world_size + ctx.rank,
                                                    **config.loss_kwargs(from_pickle=plan.network is not None))
    phases = build_phases(config, G, D)
    ema_rampup = None if plan.network is not None else config.optim.ema_rampup   # SPEC §7: off on resume
    if saved:
        restore(ctx, saved, phases, loss)
    reporter = None
    if ctx.rank == 0:
        reporter = reporting.Reporter(run_dir, training_set, config.image_grid, G.z_dim, ctx.device,
                                      resume_nimg=counters.cur_nimg if saved else None)
        if not saved:
            reporter.save_reals()
        print(f'Training for {config.kimg:g} kimg from {counters.cur_nimg / 1e3:g} kimg...\n')
    run = dnnlib.EasyDict(ctx=ctx, config=config, run_dir=run_dir, plan=plan, nets=dict(G=G, D=D, G_ema=G_ema),
                          loss=loss, phases=phases, reporter=reporter, stats=training_stats.Collector(regex='.*'),
                          set_kwargs=config.training_set_kwargs(), start_time=time.time(), maintenance_sec=0.0)
    run.tick_start_time = run.start_time
    run.progress = reporting.Progress(config.kimg, counters.cur_nimg) if ctx.rank == 0 else None

    while True:
        # Phases: Gmain, Greg, Dmain, Dreg, each when due (lazy regularization).
        reals = next_reals(batches, ctx, config)
        for phase_idx, phase in enumerate(phases):
            if counters.batch_idx % phase.interval == 0:
                latents = phase_latents(ctx, config, training_set, counters.batch_idx, phase_idx, G.z_dim)
                run_phase(ctx, config, phase, phase_idx, loss, reals, latents, counters)
        # EMA, counters.
        update_ema(config, G, G_ema, counters.cur_nimg, ema_rampup)
        counters.cur_nimg += config.batch
        counters.batch_idx += 1
        line = None if run.progress is None else run.progress.line(counters.cur_nimg, {
            'G': training_stats.local_mean('Loss/G/loss'), 'D': training_stats.local_mean('Loss/D/loss')})
        if line is not None:
            print(line)
        # Tick (the first one right after the first iteration), snapshot, metrics.
        done = counters.cur_nimg >= config.kimg * 1000
        if done or counters.cur_tick == 0 or counters.cur_nimg >= counters.tick_start_nimg + config.tick * 1000:
            counters = maintenance(run, counters, reals, done)
        if done:
            break
    if reporter is not None:
        reporter.close()
        print('\nExiting...')


def describe(config) -> dict:
    """The config and the EG3D-named constructor kwargs (training_options.json, --dry-run)."""
    return dict(config=config.to_dict(), training_set_kwargs=config.training_set_kwargs(), G_kwargs=config.G_kwargs(),
                D_kwargs=config.D_kwargs(), loss_kwargs=config.loss_kwargs())


def plan_or_error(outdir, config, resume, trust_pickle):
    """checkpoint.plan_run, or its one-line error as a string (to broadcast to the other ranks)."""
    try:
        return checkpoint.plan_run(outdir, config.run_desc, config.to_dict(), resume, trust_pickle)
    except ValueError as err:
        return str(err)
    except OSError as err:
        return f'--outdir {outdir}: cannot create the run folder ({err.strerror or err}: {err.filename or outdir})'


def main(ctx, config, outdir, resume, plan=None, trust_pickle=False, verbose=False):
    """Per process: rank 0 picks the run dir (checkpoint.plan_run) unless the launcher did, and
    writes the options (printed in full only when verbose; else one summary line); then train."""
    if plan is None:   # under torchrun: rank 0 plans; an unusable --resume/--outdir stops every rank
        plan = plan_or_error(outdir, config, resume, trust_pickle) if ctx.rank == 0 else None
        plan = ctx.broadcast_object(plan)
        if isinstance(plan, str):
            raise checkpoint.PlanError(plan)
    logger = None
    if ctx.rank == 0:
        logger = dnnlib.util.Logger(file_name=f'{plan.run_dir}/log.txt', file_mode='a', should_flush=True)
        options = dict(describe(config), run_dir=plan.run_dir, resume=dataclasses.asdict(plan))
        reporting.write_options(plan.run_dir, options)
        if verbose:
            print(json.dumps(options, indent=2))
        else:
            print(f'{config.cfg}: {config.data.data}, {config.kimg:g} kimg, batch {config.batch}, gamma '
                  f'{config.loss.gamma:g}, pose source {config.model.pose_source} (all options: '
                  f'{plan.run_dir}/training_options.json; --verbose prints them)')
        what = f'resuming from {plan.state}' if plan.state else f'starting {plan.run_dir}'
        print(f'\nRun directory: {plan.run_dir} ({what})')
    try:
        training_loop(ctx, config, plan.run_dir, plan)
    finally:
        if logger is not None:
            logger.close()
