"""Synthetic data: symmetric SDFs, the sphere tracer, pose laws and the make_synthetic CLI."""

import io
import json
import math
import os
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import make_synthetic
from training.cameras import FOV_to_intrinsics, Camera, cam2world_to_pose, mirror_yaw
from training.synthetic.poses import Gaussian, Mixture, Uniform, make_cameras, parse_pose_spec, parse_value
from training.synthetic.render import RenderOptions, render, sphere_trace
from training.synthetic.shapes import FAMILIES, ShapeBatch, ShapeFamily, sd_sphere

pytestmark = pytest.mark.usefixtures('single_thread')


def _random_points(n, seed, half=0.6):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 3, generator=g) * 2 - 1) * half


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_sdf_is_mirror_symmetric(name):
    family = FAMILIES[name]
    shapes = family.sample(200, torch.Generator().manual_seed(1))
    p = _random_points(50_000, 2)
    params = shapes.params[torch.randint(200, (50_000,), generator=torch.Generator().manual_seed(3))]
    d, part = family.sdf(p, params)
    d_m, part_m = family.sdf(p * torch.tensor([-1.0, 1.0, 1.0]), params)
    assert torch.allclose(d, d_m, atol=1e-6, rtol=0)
    assert torch.equal(part, part_m)
    assert (d < 0).float().mean() > 0.01         # the points do reach inside the objects


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_objects_fit_their_bounds(name):
    """Every sample lies inside half_extent (within the unit cube), and the cheap enclosing
    volume used to skip the full SDF really encloses the object (so the SDF stays a bound)."""
    family = FAMILIES[name]
    assert all(h <= 0.5 for h in family.half_extent)
    shapes = family.sample(500, torch.Generator().manual_seed(4))
    p = _random_points(200_000, 5, half=0.5)
    params = shapes.params[torch.randint(500, (200_000,), generator=torch.Generator().manual_seed(6))]
    c = family.columns(params)
    x, y, z = p[:, 0].abs(), p[:, 1], p[:, 2]
    detail, _ = family._detail(x, y, z, c)
    inside = detail <= 0
    assert (p[inside].abs() < torch.tensor(family.half_extent)).all()
    bound = family._bound(x, y, z, c)
    assert (bound[inside] <= 1e-6).all()
    d, _ = family.sdf(p, params)     # the full SDF near the volume, the volume's distance elsewhere
    near = bound < family.BOUND_MARGIN
    assert torch.allclose(d[near], detail[near], atol=1e-6) and torch.equal(d[~near], bound[~near])


def _ortho_parts(family, shapes, direction: float, n=96):
    """Part ids hit by an orthographic n x n grid of rays travelling along z (sign `direction`)."""
    u = torch.linspace(-0.45, 0.45, n)
    yy, xx = torch.meshgrid(u, u, indexing='ij')
    origins = torch.stack([xx.flatten(), yy.flatten(), torch.full((n * n,), -direction * 1.0)], -1)
    dirs = torch.tensor([0.0, 0.0, direction]).expand(n * n, 3)
    params = shapes.params[0].expand(n * n, -1)
    t, hit = sphere_trace(family.sdf, params, origins, dirs, torch.zeros(n * n), torch.full((n * n,), 2.0),
                          RenderOptions())
    _, part = family.sdf(origins[hit] + t[hit, None] * dirs[hit], params[hit])
    return torch.bincount(part, minlength=len(family.PARTS))


