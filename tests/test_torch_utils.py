"""torch_utils: misc helpers, training_stats (incl. a 2-process gloo reduction), persistence."""

import os
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from torch_utils import misc, persistence, training_stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ----------------------------------------------------------------------------
# misc


def test_assert_shape_accepts_wildcards_and_rejects_mismatch():
    x = torch.zeros(2, 3, 4)
    misc.assert_shape(x, [2, None, 4])
    with pytest.raises(AssertionError, match='dimension 1'):
        misc.assert_shape(x, [2, 5, 4])
    with pytest.raises(AssertionError, match='number of dimensions'):
        misc.assert_shape(x, [2, 3])


def test_constant_is_cached_and_broadcast():
    a = misc.constant(1.5, shape=[2, 2])
    b = misc.constant(1.5, shape=[2, 2])
    assert a is b and a.shape == (2, 2) and float(a.sum()) == 6.0
    assert misc.constant([1, 2], dtype=torch.int64).dtype == torch.int64


def test_infinite_sampler_covers_dataset_and_splits_ranks():
    data = list(range(10))
    it = iter(misc.InfiniteSampler(data, shuffle=False))
    assert [next(it) for _ in range(12)] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    r0 = iter(misc.InfiniteSampler(data, rank=0, num_replicas=2, shuffle=False))
    r1 = iter(misc.InfiniteSampler(data, rank=1, num_replicas=2, shuffle=False))
    assert [next(r0) for _ in range(5)] == [0, 2, 4, 6, 8]
    assert [next(r1) for _ in range(5)] == [1, 3, 5, 7, 9]
    # Shuffled: deterministic by seed, first epoch is a permutation.
    s = iter(misc.InfiniteSampler(data, seed=3))
    first = [next(s) for _ in range(10)]
    s2 = iter(misc.InfiniteSampler(data, seed=3))
    assert [next(s2) for _ in range(10)] == first
    assert len(set(first)) >= 8  # the window swaps may repeat an item within the first pass
    with pytest.raises(ValueError, match='empty'):
        misc.InfiniteSampler([])


def test_copy_params_and_buffers():
    src = torch.nn.BatchNorm1d(3)
    dst = torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        src.weight.fill_(2.0)
        src.running_mean.fill_(5.0)
    misc.copy_params_and_buffers(src, dst, require_all=True)
    assert torch.equal(dst.weight, src.weight) and torch.equal(dst.running_mean, src.running_mean)
    names = [n for n, _ in misc.named_params_and_buffers(dst)]
    assert names[:2] == ['weight', 'bias'] and 'running_var' in names
    assert len(misc.params_and_buffers(dst)) == len(names)
    partial = torch.nn.Module()
    partial.weight = torch.nn.Parameter(torch.full([3], 7.0))
    misc.copy_params_and_buffers(partial, dst)  # missing names are skipped...
    assert dst.weight.tolist() == [7.0] * 3 and dst.running_mean.tolist() == [5.0] * 3
    with pytest.raises(KeyError, match='bias'):  # ...unless require_all
        misc.copy_params_and_buffers(partial, dst, require_all=True)


def test_print_module_summary_counts_parameters(capsys):
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    out = misc.print_module_summary(net, [torch.zeros(3, 4)])
    assert out.shape == (3, 2)
    text = capsys.readouterr().out
    total = [line for line in text.splitlines() if line.startswith('Total')][0]
    assert total.split()[1] == str(4 * 8 + 8 + 8 * 2 + 2)
    assert '[3, 8]' in text


def test_ddp_sync_is_noop_for_plain_modules():
    net = torch.nn.Linear(2, 2)
    with misc.ddp_sync(net, sync=False):
        net(torch.ones(1, 2)).sum().backward()
    assert net.weight.grad is not None


# ----------------------------------------------------------------------------
# training_stats


def test_collector_mean_std_num():
    training_stats.report('Test/a', 100.0)  # before the collector exists: not in its first window
    stats = training_stats.Collector(regex='Test/.*')
    training_stats.report('Test/a', torch.tensor([1.0, 2.0, 3.0]))
    training_stats.report('Test/a', 4.0)
    training_stats.report('Other/b', 10.0)
    stats.update()
    assert stats.num('Test/a') == 4
    assert stats.mean('Test/a') == pytest.approx(2.5)
    assert stats.std('Test/a') == pytest.approx(np.std([1, 2, 3, 4]))
    assert 'Other/b' not in stats.names()
    assert set(stats.as_dict()) == {'Test/a'}
    # Next window: only new reports count; keep_previous keeps the old numbers otherwise.
    training_stats.report('Test/a', 7.0)
    stats.update()
    assert stats.num('Test/a') == 1 and stats['Test/a'] == 7.0
    stats.update()
    assert stats.num('Test/a') == 1  # keep_previous=True


