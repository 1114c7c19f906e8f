"""The alpha-rule / depth-sampler options from the CLI to the renderer (SEEDS_SPEC §6.1 items 2-3):
config fields -> rendering_kwargs -> RenderingOptions; bad values and combinations are one-line
usage errors."""

import json

import pytest

from test_train import assert_one_line_usage_error, dataset   # noqa: F401 (fixture)
from training import checkpoint, config as config_lib
from training.rendering.options import RenderingOptions


def test_config_reaches_the_renderer_options():
    c = config_lib.build_config('synthetic', alpha_rule='occupancy', depth_sampler='surface_window',
                                depth_resolution_surface=6, secant_steps=2, surface_level=0.6, window_init=0.9,
                                window_min=0.2, window_decay=1e-3, density_activation='softplus')
    opts = RenderingOptions.from_kwargs(c.rendering_kwargs())
    assert (opts.alpha_rule, opts.depth_sampler, opts.depth_resolution_surface, opts.secant_steps) == \
        ('occupancy', 'surface_window', 6, 2)
    assert (opts.surface_level, opts.window_init, opts.window_min, opts.window_decay, opts.density_activation) == \
        (0.6, 0.9, 0.2, 1e-3, 'softplus')
    kwargs = config_lib.build_config('synthetic').rendering_kwargs()
    assert kwargs['density_noise_init'] == 0.0 and kwargs['density_noise_fade_steps'] == 5000
    default = RenderingOptions.from_kwargs(kwargs)
    assert (default.alpha_rule, default.depth_sampler) == ('eg3d', 'eg3d')


def test_runs_saved_before_the_options_existed_still_resume(tmp_path):
    config = config_lib.build_config('synthetic').to_dict()
    saved = json.loads(json.dumps(config))
    for key in config_lib.RENDER_STRATEGY_FIELDS:
        del saved['rendering'][key]
    (tmp_path / 'training_options.json').write_text(json.dumps({'config': saved}))
    assert checkpoint.options_mismatch(str(tmp_path), config) == []


USAGE_ERRORS = [
    (['--alpha_rule', 'occupancy'], "depth_sampler='eg3d' does not pair with alpha_rule='occupancy'"),
    (['--depth_sampler', 'importance_nerf'], 'does not pair'),
    (['--alpha_rule', 'sample_delta', '--depth_sampler', 'importance_nerf', '--last_back', 'true',
      '--white_back', 'true'], 'last_back'),
    (['--alpha_rule', 'occupancy', '--depth_sampler', 'surface_window', '--surface_level', '1'], 'surface_level'),
    (['--window_min', '0.5', '--window_init', '0.1'], 'window_'),
    (['--alpha_rule', 'nerf'], "Invalid value for '--alpha_rule'"),
]


@pytest.mark.parametrize('extra,message', USAGE_ERRORS, ids=[e[1][:24] for e in USAGE_ERRORS])
def test_bad_render_strategies_are_one_line_usage_errors(extra, message, dataset, tmp_path):   # noqa: F811
    assert_one_line_usage_error(extra, message, dataset.unlabeled, tmp_path)
