"""The seed methods side by side (issues 18 and 19): pi-GAN's FiLM-SIREN field, the tri-plane, GOF,
ShadeGAN (and its wrong-fixed-light ablation), PoF3D's learned pose with GOF, VolumeGAN and its two
ablations, each trained for the same CPU budget on heads with per-image lights and measured alike.
Rows, protocol and results: docs/seed_methods.md.

    python bench/seed_methods.py --outdir out/seed_bench --budget-min 8          # all rows, one at a time
    python bench/seed_methods.py --outdir out/seed_bench --models pigan,gof      # some rows (resumes)
    python bench/seed_methods.py --outdir /tmp/sb --smoke                          # every step, tiny

The budget is CPU seconds of the train.py process (one thread, --workers 0): on an idle core that
is its wall-clock, and rows trained beside other jobs still get the same compute
(bench/run_files.py `run_budgeted(cpu_clock=True)`). Resume = the same command again
({outdir}/state.json). Data: make_synthetic.py heads, pose N(h 0.3, v 0.15) (the pi-GAN prior of
the presets), per-image MVN lights with true normals. Metrics (metrics/metric_main.py, against the
labeled zip): KID on the estimator features of bench/pose_learning.py, depth_err, normal_err,
GOF's depth_var_weighted (per-sample alpha rules only), pose_err, and reproj_err where the metric
exists.
"""

import os
import subprocess
import signal
import sys
import threading
import time

import click
import numpy as np
import PIL.Image
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import dnnlib  # noqa: E402
import legacy  # noqa: E402
import pose_learning as pl  # noqa: E402  (bench/: the detector, metric calls and sample grids)
from dnnlib import cli  # noqa: E402
from metrics import metric_main, metric_utils  # noqa: E402
from run_files import (bench_layout, finish_row, load_state, open_row, run_budgeted, snapshots,  # noqa: E402
                       write_json)
from training.presets import PRESETS  # noqa: E402

_TRIPLANE = ['--representation', 'triplane', '--override', 'plane_resolution=32', '--override', 'plane_channels=16']
_LEARNED = ['--pose_source', 'learned', '--dis_pose_cond', 'true', '--dis_cam_weight', '2', '--pose_gd_weight', '1']
# name -> (label, preset, train.py options). Each row is one preset or one change to one.
MODELS = {
    'pigan': ('pi-GAN (FiLM-SIREN)', 'pigan', []),
    'triplane': ('pi-GAN recipe, tri-plane field', 'pigan', _TRIPLANE),
    'gof': ('GOF (occupancy, shrinking window)', 'gof', []),
    'shadegan': ('ShadeGAN (Lambertian, MVN light)', 'shadegan', []),
    'shadegan_fixed': ('ShadeGAN, wrong fixed light', 'shadegan', ['--light_source', 'fixed']),
    # ShadeGAN's shading on the tri-plane (whose normals are surface-like early; the FiLM-SIREN's are not):
    # the tri-plane row plus shading, its mapping at the tri-plane's own lr (no unique_lr).
    'shadegan_triplane': ('ShadeGAN shading, tri-plane field', 'shadegan', _TRIPLANE + ['--mapping_lr_mul', '1']),
    'shadegan_triplane_fixed': ('ShadeGAN shading, tri-plane, wrong fixed light', 'shadegan',
                                _TRIPLANE + ['--mapping_lr_mul', '1', '--light_source', 'fixed']),
    'pof3d_gof': ('GOF + PoF3D learned pose', 'gof', _LEARNED),
    'pof3d_pigan': ('pi-GAN + PoF3D learned pose', 'pigan', _LEARNED),
    'pof3d_volumegan': ('VolumeGAN + PoF3D learned pose', 'volumegan', _LEARNED),
    # The project's own tri-plane with a fixed prior (the pose_learning 'prior' row's recipe, EG3D's lrs),
    # at the data's pose law: the tri-plane baseline VolumeGAN is compared with (issue 19).
    'triplane_eg3d': ('EG3D tri-plane, prior pose', 'synthetic',
                      ['--pose_source', 'prior', '--dis_pose_cond', 'false', '--prior_h_std', '0.3',
                       '--prior_v_std', '0.15']),
    'volumegan': ('VolumeGAN', 'volumegan', []),
    'volumegan_nofv': ('VolumeGAN w/o feature volume', 'volumegan', ['--volume', 'false']),
    'volumegan_nonr': ('VolumeGAN w/o neural renderer', 'volumegan',
                       ['--image_head', 'none', '--neural_rendering_resolution_initial', '32']),
}
POSE = 'gaussian:h_std=0.3,v_std=0.15'
METRICS = ('kid_est', 'depth_err', 'normal_err', 'depth_var_weighted', 'pose_err', 'reproj_err', 'reproj_mask')
SMOKE = dict(num=64, budget_min=1 / 3, kimg_max=1.0, tick=0.008, est_steps=20, kid_num=32, eval_num=8, curve_num=8)
CURVE_KEYS = ('kid_est', 'depth_err', 'reproj_err')
# The presets time their step-based schedules for their own 25k steps (kimg 200 at batch 8): pi-GAN's
# density-noise fade, ShadeGAN's shading ramp, GOF's window and opacity growth. A row of minutes runs a
# few hundred steps (at 8 CPU-minutes ShadeGAN's shading would never have started, GOF's window never
# left its warm start), so each row gets them rescaled to the steps its budget buys, from the CPU
# seconds per step measured on one thread at 8 CPU-minutes (docs/data/seed_bench_results.md).
SEC_PER_STEP = dict(pigan=2.5, triplane=1.15, gof=3.0, shadegan=3.7, shadegan_fixed=3.7,
                    pof3d_gof=3.0, pof3d_pigan=2.5,   # pose rows at the plain rows' speed: schedules run late
                    shadegan_triplane=1.7, shadegan_triplane_fixed=1.7)   # shaded from step 0 (0.16 kimg, 1 thread)
