"""The loss config's `share_render` (issue 17: a loss choice is a config field, not a speed
switch): it round-trips through the config, reaches the PoF3D loss, and train.py parses it.
tests/test_model_equivalence.py counts the renders it saves; tests/test_train_pose_options.py resumes
a run saved before it existed."""

import json

import pytest

import train as train_cli
from training import config as config_lib


def test_share_render_defaults_on_and_round_trips():
    c = config_lib.build_config('synthetic')
    assert c.loss.share_render and c.loss_kwargs()['share_render'] is True   # training's default
    off = config_lib.build_config('synthetic', share_render=False)
    assert config_lib.TrainConfig.from_dict(json.loads(json.dumps(off.to_dict()))) == off
    assert off.loss_kwargs()['share_render'] is False
    assert 'share_render' not in config_lib.build_config('synthetic', pose_source='dataset').loss_kwargs()   # EG3D


@pytest.mark.parametrize('args, expected', [([], True), (['--share_render', 'false'], False),
                                            (['--share_render', 'true'], True)])
def test_share_render_cli_option(args, expected):
    base = ['--outdir', 'o', '--cfg', 'synthetic', '--data', 'd.zip']
    ctx = train_cli.main.make_context('train', base + args)
    assert train_cli.make_config(ctx.params).loss.share_render is expected
    assert '--share_render' in train_cli.main.get_help(ctx)


def test_share_render_reaches_the_loss():
    from training.losses import PoF3DLoss

    class D:   # the loss only asks D for a pose head at construction
        pose_head = object()
    for share, blur_mode, shared in ((True, 'single', True), (False, 'single', False), (True, 'reference', False)):
        loss = PoF3DLoss('cpu', None, D(), share_render=share, blur_mode=blur_mode)
        assert loss.shared_renders() is shared
