"""Inference scripts on a tiny snapshot: gen_samples_pose.py, gen_videos.py,
plot_pose_distribution.py, and the shape helpers of training/shapes.py (SPEC §9).

The snapshot is written here in the EG3D network-pickle format (dict(G, D, G_ema,
augment_pipe, training_set_kwargs)) with a tiny G (16² renders, 32² images) whose decoder
density bias is shifted so that seed 0's raw density has its median at the default iso level
10: the default --shapes path then yields a real surface.
"""

import json
import math
import os
import pickle

import imageio
import mrcfile
import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import gen_samples_pose
import gen_videos
import legacy
import plot_pose_distribution
from training import shapes
from training.cameras import FOV_to_intrinsics, LookAtPose
from training.dual_discriminator import DualDiscriminator
from training.generator import TriPlaneGenerator

SHAPE_RES = 24


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """Tiny tensors: one intra-op thread is ~30x faster than two on the shared CI box."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_G():
    rk = dict(ray_start=2.25, ray_end=3.3, box_warp=1, depth_resolution=8, depth_resolution_importance=8,
              avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2], superresolution_module='SuperresolutionHybrid2X')
    torch.manual_seed(0)
    return TriPlaneGenerator(16, 25, 16, 32, 3, rendering_kwargs=rk, plane_resolution=16, plane_channels=8,
                             neural_rendering_resolution=16, mapping_kwargs={'num_layers': 2}, channel_base=1024,
                             channel_max=32, num_fp16_res=0, conv_clamp=None, sr_kwargs={'block_channels': (16, 8)})


def seed0_volume(G):
    c = gen_samples_pose.frontal_label(G, FOV_to_intrinsics(18.837), 'cpu')
    z = torch.from_numpy(np.random.RandomState(0).randn(1, G.z_dim)).float()
    return shapes.extract_density(G, G.mapping(z, c, truncation_cutoff=14), SHAPE_RES)


@pytest.fixture(scope='module')
def snapshot(tmp_path_factory):
    G = tiny_G().eval().requires_grad_(False)
    pad = int(shapes.PAD_PER_256 * SHAPE_RES / 256)
    inner = seed0_volume(G)[pad:-pad, pad:-pad, pad:-pad]
    with torch.no_grad():
        G.decoder.net[2].bias[0] += shapes.DEFAULT_LEVEL - float(np.median(inner))   # bias_gain = 1
    torch.manual_seed(1)
    D = DualDiscriminator(2, 32, 3, channel_base=1024, channel_max=32, num_fp16_res=0, conv_clamp=None,
                          pose_head_channels=16).eval().requires_grad_(False)
    path = tmp_path_factory.mktemp('snap') / 'network-snapshot-000000.pkl'
    with open(path, 'wb') as f:
        pickle.dump(dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs=dict(path='x')), f)
    return str(path)


def run(main, args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def png_bit_depth(path):
    with open(path, 'rb') as f:
        head = f.read(26)
    assert head[:8] == b'\x89PNG\r\n\x1a\n' and head[12:16] == b'IHDR'
    return head[24]


def no_temp_files(folder):
    return not [n for n in os.listdir(folder) if n.startswith('.tmp')]


# ----------------------------------------------------------------------------------------
# gen_samples_pose.py

def test_gen_samples_writes_every_file(snapshot, tmp_path):
    out = tmp_path / 'out'
    res = run(gen_samples_pose.main, ['--network', snapshot, '--seeds', '0-1', '--outdir', out, '--trunc', 0.7,
                                      '--shapes', '--shape-res', SHAPE_RES, '--shape-format', 'both',
                                      '--yaws', '-20,20', '--pitches', 5])
    assert res.exit_code == 0, res.output
    assert 'median' in res.output and 'h and phi pooled' in res.output
    G = legacy.load_network(snapshot)
    c = gen_samples_pose.frontal_label(G, FOV_to_intrinsics(18.837), 'cpu')
    for seed in (0, 1):
        stem = out / f'seed{seed:04d}'
        assert np.asarray(PIL.Image.open(f'{stem}.png')).shape == (32, 32, 3)
        pose = np.load(out / f'seed{seed:05d}_pose.npy')
        assert pose.shape == (1, 4, 4) and pose.dtype == np.float32
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, 16)).float()
        expected = G.pose(z, c)
        np.testing.assert_allclose(pose, expected.cam2world.numpy(), rtol=0, atol=1e-6)
        rec = json.load(open(f'{stem}_pose.json'))
        h, v = expected.pose[0].tolist()
        assert rec['h'] == pytest.approx(h) and rec['v'] == pytest.approx(v)
        assert rec['phi'] == pytest.approx(math.acos(1 - 2 * min(max(v, 1e-5), math.pi - 1e-5) / math.pi))
        assert rec['h_deg'] == pytest.approx(math.degrees(h)) and 'phi_deg' in rec
        depth = np.load(f'{stem}_depth.npy')
        assert depth.shape == (16, 16) and depth.dtype == np.float32
        assert png_bit_depth(f'{stem}_depth.png') == 16
        assert np.asarray(PIL.Image.open(f'{stem}_depth.png')).max() == 65535
        for yaw in (-20, 20):
            assert os.path.isfile(f'{stem}_yaw{yaw}_pitch5.png')
        with mrcfile.open(f'{stem}.mrc') as mrc:
            assert mrc.data.shape == (SHAPE_RES,) * 3 and mrc.data.dtype == np.float32
        vertices, faces = shapes.read_ply(f'{stem}.ply')
        if seed == 0:
            assert len(faces) > 0 and faces.max() < len(vertices)
    assert no_temp_files(out)


def test_explicit_angle_render_matches_frontal_camera(snapshot, tmp_path):
    """--yaws 0 --pitches 0 renders the frontal camera (h_mean, pi/2)."""
    res = run(gen_samples_pose.main, ['--network', snapshot, '--seeds', '3', '--outdir', tmp_path, '--yaws', '0'])
    assert res.exit_code == 0, res.output
    G = legacy.load_network(snapshot)
    c = gen_samples_pose.frontal_label(G, FOV_to_intrinsics(18.837), 'cpu')
    z = torch.from_numpy(np.random.RandomState(3).randn(1, 16)).float()
    with torch.no_grad():
        img = G.synthesis(G.mapping(z, c, truncation_cutoff=14), c, noise_mode='const',
                          generator=torch.Generator().manual_seed(3))['image']
    expected = gen_samples_pose.to_uint8(img)
    assert np.array_equal(np.asarray(PIL.Image.open(tmp_path / 'seed0003_yaw0_pitch0.png')), expected)


def test_shape_level_option_and_empty_mesh(snapshot, tmp_path):
    res = run(gen_samples_pose.main, ['--network', snapshot, '--seeds', '0', '--outdir', tmp_path, '--shapes',
                                      '--shape-res', 16, '--shape-format', '.ply', '--shape-level', 1e6])
    assert res.exit_code == 0, res.output
    assert 'never crosses --shape-level' in res.output
    assert len(shapes.read_ply(str(tmp_path / 'seed0000.ply'))[1]) == 0
    assert not (tmp_path / 'seed0000.mrc').exists()


@pytest.mark.parametrize('args, needle', [
    (['--network', 'missing.pkl'], 'missing.pkl'),
    (['--network', '{corrupt}'], 'corrupt.pkl'),
    (['--seeds', '3-1'], '--seeds'),
    (['--yaws', '10,abc'], '--yaws'),
])
def test_cli_errors_are_one_line(snapshot, tmp_path, args, needle):
    corrupt = tmp_path / 'corrupt.pkl'
    corrupt.write_bytes(b'\x80\x04not a pickle')
    base = {'--network': snapshot, '--seeds': '0', '--outdir': str(tmp_path / 'o')}
    base.update(dict(zip(args[::2], args[1::2])))
    argv = [x for kv in base.items() for x in kv]
    argv = [str(corrupt) if a == '{corrupt}' else a for a in argv]
    res = run(gen_samples_pose.main, argv)
    assert res.exit_code == 2
    errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
    assert len(errors) == 1 and needle in errors[0], res.output
    assert 'Traceback' not in res.output


# ----------------------------------------------------------------------------------------
# gen_videos.py

def test_gen_videos_mp4_and_depth(snapshot, tmp_path):
    out = tmp_path / 'orbit.mp4'
    res = run(gen_videos.main, ['--network', snapshot, '--seeds', '0-1', '--grid', '2x1', '--frames', 5,
                                '--pose-samples', 50, '--output', out, '--depth'])
    assert res.exit_code == 0, res.output
    frames = imageio.v2.mimread(str(out))
    assert len(frames) == 5 and frames[0].shape == (32, 64, 3)
    depth = imageio.v2.mimread(str(tmp_path / 'orbit_depth.mp4'))
    assert len(depth) == 5 and depth[0].shape == (16, 32, 3)
    assert no_temp_files(tmp_path)


def test_gen_videos_gif_fallback(snapshot, tmp_path, monkeypatch):
    monkeypatch.setattr(gen_videos, 'ffmpeg_available', lambda: False)
    res = run(gen_videos.main, ['--network', snapshot, '--seeds', '0', '--grid', '1x1', '--frames', 3,
                                '--pose-samples', 10, '--output', tmp_path / 'orbit.mp4'])
    assert res.exit_code == 0, res.output
    assert sum('warning' in ln for ln in res.output.splitlines()) == 1
    assert len(imageio.v2.mimread(str(tmp_path / 'orbit.gif'))) == 3
    assert not (tmp_path / 'orbit.mp4').exists()


def test_gen_videos_grid_mismatch(snapshot, tmp_path):
    res = run(gen_videos.main, ['--network', snapshot, '--seeds', '0-2', '--grid', '2x2', '--output',
                                tmp_path / 'x.mp4'])
    assert res.exit_code == 2 and '--seeds' in res.output


# ----------------------------------------------------------------------------------------
# plot_pose_distribution.py

def make_dataset(folder, n=6, labels=True):
    folder.mkdir()
    rng = np.random.RandomState(0)
    entries = []
    for i in range(n):
        PIL.Image.fromarray(rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f'img{i}.png')
        cam = LookAtPose(torch.tensor([[math.pi / 2 + 0.1 * i]]), torch.tensor([[math.pi / 2 - 0.05 * i]]),
                         [0, 0, 0.2], 2.7)
        entries.append([f'img{i}.png', cam.reshape(-1).tolist() + FOV_to_intrinsics(18.837).reshape(-1).tolist()])
    if labels:
        (folder / 'dataset.json').write_text(json.dumps({'labels': entries}))
    return str(folder)


def test_plot_pose_distribution_with_labels_and_d(snapshot, tmp_path):
    data = make_dataset(tmp_path / 'ds')
    out = tmp_path / 'fig' / 'pose.png'
    res = run(plot_pose_distribution.main, ['--network', snapshot, '--data', data, '--num', 37, '--bins', 7,
                                            '--with-d', '--batch', 4, '--out', out])
    assert res.exit_code == 0, res.output
    assert PIL.Image.open(out).format == 'PNG'
    hist = json.load(open(tmp_path / 'fig' / 'pose.json'))
    assert sum(hist['h']['counts']['generator']) == 37 and sum(hist['v']['counts']['generator']) == 37
    assert np.sum(hist['joint']['counts']['generator']) == 37
    assert sum(hist['h']['counts']['dataset']) == 6 and sum(hist['h']['counts']['discriminator']) == 6
    assert len(hist['h']['edges']) == 8
    # The dataset's yaws are pi/2 + 0.1 i (labels -> cam2world_to_pose).
    assert hist['stats']['dataset']['h_mean'] == pytest.approx(math.pi / 2 + 0.25, abs=1e-5)


def test_plot_pose_distribution_gt_sidecar(snapshot, tmp_path):
    data = make_dataset(tmp_path / 'synth', n=4, labels=False)
    np.savez(tmp_path / 'synth_gt.npz', pose=np.array([[1.5, 1.4], [1.6, 1.7], [1.7, 1.6], [1.4, 1.5]]))
    res = run(plot_pose_distribution.main, ['--network', snapshot, '--data', data, '--num', 20,
                                            '--out', tmp_path / 'p.png'])
    assert res.exit_code == 0, res.output
    hist = json.load(open(tmp_path / 'p.json'))
    assert sum(hist['v']['counts']['dataset']) == 4
    assert hist['stats']['dataset']['v_mean'] == pytest.approx(1.55)


# ----------------------------------------------------------------------------------------
# training/shapes.py

def test_grid_coordinates_float_index_quirk():
    # N = 4, box_warp = 3: voxel 1, origin -1.5. i = 5 -> iz = 1; float division: iy = 5/4 = 1.25,
    # ix = 5/16 = 0.3125 (the reference's quirk); integer division: iy = 1, ix = 0.
    legacy_xyz = shapes.grid_coordinates(5, 6, 4, 3.0)[0].tolist()
    assert legacy_xyz == pytest.approx([0.3125 - 1.5, 1.25 - 1.5, 1 - 1.5])
    exact = shapes.grid_coordinates(0, 64, 4, 3.0, legacy_index=False)
    assert exact[5].tolist() == pytest.approx([-1.5, -0.5, -0.5])
    assert exact[63].tolist() == pytest.approx([1.5, 1.5, 1.5])


def test_mesh_and_ply_round_trip(tmp_path):
    N = 20
    x = np.linspace(-1, 1, N)
    volume = 20 - 30 * (x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    volume = shapes.pad_border(volume.astype(np.float32), 1)
    assert volume[0].max() == shapes.PAD_VALUE and volume[:, :, -1].max() == shapes.PAD_VALUE
    vertices, faces = shapes.mesh_from_volume(volume, 10)
    assert len(faces) > 0
    radius = np.linalg.norm(vertices - (N - 1) / 2, axis=1) * 2 / (N - 1)   # sphere 30 r^2 = 10
    assert np.allclose(radius, math.sqrt(1 / 3), atol=0.05)
    shapes.write_ply(str(tmp_path / 'm.ply'), vertices, faces)
    v2, f2 = shapes.read_ply(str(tmp_path / 'm.ply'))
    assert np.array_equal(v2, vertices) and np.array_equal(f2, faces)
