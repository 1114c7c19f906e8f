"""The renderer's training schedules reach it as arguments (issue 18 wiring): config -> loss
kwargs -> Step.render -> G(..., render_schedule=) -> ImportanceRenderer(..., schedule=)."""

import pytest
import torch

from training import config as config_lib, schedules
from training.rendering.options import RenderSchedule
from training.rendering.renderer import ImportanceRenderer


def test_render_schedule_values():
    assert schedules.render_schedule(0, 8) is None                                    # nothing scheduled
    s = schedules.render_schedule(8 * 2500, 8, density_noise_init=1.0, density_noise_fade_steps=5000)
    assert s == RenderSchedule(density_noise=0.5, window=None)                        # step 2500 of 5000
    w = schedules.render_schedule(8 * 100, 8, depth_sampler='surface_window', window_init=0.5, window_min=0.1,
                                  window_decay=0.01)
    assert w.density_noise is None and w.window == pytest.approx(max(0.5 * torch.exp(torch.tensor(-1.0)).item(), 0.1))


def test_pigan_preset_schedules_density_noise_through_the_loss():
    config = config_lib.build_config('pigan', dataset_resolution=16, neural_rendering_resolution_initial=16)
    kwargs = config.loss_kwargs()
    assert kwargs['render_schedule']['density_noise_init'] == 1.0 and kwargs['render_schedule']['batch'] == 8
    assert 'render_schedule' not in config_lib.build_config('synthetic').loss_kwargs()   # the default: none
    from training.losses import loss_class_for
    import dnnlib
    torch.manual_seed(0)
    G = dnnlib.util.construct_class_by_name(**config.G_kwargs())
    D = dnnlib.util.construct_class_by_name(**config.D_kwargs())
    loss = loss_class_for(config.model.pose_source)(device=torch.device('cpu'), G=G, D=D, seed=0, **kwargs)
    assert loss.step(0).render.density_noise == 1.0 and loss.step(8 * 5000).render.density_noise == 0.0
    seen = []
    forward = ImportanceRenderer.forward

    def spy(self, *args, schedule=None, **kw):
        seen.append(schedule)
        return forward(self, *args, schedule=schedule, **kw)
    ImportanceRenderer.forward = spy
    try:
        loss.accumulate_gradients('Gmain', torch.zeros(2, 3, 16, 16), torch.zeros(2, 25),
                                  torch.randn(2, G.z_dim), torch.zeros(2, 25).index_fill_(1, torch.tensor([16, 20, 24]),
                                                                                           1.0),
                                  gain=1, cur_nimg=8 * 2500)
    finally:
        ImportanceRenderer.forward = forward
    assert seen and all(s == RenderSchedule(density_noise=0.5) for s in seen)
