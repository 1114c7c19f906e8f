"""Synthetic data with known light (SEEDS_SPEC §6.4): the Lambertian shading formula, the light
law and its spec, and make_synthetic.py --light (lights and unit normals in the GT npz)."""

import math
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import make_synthetic
from training.synthetic.lights import LightMVN, lambertian_shading, light_terms, parse_light_spec
from training.synthetic.poses import make_cameras
from training.synthetic.render import RenderOptions, render
from training.synthetic.shapes import ShapeBatch
from tests.test_synthetic import _Sphere

pytestmark = pytest.mark.usefixtures('single_thread')


def test_lambertian_shading_golden():
    # l = (0.2, 0.4, 1, 0.5): k_a = 0.6, k_d = 0.7, L = (1, 0.5, 1)/1.5 = (2/3, 1/3, 2/3)
    light = torch.tensor([[0.2, 0.4, 1.0, 0.5]], dtype=torch.float64)
    k_a, k_d, L = light_terms(light)
    assert (k_a.item(), k_d.item()) == pytest.approx((0.6, 0.7))
    torch.testing.assert_close(L, torch.tensor([[2 / 3, 1 / 3, 2 / 3]], dtype=torch.float64))
    normals = torch.cat([L, -L, torch.tensor([[1 / 3, 2 / 3, -2 / 3]], dtype=torch.float64)])  # N = L, -L, N.L = 0
    s = lambertian_shading(normals, light.expand(3, 4))
    torch.testing.assert_close(s[:, 0], torch.tensor([1.3, 0.6, 0.6], dtype=torch.float64))   # k_a + k_d, k_a, k_a


def test_render_under_a_light_golden_sphere():
    # Frontal camera, sphere r = 0.3, R = 33 (the centre ray hits normal (0, 0, 1)), no AA.
    # l = (-0.6, 0, 0, 0): k_a = 0.2, k_d = 0.5, L = (0, 0, 1): s = 0.7 at the centre (no sky
    # factor), albedo 0.5 -> 0.35 -> round(89.25) = 89. A ray at the rim sees n.L ~ 0: ~ k_a.
    shapes = ShapeBatch(params=torch.tensor([[0.3]]), palette=torch.full((1, 1, 3), 0.5))
    cam = make_cameras([math.pi / 2], [math.pi / 2], radius=2.7, fov=30.0)
    out = render(_Sphere(), shapes, cam, RenderOptions(resolution=33, supersample=1, normals=True),
                 light=torch.tensor([[-0.6, 0.0, 0.0, 0.0]]))
    assert out.image[0, 16, 16].tolist() == [89, 89, 89]
    rim = out.mask[0, 16].nonzero()[0].item()          # first object pixel of the middle row
    assert out.image[0, 16, rim, 0].item() < 0.5 * (0.2 + 0.5 * 0.5) * 255   # n.L < 0.5 at the rim


def test_light_law_and_spec():
    assert parse_light_spec('fixed') is None
    law = parse_light_spec('mvn:a_mean=0.1,lx_std=1.5')
    assert law == LightMVN(a_mean=0.1, lx_std=1.5)
    x = law.sample(200_000, np.random.default_rng(0))
    np.testing.assert_allclose(x.mean(0), law.mean, atol=0.01)
    np.testing.assert_allclose(np.cov(x.T), law.cov, atol=0.01)
    for bad, word in (('sun', 'sun'), ('mvn:a_sd=1', 'a_sd'), ('mvn:a_std=-1', '>= 0'), ('fixed:a_mean=1', 'fixed')):
        with pytest.raises(ValueError, match=word):
            parse_light_spec(bad)


def _run(tmp_path, outdir, *extra):
    args = ['--outdir', str(tmp_path / outdir), '--num', '5', '--resolution', '16', '--seed', '3',
            '--family', 'head', *extra]
    return CliRunner().invoke(make_synthetic.main, args)


def test_cli_light_mode_stores_lights_and_unit_normals(tmp_path):
    assert _run(tmp_path, 'lit', '--light', 'mvn:ly_mean=0.5').exit_code == 0
    assert _run(tmp_path, 'plain').exit_code == 0
    lit, plain = np.load(tmp_path / 'lit' / 'head16_gt.npz'), np.load(tmp_path / 'plain' / 'head16_gt.npz')
    assert lit['light'].shape == (5, 4) and lit['light'].dtype == np.float32
    assert str(lit['light_spec']) == 'mvn:ly_mean=0.5' and abs(lit['light'][:, 3].mean() - 0.5) < 0.5
    normals, mask = lit['normals'], lit['mask']
    assert normals.shape == (5, 16, 16, 3) and normals.dtype == np.float32 and mask.any()
    np.testing.assert_allclose(np.linalg.norm(normals[mask], axis=-1), 1, atol=1e-5)
    assert not normals[~mask].any()
    # Visible surfaces face the camera: n . forward < 0 (allowing for the field of view and AA pixels).
    assert (np.einsum('nijk,nk->nij', normals, lit['cam2world'][:, :3, 2])[mask] < 0.2).mean() > 0.95
    # Default mode unchanged: no light keys; the lights' own RNG stream leaves every other draw as it was.
    assert 'light' not in plain.files and 'normals' not in plain.files
    for key in ('pose', 'cam2world', 'depth', 'mask', 'shape_params'):
        assert np.array_equal(lit[key], plain[key]), key
    read = lambda d: zipfile.ZipFile(tmp_path / d / 'head16_labeled.zip').read('00000/img00000001.png')  # noqa: E731
    assert read('lit') != read('plain')   # the shading did change


def test_cli_light_mode_is_deterministic_by_seed(tmp_path):
    for outdir, seed in (('a', '3'), ('b', '3'), ('c', '4')):
        assert _run(tmp_path, outdir, '--light', 'mvn', '--seed', seed).exit_code == 0
    a, b, c = (np.load(tmp_path / d / 'head16_gt.npz') for d in 'abc')
    assert np.array_equal(a['light'], b['light']) and np.array_equal(a['normals'], b['normals'])
    assert not np.array_equal(a['light'], c['light'])
    read = lambda d: zipfile.ZipFile(tmp_path / d / 'head16_labeled.zip').read('00000/img00000002.png')  # noqa: E731
    assert read('a') == read('b')


def test_cli_bad_light_is_one_line_error(tmp_path):
    res = _run(tmp_path, 'x', '--light', 'mvn:azimuth=1')
    assert res.exit_code != 0 and res.output.strip().count('\n') == 0
    assert res.output.startswith('Error: --light:') and 'azimuth' in res.output
    assert not (tmp_path / 'x').exists()