STEP_FIELDS = dict(density_noise_fade_steps=1, shading_start_steps=1, shading_ramp_steps=1, window_warmup_steps=1,
                   window_decay=-1, opacity_growth=-1)   # field -> power of the step ratio
# Shading a field before it holds a shape trains on the Lambertian term of noise normals (20-min
# ShadeGAN with the start rescaled to step 11: noise images, KID-est 80e-3); pi-GAN at the CPU-scale
# rates draws heads after ~200 steps (docs/seed_methods.md).
# The tri-plane under pi-GAN's recipe is still a blur at 1.5 kimg (step 190) and draws head silhouettes
# from ~2.6 kimg (the 20-minute `triplane` row's snapshots), so its shading waits for step 400.
SHAPE_STEPS = dict(shadegan=200, shadegan_fixed=200, shadegan_triplane=400, shadegan_triplane_fixed=400)
RUN_ONLY = ('outdir', 'models', 'curves', 'curve_points', 'curve_num')   # options that leave results alone


def schedule_args(name: str, budget_s: float) -> list:
    """train.py options that rescale the row's preset schedules to the steps its budget buys (see
    SEC_PER_STEP); none for rows without a measured speed or whose budget buys the preset's steps.
    ShadeGAN's shading waits for a shape (SHAPE_STEPS of the row, at most half the row), its ramp keeps the
    preset's ratio to the start."""
    if name not in SEC_PER_STEP:
        return []
    preset = PRESETS[MODELS[name][1]]
    steps = budget_s / SEC_PER_STEP[name]
    ratio = min(1.0, steps / (preset['kimg'] * 1000 / preset['batch']))
    if ratio >= 1:
        return []
    got = {field: preset[field] * ratio ** power for field, power in STEP_FIELDS.items() if field in preset}
    if 'shading_start_steps' in got:
        start = max(got['shading_start_steps'], min(SHAPE_STEPS[name], steps / 2))
        got['shading_ramp_steps'] *= start / got['shading_start_steps']
        got['shading_start_steps'] = start
    return [arg for field, value in got.items() for arg in (f'--{field}', f'{value:.6g}')]


def train_model(ctx, state, name):
    """Train (or continue) one row until its CPU budget is spent or --kimg-max; mark it 'trained'."""
    rec = state['models'].setdefault(name, dict(status='training', seconds=0.0))

    def save(**fields):
        rec.update(fields)
        write_json(ctx.state_path, state)

    model_dir, progress = open_row(ctx.runs, rec, name, save)
    base = rec['seconds']
    if ctx.budget_s > base:
        print(f'[{name}] training: {ctx.budget_s - base:.0f} CPU s of budget left', flush=True)
        _, preset, args = MODELS[name]
        cmd = [sys.executable, os.path.join(REPO, 'train.py'), '--outdir', model_dir, '--cfg', preset,
               '--data', ctx.zips['unlabeled'], '--kimg', f'{ctx.kimg_max:g}', '--tick', f'{ctx.tick:g}',
               '--snap', '1', '--metrics', 'none', '--workers', '0', '--seed', str(ctx.seed), '--resume', 'auto',
               *args, *schedule_args(name, ctx.budget_s)]
        env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
        run_budgeted(cmd, env, os.path.join(model_dir, 'train_stdout.log'), model_dir, ctx.budget_s - base,
                     progress, ctx.abort, cpu_clock=True)
    kimg, pkl = finish_row(model_dir)
    rec.update(status='trained', kimg=kimg, pid=None, snapshot=os.path.relpath(pkl, ctx.outdir))
    write_json(ctx.state_path, state)
    print(f'[{name}] trained {kimg:g} kimg in {rec["seconds"]:.0f} CPU s', flush=True)


