"""Per-sample normals of a field, -d sigma / d x_hat (SEEDS_SPEC §4.2, §4.3; ShadeGAN's, GOF needs the same).

`field_normals` queries a field (training/rendering/field.py interface) at points and returns the
negative gradient of its raw sigma with respect to the box coordinates x_hat = x * 2 / box_warp,
**not normalized** (ShadeGAN composites raw gradients, so they are gradient-magnitude weighted,
SEEDS_SPEC §4.6 q4). While autograd records (training), the gradient is taken with
create_graph=True, so a loss on anything built from the normals reaches the field's parameters
through double backward (§4.2: "double backprop through the SIREN"); under torch.no_grad it is
computed all the same (inference needs normals too) and returned detached.

`NormalField` wraps a field so the renderer composites the normals like any extra feature
channels (compositing.march_samples: "normals or other extras appended to the features are
composited alike"); see docs/architecture.md "A shading stage".
"""

import dataclasses
from typing import Optional

import torch


def field_normals(field, points: torch.Tensor, directions: Optional[torch.Tensor] = None,
                  channels: Optional[int] = None):
    """field.query at points [N, K, 3] (world) -> (features [N, K, C], sigma [N, K, 1] raw,
    normals [N, K, 3] = -d sigma / d x_hat, world axes, unnormalized). x_hat = x * 2 / box_warp
    (the field's box), so d/d x_hat = (box_warp / 2) d/dx. Each sigma depends on its own point
    only, so the gradient of sum(sigma) is the per-point gradient."""
    recording = torch.is_grad_enabled()
    with torch.enable_grad():
        # Keep the caller's graph (a learned pose reaches the points); a point without one
        # becomes a leaf to differentiate against.
        x = points if points.requires_grad else points.detach().requires_grad_(True)
        features, sigma = field.query(x, directions, channels)
        (grad,) = torch.autograd.grad(sigma.sum(), x, create_graph=recording)
    normals = grad * (-field.box_warp / 2)
    if not recording:
        return features.detach(), sigma.detach(), normals.detach()
    return features, sigma, normals


@dataclasses.dataclass(frozen=True)
class NormalField:
    """`inner`'s features with its normals appended: query -> (features [N, K, C + 3], sigma).
    A query that reads at most C channels (e.g. `channels=1` of a density-only pass) skips the
    normals. No fused kernel (`kernel_inputs` None): the kernel has no normals."""
    inner: object
    channels: int = 3           # feature channels of `inner` (the albedo)

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    @property
    def box_warp(self) -> float:
        return self.inner.box_warp

    def query(self, points: torch.Tensor, directions: Optional[torch.Tensor] = None, channels: Optional[int] = None):
        if channels is not None and channels <= self.channels:
            return self.inner.query(points, directions, channels)
        features, sigma, normals = field_normals(self.inner, points, directions)
        return torch.cat([features[..., :self.channels], normals.to(features.dtype)], dim=-1), sigma

    def kernel_inputs(self):
        return None
