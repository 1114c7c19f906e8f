"""train.py end to end with the issue-15 options: --symmetry planes, --pose_dist_weight and
--pose_img_dist_weight train, resume bit-identically, and land in the pickle and the stats."""

import json
import os

from test_train import assert_same_networks, dataset, load_pickle, only_run_dir, train   # noqa: F401 (fixture)

OPTIONS = dict(symmetry='planes', pose_dist_weight=1.0, pose_img_dist_weight=1.0, lr_multiplier_pose=1.0)


def test_symmetry_and_pose_dist_run_and_resume_bit_identically(dataset, tmp_path):   # noqa: F811
    a, b = tmp_path / 'a', tmp_path / 'b'
    train(dataset.unlabeled, a, kimg=0.032, resume='auto', **OPTIONS)
    train(dataset.unlabeled, b, kimg=0.016, resume='auto', **OPTIONS)
    train(dataset.unlabeled, b, kimg=0.032, resume='auto', **OPTIONS)
    run_a, run_b = only_run_dir(a), only_run_dir(b)
    assert_same_networks(os.path.join(run_a, 'network-snapshot-000000.032.pkl'),
                         os.path.join(run_b, 'network-snapshot-000000.032.pkl'))
    snap = load_pickle(os.path.join(run_a, 'network-snapshot-000000.032.pkl'))
    assert snap['G_ema'].symmetry == 'planes' and snap['G_ema'].symmetry_axis == 'x'
    rows = [json.loads(line) for line in open(os.path.join(run_a, 'stats.jsonl'))]
    assert 'Pose/calib_slope_h' in rows[-1]                 # the term calibrates from L4's fakes
    options = json.load(open(os.path.join(run_a, 'training_options.json')))
    assert options['loss_kwargs']['pose_dist_weight'] == 1.0 and options['loss_kwargs']['pose_img_dist_weight'] == 1.0


def test_runs_saved_before_an_option_existed_still_resume(tmp_path):
    """A training_options.json without the fields added since (here the issue-15 ones and
    issue 17's share_render) matches a config that leaves them at their defaults, and only that config."""
    from training import checkpoint, config as config_lib
    config = config_lib.build_config('synthetic').to_dict()
    saved = json.loads(json.dumps(config))
    for section, key in (('model', 'symmetry'), ('loss', 'pose_dist_weight'), ('loss', 'pose_gd_debias'),
                         ('loss', 'share_render')):
        del saved[section][key]
    (tmp_path / 'training_options.json').write_text(json.dumps({'config': saved}))
    assert checkpoint.options_mismatch(str(tmp_path), config) == []
    changed = config_lib.build_config('synthetic', symmetry='planes').to_dict()
    assert checkpoint.options_mismatch(str(tmp_path), changed) == ['model.symmetry']
    changed = config_lib.build_config('synthetic', share_render=False).to_dict()
    assert checkpoint.options_mismatch(str(tmp_path), changed) == ['loss.share_render']