def score(ctx, G, name, only=METRICS) -> tuple:
    """({metric: value}, [refused]) for the METRICS (or those in `only`) of one generator. A metric
    that refuses it (GOF's variance under the tri-plane's interval alpha) or that this tree lacks
    is None, with the reason printed; only the refusals are listed (a later tree may add a metric).
    A value may be NaN: the metric found nothing to measure (depth var: no opaque ray; reproj_err:
    no pixel reprojects consistently, reproj_mask then says how few did)."""
    n = ctx.eval_num
    jobs = [('kid2k', dict(max_real=None, num_gen=ctx.kid_num), dict(kid_est='kid2k')),
            ('depth_err', dict(num_gen=n, est_steps=ctx.est_steps), dict(depth_err='depth_err')),
            ('normal_err', dict(num_gen=n, est_steps=ctx.est_steps), dict(normal_err='normal_err')),
            ('depth_var_weighted', dict(num_gen=n, resolution=ctx.resolution),
             dict(depth_var_weighted='depth_var_weighted')),
            ('pose_err', dict(num_gen=n, est_steps=ctx.est_steps, num_align=ctx.js_num), dict(pose_err='pose_err')),
            ('reproj_err', dict(num_gen=n), dict(reproj_err='reproj_err', reproj_mask='reproj_err_mask_frac'))]
    out, refused = {}, []
    for metric, kwargs, keys in jobs:
        keys = {k: v for k, v in keys.items() if k in only}
        if not keys:
            continue
        if not metric_main.is_valid_metric(metric):
            print(f'[{name}] {metric}: no such metric in this tree', flush=True)
            out.update(dict.fromkeys(keys))
            continue
        try:
            results = pl.calc(ctx, metric, G, **kwargs)
            out.update({k: results[v] for k, v in keys.items()})
        except ValueError as err:     # the metric refuses this generator (its docstring says why)
            print(f'[{name}] {metric}: {err}', flush=True)
            out.update(dict.fromkeys(keys))
            refused += list(keys)
    return out, refused


def evaluate_model(ctx, state, name):
    rec = state['models'][name]
    print(f'[{name}] evaluating {rec["snapshot"]}', flush=True)
    G = legacy.load_network(os.path.join(ctx.outdir, rec['snapshot']), 'G_ema', 'cpu')
    metrics, refused = score(ctx, G, name)
    rec.update(metrics=metrics, status='evaluated', refused=refused)
    pl.sample_grid(ctx, name, G)
    write_json(ctx.state_path, state)


def rescore_missing(ctx, state, name):
    """A row evaluated before a metric existed in this tree (e.g. reproj_err) gets it on rerun."""
    rec = state['models'][name]
    metric_of = dict(kid_est='kid2k', reproj_mask='reproj_err')
    missing = [k for k in METRICS if k not in rec['metrics'] or (rec['metrics'][k] is None and
                                                                 metric_main.is_valid_metric(metric_of.get(k, k)))]
    refused = set(rec.get('refused', []))
    missing = [k for k in missing if k not in refused]
    if missing:
        print(f'[{name}] scoring {", ".join(missing)}', flush=True)
        G = legacy.load_network(os.path.join(ctx.outdir, rec['snapshot']), 'G_ema', 'cpu')
        new, no = score(ctx, G, name, missing)
        rec['metrics'].update(new)
        rec['refused'] = sorted(refused | set(no))
        write_json(ctx.state_path, state)


