"""Prove it learns poses: PoF3D, an upper bound, two prior baselines and two ablations trained side
by side on synthetic data with a known, non-Gaussian pose distribution, each for the same CPU
wall-clock budget, then measured alike. How to run, rows and protocols: docs/benchmark.md.

    python bench/pose_learning.py --outdir out/pose_bench --curves   # 7 models x 2 h, one after another (~14 h)
    python bench/pose_learning.py --outdir out/pose_bench --curves --jobs 2   # two at a time (~8 h on 2 cores)
    python bench/pose_learning.py --outdir /tmp/pb --smoke --curves  # every step, tiny (< 5 min)

Resume = the same command again: {outdir}/state.json holds each model's status, wall seconds used
and metrics. Each train.py runs as a subprocess with a snapshot every --tick kimg; it is stopped
(SIGINT) when a new snapshot lands and the next would not fit in the budget, at the latest when the
budget is spent; the newest snapshot is final. Evaluation: metrics/metric_main.py against the
labeled zip (its labels are the true poses).
"""

import os
import signal
import shlex
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import click
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import dnnlib  # noqa: E402
import legacy  # noqa: E402
from dnnlib import cli  # noqa: E402
import plot_pose_distribution as ppd  # noqa: E402
from gen_samples_pose import depth_to_uint16  # noqa: E402
from metrics import estimators, metric_main, metric_utils, pose_metrics  # noqa: E402
from run_files import (bench_layout, curve_picks, finish_row, load_state, open_row, run_budgeted, snapshots,  # noqa: E402
                       write_json)

from pose_rows import MODELS  # noqa: E402  (bench/pose_rows.py: the rows)
DEFAULT_POSE = 'mix:pi/4:0.2:0.5,3pi/4:0.2:0.5'   # two three-quarter yaw modes, 90 degrees apart
METRIC_KEYS = ('kid_est', 'depth_err', 'pose_err', 'pose_err_raw', 'pose_js', 'pose_js_raw', 'pose_js_yaw',
               'pose_js_raw_yaw', 'pose_js_sym', 'pose_js_sym_yaw', 'view_gain', 'view_gain_estimator_slope',
               'pose_err_view_js_yaw')
VIEW_GAIN_NUM = 200   # latents of the view_gain sweep (5 views each): its std over z is ~0.3, so ±0.02
CURVE_KEYS = ('pose_js', 'pose_js_raw', 'pose_err', 'pose_err_raw')
SMOKE = dict(num=64, budget_min=1 / 3, kimg_max=1.0, tick=0.008, est_steps=20, kid_num=32, js_num=500,
             eval_num=8, curve_num=8)
RUN_ONLY = ('outdir', 'models', 'curves', 'curve_points', 'threads', 'jobs')   # options that leave results alone
DETECTOR_DOC = ('KID on 288-d features of the built-in estimators (metrics/estimators.py, trained on the '
                'labeled set): global means of every conv stage of the pose CNN (16+32+64+64) and of the '
                'depth U-Net encoder (16+32+64)')

# ---------------------------------------------------------------------------------------------
# Training under a wall-clock budget (the process control: bench/run_files.py).


def save_row(ctx, state, name, **fields):
    """Update row `name` of the state and write state.json, under ctx.lock: with --jobs > 1 the
    training threads and the evaluating main thread share the state."""
    with ctx.lock:
        state['models'].setdefault(name, {}).update(fields)
        write_json(ctx.state_path, state)


