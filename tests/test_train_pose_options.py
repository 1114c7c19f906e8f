"""train.py end to end with the issue-15 options: --symmetry planes and --pose_dist_weight train,
resume bit-identically, and land in the pickle and the stats."""

import json
import os

from test_train import assert_same_networks, dataset, load_pickle, only_run_dir, train   # noqa: F401 (fixture)

OPTIONS = dict(symmetry='planes', pose_dist_weight=1.0, lr_multiplier_pose=1.0)


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
    assert options['loss_kwargs']['pose_dist_weight'] == 1.0