_DIST_SCRIPT = textwrap.dedent('''
    import os, sys, torch
    sys.path.insert(0, {repo!r})
    from torch_utils import training_stats
    rank = int(sys.argv[1])
    torch.distributed.init_process_group('gloo', init_method='file://' + sys.argv[2], rank=rank, world_size=2)
    training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu'))
    stats = training_stats.Collector()
    training_stats.report('Dist/x', torch.tensor([float(rank + 1)] * (rank + 1)))  # rank0: [1], rank1: [2, 2]
    training_stats.report0('Dist/only0', 5.0)
    stats.update()
    print(stats.num('Dist/x'), stats.mean('Dist/x'), stats.num('Dist/only0'), stats.mean('Dist/only0'))
    torch.distributed.destroy_process_group()
''')


def test_training_stats_reduce_across_two_gloo_ranks(tmp_path):
    script = tmp_path / 'dist_stats.py'
    script.write_text(_DIST_SCRIPT.format(repo=REPO))
    init_file = str(tmp_path / 'rendezvous')
    procs = [subprocess.Popen([sys.executable, str(script), str(r), init_file], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err
    for out, _ in outs:  # both ranks see the pooled numbers: {1, 2, 2} and rank 0's 5
        num, mean, num0, mean0 = out.split()
        assert int(num) == 3 and float(mean) == pytest.approx(5 / 3)
        assert int(num0) == 1 and float(mean0) == 5.0


# ----------------------------------------------------------------------------
# persistence (network pickles carry their source)

_MODULE_SRC = textwrap.dedent('''
    import torch
    from torch_utils import persistence

    @persistence.persistent_class
    class Affine(torch.nn.Module):
        def __init__(self, n, scale=2.0):
            super().__init__()
            self.scale = scale
            self.weight = torch.nn.Parameter(torch.arange(n, dtype=torch.float32))

        def forward(self, x):
            return x * self.weight * self.scale
''')


def _write_user_module(tmp_path, name='user_net_mod'):
    (tmp_path / f'{name}.py').write_text(_MODULE_SRC)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(tmp_path))


def test_persistent_pickle_loads_without_the_defining_module(tmp_path):
    mod = _write_user_module(tmp_path)
    net = mod.Affine(3, scale=0.5)
    assert persistence.is_persistent(net) and net.init_args == (3,) and net.init_kwargs.scale == 0.5
    blob = pickle.dumps(net)
    # A fresh process that cannot import user_net_mod: the class must come from the pickle.
    code = textwrap.dedent(f'''
        import pickle, sys, torch
        sys.path.insert(0, {REPO!r})
        net = pickle.loads(sys.stdin.buffer.read())
        assert 'user_net_mod' not in sys.modules
        assert type(net).__module__.startswith('_imported_module_'), type(net).__module__
        print(net(torch.ones(3)).tolist(), net.init_kwargs.scale)
    ''')
    res = subprocess.run([sys.executable, '-c', code], input=blob, capture_output=True, cwd=str(tmp_path.parent))
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout.decode().split('] ')[0] + ']' == '[0.0, 0.5, 1.0]'
    assert res.stdout.decode().strip().endswith('0.5')


def test_persistent_pickle_format_matches_stylegan2(tmp_path):
    mod = _write_user_module(tmp_path, 'user_net_mod2')
    net = mod.Affine(2)
    fn, args = net.__reduce__()[:2]
    assert fn is persistence._reconstruct_persistent_obj
    meta = args[0]
    assert meta['type'] == 'class' and meta['version'] == 6 and meta['class_name'] == 'Affine'
    assert 'class Affine' in meta['module_src'] and '_parameters' in meta['state']
    clone = pickle.loads(pickle.dumps(net))
    assert torch.equal(clone(torch.ones(2)), net(torch.ones(2)))


def test_import_hook_can_patch_source(tmp_path):
    mod = _write_user_module(tmp_path, 'user_net_mod3')
    blob = pickle.dumps(mod.Affine(2))

    def hook(meta):
        meta.module_src = meta.module_src.replace('x * self.weight * self.scale', 'x * 0 + 42')
        return meta
    persistence.import_hook(hook)
    try:
        clone = pickle.loads(blob)
    finally:
        persistence._import_hooks.remove(hook)
    assert clone(torch.ones(2)).tolist() == [42.0, 42.0]