@pytest.mark.parametrize('seed', [0, 1])
def test_objects_face_plus_z(seed):
    car, head = FAMILIES['car'], FAMILIES['head']
    cars = car.sample(1, torch.Generator().manual_seed(seed))
    heads = head.sample(1, torch.Generator().manual_seed(seed))
    front, back = _ortho_parts(car, cars, -1.0), _ortho_parts(car, cars, 1.0)   # seen from +z / from -z
    hl, tl = car.PARTS.index('headlight'), car.PARTS.index('taillight')
    assert front[hl] > 0 and front[tl] == 0 and back[tl] > 0 and back[hl] == 0
    front, back = _ortho_parts(head, heads, -1.0), _ortho_parts(head, heads, 1.0)
    eye, hair, lips = head.PARTS.index('sclera'), head.PARTS.index('hair'), head.PARTS.index('lips')
    assert front[eye] > 0 and front[lips] > 0 and back[eye] == 0 and back[lips] == 0
    assert back[hair] > front[hair]


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_yaw_mirrored_camera_renders_flipped_image(name):
    """h -> pi - h (world x -> -x, SPEC §3.4) must give the left-right flipped image: checks the
    symmetry of shapes and lights and the camera conventions end to end."""
    family = FAMILIES[name]
    shapes = family.sample(3, torch.Generator().manual_seed(7))
    h = np.array([math.pi / 2 + 0.7, 0.4, math.pi / 2 + 2.5])
    v = np.array([math.pi / 2 - 0.3, math.pi / 2 + 0.1, math.pi / 2 - 0.6])
    cam = make_cameras(h, v)
    cam_m = make_cameras(math.pi - h, v)
    assert torch.allclose(mirror_yaw(cam.cam2world), cam_m.cam2world, atol=1e-6)
    opts = RenderOptions(resolution=32)
    a, b = render(family, shapes, cam, opts), render(family, shapes, cam_m, opts)
    assert a.mask.float().mean() > 0.05
    diff = (a.image.flip(2).float() - b.image.float()).abs()
    # Tolerance: identical up to float rounding of mirrored rays (a silhouette sub-ray may flip).
    assert diff.mean() < 0.5 and (diff > 40).float().mean() < 0.005
    agree = a.mask.flip(2) & b.mask
    assert (a.mask.flip(2) != b.mask).float().mean() < 0.005
    assert torch.allclose(a.depth.flip(2)[agree], b.depth[agree], atol=2e-3)


class _Sphere(ShapeFamily):
    """Test family: a sphere of radius params[:, 0] at the origin, one grey part."""
    name = 'sphere'
    PARAMS = (('r', 0.3, 0.3),)
    PARTS = ('grey',)
    half_extent = (0.5, 0.5, 0.5)

    def _bound(self, x, y, z, c):
        return sd_sphere(x, y, z, c['r'])

    def _detail(self, x, y, z, c):
        d = sd_sphere(x, y, z, c['r'])
        return d, torch.zeros_like(d, dtype=torch.long)


def test_depth_and_shading_golden_sphere():
    # Frontal camera on +z at radius 2.7, fov 30 (f = 1/(tan(30*3.14159/360)*1.414) = 2.63936),
    # sphere r = 0.3, R = 33 (odd: the centre pixel's ray passes through the origin), no AA.
    # centre depth = 2.7 - 0.3 = 2.4; centre normal (0, 0, 1) -> light 0.2*0.8 + 0.5*1 = 0.66,
    # albedo 0.5 -> 0.33 -> 84/255. Silhouette: half-angle asin(0.3/2.7), radius in pixels
    # f * tan(asin(1/9)) * 33 = 2.63936 * 0.111803 * 33 = 9.738 -> area pi * 9.738^2 = 297.9 px.
    shapes = ShapeBatch(params=torch.tensor([[0.3]]), palette=torch.full((1, 1, 3), 0.5))
    cam = make_cameras([math.pi / 2], [math.pi / 2], radius=2.7, fov=30.0)
    assert torch.allclose(cam.cam2world[0, :3, 3], torch.tensor([0.0, 0.0, 2.7]), atol=1e-6)
    opts = RenderOptions(resolution=33, supersample=1, ambient=0.2, lights=(((0.0, 0.0, 1.0), 0.5),),
                         normals=True)
    out = render(_Sphere(), shapes, cam, opts)
    assert abs(out.depth[0, 16, 16].item() - 2.4) < 1e-3
    assert out.image[0, 16, 16].tolist() == [84, 84, 84]
    assert torch.allclose(out.normals[0, 16, 16], torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)
    assert abs(out.mask.sum().item() - 297.9) < 12
    assert out.mask[0, 0, 0].item() is False and math.isinf(out.depth[0, 0, 0].item())
    assert out.image[0, 0, 0].tolist() == [255, 255, 255]
    hit_depth = out.depth[out.mask]
    assert (hit_depth >= 2.4 - 1e-3).all() and (hit_depth < 2.7).all()


