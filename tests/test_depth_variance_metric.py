"""GOF's weighted depth variance as a registered metric (SEEDS_SPEC §3.4 "Metric", §6.6
`depth_var_weighted`): the 'uniform' evaluation sampler, the golden value of the whole chain
(uniform samples -> occupancy alpha -> cut in front of the secant surface -> weights ->
variance) on a hand-made slab, and the metric end to end on tiny generators."""

import math

import pytest
import torch

from metrics import metric_main
from metrics.depth_variance import evaluation_renderer, recorded_variance
from seed_helpers import make_heads   # tests/seed_helpers.py
from tests.test_gof import make_gof_G
from tests.test_metrics import make_G
from training.rendering.options import RenderingOptions
from training.rendering.renderer import ImportanceRenderer

pytestmark = pytest.mark.usefixtures('single_thread')
F64 = torch.float64


class _SlabField:
    """Occupancy logits along z: -30 (empty) below z = 1.4, 0 (o = 1/2) on [1.4, 1.9), +30 above."""
    batch_size = 1

    def query(self, points, directions=None, channels=None):
        z = points[..., 2:]
        sigma = torch.where(z < 1.4, -30.0, torch.where(z < 1.9, 0.0, 30.0)).to(z.dtype)
        return torch.ones_like(z).expand(*z.shape[:-1], 3), sigma


def _slab_record(**kw):
    opts = RenderingOptions(ray_start=1.0, ray_end=2.0, box_warp=8.0, depth_resolution=5,
                            depth_resolution_importance=3, alpha_rule='occupancy', depth_sampler='uniform', **kw)
    origins = torch.zeros(1, 2, 3, dtype=F64)
    dirs = torch.tensor([0.0, 0.0, 1.0], dtype=F64).expand(1, 2, 3)
    return ImportanceRenderer(opts).render_recorded(_SlabField(), origins, dirs)


def test_uniform_sampler_is_the_plain_linspace_with_the_secant_surface():
    record = _slab_record()
    # 5 samples, no jitter, no fine samples (depth_resolution_importance is ignored)
    assert record.samples.depths[0, 0, :, 0].tolist() == pytest.approx([1.0, 1.25, 1.5, 1.75, 2.0])
    # first occupied sample (sigma > 0) is t = 2.0, bracket (1.75, 2.0) with f = (0, 30): root at 1.75
    torch.testing.assert_close(record.surface_depth, torch.full([1, 2, 1], 1.75, dtype=F64))
    again = _slab_record()
    assert torch.equal(record.output.depth, again.output.depth)     # deterministic
    with pytest.raises(ValueError, match='does not pair'):
        RenderingOptions(ray_start=1.0, ray_end=2.0, box_warp=1.0, depth_resolution=5, depth_resolution_importance=0,
                         depth_sampler='uniform')


def test_slab_golden_value_with_and_without_the_cut():
    # alpha = (0, 0, 1/2, 1/2, 1) at t = (1, 1.25, 1.5, 1.75, 2): w = (0, 0, 1/2, 1/4, 1/4), sum 1;
    # D = 1.6875, sum w (t - D)^2 = 0.04296875, n = 5: var = 0.04296875 / ((1 + 1e-5) 4/5).
    record = _slab_record()
    no_cut = recorded_variance(record._replace(surface_depth=None), 'occupancy', 0.1)
    torch.testing.assert_close(no_cut[:, 0], torch.full([1], 0.04296875 / (1.00001 * 0.8), dtype=F64),
                               rtol=0, atol=1e-8)
    assert no_cut[0, 1].item() == 1.0                       # both rays opaque
    # margin 0.3: the cut is at 1.45, t = 1.5 keeps its alpha: the same value
    torch.testing.assert_close(recorded_variance(record, 'occupancy', 0.3), no_cut)
    # margin 0.1: alpha at t < 1.65 is cut, w = (0, 0, 0, 1/2, 1/2): D = 1.875, var = 0.015625 / 0.8
    cut = recorded_variance(record, 'occupancy', 0.1)
    torch.testing.assert_close(cut[:, 0], torch.full([1], 0.015625 / (1.00001 * 0.8), dtype=F64), rtol=0, atol=1e-7)


def test_rays_without_a_surface_are_not_cut_and_light_rays_not_counted():
    record = _slab_record()
    surface = record.surface_depth.clone()
    surface[0, 1] = float('nan')              # ray 1: no crossing -> keeps its alpha
    rows = recorded_variance(record._replace(surface_depth=surface), 'occupancy', 0.1)
    assert rows[0, 0].item() == pytest.approx((0.015625 + 0.04296875) / (2 * 1.00001 * 0.8), abs=1e-7)
    samples = record.samples
    light = record._replace(samples=samples._replace(weights=samples.weights * 0.5), surface_depth=None)
    rows = recorded_variance(light, 'occupancy', 0.1)
    assert math.isnan(rows[0, 0].item()) and rows[0, 1].item() == 0.0


@pytest.fixture(scope='module')
def heads(tmp_path_factory):
    return make_heads(tmp_path_factory.mktemp('heads')).parent / 'head16_labeled.zip'


def _run(G, heads, tmp_path, **metric_kwargs):
    kwargs = dict(G=G, dataset_kwargs=dict(class_name='training.dataset.ImageFolderDataset', path=str(heads),
                                           use_labels=True), cache_dir=str(tmp_path), num_workers=0)
    return metric_main.calc_metric('depth_var_weighted', metric_kwargs=metric_kwargs, **kwargs).results


@pytest.mark.parametrize('rule,sampler', [('occupancy', 'surface_window'), ('sample_delta', 'importance_nerf')])
def test_metric_end_to_end(heads, tmp_path, rule, sampler):
    G = make_gof_G(alpha_rule=rule, depth_sampler=sampler)
    before = G.renderer.options
    res = _run(G, heads, tmp_path, num_gen=3, resolution=8, samples=12, batch=2)
    assert set(res) == {'depth_var_weighted', 'depth_var_weighted_images', 'depth_var_weighted_rays'}
    assert 0 <= res.depth_var_weighted_images <= 1 and 0 <= res.depth_var_weighted_rays <= 1
    assert math.isnan(res.depth_var_weighted) or res.depth_var_weighted >= 0
    assert G.renderer.options is before                    # the metric rendered a copy
    again = _run(G, heads, tmp_path, num_gen=3, resolution=8, samples=12, batch=2)
    assert again == pytest.approx(res, nan_ok=True)          # deterministic for the same seeds


def test_metric_refuses_interval_weights(heads, tmp_path):
    with pytest.raises(ValueError, match="alpha_rule is 'eg3d'"):
        _run(make_G(), heads, tmp_path, num_gen=1, resolution=8)
    with pytest.raises(ValueError, match='depth_var_weighted needs'):
        evaluation_renderer(make_G().renderer.options, 36)
