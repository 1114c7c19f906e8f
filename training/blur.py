"""The Gaussian blur of D's image input (SPEC §4.7); its sigma is `schedules.blur_sigma`."""

import math
from typing import Optional

import torch

from torch_utils.ops import upfirdn2d


def blur_kernel(sigma: float, device=None) -> Optional[torch.Tensor]:
    """Normalized 1-D Gaussian taps [2K+1], K = floor(3 sigma), weights 2^(-(k/sigma)^2)
    (SPEC §4.7); None when K = 0 (no blur)."""
    size = math.floor(sigma * 3) if sigma > 0 else 0
    if size <= 0:
        return None
    k = torch.arange(-size, size + 1, device=device, dtype=torch.float32)
    f = k.div(sigma).square().neg().exp2()
    return f / f.sum()


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur img [N, C, H, W] with the separable kernel of `blur_kernel` (same size, zero padding
    as EG3D's `filter2d`). Out of place; returns `img` itself when the kernel is empty."""
    f = blur_kernel(sigma, device=img.device)
    if f is None:
        return img
    return upfirdn2d.filter2d(img, f.to(img.dtype))