def test_pose_values_and_specs():
    assert parse_value('pi/2') == pytest.approx(math.pi / 2)
    assert parse_value('-3pi/4') == pytest.approx(-3 * math.pi / 4)
    assert parse_value('0.5*pi') == pytest.approx(math.pi / 2)
    assert parse_value('2pi') == pytest.approx(2 * math.pi)
    assert parse_value(' 0.25 ') == 0.25
    assert parse_pose_spec('gaussian') == Gaussian()
    assert parse_pose_spec('uniform:h_min=pi/4,h_max=3pi/4') == Uniform(h_min=math.pi / 4, h_max=3 * math.pi / 4)
    mix = parse_pose_spec('mix:1.57:0.2:0.5,0.0:0.2:0.25,3.14:0.2:0.25:1.2:0.05')
    assert isinstance(mix, Mixture) and mix.weights == (0.5, 0.25, 0.25)
    assert mix.modes[2] == Gaussian(3.14, 0.2, 1.2, 0.05)
    for bad in ['gauss', 'gaussian:h_sd=1', 'gaussian:h_std=-1', 'gaussian:h_std=abc', 'gaussian:h_std',
                'mix:', 'mix:1:2', 'mix:1:0.1:0', 'uniform:h_min=2,h_max=1', 'gaussian:v_std=inf']:
        with pytest.raises(ValueError, match='bad pose spec') as info:
            parse_pose_spec(bad)
        assert '\n' not in str(info.value)


def test_pose_samples_have_requested_statistics():
    rng = np.random.default_rng(0)
    h, v = parse_pose_spec('gaussian:h_mean=1.2,h_std=0.3,v_std=0.1').sample(200_000, rng)
    # Standard error of the mean: 0.3 / sqrt(2e5) = 7e-4; tolerances are ~6 sigma.
    assert abs(h.mean() - 1.2) < 4e-3 and abs(h.std() - 0.3) < 4e-3
    assert abs(v.mean() - math.pi / 2) < 2e-3 and abs(v.std() - 0.1) < 2e-3
    h, v = parse_pose_spec('uniform:h_min=1,h_max=2,v_min=1.4,v_max=1.6').sample(200_000, rng)
    assert h.min() >= 1 and h.max() < 2 and abs(h.mean() - 1.5) < 4e-3 and abs(h.std() - 1 / math.sqrt(12)) < 4e-3
    assert v.min() >= 1.4 and v.max() < 1.6
    h, v = parse_pose_spec('mix:pi/2:0.1:0.5,0:0.1:0.25,pi:0.1:0.25:1.2:0.05').sample(200_000, rng)
    near = lambda x: (np.abs(h - x) < 0.6)   # noqa: E731  (modes are 15 std apart)
    assert [round(near(x).mean(), 2) for x in (math.pi / 2, 0, math.pi)] == [0.5, 0.25, 0.25]
    assert abs(h[near(0)].std() - 0.1) < 3e-3 and abs(v[near(math.pi)].mean() - 1.2) < 2e-3
    _, v = Gaussian(v_mean=0.0, v_std=1.0).sample(1000, rng)
    assert v.min() > 0 and v.max() < math.pi       # clamped like EG3D's samplers


def _run_cli(tmp_path, *extra, outdir='out'):
    args = ['--outdir', str(tmp_path / outdir), '--num', '5', '--resolution', '16', '--seed', '3', *extra]
    return CliRunner().invoke(make_synthetic.main, args)


