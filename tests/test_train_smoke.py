"""Training smoke test: a tiny PoF3D G and D train for 3 iterations with Adam (SPEC §7).

The loop below is the SPEC §7 phase recipe in miniature (the real one is
training/training_loop.py): phases Gmain, Greg, Dmain, Dreg with lazy regularization
(interval 2 here, so the reg phases run at iterations 0 and 2 with gain 2), one Adam per
module with the lazy-reg lr/betas, requires_grad on the phase's module only, nan_to_num,
then the G_ema update. Random data: 4 images of 32 px, raw 16 px, pose_source 'learned'.
"""

import copy
import math

import torch

from torch_utils import training_stats
from training import schedules
from training.cameras import FOV_to_intrinsics
from training.dual_discriminator import DualDiscriminator
from training.generator import TriPlaneGenerator
from training.losses import PoF3DLoss

Z_DIM, BATCH, REG_INTERVAL = 16, 4, 2
RK = dict(depth_resolution=8, depth_resolution_importance=8, ray_start=2.25, ray_end=3.3, box_warp=1,
          avg_camera_radius=2.7, avg_camera_pivot=[0, 0, 0.2], superresolution_module='SuperresolutionHybrid2X')


def make_nets():
    torch.manual_seed(0)
    G = TriPlaneGenerator(z_dim=Z_DIM, c_dim=25, w_dim=16, img_resolution=32, img_channels=3, pose_source='learned',
                          rendering_kwargs=RK, plane_resolution=16, plane_channels=8, neural_rendering_resolution=16,
                          channel_base=128, channel_max=16, mapping_kwargs=dict(num_layers=2))
    D = DualDiscriminator(2, 32, 3, channel_base=512, channel_max=16, num_fp16_res=0, pose_head_channels=32)
    return G, D


def labels(n):
    """Labels with only meaningful intrinsics (PoF3D's G reads nothing else)."""
    return torch.cat([torch.eye(4).reshape(1, 16), FOV_to_intrinsics(18.837).reshape(1, 9)], dim=1).repeat(n, 1)


def make_phases(G, D):
    phases = []
    for name, module, lr in (('G', G, 0.0025), ('D', D, 0.002)):
        opt = torch.optim.Adam(module.parameters(), eps=1e-8,
                               **schedules.lazy_reg_adam_kwargs(lr, (0, 0.99), REG_INTERVAL))
        phases += [(name + 'main', module, opt, 1), (name + 'reg', module, opt, REG_INTERVAL)]
    return phases  # order: Gmain, Greg, Dmain, Dreg (SPEC §7)


def run_phase(loss, phase, module, opt, interval, cur_nimg):
    opt.zero_grad(set_to_none=True)
    module.requires_grad_(True)
    real = torch.rand(BATCH, 3, 32, 32) * 2 - 1
    loss.accumulate_gradients(phase, real, labels(BATCH), torch.randn(BATCH, Z_DIM), labels(BATCH),
                              gain=interval, cur_nimg=cur_nimg)
    module.requires_grad_(False)
    for p in module.parameters():
        if p.grad is not None:
            assert torch.isfinite(p.grad).all(), phase
            p.grad.nan_to_num_(nan=0, posinf=1e5, neginf=-1e5)
    opt.step()


def test_train_smoke():
    G, D = make_nets()
    G_ema = copy.deepcopy(G).eval()
    G.requires_grad_(False)
    D.requires_grad_(False)
    loss = PoF3DLoss('cpu', G, D, r1_gamma=1, dis_cam_weight=2, pose_gd_weight=1, blur_init_sigma=2,
                     blur_fade_kimg=0.008, neural_rendering_resolution_initial=16, seed=0)
    start = {'G': copy.deepcopy(G.state_dict()), 'D': copy.deepcopy(D.state_dict()),
             'G_ema': copy.deepcopy(G_ema.state_dict())}
    stats = training_stats.Collector(regex='(Loss|Pose)/.*')
    phases = make_phases(G, D)
    cur_nimg = 0
    for it in range(3):
        for phase, module, opt, interval in phases:
            if it % interval == 0:
                run_phase(loss, phase, module, opt, interval, cur_nimg)
        beta = schedules.ema_beta(cur_nimg, BATCH, ema_kimg=BATCH * 10 / 32, ema_rampup=0.05)
        with torch.no_grad():
            for p_ema, p in zip(G_ema.parameters(), G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
        cur_nimg += BATCH

    stats.update()
    for name in ('Loss/G/loss', 'Loss/G/loss_flip', 'Loss/G/posegloss', 'Loss/G/reg', 'Loss/D/loss_Dcam',
                 'Loss/D/loss_Dgen', 'Loss/D/loss_Dgen_flip', 'Loss/D/loss', 'Loss/r1_penalty', 'Pose/h_std'):
        assert stats.num(name) > 0 and math.isfinite(stats.mean(name)), name
    assert stats.num('Loss/r1_penalty') == 2 * BATCH          # Dreg at iterations 0 and 2

    def changed(module, key, prefix=''):
        return [n for n, v in module.state_dict().items()
                if n.startswith(prefix) and v.is_floating_point() and not torch.equal(v, start[key][n])]
    for module in (G, D, G_ema):
        assert all(torch.isfinite(v).all() for v in module.state_dict().values() if v.is_floating_point())
    assert len(changed(G, 'G')) > 20 and len(changed(D, 'D')) > 20
    assert len(changed(G, 'G', 'pose_source.')) == 4           # the pose learner trains
    assert len(changed(D, 'D', 'pose_head.')) == 4             # and so does D's pose head
    assert changed(G_ema, 'G_ema')