def train_model(ctx, state, name):
    """Train (or continue) one row until its budget is spent or --kimg-max; mark it 'trained'.
    Returns without marking when ctx.abort is set (the bench is being stopped)."""
    if ctx.abort.is_set():
        return
    with ctx.lock:
        rec = state['models'].setdefault(name, dict(status='training', seconds=0.0))
    model_dir, progress = open_row(ctx.runs, rec, name, lambda **fields: save_row(ctx, state, name, **fields))
    base = rec['seconds']
    if ctx.budget_s > base:
        print(f'[{name}] training: {ctx.budget_s - base:.0f} s of budget left', flush=True)
        _, zip_kind, args = MODELS[name]
        cmd = [sys.executable, os.path.join(REPO, 'train.py'), '--outdir', model_dir, '--cfg', 'synthetic',
               '--data', ctx.zips[zip_kind], '--kimg', f'{ctx.kimg_max:g}', '--tick', f'{ctx.tick:g}', '--snap', '1',
               '--metrics', 'none', '--seed', str(ctx.seed), '--resume', 'auto', *args, *shlex.split(ctx.train_args)]
        env = dict(os.environ, OMP_NUM_THREADS=str(ctx.threads), MKL_NUM_THREADS=str(ctx.threads))
        run_budgeted(cmd, env, os.path.join(model_dir, 'train_stdout.log'), model_dir, ctx.budget_s - base, progress,
                     ctx.abort)
        if ctx.abort.is_set():
            return
    kimg, pkl = finish_row(model_dir)
    save_row(ctx, state, name, status='trained', kimg=kimg, pid=None, snapshot=os.path.relpath(pkl, ctx.outdir))
    print(f'[{name}] trained {kimg:g} kimg in {state["models"][name]["seconds"]:.0f} s', flush=True)

# ---------------------------------------------------------------------------------------------
# Evaluation.


class EstimatorFeatures(torch.nn.Module):
    """The FID-proxy detector (DETECTOR_DOC): uint8 [N, 3, H, W] -> float [N, 288]."""

    def __init__(self, pose_net, depth_net, resolution: int):
        super().__init__()
        self.stages = torch.nn.ModuleList([*pose_net.features, depth_net.e1, depth_net.e2, depth_net.e3])
        self.split, self.resolution = len(pose_net.features), resolution   # the depth stages restart at x

    def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
        x = x.float() / 127.5 - 1      # the estimators' own input (estimators.to_input)
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=[self.resolution, self.resolution], mode='area')
        feats, h = [], x
        for i, stage in enumerate(self.stages):
            h = stage(x if i == self.split else h)
            feats.append(h.mean(dim=[2, 3]))
        return torch.cat(feats, dim=1)


def build_detector(ctx):
    """Train (or load from the cache) both estimators; save the scripted feature detector."""
    if os.path.isfile(ctx.detector):
        return
    nets = {kind: estimators.load_or_train(kind, steps=ctx.est_steps, cache_dir=ctx.cache,
                                           dataset_kwargs=ctx.eval_kwargs).net for kind in estimators.KINDS}
    res = estimators.estimator_resolution(estimators.open_labeled_dataset(ctx.eval_kwargs))
    tmp = f'{ctx.detector}.tmp{os.getpid()}'
    torch.jit.save(torch.jit.script(EstimatorFeatures(nets['pose'], nets['depth'], res).eval()), tmp)
    os.replace(tmp, ctx.detector)


def metric_opts(ctx, G=None) -> dict:
    return dict(G=G, dataset_kwargs=ctx.eval_kwargs, device='cpu', cache_dir=ctx.cache, num_workers=0,
                detector_url=ctx.detector)


def calc(ctx, metric, G=None, **kwargs) -> dict:
    return dict(metric_main.calc_metric(metric, metric_kwargs=kwargs, **metric_opts(ctx, G)).results)


def pose_scores(ctx, G, num_images) -> dict:
    """pose_js (ctx.js_num poses) and pose_err (num_images renders), with every sub-value."""
    return dict(**calc(ctx, 'pose_js', G, num_gen=ctx.js_num),
                **calc(ctx, 'pose_err', G, num_gen=num_images, est_steps=ctx.est_steps, num_align=ctx.js_num))


