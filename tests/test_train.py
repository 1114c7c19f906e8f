"""End-to-end tests of train.py and the training loop (SPEC §7, §8; STYLE 12).

Runs use `--cfg synthetic` shrunk further with the hidden `--override` option (16-px images,
16² x 8-channel planes, 4+4 ray samples, channel_base 256 / max 16, z/w 16): one iteration takes
~0.3 s on one CPU thread. Ticks are 0.016 kimg (2 iterations at batch 8), so snapshot names carry
the remainder in images (`network-snapshot-000000.016.pkl`). Subprocess runs use one thread per
process (OMP_NUM_THREADS=1): on a shared 2-core box OpenMP spin-waiting makes multi-threaded
tiny convolutions many times slower.

- a 2-tick run writes pickles (EG3D format), training states, stats.jsonl, log.txt,
  training_options.json, image grids and TensorBoard events (scalar tags read back);
- resume: 1 tick, then the same command with more kimg == an uninterrupted run, bit for bit;
- SIGKILL after the first snapshot, then the same command: resumes from the last snapshot;
- --gpus 2 (gloo) == --gpus 1 with the same batch and batch_gpu, within 1e-4 (see there); under
  torchrun == spawned, bit for bit;
- the three recipes build G and D with --dry-run; invalid options give one-line usage errors;
- config layering, the presets against SPEC §8.2/§8.3, the sampler, find_latest, plan_run,
  resume from a network pickle, the metrics hook, the EG3D loss path (pose sources dataset, prior).
"""

import dataclasses
import glob
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dnnlib
from training import checkpoint, config as config_lib, training_loop
from training.distributed import DistContext

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(dataset_resolution=16, neural_rendering_resolution_initial=16, workers=0, tick=0.016, snap=1,
            z_dim=16, w_dim=16, plane_resolution=16, plane_channels=8, cbase=256, cmax=16, depth_resolution=4,
            depth_resolution_importance=4, pose_head_channels=32, image_grid=(2, 2))
CLI_FIELDS = ('dataset_resolution', 'neural_rendering_resolution_initial', 'workers', 'tick', 'snap')
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONUNBUFFERED='1')


def tiny_args(data, outdir, **extra):
    args = ['--outdir', str(outdir), '--cfg', 'synthetic', '--data', str(data)]
    for key, value in {**TINY, **extra}.items():
        if key in CLI_FIELDS or key in extra:
            args += [f'--{key.replace("batch_gpu", "batch-gpu")}', str(value)]
        else:
            args += ['--override', f'{key}={json.dumps(value)}']
    return args