def update_curves(ctx, state, names):
    """KID-est, depth_err and reproj_err (ctx.curve_num images each) of up to --curve-points
    snapshots a row, evenly spread (cached in the state by file name); curves.csv, curves.png."""
    jobs = dict(kid_est=('kid2k', dict(max_real=None, num_gen=ctx.curve_num)),
                depth_err=('depth_err', dict(num_gen=ctx.curve_num, est_steps=ctx.est_steps)),
                reproj_err=('reproj_err', dict(num_gen=ctx.curve_num)))
    for name in names:
        done = state.setdefault('curves', {}).setdefault(name, {})
        found = snapshots(os.path.join(ctx.runs, name))
        for nimg, pkl in [found[i] for i in pl.curve_picks(len(found), ctx.curve_points)]:
            key = os.path.relpath(pkl, ctx.outdir)
            if key not in done:
                G = legacy.load_network(pkl, 'G_ema', 'cpu')
                done[key] = dict(kimg=nimg / 1000, **{k: pl.calc(ctx, m, G, **kw)[m] for k, (m, kw) in jobs.items()
                                                      if metric_main.is_valid_metric(m)})
                write_json(ctx.state_path, state)
    rows = {n: sorted(state['curves'][n].values(), key=lambda p: p['kimg']) for n in MODELS if n in state['curves']}
    lines = ['model,kimg,' + ','.join(CURVE_KEYS)]
    lines += [f'{n},{p["kimg"]:g},' + ','.join(f'{p.get(k, float("nan")):.6g}' for k in CURVE_KEYS)
              for n in rows for p in rows[n]]
    metric_utils.write_atomic(os.path.join(ctx.outdir, 'curves.csv'), ('\n'.join(lines) + '\n').encode())
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    for ax, key, title in zip(axes, CURVE_KEYS, ('KID-est', 'depth_err', 'reproj_err')):
        for n, pts in rows.items():
            ax.plot([p['kimg'] for p in pts], [p.get(key, float('nan')) for p in pts], marker='.', label=MODELS[n][0])
        ax.set(xlabel='kimg', title=title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(ctx.outdir, 'curves.png'), dpi=100)
    plt.close(fig)


def fmt(value, scale=1.0, digits=3):
    """'–' for a metric that does not apply, '∅' for one that found nothing to measure (NaN)."""
    if value is None:
        return '–'
    return '∅' if value != value else f'{value * scale:.{digits}g}'


def write_report(ctx, state):
    """results.md / results.json from the evaluated rows."""
    done = [n for n in MODELS if state['models'].get(n, {}).get('status') == 'evaluated']
    s, fl = state['settings'], state.get('floors', {})
    rows = {n: dict(label=MODELS[n][0], preset=MODELS[n][1], train_args=MODELS[n][2],
                    schedule_args=schedule_args(n, ctx.budget_s), **state['models'][n])
            for n in done}
    write_json(os.path.join(ctx.outdir, 'results.json'), dict(settings=s, floors=fl, fid_proxy=pl.DETECTOR_DOC,
                                                              models=rows))
    md = [f'# Seed methods{" (SMOKE: meaningless numbers)" if s["smoke"] else ""}', '',
          f'{s["num"]} heads at {s["resolution"]} px, poses `{POSE}`, MVN lights; {s["budget_min"]:.3g} CPU '
          f'minutes per row (one thread), train seed {s["seed"]}.', '',
          '| Row | preset + options | kimg | KID-est x1e3 | depth_err | normal_err (deg) | depth var x1e4 '
          '| pose_err (deg) | reproj_err | reproj mask % |', '|---|---|---|---|---|---|---|---|---|---|']
    for r in rows.values():
        m, opts = r['metrics'], ' '.join(['--cfg', r['preset'], *r['train_args'], *r['schedule_args']])
        md.append(f'| {r["label"]} | `{opts}` | {r["kimg"]:.3g} | {fmt(m["kid_est"], 1e3)} | {fmt(m["depth_err"])} '
                  f'| {fmt(m["normal_err"])} | {fmt(m["depth_var_weighted"])} | {fmt(m["pose_err"])} '
                  f'| {fmt(m.get("reproj_err"))} | {fmt(m.get("reproj_mask"), 100)} |')
    md += ['', 'Floors (held-out real images): ' + ', '.join(f'{k} {v:.3g}' for k, v in fl.items()) + '.',
           'Lower is better except reproj mask % (the share of pixels that reproject consistently, the '
           'set reproj_err is measured on). – : the metric does not apply (depth var needs per-sample '
           'weights); ∅ : nothing to measure (depth var: no opaque ray; reproj_err: fewer than 16 consistent '
           'pixels in every image). Samples: samples_{row}.png (images over depth).']
    metric_utils.write_atomic(os.path.join(ctx.outdir, 'results.md'), ('\n'.join(md) + '\n').encode())
    grids = [np.asarray(PIL.Image.open(os.path.join(ctx.outdir, f'samples_{n}.png')).convert('RGB')) for n in done]
    if grids:
        gap = np.full((4, grids[0].shape[1], 3), 255, np.uint8)
        PIL.Image.fromarray(np.concatenate([x for g in grids for x in (g, gap)][:-1])).save(
            os.path.join(ctx.outdir, 'samples_all.png'))