def mirror_closed_js(ctx, G) -> dict:
    """Aligned pose JS of G's cameras together with their yaw mirrors (h -> pi - h about G's
    frontal view, SPEC §3.4): the yaw mix that D's fake stream sees when the mirrored renders are
    on. A learner that covers only one of two mirror-image modes scores well here and badly on
    pose_js: the diagnostic for that collapse (docs/benchmark.md)."""
    opts = metric_utils.MetricOptions(**metric_opts(ctx, G))
    gen = pose_metrics.generator_poses(opts, ctx.js_num)
    mirrored = np.stack([pose_metrics.wrap_h(np.pi - gen[:, 0]), gen[:, 1]], axis=1)
    js = pose_metrics.pose_js_from_poses(np.concatenate([gen, mirrored]), pose_metrics.reference_poses(opts))
    return dict(pose_js_sym=js['value'], pose_js_sym_yaw=js['yaw'])


def plot_poses(ctx, name, G):
    """pose_{name}.png (+ .json): G's (h, v) beside the true ones, plot_pose_distribution.py's
    figure; generator cameras drawn as pose_js draws them (EG3D: at dataset labels)."""
    opts = metric_utils.MetricOptions(**metric_opts(ctx, G))
    center = float(G.rendering_kwargs['h_mean'])
    sources = dict(generator=pose_metrics.generator_poses(opts, ctx.js_num), dataset=pose_metrics.reference_poses(opts))
    hist = ppd.histograms({k: np.stack([ppd.wrap_h(p[:, 0], center), p[:, 1]], axis=1) for k, p in sources.items()}, 40)
    stem = os.path.join(ctx.outdir, f'pose_{name}')
    metric_utils.write_atomic(stem + '.png', ppd.plot(hist, f'{MODELS[name][0]}: pose distribution vs ground truth'))
    write_json(stem + '.json', dict(hist, h_wrap_center=center, units='radians'))


@torch.no_grad()
def sample_grid(ctx, name, G, num=8):
    """samples_{name}.png: num images at G's own cameras (EG3D: dataset labels) over their depth
    (foreground min-max normalized, near = dark; background white)."""
    labels = metric_utils.dataset_labels(metric_utils.MetricOptions(**metric_opts(ctx)), G.c_dim)
    rng = np.random.default_rng(0)
    z = torch.from_numpy(rng.standard_normal([num, G.z_dim]).astype(np.float32))
    out = G(z, torch.from_numpy(labels[rng.integers(len(labels), size=num)]), noise_mode='const',
            generator=torch.Generator().manual_seed(0))
    images = metric_utils.quantize(out['image']).permute(0, 2, 3, 1).numpy()
    size, far = images.shape[1], float(G.rendering_kwargs['ray_end'])
    depth = [np.asarray(PIL.Image.fromarray((depth_to_uint16(d[0].numpy(), far) >> 8).astype(np.uint8))
                        .resize((size, size)))[:, :, None].repeat(3, axis=2) for d in out['image_depth'].float()]
    grid = np.concatenate([np.concatenate(list(images), axis=1), np.concatenate(depth, axis=1)], axis=0)
    PIL.Image.fromarray(grid).save(os.path.join(ctx.outdir, f'samples_{name}.png'))


def evaluate_model(ctx, state, name):
    rec = state['models'][name]
    print(f'[{name}] evaluating {rec["snapshot"]}', flush=True)
    G = legacy.load_network(os.path.join(ctx.outdir, rec['snapshot']), 'G_ema', 'cpu')
    scores = dict(**pose_scores(ctx, G, ctx.eval_num),
                  **calc(ctx, 'depth_err', G, num_gen=ctx.eval_num, est_steps=ctx.est_steps),
                  **mirror_closed_js(ctx, G),
                  **calc(ctx, 'view_gain', G, num_gen=min(ctx.eval_num, VIEW_GAIN_NUM), est_steps=ctx.est_steps),
                  kid_est=calc(ctx, 'kid2k', G, max_real=None, num_gen=ctx.kid_num)['kid2k'])
    plot_poses(ctx, name, G)
    sample_grid(ctx, name, G)
    save_row(ctx, state, name, metrics={k: scores[k] for k in METRIC_KEYS}, status='evaluated')


