"""Mirror-symmetry terms for G (project extensions, not in PoF3D; off by default).

DensitySymmetry (`--symmetry density`, issue 15 item 1): soft canonical symmetry of the density,
colour left free (faces have asymmetric hair and light), computed like the density regularizer
(point queries, no render):

    L_symσ = λ · mean |σ_raw(p) − σ_raw(M p)|,  p ~ U[−b/2, b/2]³ (b = box_warp, 1000 per sample),

M the yaw mirror of `flip_type` (training/symmetry.py). It is 0 for a mirror-symmetric field.

MirrorSymmetry (`--sym_weight`), a render-level consistency:

    L_sym = λ_sym · mean | G(z, F(M(z))).image_raw − hflip(G(z, M(z)).image_raw) |

with M(z) the learned camera and F the yaw mirror of `flip_type` (x -> -x for 'flip_both',
z -> -z for 'flip_both_shapenet'; SPEC §3.4, always the yaw mirror, never the pitch one).

Why: the mirrored camera sees the world reflected through the mirror plane and its image x
axis is flipped (`training.cameras.mirror_yaw`), so for a scene symmetric about that plane
its render is exactly the horizontal flip of the original render. PoF3D's mirrored renders
only ask that the mirrored view *look real*; a generator may then turn the object inside its
frame and keep every camera near the frontal view (docs/benchmark.md: the yaw distribution
collapses while the fakes show three-quarter views). This term ties the object's symmetry
plane to the frame's, so the camera, not the object, has to turn. It assumes left-right
symmetric objects (faces, cats, cars).
"""

from typing import Optional

import torch

from torch_utils import training_stats
from training.cameras import flip_camera
from training.losses.common import Step
from training.symmetry import MIRROR_AXES, mirror_points


class DensitySymmetry:
    """L_symσ for G. weight = λ (0 = off: nothing computed)."""

    def __init__(self, weight: float = 0.0, flip_type: str = 'flip_both', num_points: int = 1000):
        if flip_type not in MIRROR_AXES:
            raise ValueError(f'flip_type must be one of {tuple(MIRROR_AXES)}, got {flip_type!r}')
        self.weight, self.axis, self.num_points = weight, MIRROR_AXES[flip_type], num_points

    def __call__(self, G, z: torch.Tensor, c_map: torch.Tensor) -> Optional[torch.Tensor]:
        """z [N, z_dim], c_map [N, c_dim] the mapping's label -> scalar (None when weight is 0)."""
        if not self.weight:
            return None
        ws = G.mapping(z, c_map, update_emas=False)                                  # [N, num_ws, w_dim]
        box = float(G.rendering_kwargs['box_warp'])
        p = (torch.rand([z.shape[0], self.num_points, 3], device=z.device) - 0.5) * box   # [N, M, 3]
        points = torch.cat([p, mirror_points(p, self.axis)], dim=1)                   # [N, 2M, 3]
        sigma = G.sample_mixed(points, torch.zeros_like(points), ws, update_emas=False)['sigma']  # [N, 2M, 1]
        loss = (sigma[:, :self.num_points] - sigma[:, self.num_points:]).abs().mean() * self.weight
        training_stats.report('Loss/G/sym_density', loss)
        return loss


class MirrorSymmetry:
    """L_sym for G. weight = λ_sym (0 = off: no render, no gradient)."""

    def __init__(self, weight: float = 0.0, flip_type: str = 'flip_both'):
        self.weight, self.flip_type = weight, flip_type

    def __call__(self, G, D, z: torch.Tensor, c: torch.Tensor, step: Step) -> Optional[torch.Tensor]:
        """z [N, z_dim], c [N, 25] -> scalar (None when weight is 0); D is unused (the G-phase
        term signature). One generator call renders both cameras (batch 2N) with constant
        backbone noise, so both halves render the same planes."""
        del D
        if not self.weight:
            return None
        cam2world = G.pose(z, c).cam2world                                          # [N, 4, 4]
        cams = torch.cat([cam2world, flip_camera(cam2world, self.flip_type, True)])  # [2N, 4, 4]
        out = G(torch.cat([z, z]), torch.cat([c, c]), neural_rendering_resolution=step.resolution,
                render_schedule=step.render,
                cam2world=cams, noise_mode='const')
        plain, mirrored = out.image_raw.chunk(2)                                 # [N, 3, R, R] each
        loss = (mirrored - plain.flip(-1)).abs().mean() * self.weight
        training_stats.report('Loss/G/sym', loss)
        return loss