def train(data, outdir, **extra):
    """Run train.py in a subprocess; returns its output (asserts success)."""
    proc = subprocess.run([sys.executable, 'train.py'] + tiny_args(data, outdir, **extra), cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def only_run_dir(outdir):
    dirs = sorted(glob.glob(os.path.join(str(outdir), '0*')))
    assert len(dirs) == 1, dirs
    return dirs[0]


def load_pickle(path):
    with open(path, 'rb') as f:
        return pickle.load(f)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    """16 procedural cars at 16 px (make_synthetic.py): the labeled and the unlabeled zip."""
    out = tmp_path_factory.mktemp('data')
    subprocess.run([sys.executable, 'make_synthetic.py', '--outdir', str(out), '--family', 'car', '--num', '16',
                    '--resolution', '16', '--pose', 'gaussian', '--seed', '0'], cwd=REPO, env=ENV, check=True,
                   capture_output=True, timeout=300)
    return dnnlib.EasyDict(labeled=out / 'car16_labeled.zip', unlabeled=out / 'car16_unlabeled.zip')


@pytest.fixture(scope='module')
def run_a(dataset, tmp_path_factory):
    """The reference run: 4 iterations, ticks at 8, 24 and 32 images, a snapshot at each."""
    outdir = tmp_path_factory.mktemp('run_a')
    train(dataset.unlabeled, outdir, kimg=0.032, resume='auto')
    return only_run_dir(outdir)


# ---------------------------------------------------------------------------------------------
# End to end.

def test_run_writes_snapshots_logs_and_tensorboard(run_a):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    tags = ('000000.008', '000000.024', '000000.032')
    for tag in tags:
        for name in (f'network-snapshot-{tag}.pkl', f'training-state-{tag}.pt', f'fakes{tag}.png',
                     f'fakes{tag}_raw.png', f'fakes{tag}_depth.png'):
            assert os.path.isfile(os.path.join(run_a, name)), name
    assert os.path.isfile(os.path.join(run_a, 'reals.png'))
    assert checkpoint.find_latest(run_a).endswith('training-state-000000.032.pt')

    snap = load_pickle(os.path.join(run_a, 'network-snapshot-000000.032.pkl'))
    assert set(snap) == {'G', 'D', 'G_ema', 'augment_pipe', 'training_set_kwargs'} and snap['augment_pipe'] is None
    assert snap['training_set_kwargs']['class_name'] == 'training.dataset.ImageFolderDataset'
    for name in ('G', 'D', 'G_ema'):
        module = snap[name]
        assert not module.training and not any(p.requires_grad for p in module.parameters())
        assert all(p.device.type == 'cpu' for p in module.parameters())
    state = checkpoint.load_training_state(os.path.join(run_a, 'training-state-000000.032.pt'))
    assert state['counters'] == dict(cur_nimg=32, cur_tick=3, batch_idx=4, tick_start_nimg=32)
    assert set(state['optimizers']) == {'G', 'D'} and len(state['ranks']) == 1
    assert set(state['ranks'][0]['rng']) >= {'torch', 'numpy', 'python'} and 'mirror' in state['ranks'][0]['loss']

    rows = [json.loads(line) for line in open(os.path.join(run_a, 'stats.jsonl'))]
    assert len(rows) == 3 and all('timestamp' in r for r in rows)
    assert rows[-1]['Progress/kimg']['mean'] == pytest.approx(0.032)
    assert math.isfinite(rows[-1]['Loss/G/loss']['mean'])
    options = json.load(open(os.path.join(run_a, 'training_options.json')))
    assert options['config']['cfg'] == 'synthetic' and options['G_kwargs']['plane_resolution'] == 16
    log = open(os.path.join(run_a, 'log.txt')).read()
    assert 'tick 2' in log and 'Exiting' in log

    acc = EventAccumulator(run_a, size_guidance={'scalars': 0, 'histograms': 0, 'images': 0})
    acc.Reload()
    scalars = set(acc.Tags()['scalars'])
    for tag in ('Loss/G/loss', 'Loss/G/loss_flip', 'Loss/G/posegloss', 'Loss/D/loss', 'Loss/D/loss_Dcam',
                'Loss/r1_penalty', 'Loss/scores/real', 'Pose/h_mean', 'Pose/v_std', 'Pose/clamped_frac',
                'Progress/kimg', 'Timing/sec_per_kimg', 'Resources/cpu_mem_gb'):
        assert tag in scalars, tag
    assert len(acc.Scalars('Progress/tick')) == 3
    assert {'Pose/G_h', 'Pose/G_v', 'Pose/D_real_h', 'Pose/D_real_v'} <= set(acc.Tags()['histograms'])
    assert {'Images/reals', 'Images/fakes', 'Images/fakes_raw', 'Images/fakes_depth'} <= set(acc.Tags()['images'])


def assert_same_networks(path_a, path_b, exact=True, atol=0.0):
    a, b = load_pickle(path_a), load_pickle(path_b)
    worst = 0.0
    for name in ('G', 'D', 'G_ema'):
        pa, pb = dict(a[name].named_parameters()), dict(b[name].named_parameters())
        assert pa.keys() == pb.keys()
        for key in pa:
            if exact:
                assert torch.equal(pa[key], pb[key]), f'{name}.{key}'
            worst = max(worst, float((pa[key] - pb[key]).abs().max()))
    assert worst <= atol, worst
    return worst


def test_resume_is_bit_identical(dataset, run_a, tmp_path):
    """1 tick, then the same command with --kimg doubled (--resume auto) == the 2-tick run A."""
    train(dataset.unlabeled, tmp_path, kimg=0.016, resume='auto')
    out = train(dataset.unlabeled, tmp_path, kimg=0.032, resume='auto')
    run_b = only_run_dir(tmp_path)
    assert 'resuming from' in out and 'training-state-000000.016.pt' in out
    assert_same_networks(os.path.join(run_a, 'network-snapshot-000000.032.pkl'),
                         os.path.join(run_b, 'network-snapshot-000000.032.pkl'))
    state_a = checkpoint.load_training_state(checkpoint.find_latest(run_a))
    state_b = checkpoint.load_training_state(checkpoint.find_latest(run_b))
    assert state_a['counters']['cur_nimg'] == state_b['counters']['cur_nimg'] == 32
    # The finished run: the same command again has nothing left to do.
    assert 'Nothing to do' in train(dataset.unlabeled, tmp_path, kimg=0.032, resume='auto')


def test_sigkill_then_same_command_resumes(dataset, tmp_path):
    args = [sys.executable, 'train.py'] + tiny_args(dataset.unlabeled, tmp_path, kimg=0.064, resume='auto')
    proc = subprocess.Popen(args, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not glob.glob(os.path.join(str(tmp_path), '0*', 'training-state-*.pt')):
            assert proc.poll() is None and time.time() < deadline, 'no snapshot before the run ended'
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_dir = only_run_dir(tmp_path)
    last = checkpoint.find_latest(run_dir)
    assert last is not None and not os.path.isfile(os.path.join(run_dir, 'training-state-000000.064.pt'))
    out = train(dataset.unlabeled, tmp_path, kimg=0.064, resume='auto')
    assert f'resuming from {last}' in out
    assert only_run_dir(tmp_path) == run_dir
    assert checkpoint.find_latest(run_dir).endswith('training-state-000000.064.pt')


GPUS_TEST = dict(kimg=0.024, batch=8, batch_gpu=4, flip_to_dis=False, flip_to_disd=False)
SNAPSHOT_024 = 'network-snapshot-000000.024.pkl'


@pytest.fixture(scope='module')
def two_processes(dataset, tmp_path_factory):
    """--gpus 2 (spawned gloo processes, one chunk of 4 per rank), batch 8, 3 iterations."""
    outdir = tmp_path_factory.mktemp('two')
    train(dataset.labeled, outdir, gpus=2, **GPUS_TEST)
    return only_run_dir(outdir)


def test_two_processes_match_one(dataset, two_processes, tmp_path):
    """--gpus 2 vs --gpus 1 (two chunks of 4), same batch 8.

    Same data, latents and per-chunk RNG by construction (training_loop docstring), flips off (the
    mirror coin is a per-rank stream). Not bit-identical: one process accumulates the terms of
    both chunks into .grad in sequence, two processes sum per-chunk totals in the all-reduce, so
    float additions associate differently (~1e-7 relative); Adam's normalized steps carry that
    into the weights. Observed max |diff| ~1.5e-5 after 3 steps; tolerance 1e-4.
    """
    train(dataset.labeled, tmp_path, gpus=1, **GPUS_TEST)
    assert_same_networks(os.path.join(only_run_dir(tmp_path), SNAPSHOT_024),
                         os.path.join(two_processes, SNAPSHOT_024), exact=False, atol=1e-4)


def test_torchrun_matches_spawn(dataset, two_processes, tmp_path):
    """Under torchrun (RANK/WORLD_SIZE/... set) train.py runs in-process with env:// init; same
    result as the spawned processes, bit for bit."""
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', 'train.py']
    proc = subprocess.run(cmd + tiny_args(dataset.labeled, tmp_path, gpus=2, **GPUS_TEST), cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert_same_networks(os.path.join(only_run_dir(tmp_path), SNAPSHOT_024),
                         os.path.join(two_processes, SNAPSHOT_024))


@pytest.mark.parametrize('script', ['ffhq.sh', 'cats.sh', 'shapenet_cars.sh'])
def test_recipes_dry_run(script, dataset, tmp_path):
    env = dict(ENV, DATA=str(dataset.labeled), GPUS='8', OUTDIR=str(tmp_path), DRY_RUN='1', PYTHON=sys.executable)
    proc = subprocess.run(['bash', script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    options = json.loads(proc.stdout[:proc.stdout.index('\nG parameters')])
    assert options['config']['rendering']['plane_axes'] == 'legacy'
    assert options['config']['gpus'] == 8 and options['config']['batch'] == 32
    assert 'G parameters' in proc.stdout and 'D parameters' in proc.stdout
    assert not os.listdir(tmp_path)   # a dry run creates no run directory


USAGE_ERRORS = [
    (['--cfg', 'nope'], "Invalid value for '--cfg'"),
    (['--data', '/nonexistent/data.zip'], 'no such file'),
    (['--dis_cam_weight', '0'], '--dis_pose_cond True needs --dis_cam_weight > 0'),
    (['--dis_pose_cond', 'False'], '--dis_pose_cond True needs'),
    (['--pose_source', 'dataset'], 'needs camera poses'),
    (['--cfg', 'ffhq', '--superres', 'False'], 'has no camera labels'),
    (['--batch', '9', '--gpus', '2'], 'multiple of --gpus'),
    (['--batch-gpu', '2'], 'minibatch-std group'),
    (['--clamp_h_min', '0'], 'must be given together'),
    (['--resume', '/nonexistent/run'], '--resume /nonexistent/run'),
    (['--aug', 'ada'], 'not implemented'),
    (['--superres', 'True'], '--superres True needs --dataset_resolution in'),
    (['--superres', 'False', '--neural_rendering_resolution_initial', '8'], 'neural rendering resolution must'),
    (['--metrics', 'bogus'], 'unknown'),
    (['--blur_mode', 'reference', '--pose_source', 'prior'], 'needs --pose_source learned'),
    (['--override', 'nonsense=1'], 'bad --override'),
    (['--pose_init_gain', '1,0,2'], "Invalid value for '--pose_init_gain'"),
    (['--sym_weight', '1', '--pose_source', 'prior'], '--sym_weight > 0 needs --pose_source learned'),
    (['--pose_dist_weight', '1', '--pose_source', 'prior', '--dis_pose_cond', 'false'],
     '--pose_dist_weight > 0 needs --pose_source learned'),
    (['--pose_dist_weight', '1', '--dis_pose_cond', 'false', '--dis_cam_weight', '0', '--pose_gd_weight', '0'],
     'a trained D pose head'),
    (['--pose_img_dist_weight', '1', '--pose_source', 'prior', '--dis_pose_cond', 'false'],
     '--pose_img_dist_weight > 0 needs --pose_source learned'),
    (['--pose_gd_debias', 'true', '--pose_source', 'dataset'], 'needs --pose_source learned'),
    (['--share_render', 'false', '--pose_source', 'prior'], '--share_render False changes the PoF3D loss'),
    (['--symmetry', 'radial'], "Invalid value for '--symmetry'"),
    (['--pose_input', 'noise', '--pose_source', 'prior', '--dis_pose_cond', 'false'],
     '--pose_input noise needs --pose_source learned'),
    (['--pose_input', 'z'], "Invalid value for '--pose_input'"),
    (['--pose_view_weight', '1', '--pose_source', 'prior', '--dis_pose_cond', 'false'],
     '--pose_view_weight > 0 needs --pose_source learned'),
    (['--pose_dist_weight', 'nan'], "Invalid value for '--pose_dist_weight'"),
    (['--pose_cond_grad', 'true', '--pose_source', 'dataset'], '--pose_cond_grad needs --pose_source learned'),
    (['--pose_cond_grad', 'true', '--dis_pose_cond', 'false', '--dis_cam_weight', '0'],
     "--pose_cond_grad needs --pose_source learned and --dis_pose_cond True"),
]


def assert_one_line_usage_error(extra, message, data, outdir):
    """train.py with `extra` on the synthetic preset at 16 px exits 2 with one 'Error:' line
    containing `message`, no traceback, nothing written in outdir."""
    import train as train_cli
    base = ['--outdir', str(outdir), '--cfg', 'synthetic', '--data', str(data),
            '--dataset_resolution', '16', '--neural_rendering_resolution_initial', '16']
    result = CliRunner().invoke(train_cli.main, base + extra)
    errors = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and message in errors[0], result.output
    assert 'Traceback' not in result.output and not os.listdir(outdir)


@pytest.mark.parametrize('extra,message', USAGE_ERRORS, ids=[e[1][:24] for e in USAGE_ERRORS])
def test_invalid_options_are_one_line_usage_errors(extra, message, dataset, tmp_path):
    assert_one_line_usage_error(extra, message, dataset.unlabeled, tmp_path)


# ---------------------------------------------------------------------------------------------
# Pieces.

def test_presets_match_spec():
    spec = {  # SPEC §8.2 rendering constants and §8.3 recipe values
        'ffhq': dict(depth_resolution=48, ray_start=2.25, ray_end=3.3, box_warp=1, white_back=False,
                     avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2], h_mean=math.pi / 2, gamma=1,
                     dis_cam_weight=2, pose_gd_weight=1, flip_type='flip_both', dataset_resolution=256),
        'cats': dict(depth_resolution=48, ray_start=2.25, ray_end=3.3, box_warp=1, white_back=False,
                     avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0], h_mean=math.pi / 2, gamma=5,
                     dis_cam_weight=10, pose_gd_weight=10, create_label_fov=18.837, dataset_resolution=256),
        'shapenet': dict(depth_resolution=64, ray_start=0.1, ray_end=2.6, box_warp=1.6, white_back=True,
                         avg_camera_radius=1.7, avg_camera_pivot=[0, 0, 0], h_mean=math.pi, gamma=0.3,
                         dis_cam_weight=2, pose_gd_weight=2, flip_type='flip_both_shapenet',
                         clamp_h=[0, 2 * math.pi], clamp_v=[0, 3.1415926], dataset_resolution=128),
    }
    for cfg, expected in spec.items():
        c = config_lib.build_config(cfg, data='x.zip')
        flat = {k: v for section in c.to_dict().values() if isinstance(section, dict) for k, v in section.items()}
        for key, value in expected.items():
            got = flat[key]
            assert (list(got) == pytest.approx(value)) if isinstance(value, list) else got == pytest.approx(value), \
                (cfg, key)
        assert c.rendering.plane_axes == 'correct' and c.batch == 32 and c.metrics == ('fid50k_full',)
        assert c.rendering_kwargs()['superresolution_module'] == ('SuperresolutionHybrid2X' if cfg == 'shapenet'
                                                                  else 'SuperresolutionHybrid4X')
        assert c.loss_kwargs()['blur_fade_kimg'] == 200 and c.ema_kimg() == 10
    s = config_lib.build_config('synthetic', data='x.zip')
    assert (s.data.dataset_resolution, s.rendering.neural_rendering_resolution_initial) == (32, 32)
    assert not s.model.superres and s.data.create_label_fov == 30
    assert s.model.plane_resolution == 32 and s.rendering.depth_resolution == 12 and s.batch == 8
    assert s.rendering.plane_axes == 'correct' and s.metrics == ()


def test_config_layers_and_round_trip():
    c = config_lib.build_config('shapenet', data='d.zip', gamma=None, glr=0.001, plane_axes='legacy', workers=0)
    assert c.loss.gamma == 0.3                  # None = not given: the preset's value
    assert c.optim.glr == 0.001 and c.rendering.plane_axes == 'legacy' and c.data.workers == 0
    assert config_lib.TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert c.run_desc == 'shapenet-d-gpus1-batch32-gamma0.3'
    with pytest.raises(KeyError):
        config_lib.build_config('ffhq', nonsense=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.loss.gamma = 1
    assert config_lib.replace(c, batch=64).loss_kwargs()['blur_fade_kimg'] == 400   # scaled by batch/32


def test_rank_sliced_sampler_and_resume_position():
    data = list(range(10))
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]
    one = take(training_loop.RankSlicedSampler(data, 0, 1, batch=4, seed=3), 12)
    r0 = take(training_loop.RankSlicedSampler(data, 0, 2, batch=4, seed=3), 6)
    r1 = take(training_loop.RankSlicedSampler(data, 1, 2, batch=4, seed=3), 6)
    assert one == [x for i in range(3) for x in r0[2 * i:2 * i + 2] + r1[2 * i:2 * i + 2]]
    assert take(training_loop.RankSlicedSampler(data, 0, 1, batch=4, seed=3, start_batch=2), 4) == one[8:12]


def test_find_latest_and_plan_run(tmp_path):
    run = tmp_path / '00003-synthetic-d-gpus1-batch8-gamma1'
    run.mkdir()
    for tag in ('000001', '000002', '000003'):   # minimal states: plan_run loads them (safely) to check
        checkpoint.save_training_state(str(run / f'training-state-{tag}.pt'),
                                       dict(counters={}, optimizers={}, ranks=[]))
    for tag in ('000001', '000002'):
        (run / f'network-snapshot-{tag}.pkl').write_bytes(b'')
    (run / 'training-state-000009.pt.tmp123').write_bytes(b'')
    assert checkpoint.find_latest(str(run)).endswith('training-state-000002.pt')   # 000003 has no pickle
    assert checkpoint.snapshot_tag(1008) == '000001' and checkpoint.snapshot_tag(16, fine=True) == '000000.016'

    c = config_lib.build_config('synthetic', data='d.zip')
    desc, cfg = c.run_desc, c.to_dict()
    (run / 'training_options.json').write_text(json.dumps({'config': cfg}))
    assert checkpoint.plan_run(str(tmp_path), desc, cfg, 'auto') == checkpoint.RunPlan(
        str(run), state=str(run / 'training-state-000002.pt'))
    longer = config_lib.replace(c, kimg=500).to_dict()          # kimg may change on resume
    assert checkpoint.plan_run(str(tmp_path), desc, longer, 'auto').state is not None
    other = config_lib.replace(c, glr=0.1).to_dict()            # other options: a new run
    plan = checkpoint.plan_run(str(tmp_path), desc, other, 'auto')
    assert plan.state is None and os.path.basename(plan.run_dir) == f'00004-{desc}'
    with pytest.raises(ValueError, match='different options: optim.glr'):
        checkpoint.plan_run(str(tmp_path), desc, other, str(run))
    assert checkpoint.plan_run(str(tmp_path), desc, cfg, None).run_dir.endswith(f'00005-{desc}')


@pytest.fixture
def global_flags():
    """training_loop.setup_backends sets process-wide flags; restore them for the other tests."""
    from torch_utils.ops import conv2d_gradfix, grid_sample_gradfix
    saved = (conv2d_gradfix.enabled, grid_sample_gradfix.enabled, torch.backends.cudnn.benchmark,
             torch.get_rng_state(), np.random.get_state())
    yield
    conv2d_gradfix.enabled, grid_sample_gradfix.enabled, torch.backends.cudnn.benchmark = saved[:3]
    torch.set_rng_state(saved[3])
    np.random.set_state(saved[4])


def test_metrics_hook_calls_metric_main(dataset, tmp_path, monkeypatch, global_flags, single_thread):
    calls = []

    class StubMetricMain:
        @staticmethod
        def calc_metric(metric, G, dataset_kwargs, num_gpus, rank, device, trust_pickle):
            calls.append((metric, type(G).__name__, dataset_kwargs['path'], num_gpus, rank))
            return dnnlib.EasyDict(results=dnnlib.EasyDict({metric: 1.5}), metric=metric)

        @staticmethod
        def report_metric(result, run_dir, snapshot_pkl):
            with open(os.path.join(run_dir, f'metric-{result.metric}.jsonl'), 'at') as f:
                f.write(json.dumps(dict(result, snapshot_pkl=os.path.basename(snapshot_pkl))) + '\n')

    monkeypatch.setattr(training_loop, 'load_metric_main', lambda: StubMetricMain)
    c = config_lib.build_config('synthetic', data=str(dataset.unlabeled), kimg=0.008, metrics=('stub',), **TINY)
    training_loop.main(DistContext(0, 1, torch.device('cpu')), c, str(tmp_path), None)
    run_dir = only_run_dir(tmp_path)
    assert calls == [('stub', 'TriPlaneGenerator', str(dataset.unlabeled), 1, 0)]
    row = json.loads(open(os.path.join(run_dir, 'metric-stub.jsonl')).read())
    assert row['snapshot_pkl'] == 'network-snapshot-000000.008.pkl'
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(run_dir)
    acc.Reload()
    assert [e.value for e in acc.Scalars('Metrics/stub')] == [1.5]


def test_resume_from_network_pickle(dataset, run_a, tmp_path, global_flags):
    """--resume PATH.pkl (EG3D): a new run directory, weights from the pickle, counters from 0,
    blur off and EMA ramp-up off."""
    pkl = os.path.join(run_a, 'network-snapshot-000000.032.pkl')
    c = config_lib.build_config('synthetic', data=str(dataset.unlabeled), **TINY)
    plan = checkpoint.plan_run(str(tmp_path), c.run_desc, c.to_dict(), pkl)
    assert plan.network == pkl and plan.state is None and os.path.dirname(plan.run_dir) == str(tmp_path)
    nets = training_loop.build_networks(DistContext(0, 1, torch.device('cpu')), c, pkl)
    snap = load_pickle(pkl)
    for module, name in zip(nets, ('G', 'D', 'G_ema')):
        theirs = snap[name].state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in module.state_dict().items()), name
    assert c.loss_kwargs(from_pickle=True)['blur_init_sigma'] == 0 and c.loss_kwargs()['blur_init_sigma'] == 1  # preset


@pytest.mark.parametrize('pose_source', ['dataset', 'prior'])
def test_other_pose_sources_train(pose_source, dataset, tmp_path, global_flags, single_thread):
    """EG3D's loss path (label-conditioned D, generator pose conditioning with swaps) runs end to end."""
    c = config_lib.build_config('synthetic', data=str(dataset.labeled), kimg=0.016, pose_source=pose_source,
                                gen_pose_cond=True, gpc_reg_prob=0.5, **TINY)
    assert c.D_kwargs()['c_dim'] == 25 and not c.D_kwargs()['pose_head']
    training_loop.main(DistContext(0, 1, torch.device('cpu')), c, str(tmp_path), None)
    snap = load_pickle(os.path.join(only_run_dir(tmp_path), 'network-snapshot-000000.016.pkl'))
    assert all(torch.isfinite(p).all() for p in snap['G'].parameters())