def prepare(opts):
    ctx = dnnlib.EasyDict(opts, outdir=os.path.abspath(opts['outdir']), budget_s=opts['budget_min'] * 60,
                          abort=threading.Event(), family='head', pose=POSE, lock=threading.Lock())
    bench_layout(ctx, f'head{ctx.resolution}')
    state = load_state(ctx, {k: v for k, v in opts.items() if k not in RUN_ONLY})
    if not all(os.path.isfile(p) for p in ctx.zips.values()):
        print(f'making the dataset in {ctx.data}', flush=True)
        subprocess.run([sys.executable, os.path.join(REPO, 'make_synthetic.py'), '--outdir', ctx.data, '--family',
                           'head', '--num', str(ctx.num), '--resolution', str(ctx.resolution), '--pose', POSE,
                           '--light', 'mvn', '--seed', str(ctx.data_seed)], check=True, cwd=REPO,
                          stdout=subprocess.DEVNULL)
    pl.build_detector(ctx)
    if 'floors' not in state:
        state['floors'] = {k: pl.calc(ctx, k, est_steps=ctx.est_steps)[k]
                           for k in ('pose_err_gt', 'depth_err_gt', 'normal_err_gt')}
    write_json(ctx.state_path, state)
    return ctx, state


def parse_models(ctx, param, value):
    names = list(MODELS) if value == 'all' else [x.strip() for x in value.split(',') if x.strip()]
    if not names or any(n not in MODELS for n in names):
        raise click.BadParameter(f'{value!r}: choose from {", ".join(MODELS)} or all')
    return names


@click.command(context_settings=dict(max_content_width=110))
@click.option('--outdir', required=True, help='Output folder (state, data, runs, results)')
@click.option('--models', default='all', callback=parse_models, show_default=True,
              help=f'Comma-separated rows: {", ".join(MODELS)}')
@click.option('--num', type=click.IntRange(min=20), default=4000, show_default=True, help='Dataset images')
@click.option('--resolution', type=click.IntRange(min=8), default=32, show_default=True, help='Image side (px)')
@click.option('--data-seed', type=int, default=0, show_default=True, help='make_synthetic.py seed')
@click.option('--seed', type=click.IntRange(min=0), default=0, show_default=True, help='train.py seed')
@click.option('--budget-min', type=cli.POS_FLOAT, default=8.0, show_default=True,
              help='CPU minutes of training per row (one thread)')
@click.option('--kimg-max', type=cli.POS_FLOAT, default=1000.0, show_default=True, help='kimg cap per row')
@click.option('--tick', type=cli.POS_FLOAT, default=0.25, show_default=True, help='kimg between snapshots')
@click.option('--est-steps', type=click.IntRange(min=1), default=None, help='Estimator training steps')
@click.option('--kid-num', type=click.IntRange(min=2), default=1000, show_default=True, help='Images for KID-est')
@click.option('--eval-num', type=click.IntRange(min=1), default=300, show_default=True,
              help='Images for the other metrics')
@click.option('--js-num', type=click.IntRange(min=1), default=5000, show_default=True,
              help='Generator poses for the pose_err alignment')
@click.option('--curves', is_flag=True, help='Also score snapshots over kimg: curves.csv / curves.png')
@click.option('--curve-points', type=click.IntRange(min=2), default=4, show_default=True,
              help='Snapshots scored per row for --curves, evenly spread')
@click.option('--curve-num', type=click.IntRange(min=2), default=200, show_default=True,
              help='Generated images per metric and snapshot (--curves)')
@click.option('--smoke', is_flag=True, help='Tiny run for CI (SMOKE); explicit options still win')
@click.pass_context
def main(click_ctx, **opts):
    """Train the seed-method rows for the same CPU budget each on lit synthetic heads; evaluate
    and tabulate them. Rerun the same command to resume (docs/seed_methods.md)."""
    if opts['smoke']:
        for key, value in SMOKE.items():
            if click_ctx.get_parameter_source(key) == click.core.ParameterSource.DEFAULT:
                opts[key] = value
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    torch.set_num_threads(1)
    start = time.time()
    ctx, state = prepare(opts)
    try:
        for name in ctx.models:
            if state['models'].get(name, {}).get('status') in (None, 'training'):
                train_model(ctx, state, name)
            if state['models'][name]['status'] == 'trained':
                evaluate_model(ctx, state, name)
            else:
                rescore_missing(ctx, state, name)
            write_report(ctx, state)
        if ctx.curves:
            update_curves(ctx, state, ctx.models)
    finally:
        ctx.abort.set()
    print(f'done in {time.time() - start:.0f} s: {ctx.outdir}/results.md', flush=True)
    with open(os.path.join(ctx.outdir, 'results.md')) as f:
        print(f.read())


if __name__ == '__main__':
    main()
