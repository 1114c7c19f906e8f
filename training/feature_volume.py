"""VolumeGAN's structural representation: the 3-D feature volume and its backbone (SEEDS_SPEC §5.2, §6.5).

The generator's representation slot 'feature_volume' (training/representations.py) holds

    backbone = VolumeBackbone
        .mapping    the StyleGAN2 mapping network (z [N, z_dim] -> ws [N, num_ws, w_dim]), kept
                    from the target (§6.5 "Keeps")
        .synthesis  ws -> (volume [N, C, D, H, W] or None, ws): the feature volume grown from
                    a learnable 4^3 template by conv3d + AdaIN stages conditioned on ws[:, 0]
    decoder = the point MLP of training/point_mlp.py (read through
              training/rendering/volume_field.py VolumeField)

num_ws = the point MLP's layers (one code each, §5.2 "layer i uses w[:, i]") + the codes of the
image head (training/neural_renderer.py), last.

FeatureVolume, one stage per entry of `channels` (§5.2 "Feature volume"):
    [nearest x2 up (not at stage 0)] -> Conv3d 3x3x3 (bias) -> InstanceNorm (no affine, eps 1e-8
    inside the sqrt) -> x * scale + shift (adain_scale 'raw', the code) or x * (1 + scale) + shift
    ('one_plus') -> LReLU 0.2 (no gain)
scale and shift of every stage come from one Linear(w_dim -> 2 * sum(channels)), Kaiming
(a = 0.2) x 0.25 and PyTorch's default bias; stage i reads its chunk [scale_i | shift_i].
The template [1, channels[0], 4, 4, 4] starts at ones (template_init 'ones', the code, §5.1) or
N(0, 1) ('randn', the slides). FFHQ: channels (256, 128, 64, 32), 4^3 -> 32^3.
"""

from typing import Sequence

import torch
import torch.nn.functional as F

from torch_utils import misc, persistence
from training.film_siren import kaiming_init_
from training.networks_stylegan2 import MappingNetwork

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)

TEMPLATE_RESOLUTION = 4
TEMPLATE_INITS = ('ones', 'randn')
ADAIN_SCALES = ('raw', 'one_plus')
STYLE_GAIN = 0.25          # the style Linear's Kaiming weight x 0.25 (§5.2)
LRELU_SLOPE = 0.2


def instance_norm_3d(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """x [N, C, D, H, W] normalized per sample and channel over space, no affine (§5.2)."""
    mean = x.mean(dim=[2, 3, 4], keepdim=True)
    var = (x - mean).square().mean(dim=[2, 3, 4], keepdim=True)
    return (x - mean) * (var + eps).rsqrt()


@persistence.persistent_class
class FeatureVolume(torch.nn.Module):
    """w [N, w_dim] -> volume [N, channels[-1], R, R, R], R = 4 * 2^(len(channels) - 1) (module
    docstring)."""

    def __init__(self, w_dim: int, channels: Sequence[int] = (256, 128, 64, 32), template_init: str = 'ones',
                 adain_scale: str = 'raw'):
        if template_init not in TEMPLATE_INITS:
            raise ValueError(f'template_init must be one of {TEMPLATE_INITS}, got {template_init!r}')
        if adain_scale not in ADAIN_SCALES:
            raise ValueError(f'adain_scale must be one of {ADAIN_SCALES}, got {adain_scale!r}')
        if len(channels) < 1 or min(channels) < 1:
            raise ValueError(f'volume channels must be one or more positive widths, got {list(channels)}')
        super().__init__()
        self.w_dim, self.channels = w_dim, tuple(int(c) for c in channels)
        self.template_init, self.adain_scale = template_init, adain_scale
        self.resolution = TEMPLATE_RESOLUTION * 2 ** (len(self.channels) - 1)
        shape = [1, self.channels[0]] + [TEMPLATE_RESOLUTION] * 3
        self.template = torch.nn.Parameter(torch.ones(shape) if template_init == 'ones' else torch.randn(shape))
        widths = (self.channels[0],) + self.channels
        self.convs = torch.nn.ModuleList(torch.nn.Conv3d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:]))
        self.style = torch.nn.Linear(w_dim, 2 * sum(self.channels))
        kaiming_init_(self.style, gain=STYLE_GAIN)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        misc.assert_shape(w, [None, self.w_dim])
        styles = self.style(w.to(self.style.weight.dtype)).split([2 * c for c in self.channels], dim=1)
        x = self.template.expand(w.shape[0], -1, -1, -1, -1)
        for i, (conv, style) in enumerate(zip(self.convs, styles)):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode='nearest')
            scale, shift = (s[:, :, None, None, None] for s in style.chunk(2, dim=1))
            if self.adain_scale == 'one_plus':
                scale = scale + 1
            x = F.leaky_relu(instance_norm_3d(conv(x)) * scale + shift, LRELU_SLOPE)
        return x

    def extra_repr(self):
        return (f'w_dim={self.w_dim}, channels={list(self.channels)}, resolution={self.resolution}, '
                f'template_init={self.template_init}, adain_scale={self.adain_scale}')


@persistence.persistent_class
class VolumeSynthesis(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> (volume of ws[:, 0] or None without a volume, ws) (§5.2: the
    volume is conditioned on the first NeRF code)."""

    def __init__(self, w_dim: int, num_ws: int, volume: bool = True, **volume_kwargs):
        super().__init__()
        self.w_dim, self.num_ws = w_dim, num_ws
        self.volume = FeatureVolume(w_dim, **volume_kwargs) if volume else None

    def forward(self, ws: torch.Tensor, **unused):
        """unused: the StyleGAN2 synthesis kwargs (noise_mode, update_emas, ...); no noise here."""
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        return (None if self.volume is None else self.volume(ws[:, 0])), ws


@persistence.persistent_class
class VolumeBackbone(torch.nn.Module):
    """mapping (StyleGAN2, z -> ws) + synthesis (ws -> volume code), the feature_volume
    counterpart of the tri-plane generator's StyleGAN2 backbone (module docstring)."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: int, mapping_kwargs: dict = {}, volume: bool = True,
                 **volume_kwargs):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, num_ws, **mapping_kwargs)
        self.synthesis = VolumeSynthesis(w_dim, num_ws, volume=volume, **volume_kwargs)
