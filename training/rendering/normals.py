"""Surface normals of a field from its density gradient (SEEDS_SPEC §3.3, §4.2, §6.3 "Needs").

    n(x) = -grad_x sigma~(x) / (|grad_x sigma~(x)| + 1e-7), clamped to [-1, 1], NaN -> 0

GOF's form (§3.3). sigma~ is the raw field output (occupancy logit or density), which grows
into the object, so -grad points outward. GOF and ShadeGAN differentiate with respect to the
box-warped input x^ = x * 2 / box_warp; that is a positive isotropic scale of the world point,
so the *normalized* normal is the same whichever of the two is differentiated (the unnormalized
gradient of ShadeGAN's §4.2 differs by the factor box_warp / 2). Here the world point is
differentiated.

The gradient is taken with `create_graph=True`, so a loss on the normals back-propagates into
the field's parameters (double backward: through the SIREN with plain autograd; through the
tri-planes with the grid_sample gradfix of torch_utils/ops/grid_sample_gradfix.py, which the
tri-plane field selects explicitly for this query, see field.py).
"""

from typing import Callable, Tuple

import torch

NORMAL_EPS = 1e-7   # GOF's guard in the normalization (§3.3)


def normals_from_gradient(grad: torch.Tensor) -> torch.Tensor:
    """grad [..., 3] = d sigma~ / dx -> unit outward normals [..., 3] by GOF's rule (module docstring);
    a zero gradient gives a zero normal."""
    n = -grad / (grad.norm(dim=-1, keepdim=True) + NORMAL_EPS)
    return torch.nan_to_num(n.clamp(-1, 1), nan=0.0)


def query_with_normals(query: Callable, points: torch.Tensor, *args) -> Tuple[torch.Tensor, torch.Tensor,
                                                                                torch.Tensor]:
    """(features, sigma [N, K, 1], normals [N, K, 3]) of `query(points, *args) -> (features, sigma)`
    at points [N, K, 3]. The points are detached and re-leaved (a normal is a property of the field
    at a place, not a path back to the camera); the graph of the gradient is kept for the losses."""
    with torch.enable_grad():
        x = points.detach().requires_grad_(True)
        features, sigma = query(x, *args)
        (grad,) = torch.autograd.grad(sigma.sum(), x, create_graph=True)
    return features, sigma, normals_from_gradient(grad)
