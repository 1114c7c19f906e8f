"""A network pickle written before the renderer redesign (issue 17) still loads and renders the
same numbers: tests/data/snapshot_77bb11e_tiny.pkl is a tiny synthetic-preset snapshot written
by revision 77bb11e (training/volumetric_rendering, training/decoder.py, dict outputs), and
..._expected.pt holds what that revision's G_ema and D computed from it (same inputs, seeds)."""

import pathlib

import pytest
import torch

import legacy
from training.generator import TriPlaneGenerator

DATA = pathlib.Path(__file__).resolve().parent / 'data'


@pytest.fixture(scope='module')
def old():
    with open(DATA / 'snapshot_77bb11e_tiny.pkl', 'rb') as f:
        nets = legacy.load_network_pkl(f)             # the safe loader: no code from the pickle runs
    return nets, torch.load(DATA / 'snapshot_77bb11e_tiny_expected.pt', weights_only=True)


def test_old_snapshot_renders_the_same(old):
    nets, expected = old
    G, D = nets['G_ema'], nets['D']
    assert type(G) is TriPlaneGenerator and G.renderer.options.depth_resolution == 4
    with torch.no_grad():
        out = G(expected['z'], expected['c'], noise_mode='const', generator=torch.Generator().manual_seed(1))
        d = D({'image': out.image, 'image_raw': out.image_raw}, expected['c'])
    for key, got in (('image', out.image), ('image_raw', out.image_raw), ('depth', out.image_depth),
                     ('pose', out.pose), ('score', d['score']), ('d_pose', d['pose'])):
        torch.testing.assert_close(got, expected[key], rtol=1e-6, atol=1e-6, msg=key)
