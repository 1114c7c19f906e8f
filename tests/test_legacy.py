"""legacy.load_network_pkl: network pickles load without executing anything they carry.

- our own snapshots round-trip (equal outputs) and loading leaves the global RNG alone;
- our snapshots are told from official ones by the documented rule (the PROJECT_MODULE line,
  or for older pickles the 'SPEC §' citations), whatever else their sources say;
- a pickle whose embedded module sources raise when executed still loads (nothing executed);
- a pickle naming a forbidden global is refused with a one-line UnpicklingError naming it;
- official-format G pickles (EG3D `TriPlaneGenerator`, PoF3D `TriPlaneGeneratorPose`, built
  here as stand-in records with foreign source text) map onto our classes with equal outputs;
  an official PoF3D D (pose head with unknown names) comes back as None with a warning.
"""

import collections
import inspect
import io
import math
import os
import pickle
import re
import subprocess
import sys
import warnings

import pytest
import torch

import legacy
from torch_utils import persistence
from torch_utils.safe_pickle import Record
from training.cameras import FOV_to_intrinsics, LookAtPose
from training.dual_discriminator import DualDiscriminator
from training.generator import TriPlaneGenerator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POISON = "raise RuntimeError('executed!')\n"
FOREIGN_SRC = POISON + '# stand-in for an EG3D/PoF3D module: never executed by legacy.py\n'


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_G(pose_source='learned', **kwargs):
    rk = dict(ray_start=2.25, ray_end=3.3, box_warp=1, depth_resolution=8, depth_resolution_importance=8,
              avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2], superresolution_module='SuperresolutionHybrid2X')
    rk.update(kwargs.pop('rendering', {}))
    torch.manual_seed(0)
    G = TriPlaneGenerator(16, 25, 16, 32, 3, pose_source=pose_source, rendering_kwargs=rk, plane_resolution=16,
                          plane_channels=8, neural_rendering_resolution=16, channel_base=1024, channel_max=32,
                          num_fp16_res=0, conv_clamp=None, sr_kwargs={'block_channels': (16, 8)}, **kwargs)
    with torch.no_grad():   # non-trivial values everywhere (w_avg, noise strengths, biases)
        for t in G.parameters():
            t.add_(torch.randn_like(t) * 0.1)
        G.backbone.mapping.w_avg.normal_()
    return G.eval().requires_grad_(False)


def tiny_D(c_dim=2, **kwargs):
    torch.manual_seed(1)
    return DualDiscriminator(c_dim, 32, 3, channel_base=1024, channel_max=32, num_fp16_res=0, conv_clamp=None,
                             pose_head_channels=16, **kwargs).eval().requires_grad_(False)


def inputs(n=2):
    z = torch.randn(n, 16, generator=torch.Generator().manual_seed(5))
    cam = LookAtPose(torch.full([n, 1], math.pi / 2), torch.full([n, 1], math.pi / 2), [0, 0, 0.2], 2.7)
    return z, torch.cat([cam.reshape(n, 16), FOV_to_intrinsics(18.837).reshape(1, 9).expand(n, 9)], dim=1)


def assert_same_G(G1, G2):
    z, c = inputs()
    a = G1(z, c, noise_mode='const', generator=torch.Generator().manual_seed(0))
    b = G2(z, c, noise_mode='const', generator=torch.Generator().manual_seed(0))
    for key in ('image', 'image_raw', 'image_depth', 'cam2world'):
        assert torch.equal(a[key], b[key]), key


def load(data: bytes, **kwargs):
    return legacy.load_network_pkl(io.BytesIO(data), **kwargs)


def snapshot_bytes(G, D):
    return pickle.dumps(dict(G=G, D=D, G_ema=G, augment_pipe=None, training_set_kwargs={'path': 'x'}))


# ----------------------------------------------------------------------------------------
# Our own snapshots.

def test_own_snapshot_round_trip():
    G, D = tiny_G(), tiny_D()
    rng = torch.get_rng_state()
    out = load(snapshot_bytes(G, D))
    assert torch.equal(torch.get_rng_state(), rng)           # loading does not consume global randomness
    assert type(out['G_ema']) is TriPlaneGenerator and type(out['D']) is DualDiscriminator
    assert out['augment_pipe'] is None and out['training_set_kwargs'] == {'path': 'x'}
    assert not out['G_ema'].training and not any(p.requires_grad for p in out['G_ema'].parameters())
    assert_same_G(G, out['G_ema'])
    img = {'image': torch.rand(4, 3, 32, 32) * 2 - 1, 'image_raw': torch.rand(4, 3, 16, 16) * 2 - 1}
    a, b = D(img), out['D'](img)
    assert torch.equal(a['score'], b['score']) and torch.equal(a['pose'], b['pose'])


