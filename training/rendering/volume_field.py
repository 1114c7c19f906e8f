"""VolumeGAN's feature volume as a field the renderer queries (SEEDS_SPEC §5.2, §6.5).

The field binds one sample's code (its feature volume [N, C, D, H, W], or None with the volume
turned off, and its codes ws [N, num_ws, w_dim]) to the point MLP of training/point_mlp.py:

    query(points [N, K, 3], directions [N, K, 3] | None, channels) -> (features [N, K, C_f],
                                                                     sigma [N, K, 1] raw)

The volume spans the renderer's box [-box_warp/2, box_warp/2]^3 (SEEDS_SPEC §6.5: the target's
box, not VolumeGAN's hard-coded FFHQ box, §5.7 q3). No fused kernel runs for this field.
"""

import dataclasses
from typing import Optional

import torch
import torch.nn.functional as F

from training.rendering.normals import query_with_normals


def sample_volume(volume: torch.Tensor, points: torch.Tensor, box_warp: float) -> torch.Tensor:
    """Trilinear features of volume [N, C, D, H, W] (laid out z, y, x as VolumeGAN's [C, z, y, x],
    §5.2) at world points [N, K, 3] -> [N, K, C]. The box [-box_warp/2, box_warp/2]^3 maps onto
    [-1, 1]^3 with align-corners semantics (the corner voxels' centres at +-1) and border padding
    (VolumeGAN clamps out-of-range indices, §5.2); differentiable in the points and the volume."""
    N, C = volume.shape[:2]
    K = points.shape[1]
    grid = (points * (2 / box_warp)).to(volume.dtype).reshape(N, K, 1, 1, 3)   # (x, y, z) -> (W, H, D)
    out = F.grid_sample(volume, grid, mode='bilinear', padding_mode='border', align_corners=True)
    return out.reshape(N, C, K).transpose(1, 2)


@dataclasses.dataclass(frozen=True)
class VolumeField:
    """Feature volume [N, C, D, H, W] (or None: "FV off", the MLP reads PE(x) only) and codes ws
    [N, num_ws, w_dim], read by `network(points, box_points, volume_features, directions, ws)
    -> (features [N, K, C_f], sigma [N, K, 1])` (training/point_mlp.py)."""
    volume: Optional[torch.Tensor]
    ws: torch.Tensor
    network: torch.nn.Module
    box_warp: float

    @property
    def batch_size(self) -> int:
        return self.ws.shape[0]

    def query(self, points: torch.Tensor, directions: Optional[torch.Tensor] = None, channels: Optional[int] = None,
              need_normal: bool = False):
        """(features [N, K, C_f], sigma [N, K, 1] raw) at world points [N, K, 3], and the normals
        [N, K, 3] when need_normal (training/rendering/normals.py). channels is accepted for the
        field interface; all C_f channels are returned. directions None: zero vectors."""
        del channels
        if need_normal:
            return query_with_normals(self.query, points, directions)
        if directions is None:
            directions = torch.zeros_like(points)
        features = None if self.volume is None else sample_volume(self.volume, points, self.box_warp)
        return self.network(points, points * (2 / self.box_warp), features, directions, self.ws)

    def kernel_inputs(self):
        """None: the fused kernel implements the tri-plane decoder only (docs/architecture.md)."""
        return None
