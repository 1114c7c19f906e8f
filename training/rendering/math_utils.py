"""Small geometric helpers for ray marching (SPEC §4.5).

Shape notation (used by the whole package): N batch, M rays per image (R*R),
S samples per ray, C channels. Every function here is pure: inputs are never modified.
"""

import torch


def normalize_vecs(vectors: torch.Tensor) -> torch.Tensor:
    """Unit vectors along the last axis: [..., K] -> [..., K].

    Plain division by the Euclidean norm (no epsilon), so a zero vector gives NaN; this
    matches EG3D and keeps the gradient exact for every non-degenerate input.
    """
    return vectors / torch.linalg.vector_norm(vectors, dim=-1, keepdim=True)


def linspace(start: torch.Tensor, stop: torch.Tensor, num: int) -> torch.Tensor:
    """Batched linspace: `num` evenly spaced values from `start` to `stop` (both included).

    start, stop: tensors of the same shape [*B]. Returns [num, *B] (the new axis first, as in
    EG3D's `math_utils.linspace`). Requires num >= 2.
    """
    if num < 2:
        raise ValueError(f'linspace needs num >= 2, got {num}')
    steps = torch.arange(num, dtype=start.dtype, device=start.device) / (num - 1)
    steps = steps.reshape([num] + [1] * start.ndim)
    return start.unsqueeze(0) + steps * (stop - start).unsqueeze(0)


def get_ray_limits_box(rays_o: torch.Tensor, rays_d: torch.Tensor, box_side_length: float):
    """Entry/exit distances of rays through the axis-aligned cube [-L/2, L/2]^3 (slab method).

    rays_o, rays_d: [..., 3] origins and directions (directions need not be unit length;
    distances are in units of |d|). Returns (t_near [..., 1], t_far [..., 1]). A ray that
    misses the box gets t_near = -1, t_far = -2, so `t_far > t_near` is the validity test
    (EG3D contract). The result carries no gradient (the inputs are detached), as in EG3D.
    t_near may be negative when the origin lies inside the box.
    """
    o = rays_o.detach()
    d = rays_d.detach()
    half = box_side_length / 2
    inv_d = 1 / d                                        # +-inf for axis-parallel rays
    t_lo = (-half - o) * inv_d                           # [..., 3] slab crossings per axis
    t_hi = (half - o) * inv_d
    t_enter = torch.minimum(t_lo, t_hi)
    t_exit = torch.maximum(t_lo, t_hi)
    # A ray parallel to a slab and outside it gives (-inf - ...)/... = NaN only when o sits
    # exactly on a face; treat NaN as "no constraint from this axis" on the entry side.
    t_enter = torch.nan_to_num(t_enter, nan=-float('inf'))
    t_exit = torch.nan_to_num(t_exit, nan=float('inf'))
    t_near = t_enter.amax(dim=-1, keepdim=True)
    t_far = t_exit.amin(dim=-1, keepdim=True)
    valid = t_near <= t_far
    t_near = torch.where(valid, t_near, torch.full_like(t_near, -1.0))
    t_far = torch.where(valid, t_far, torch.full_like(t_far, -2.0))
    return t_near, t_far
