"""Normals of a field from the gradient of its raw sigma (SEEDS_SPEC §3.3, §4.2, §4.3, §6.3).

sigma~ (occupancy logit or density) grows into the object, so -grad points outward. One
autograd core, `sigma_gradient`, serves both methods:
- GOF (§3.3): `query_with_normals` -> n = -grad_x sigma~ / (|grad_x sigma~| + 1e-7), clamped to
  [-1, 1], NaN -> 0. GOF differentiates the box-warped input; that is a positive isotropic scale
  of the world point, so the *normalized* normal is the same, and the world point is used.
- ShadeGAN (§4.2): `field_normals` -> -d sigma~ / d x_hat with x_hat = x * 2 / box_warp, **not
  normalized** (ShadeGAN composites raw gradients, §4.6 q4); `NormalField` appends them to the
  features so the renderer composites them like any extra channel (docs/architecture.md).
While autograd records (training) the gradient keeps its graph (create_graph), so a loss on the
normals reaches the field's parameters by double backward (plain autograd through the SIREN;
the grid_sample gradfix through the tri-planes, which the tri-plane field selects for this
query, see field.py); under torch.no_grad it is computed all the same and returned detached.
"""

import dataclasses
from typing import Callable, Optional, Tuple

import torch

NORMAL_EPS = 1e-7   # GOF's guard in the normalization (§3.3)


def sigma_gradient(query: Callable, points: torch.Tensor, *args, keep_points_graph: bool = False):
    """(features, sigma [N, K, 1], d sigma / d points [N, K, 3]) of `query(points, *args) ->
    (features, sigma)`. Each sigma depends on its own point only, so the gradient of sum(sigma)
    is the per-point gradient. keep_points_graph: differentiate the caller's points themselves
    (a learned pose then also receives the gradient of what is built from the normals);
    otherwise detached copies (a normal is a property of the field at a place)."""
    recording = torch.is_grad_enabled()
    with torch.enable_grad():
        x = points if keep_points_graph and points.requires_grad else points.detach().requires_grad_(True)
        features, sigma = query(x, *args)
        (grad,) = torch.autograd.grad(sigma.sum(), x, create_graph=recording)
    if not recording:
        return features.detach(), sigma.detach(), grad.detach()
    return features, sigma, grad


def normals_from_gradient(grad: torch.Tensor) -> torch.Tensor:
    """grad [..., 3] = d sigma~ / dx -> unit outward normals [..., 3] by GOF's rule (module docstring);
    a zero gradient gives a zero normal."""
    n = -grad / (grad.norm(dim=-1, keepdim=True) + NORMAL_EPS)
    return torch.nan_to_num(n.clamp(-1, 1), nan=0.0)


def query_with_normals(query: Callable, points: torch.Tensor, *args) -> Tuple[torch.Tensor, torch.Tensor,
                                                                                torch.Tensor]:
    """(features, sigma [N, K, 1], unit normals [N, K, 3]) at points [N, K, 3], GOF's rule."""
    features, sigma, grad = sigma_gradient(query, points, *args)
    return features, sigma, normals_from_gradient(grad)


def field_normals(field, points: torch.Tensor, directions: Optional[torch.Tensor] = None,
                  channels: Optional[int] = None):
    """field.query at points [N, K, 3] (world) -> (features [N, K, C], sigma [N, K, 1] raw,
    normals [N, K, 3] = -d sigma / d x_hat, world axes, unnormalized; ShadeGAN's rule). x_hat =
    x * 2 / box_warp (the field's box), so d/d x_hat = (box_warp / 2) d/dx."""
    query = getattr(field, 'twice_differentiable_query', field.query)   # the tri-plane's gradfix path
    features, sigma, grad = sigma_gradient(query, points, directions, channels, keep_points_graph=True)
    return features, sigma, grad * (-field.box_warp / 2)


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

    def query(self, points: torch.Tensor, directions: Optional[torch.Tensor] = None, channels: Optional[int] = None,
              need_normal: bool = False):
        if need_normal:   # GOF's unit normals of the inner field (the loss terms' query)
            return self.inner.query(points, directions, channels, need_normal=True)
        if channels is not None and channels <= self.channels:
            return self.inner.query(points, directions, channels)
        features, sigma, normals = field_normals(self.inner, points, directions, self.channels)
        return torch.cat([features[..., :self.channels], normals.to(features.dtype)], dim=-1), sigma

    def kernel_inputs(self):
        return None