def update_curves(ctx, state, names):
    """pose_js and pose_err of up to --curve-points snapshots a row (cached in the state by file
    name), then the files."""
    for name in names:
        done = state.setdefault('curves', {}).setdefault(name, {})
        found = snapshots(os.path.join(ctx.runs, name))
        for nimg, pkl in [found[i] for i in curve_picks(len(found), ctx.curve_points)]:
            key = os.path.relpath(pkl, ctx.outdir)
            if key not in done:
                scores = pose_scores(ctx, legacy.load_network(pkl, 'G_ema', 'cpu'), ctx.curve_num)
                done[key] = dict(kimg=nimg / 1000, **{k: scores[k] for k in CURVE_KEYS})
                write_json(ctx.state_path, state)
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = {n: sorted(state['curves'][n].values(), key=lambda p: p['kimg']) for n in MODELS if n in state['curves']}
    lines = ['model,kimg,' + ','.join(CURVE_KEYS)]
    lines += [f'{n},{p["kimg"]:g},' + ','.join(f'{p[k]:.6g}' for k in CURVE_KEYS) for n in rows for p in rows[n]]
    metric_utils.write_atomic(os.path.join(ctx.outdir, 'curves.csv'), ('\n'.join(lines) + '\n').encode())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, title in zip(axes, ('pose_js', 'pose_err'), ('pose JS, aligned (nats)', 'pose error, aligned (deg)')):
        for n, pts in rows.items():
            ax.plot([p['kimg'] for p in pts], [p[key] for p in pts], marker='.', label=MODELS[n][0])
        ax.set(xlabel='kimg', title=title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(ctx.outdir, 'curves.png'), dpi=100)
    plt.close(fig)

# ---------------------------------------------------------------------------------------------
# Report and driver.


def write_report(ctx, state):
    """results.json, results.md and samples_all.png from the evaluated rows of the state."""
    done = [n for n in MODELS if state['models'].get(n, {}).get('status') == 'evaluated']
    models = {n: dict(label=MODELS[n][0], train_args=MODELS[n][2], **{k: state['models'][n][k] for k in (
        'seconds', 'kimg', 'snapshot')}, **state['models'][n]['metrics']) for n in done}
    s, fl = state['settings'], state.get('floors', {})
    write_json(os.path.join(ctx.outdir, 'results.json'), dict(settings=s, fid_proxy=DETECTOR_DOC, floors=fl,
                                                              models=models))
    md = [f'# Pose-learning benchmark{" (SMOKE: tiny budget, meaningless numbers)" if s["smoke"] else ""}', '',
          f'{s["num"]} {s["family"]}s at {s["resolution"]} px, poses `{s["pose"]}`; budget {s["budget_min"]:.3g} '
          f'min wall per model (kimg cap {s["kimg_max"]:g}), train seed {s["seed"]}.', '',
          '| Model | kimg | train s | KID-est x1e3 | depth_err | pose_err (deg) | pose_err raw | JS aligned | JS raw '
          '| JS yaw aligned | JS mirror-closed | view gain | views\' yaw JS |',
          '|---|---|---|---|---|---|---|---|---|---|---|---|---|']
    md += [f'| {m["label"]} | {m["kimg"]:.3g} | {m["seconds"]:.0f} | {m["kid_est"] * 1e3:.3g} | {m["depth_err"]:.3f} '
           f'| {m["pose_err"]:.1f} | {m["pose_err_raw"]:.1f} | {m["pose_js"]:.3f} | {m["pose_js_raw"]:.3f} '
           f'| {m["pose_js_yaw"]:.3f} | {m["pose_js_sym"]:.3f} | {m.get("view_gain", np.nan):.2f} '
           f'| {m.get("pose_err_view_js_yaw", np.nan):.3f} |'
           for m in models.values()]
    md += ['', f'Estimator floors (held-out real images): pose_err_gt {fl.get("pose_err_gt", np.nan):.1f} deg, '
           f'depth_err_gt {fl.get("depth_err_gt", np.nan):.3f}. FID-proxy: {DETECTOR_DOC}.',
           'Lower is better in every metric column but the view gain (metrics/view_gain.py: the slope of the '
           'estimated yaw over a ±15° sweep of G\'s own camera; ±1 = the images turn with the camera as the '
           'data\'s views do, −1 in a mirrored frame; 0 = the object does not turn). Views\' yaw JS: the yaw JS '
           'of the poses the estimator reads from G\'s images against the data\'s (no alignment; what D sees). '
           'Figures: pose_{model}.png, samples_{model}.png, '
           'samples_all.png' + (', curves.png' if state.get('curves') else '') + '.']
    metric_utils.write_atomic(os.path.join(ctx.outdir, 'results.md'), ('\n'.join(md) + '\n').encode())
    grids = [np.asarray(PIL.Image.open(os.path.join(ctx.outdir, f'samples_{n}.png')).convert('RGB')) for n in done]
    if grids:
        gap = np.full((4, grids[0].shape[1], 3), 255, np.uint8)
        PIL.Image.fromarray(np.concatenate([x for g in grids for x in (g, gap)][:-1])).save(
            os.path.join(ctx.outdir, 'samples_all.png'))


