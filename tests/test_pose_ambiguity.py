"""bench/pose_ambiguity.py: the deformed family is the family at scale 1, a pure width/depth scale
otherwise (its silhouette from the front is the original's squeezed by a), and the CLI prints one
row per camera yaw."""

import math
import os
import sys

import torch

from hardening_helpers import REPO, run_py   # tests/hardening_helpers.py

sys.path.insert(0, os.path.join(REPO, 'bench'))
import pose_ambiguity  # noqa: E402
from training.synthetic import FAMILIES, RenderOptions  # noqa: E402


def test_deformed_family_at_scale_one_renders_the_family():
    fam = FAMILIES['head']
    shapes = fam.sample(3, torch.Generator().manual_seed(0))
    opts = RenderOptions(resolution=16)
    a = pose_ambiguity.views(fam, shapes, 30, opts, 30.0)
    b = pose_ambiguity.views(pose_ambiguity.Deformed(fam, 1.0, 1.0), shapes, 30, opts, 30.0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_deformed_sdf_is_the_scaled_sdf():
    """dist'(p) = dist(p / s) * min(s): at a point on the deformed surface both vanish together."""
    fam = FAMILIES['car']
    shapes = fam.sample(1, torch.Generator().manual_seed(1))
    deformed = pose_ambiguity.Deformed(fam, 0.5, 2.0)
    p = torch.tensor([[0.1, 0.05, -0.2], [0.3, 0.0, 0.4]])
    params = shapes.params.expand(2, -1)
    want = fam.sdf(p / torch.tensor([0.5, 1.0, 2.0]), params)[0] * 0.5
    torch.testing.assert_close(deformed.sdf(p, params)[0], want)
    want_extent = (fam.half_extent[0] * 0.5, fam.half_extent[1], fam.half_extent[2] * 2.0)
    assert deformed.half_extent == tuple(torch.tensor(want_extent).tolist())   # float32 products


def test_cli_prints_a_row_per_camera_yaw():
    proc = run_py('bench/pose_ambiguity.py', '--family', 'car', '--num', 2, '--resolution', 8, '--yaw', 30)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith('| ') and line[2].isdigit()]
    assert [float(r.split(' | ')[0][2:]) for r in rows] == [35, 32.5, 27.5, 25, 20, 15, 5]
    a, b = (float(x) for x in rows[-1].split(' | ')[2].strip('()').split(', '))   # θ' = 5: (cos30/cos5, sin30/sin5)
    assert a == round(math.cos(math.radians(30)) / math.cos(math.radians(5)), 2)
    assert b == round(math.sin(math.radians(30)) / math.sin(math.radians(5)), 2)


def test_law_yaws_and_law_table_at_scale_one_is_exact():
    """The law's views; at s = 1 the same object is the truth (gap 0) and (1, 1) is on the grid."""
    assert pose_ambiguity.law_yaws('bimodal', 45) == [-45, 45]
    assert pose_ambiguity.law_yaws('uniform', 45) == [-45, -30, -15, 0, 15, 30, 45]
    proc = run_py('bench/pose_ambiguity.py', '--family', 'head', '--num', 2, '--resolution', 8, '--yaw', 40,
                  '--law', 'bimodal', '--scales', '1,0.5')
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(' | ') for line in proc.stdout.splitlines() if line.startswith('| ') and line[2].isdigit()]
    assert [float(r[0][2:]) for r in rows] == [1.0, 0.5]
    assert rows[0][1] == '0.0000 / 0.0000' and rows[0][3].startswith('0.0000 / 0.0000')
    assert float(rows[1][1].split(' / ')[0]) > 0    # a halved frame changes the views


def test_law_rejects_bad_scales_in_one_line():
    proc = run_py('bench/pose_ambiguity.py', '--num', 2, '--resolution', 8, '--law', 'uniform', '--scales', '0.5,2')
    assert proc.returncode == 2 and 'Traceback' not in proc.stderr
    assert '--scales' in proc.stderr and 'every scale must be in (0, 1]' in proc.stderr
