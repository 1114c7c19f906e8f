"""--res_stages: a pi-GAN-family curriculum's render resolutions (SEEDS_SPEC §1.8, img_size). The
schedule against hand values, the reals D sees at a low stage, the generator's image at R < H, the
option's usage errors, and a tiny run whose snapshot renders at its stage."""

import json

import pytest
import torch
import torch.nn.functional as F

import dnnlib
from seed_helpers import assert_one_line_usage_error, label, load_snapshot_both_ways, make_heads, train_tiny
from training import config as config_lib, schedules
from training.losses.common import real_pair

pytestmark = pytest.mark.usefixtures('single_thread')   # tests/conftest.py

# pi-GAN CARLA's curriculum (SEEDS_SPEC §2.2): 32 px, 64 px from step 10k, 128 px from 55k.
CARLA = ((0, 32), (10_000, 64), (55_000, 128))


@pytest.mark.parametrize('nimg, batch, expected', [(0, 30, 32), (30 * 9_999, 30, 32), (30 * 10_000, 30, 64),
                                                   (14 * 54_999.5, 14, 64), (10 * 55_000, 10, 128)])
def test_stage_resolution_against_hand_values(nimg, batch, expected):
    assert schedules.stage_resolution(nimg, batch, 999, CARLA) == expected


def test_render_resolution_uses_the_stages_else_the_fade():
    nrr = (64, 128, 1)                                                   # EG3D's fade: 64 -> 128 over 1 kimg
    assert schedules.render_resolution(500, nrr) == 96                   # halfway: rint(64 * 0.5 + 128 * 0.5)
    assert schedules.render_resolution(500, nrr, dict(batch=10, stages=((0, 16), (40, 32)))) == 32   # step 50
    assert schedules.render_resolution(500, nrr, dict(batch=10, stages=((60, 32),))) == 96   # before the first


def test_real_pair_at_a_low_stage_shows_reals_at_r_in_both_branches():
    x = torch.randn(2, 3, 16, 16)
    small = F.interpolate(x, size=(8, 8), mode='bilinear', align_corners=False)
    pair = real_pair(x, 8, 0.0, image_from_raw=True)
    torch.testing.assert_close(pair['image_raw'], small)
    torch.testing.assert_close(pair['image'], F.interpolate(small, size=(16, 16), mode='bilinear', align_corners=False))
    assert real_pair(x, 8, 0.0)['image'] is x                            # with super-resolution: as EG3D
    assert real_pair(x, 16, 0.0, image_from_raw=True)['image'] is x      # the last stage: the reals themselves


def _tiny_pigan(resolution=16):
    c = config_lib.build_config('pigan', data='x.zip', dataset_resolution=resolution,
                                neural_rendering_resolution_initial=resolution, siren_hidden=16, siren_layers=2,
                                z_dim=16, w_dim=16, depth_resolution=4, depth_resolution_importance=4)
    torch.manual_seed(0)
    return dnnlib.util.construct_class_by_name(**c.G_kwargs())


def test_generator_without_sr_renders_at_r_and_resizes_its_image_to_h():
    G = _tiny_pigan()
    z = torch.randn(2, 16)
    out = G(z, label(2), neural_rendering_resolution=8, generator=torch.Generator().manual_seed(1))
    assert out.image_raw.shape == (2, 3, 8, 8) and out.image_depth.shape == (2, 1, 8, 8)
    torch.testing.assert_close(out.image, F.interpolate(out.image_raw, size=(16, 16), mode='bilinear',
                                                        align_corners=False))
    full = G(z, label(2), generator=torch.Generator().manual_seed(1))   # R = H: the image is the render
    assert full.image.shape == (2, 3, 16, 16) and torch.equal(full.image, full.image_raw)


def test_config_carries_the_stages_into_the_loss():
    c = config_lib.build_config('pigan', data='x.zip', res_stages=((0, 32), (10, 64)))
    assert c.loss_kwargs()['resolution_stages'] == dict(batch=c.batch, stages=((0, 32), (10, 64)))
    assert 'resolution_stages' not in config_lib.build_config('pigan', data='x.zip').loss_kwargs()


_AT16 = ['--cfg', 'pigan', '--dataset_resolution', '16', '--neural_rendering_resolution_initial', '16']


@pytest.mark.parametrize('args', [_AT16 + ['--res_stages', '0:8,0:16'],          # steps not increasing
                                  _AT16 + ['--res_stages', '0:8.5'],             # R not an integer
                                  _AT16 + ['--res_stages', '0:32'],              # R above the data's 16 px
                                  ['--cfg', 'ffhq', '--dataset_resolution', '128', '--res_stages', '0:32']])   # SR
def test_res_stages_usage_errors(tmp_path, args):
    assert_one_line_usage_error(make_heads(tmp_path), tmp_path, args, '--res_stages')


def test_tiny_run_trains_at_its_stage_and_the_snapshot_renders_there(tmp_path):
    heads = make_heads(tmp_path)
    run_dir = train_tiny('pigan', heads, tmp_path / 'runs', '--kimg', '0.008', '--res_stages', '0:8,100:16')
    options = json.loads((run_dir / 'training_options.json').read_text())
    assert options['config']['rendering']['res_stages'] == [[0, 8], [100, 16]]
    (snapshot,) = run_dir.glob('network-snapshot-*.pkl')
    G = load_snapshot_both_ways(snapshot)[0]['G_ema']
    assert G.neural_rendering_resolution == 8                           # the stage of its last step
    out = G(torch.randn(1, G.z_dim), label(1))
    assert out.image_raw.shape[-1] == 8 and out.image.shape[-1] == 16