def test_cli_writes_dataset_with_true_labels(tmp_path):
    res = _run_cli(tmp_path, '--family', 'head', '--pose', 'mix:pi/2:0.3:0.5,-pi/2:0.3:0.5', '--fov', '25')
    assert res.exit_code == 0, res.output
    out = tmp_path / 'out'
    assert sorted(os.listdir(out)) == ['head16_gt.npz', 'head16_labeled.zip', 'head16_unlabeled.zip']
    gt = np.load(out / 'head16_gt.npz')
    assert gt['pose'].shape == (5, 2) and gt['depth'].shape == (5, 16, 16) and gt['depth'].dtype == np.float32
    assert gt['mask'].dtype == bool and str(gt['family']) == 'head' and int(gt['seed']) == 3
    assert np.isinf(gt['depth'][~gt['mask']]).all() and (np.abs(gt['depth'][gt['mask']] - 2.7) < 0.5).all()
    with zipfile.ZipFile(out / 'head16_labeled.zip') as zl, zipfile.ZipFile(out / 'head16_unlabeled.zip') as zu:
        names = sorted(n for n in zl.namelist() if n.endswith('.png'))
        assert names == [f'00000/img{i:08d}.png' for i in range(5)]
        assert json.loads(zu.read('dataset.json')) == {'labels': None}
        labels = json.loads(zl.read('dataset.json'))['labels']
        for name in names:
            assert zl.read(name) == zu.read(name)
            img = np.asarray(Image.open(io.BytesIO(zl.read(name))))
            assert img.shape == (16, 16, 3) and img.dtype == np.uint8
    assert [name for name, _ in labels] == names
    c = torch.tensor([label for _, label in labels], dtype=torch.float32)
    cam = Camera.from_label(c)
    assert torch.allclose(cam.intrinsics, FOV_to_intrinsics(25.0).expand(5, 3, 3))
    assert np.allclose(cam.cam2world.numpy(), gt['cam2world'])
    h, v, radius = cam2world_to_pose(cam.cam2world.double())
    dh = (h[:, 0].numpy() - gt['pose'][:, 0] + math.pi) % (2 * math.pi) - math.pi   # h is modulo 2 pi
    assert np.abs(dh).max() < 1e-5 and np.abs(v[:, 0].numpy() - gt['pose'][:, 1]).max() < 1e-5
    assert torch.allclose(radius, torch.full_like(radius, 2.7))


def test_cli_is_deterministic_by_seed(tmp_path):
    assert _run_cli(tmp_path, outdir='a').exit_code == 0
    assert _run_cli(tmp_path, outdir='b').exit_code == 0
    assert _run_cli(tmp_path, '--seed', '4', outdir='c').exit_code == 0
    read = lambda d: zipfile.ZipFile(tmp_path / d / 'car16_labeled.zip').read('00000/img00000004.png')  # noqa: E731
    assert read('a') == read('b') and read('a') != read('c')
    gt_a, gt_b = np.load(tmp_path / 'a' / 'car16_gt.npz'), np.load(tmp_path / 'b' / 'car16_gt.npz')
    for key in ('pose', 'cam2world', 'depth', 'mask', 'shape_params'):
        assert np.array_equal(gt_a[key], gt_b[key])


def test_cli_bad_pose_is_one_line_error_and_writes_nothing(tmp_path):
    res = _run_cli(tmp_path, '--pose', 'gaussian:h_sd=0.3')
    assert res.exit_code != 0
    assert res.output.strip().count('\n') == 0 and res.output.startswith('Error:') and 'h_sd' in res.output
    assert not (tmp_path / 'out').exists()


def test_cli_failure_leaves_no_files(tmp_path, monkeypatch):
    calls = []

    def failing_encode(image):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return b'png'

    monkeypatch.setattr(make_synthetic, 'encode_png', failing_encode)
    res = _run_cli(tmp_path)
    assert res.exit_code != 0 and len(calls) == 4
    assert not (tmp_path / 'out').exists()    # the folder it created is removed too
