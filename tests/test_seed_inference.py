"""The inference scripts on pi-GAN, GOF and ShadeGAN snapshots (issue 18 item 5): gen_samples_pose.py
(images, depth, meshes from the density or the occupancy field) and gen_videos.py (orbits, and
ShadeGAN's relighting video: same object and camera, moving light).

Each preset trains 0.016 kimg (tests/seed_helpers.py train_tiny); its untrained field is then
shifted (the sigma head's bias) so that seed 0's raw field has its median at the generator's
default iso level (training/shapes.py surface_level: 10 for density, 0 = logit(0.5) for GOF's
occupancy): the default --shapes path then meets a real surface and the renders are not empty.
"""

import pickle

import imageio
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import gen_samples_pose
import gen_videos
import legacy
from seed_helpers import TINY_SAMPLES, make_heads, train_tiny   # tests/seed_helpers.py
from training import shapes
from training.cameras import FOV_to_intrinsics

pytestmark = pytest.mark.usefixtures('single_thread')   # tests/conftest.py
SHAPE_RES = 24
PRESETS = ('pigan', 'gof', 'shadegan')
SYNTHETIC = ['--dataset', 'synthetic', '--fov-deg', 30]


@pytest.fixture(scope='module')
def heads(tmp_path_factory):
    return make_heads(tmp_path_factory.mktemp('lit_heads'), '--light', 'mvn')


def shift_to_surface(G):
    """Move the raw field (sigma head bias) so that seed 0's median is G's default iso level."""
    c = gen_samples_pose.frontal_label(G, FOV_to_intrinsics(30), 'cpu')
    z = torch.from_numpy(np.random.RandomState(0).randn(1, G.z_dim)).float()
    pad = int(shapes.PAD_PER_256 * SHAPE_RES / 256)
    inner = shapes.extract_density(G, G.mapping(z, c), SHAPE_RES)[pad:-pad, pad:-pad, pad:-pad]
    with torch.no_grad():
        G.decoder.sigma_head.bias += shapes.surface_level(G) - float(np.median(inner))


@pytest.fixture(scope='module', params=PRESETS)
def snapshot(request, heads, tmp_path_factory):
    """(preset, path of a snapshot of it with a shifted field)."""
    cfg, root = request.param, tmp_path_factory.mktemp(request.param)
    run_dir = train_tiny(cfg, heads, root / 'runs', *([] if cfg == 'gof' else TINY_SAMPLES))
    with open(run_dir / 'network-snapshot-000000.016.pkl', 'rb') as f:
        data = legacy.load_network_pkl(f)
    G = data['G_ema'].eval().requires_grad_(False)
    shift_to_surface(G)
    path = root / 'network-snapshot-shifted.pkl'
    with open(path, 'wb') as f:
        pickle.dump(dict(G=G, D=data['D'], G_ema=G, augment_pipe=None, training_set_kwargs={}), f)
    return cfg, str(path)


def run(main, args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_gen_samples_images_depth_and_meshes(snapshot, tmp_path):
    cfg, path = snapshot
    res = run(gen_samples_pose.main, ['--network', path, '--seeds', '0', '--outdir', tmp_path, *SYNTHETIC,
                                      '--shapes', '--shape-res', SHAPE_RES, '--shape-format', 'both', '--yaws', 20])
    assert res.exit_code == 0, res.output
    assert 'never crosses' not in res.output, res.output      # the default level is G's surface
    image = np.asarray(imageio.v2.imread(tmp_path / 'seed0000.png'))
    assert image.shape == (16, 16, 3) and image.std() > 0
    assert np.isfinite(np.load(tmp_path / 'seed0000_depth.npy')).all()
    assert (tmp_path / 'seed0000_yaw20_pitch0.png').exists() and (tmp_path / 'seed0000.mrc').exists()
    vertices, faces = shapes.read_ply(str(tmp_path / 'seed0000.ply'))
    assert len(faces) > 0 and len(vertices) > 0


def test_surface_level_is_the_occupancy_logit_for_gof(snapshot):
    cfg, path = snapshot
    G = legacy.load_network(path, 'G_ema', 'cpu')
    assert shapes.surface_level(G) == (0.0 if cfg == 'gof' else shapes.DEFAULT_LEVEL)


def test_gen_videos_orbit(snapshot, tmp_path):
    _, path = snapshot
    out = tmp_path / 'orbit.mp4'
    res = run(gen_videos.main, ['--network', path, '--seeds', '0-1', '--grid', '2x1', '--frames', 3,
                                '--pose-samples', 20, *SYNTHETIC, '--output', out, '--depth'])
    assert res.exit_code == 0, res.output
    written = [p for p in tmp_path.iterdir() if p.stem in ('orbit', 'orbit_depth')]   # mp4, or the GIF fallback
    assert len(written) == 2
    frames = imageio.v2.mimread(str(next(p for p in written if p.stem == 'orbit')))
    assert len(frames) == 3 and frames[0].shape[:2] == (16, 32)


def mean_abs(a, b):
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_relighting_video_moves_the_light_not_the_camera(snapshot, tmp_path):
    cfg, path = snapshot
    args = ['--network', path, '--seeds', '0', '--grid', '1x1', '--frames', 4, '--pose-samples', 20, *SYNTHETIC,
            '--output', tmp_path / 'relight.mp4', '--depth', '--light-path', 'orbit']
    res = run(gen_videos.main, args)
    if cfg != 'shadegan':
        errors = [ln for ln in res.output.splitlines() if ln.startswith('Error')]
        assert res.exit_code == 2 and len(errors) == 1 and "shading 'lambertian'" in errors[0], res.output
        assert not list(tmp_path.iterdir())
        return
    assert res.exit_code == 0, res.output
    (rgb,) = [p for p in tmp_path.iterdir() if p.stem == 'relight']
    (depth,) = [p for p in tmp_path.iterdir() if p.stem == 'relight_depth']
    frames, depths = imageio.v2.mimread(str(rgb)), imageio.v2.mimread(str(depth))
    assert len(frames) == 4 and len(depths) == 4
    assert min(mean_abs(frames[0], f) for f in frames[1:]) > 2          # the light moves: the shading changes
    assert max(mean_abs(depths[0], d) for d in depths[1:]) < 0.5        # the camera and the object do not


def test_light_orbit_by_hand():
    lights = gen_videos.light_orbit((0.17, 0.42), 1.5, 4)       # ShadeGAN's demo strengths, l_x up to 1.5
    expected = [(0.17, 0.42, 0.0, 1.5), (0.17, 0.42, 1.5, 0.0), (0.17, 0.42, 0.0, -1.5), (0.17, 0.42, -1.5, 0.0)]
    assert np.allclose(lights, expected, atol=1e-12)