def snapshot_with_sources(G, D, edit):
    """snapshot_bytes(G, D) with every persistent class's pickled module source edited."""
    saved = {cls: cls._orig_module_src for cls in persistence._decorators}
    try:
        for cls in saved:
            cls._orig_module_src = edit(saved[cls])
        return snapshot_bytes(G, D)
    finally:
        for cls, src in saved.items():
            cls._orig_module_src = src


def test_embedded_source_is_never_executed(tmp_path):
    """Every persistent class pickles its module source with a raising first line."""
    G = tiny_G()
    data = snapshot_with_sources(G, tiny_D(), lambda src: POISON + src)
    out = load(data)
    assert type(out['G_ema']) is TriPlaneGenerator
    for (name, a), (name_b, b) in zip(G.named_parameters(), out['G_ema'].named_parameters()):
        assert name == name_b and torch.equal(a, b), name
    assert_same_G(G, out['G_ema'])
    # The poison is real: plain pickle executes the source and fails (in a fresh process).
    path = tmp_path / 'poisoned.pkl'
    path.write_bytes(data)
    res = subprocess.run([sys.executable, '-c', f'import pickle; pickle.load(open({str(path)!r}, "rb"))'],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode != 0 and 'executed!' in res.stderr


@pytest.mark.parametrize('edit, gone', [
    # Written now: the PROJECT_MODULE line alone marks the sources as ours.
    (lambda src: src.replace('SPEC §', 'the spec, section '), 'SPEC §'),
    # Written before that line existed: the fallback, sources that cite the spec.
    (lambda src: re.sub(r"^PROJECT_MODULE = .*\n", '', src, flags=re.MULTILINE), 'PROJECT_MODULE'),
])
def test_our_snapshots_are_recognised_by_the_documented_rule(edit, gone):
    G, D = tiny_G(), tiny_D()
    data = snapshot_with_sources(G, D, edit)
    assert gone.encode() not in data
    out = load(data)
    assert type(out['G_ema']) is TriPlaneGenerator and type(out['D']) is DualDiscriminator
    assert_same_G(G, out['G_ema'])


def test_every_network_module_carries_the_project_line():
    for module in legacy._our_modules():
        src = inspect.getsource(module).replace('SPEC §', 'the spec, section ')
        assert legacy.is_our_record(Record('X', module_src=src)), module.__name__
    assert not legacy.is_our_record(Record('TriPlaneGenerator', module_src=FOREIGN_SRC))


def test_forbidden_global_is_refused(tmp_path):
    marker = tmp_path / 'marker'
    data = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."      # os.system('touch marker')
    with pytest.raises(pickle.UnpicklingError) as info:
        load(data)
    assert "'os.system'" in str(info.value) and '\n' not in str(info.value)
    assert not marker.exists()
    # Builtins are not allowed wholesale either; a nested reference inside a real snapshot fails too.
    with pytest.raises(pickle.UnpicklingError, match='builtins.eval'):
        load(pickle.dumps(dict(G_ema=tiny_G(), training_set_kwargs={'f': eval})))


def test_allow_exec_is_plain_pickle():
    out = load(snapshot_bytes(tiny_G(), tiny_D()), allow_exec=True)
    assert type(out['G_ema']).__name__ == 'TriPlaneGenerator'
    assert type(out['G_ema']).__module__ == 'training.generator'   # source in memory: same module reused


@pytest.mark.parametrize('data, error, needle', [
    (pickle.dumps([1, 2]), ValueError, 'not a network pickle'),
    (b'\x80\x04garbage', pickle.UnpicklingError, None),
    (b'', pickle.UnpicklingError, 'truncated or corrupt pickle'),
])
def test_unknown_formats(data, error, needle):
    with pytest.raises(error, match=needle) as info:
        load(data)
    assert '\n' not in str(info.value)


# ----------------------------------------------------------------------------------------
# Official-format pickles (stand-in records built from our modules).

class _Foreign:
    """Pickles as a persistent object with foreign (never executed) source text."""

    def __init__(self, class_name, state):
        self.class_name, self.state = class_name, state

    def __reduce__(self):
        meta = dict(type='class', version=6, module_src=FOREIGN_SRC, class_name=self.class_name, state=self.state)
        return persistence._reconstruct_persistent_obj, (meta,)


def foreign_tree(module, class_name=None):
    state = dict(module.__dict__)
    state['_modules'] = collections.OrderedDict((k, None if m is None else foreign_tree(m))
                                                for k, m in module._modules.items())
    return _Foreign(class_name or type(module).__name__, state)


def official_G(G, class_name):
    """An EG3D/PoF3D-style record of G: pose learner inside backbone.mapping, EG3D kwargs."""
    rec = foreign_tree(G, class_name)
    modules = rec.state['_modules']
    pose = modules.pop('pose_source').state['_modules']
    mapping = modules['backbone'].state['_modules']['mapping'].state['_modules']
    if class_name == 'TriPlaneGeneratorPose':
        mapping['affine_layer1'], mapping['affine_layer2'] = pose['affine_layer1'], pose['affine_layer2']
    kw = dict(rec.state['_init_kwargs'])
    for key in ('pose_source', 'pose_kwargs', 'plane_resolution', 'plane_channels', 'neural_rendering_resolution'):
        kw.pop(key, None)
    rk = dict(kw['rendering_kwargs'])
    rk.pop('plane_axes')
    kw['rendering_kwargs'] = dict(rk, wrong=True, superresolution_module='training.superresolution.'
                                  + rk['superresolution_module'], gpc_reg_prob=0, flip_type='flip_both')
    kw['mapping_kwargs'] = dict(kw.get('mapping_kwargs', {}), lr_multiplier_pose='ignored', cam_dim=2)
    rec.state['_init_kwargs'] = kw
    return rec


@pytest.mark.parametrize('class_name, pose_source', [('TriPlaneGeneratorPose', 'learned'),
                                                     ('TriPlaneGenerator', 'dataset')])
def test_official_generator_maps_onto_ours(class_name, pose_source):
    G = tiny_G(pose_source, rendering={'plane_axes': 'legacy'}, mapping_kwargs={'num_layers': 2, 'lr_multiplier': 0.02},
               pose_kwargs={'lr_multiplier_pose': 0.05} if pose_source == 'learned' else {})
    D = tiny_D(25, pose_head=False, self_condition=False)
    data = pickle.dumps(dict(G=official_G(G, class_name), G_ema=official_G(G, class_name),
                             D=foreign_tree(D, 'DualDiscriminator'), augment_pipe=foreign_tree(D, 'AugmentPipe')))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        out = load(data)
    assert [str(w.message) for w in caught if 'augment_pipe' not in str(w.message)] == []
    G2 = out['G_ema']
    assert type(G2) is TriPlaneGenerator and G2.rendering_kwargs['plane_axes'] == 'legacy'
    assert G2.pose_source.__class__.__name__ == {'learned': 'LearnedPose', 'dataset': 'DatasetPose'}[pose_source]
    assert G2.neural_rendering_resolution == 16 and out['augment_pipe'] is None
    assert_same_G(G, G2)
    img = {'image': torch.rand(4, 3, 32, 32), 'image_raw': torch.rand(4, 3, 16, 16)}
    c = inputs(4)[1]
    assert torch.equal(D(img, c)['score'], out['D'](img, c)['score'])


def test_official_pof3d_discriminator_is_skipped_with_warning():
    G = tiny_G(rendering={'plane_axes': 'legacy'})
    D = foreign_tree(tiny_D(), 'DualDiscriminator')
    data = pickle.dumps(dict(G_ema=official_G(G, 'TriPlaneGeneratorPose'), D=D))
    with pytest.warns(UserWarning, match='D: not loaded.*G_ema is what inference needs'):
        out = load(data)
    assert out['D'] is None and type(out['G_ema']) is TriPlaneGenerator


def test_official_errors_are_one_line():
    G = tiny_G(rendering={'plane_axes': 'legacy'})
    rec = official_G(G, 'TriPlaneGeneratorPose')
    rec.state['_modules']['backbone'].state['_modules']['mapping'].state['_modules'].pop('affine_layer1')
    with pytest.raises(ValueError, match='two-layer pose learner') as info:
        load(pickle.dumps(dict(G_ema=rec)))
    assert '\n' not in str(info.value)
    with pytest.raises(ValueError, match="unknown network class 'StyleGAN3Generator'"):
        load(pickle.dumps(dict(G_ema=foreign_tree(G, 'StyleGAN3Generator'))))
    # A wrong lr multiplier would silently change outputs: the stored gains are checked.
    rec = official_G(G, 'TriPlaneGeneratorPose')
    rec.state['_modules']['decoder'].state['_modules']['net'].state['_modules']['0'].state['weight_gain'] = 0.5
    with pytest.raises(ValueError, match='decoder.net.0.weight_gain'):
        load(pickle.dumps(dict(G_ema=rec)))
