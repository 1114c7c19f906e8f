"""The generator's typed surfaces (issue 17): its output, its renderer options, its default R."""

import copy
import dataclasses
import pickle

import pytest
import torch

from test_generator import make_G, make_inputs, seeded   # tests/test_generator.py
from training.generator_output import GeneratorOutput


def test_output_is_typed_and_reads_like_eg3d_dict():
    G = make_G()
    z, c = make_inputs()
    out = G(z, c, generator=seeded())
    assert isinstance(out, GeneratorOutput)
    assert out['image'] is out.image and out['pose'] is out.pose and out.pose.shape == (z.shape[0], 2)
    assert set(out) == {'image', 'image_raw', 'image_depth', 'cam2world', 'pose', 'clamped_frac'}
    assert {**out}['image_depth'] is out.image_depth and out.get('nope') is None
    with pytest.raises(KeyError):
        out['depth']
    with pytest.raises(dataclasses.FrozenInstanceError):
        out.image = out.image_raw
    synth = G.synthesis(G.mapping(z, c), c, generator=seeded())
    assert synth.pose is None and synth.clamped_frac is None


def test_renderer_options_built_once_and_follow_in_place_edits():
    G = make_G()
    z, c = make_inputs()
    options = G.renderer.options
    assert options.depth_resolution == 8 and options.plane_axes == 'correct' and options.impl == 'auto'
    G(z, c, generator=seeded())
    assert G.renderer.options is options                    # nothing rebuilt per call
    before = G(z, c, generator=seeded()).image_raw
    G.rendering_kwargs['depth_resolution'] = 5              # what EG3D video scripts do
    after = G(z, c, generator=seeded()).image_raw
    assert G.renderer.options.depth_resolution == 5 and not torch.equal(before, after)
    G.rendering_kwargs['clamp_mode'] = 'relu'
    with pytest.raises(ValueError, match='clamp_mode'):
        G(z, c)


def test_default_resolution_is_set_through_the_generator_and_pickled():
    G = make_G()
    z, c = make_inputs()
    G.set_neural_rendering_resolution(8)
    assert G(z, c, generator=seeded()).image_raw.shape[-1] == 8
    assert G(z, c, neural_rendering_resolution=4, generator=seeded()).image_raw.shape[-1] == 4
    G2 = pickle.loads(pickle.dumps(copy.deepcopy(G)))
    assert G2.neural_rendering_resolution == 8