def run_rows(ctx, state):
    """Train the rows, --jobs at a time in threads (each drives one train.py subprocess); evaluate
    each in this thread, in row order, as soon as it is trained."""
    todo = [n for n in ctx.models if state['models'].get(n, {}).get('status') in (None, 'training')]
    with ThreadPoolExecutor(ctx.jobs) as pool:
        futures = {n: pool.submit(train_model, ctx, state, n) for n in todo}
        try:
            for name in ctx.models:
                if name in futures:
                    futures[name].result()
                if state['models'][name]['status'] == 'trained':
                    evaluate_model(ctx, state, name)
                write_report(ctx, state)
        finally:   # an error or a signal here: stop the running train.py's, start no more
            ctx.abort.set()
            pool.shutdown(wait=True, cancel_futures=True)


def prepare(opts) -> tuple:
    """(ctx, state): paths, the state (settings checked), the dataset, the detector, the floors."""
    ctx = dnnlib.EasyDict(opts, outdir=os.path.abspath(opts['outdir']), budget_s=opts['budget_min'] * 60,
                          lock=threading.Lock(), abort=threading.Event())
    bench_layout(ctx, f'{ctx.family}{ctx.resolution}')
    state = load_state(ctx, {k: v for k, v in opts.items() if k not in RUN_ONLY})
    write_json(ctx.state_path, state)
    if not all(os.path.isfile(p) for p in ctx.zips.values()):
        print(f'making the dataset in {ctx.data}', flush=True)
        subprocess.run([sys.executable, os.path.join(REPO, 'make_synthetic.py'), '--outdir', ctx.data, '--family',
                        ctx.family, '--num', str(ctx.num), '--resolution', str(ctx.resolution), '--pose', ctx.pose,
                        '--seed', str(ctx.data_seed)], check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    build_detector(ctx)
    if 'floors' not in state:
        state['floors'] = {k: calc(ctx, k, est_steps=ctx.est_steps)[k] for k in ('pose_err_gt', 'depth_err_gt')}
        write_json(ctx.state_path, state)
    return ctx, state


def parse_models(ctx, param, value):
    names = list(MODELS) if value == 'all' else [x.strip() for x in value.split(',') if x.strip()]
    if not names or any(n not in MODELS for n in names):
        raise click.BadParameter(f'{value!r}: choose from {", ".join(MODELS)} or all')
    return names


POS_F, POS_I = cli.POS_FLOAT, click.IntRange(min=1)
OPTIONS = [   # (option, type, default, help); --smoke replaces the defaults of the SMOKE keys
    ('--outdir', str, None, 'Output folder (state, data, runs, results)'),
    ('--models', str, 'all', f'Comma-separated rows: {", ".join(MODELS)}'),
    ('--family', click.Choice(['car', 'head']), 'car', 'make_synthetic.py object family'),
    ('--num', click.IntRange(min=20), 4000, 'Dataset images'),
    ('--resolution', click.IntRange(min=8), 32, 'Image side (px)'),
    ('--pose', str, DEFAULT_POSE, 'make_synthetic.py pose law'),
    ('--data-seed', int, 0, 'make_synthetic.py seed'),
    ('--seed', click.IntRange(min=0), 0, 'train.py seed'),
    ('--budget-min', POS_F, 120.0, 'Wall-clock training budget per model (minutes)'),
    ('--kimg-max', POS_F, 1000.0, 'Training length cap per model (kimg)'),
    ('--tick', POS_F, 0.5, 'kimg between snapshots'),
    ('--est-steps', POS_I, None, 'Estimator training steps [metrics/estimators.py defaults]'),
    ('--kid-num', click.IntRange(min=2), 2000, 'Generated images for KID-est'),
    ('--js-num', POS_I, 20000, 'Generator poses for pose_js (and the pose_err alignment)'),
    ('--eval-num', POS_I, 1000, 'Generated images for pose_err / depth_err'),
    ('--curve-num', POS_I, 200, 'Generated images for pose_err per snapshot (--curves)'),
    ('--curve-points', click.IntRange(min=2), 40, 'Snapshots evaluated per row for --curves, evenly spread'),
    ('--threads', POS_I, 1, 'torch CPU threads per process'),
    ('--jobs', POS_I, 1, 'Rows trained at once (one train.py each, --threads threads); 2 on 2 cores'),
    ('--train-args', str, '', 'Extra train.py options for every row, e.g. "--gamma 2" (a preset search)'),
]


def add_options(fn):
    fn = click.option('--smoke', is_flag=True, help='Tiny run for CI: 20 s a model, 64 images, tiny metric '
                      'samples (SMOKE), < 5 min in all; explicit options still win')(fn)
    fn = click.option('--curves', is_flag=True, help='Also score snapshots over kimg: curves.csv / curves.png')(fn)
    for name, kind, default, text in reversed(OPTIONS):
        extra = dict(callback=parse_models) if name == '--models' else {}
        fn = click.option(name, type=kind, default=default, required=name == '--outdir',
                          show_default=default is not None, help=text, **extra)(fn)
    return fn


@click.command(context_settings=dict(max_content_width=110))
@add_options
@click.pass_context
def main(click_ctx, **opts):
    """Train PoF3D, the true-pose upper bound, two prior baselines and two ablations for the same
    wall-clock budget each on synthetic data with known poses; evaluate and tabulate them.
    Rerun the same command to resume (docs/benchmark.md)."""
    if opts['smoke']:
        for key, value in SMOKE.items():
            if click_ctx.get_parameter_source(key) == click.core.ParameterSource.DEFAULT:
                opts[key] = value
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))    # unwind: stops the training subprocess
    torch.set_num_threads(opts['threads'])
    start = time.time()
    ctx, state = prepare(opts)
    run_rows(ctx, state)
    if ctx.curves:
        update_curves(ctx, state, ctx.models)
        write_report(ctx, state)
    print(f'done in {time.time() - start:.0f} s: {ctx.outdir}/results.md', flush=True)
    with open(os.path.join(ctx.outdir, 'results.md')) as f:
        print(f.read())


if __name__ == '__main__':
    main()
