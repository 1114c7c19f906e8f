"""Super-resolution heads of the tri-plane generator (SPEC §4.6), EG3D class names.

Input: the raw render (rgb [N, 3, R, R], features [N, channels, R, R] whose first 3 channels
are rgb) and ws [N, num_ws, w_dim]; output: image [N, 3, H, H]. Every block reads only the
last w, repeated 3 times (SPEC §4.6). Two StyleGAN2 'skip' blocks:

| class                     | input res (EG3D)  | block0                      | block1                   |
| SuperresolutionHybrid2X   | H/2 (64 at 128)   | no-upsample: channels -> 128 | upsample: 128 -> 64 @ H |
| SuperresolutionHybrid4X   | H/2 (128 at 256)  | no-upsample: channels -> 128 | upsample: 128 -> 64 @ H |
| SuperresolutionHybrid8XDC | H/4 (128 at 512)  | upsample: channels -> 256    | upsample: 256 -> 128 @ H |

EG3D hard-codes the resolutions 128/256/512 and w_dim 512; here the input resolution follows
from img_resolution (identical at those sizes) and `w_dim` / `block_channels` are keyword
arguments (defaults = EG3D), so tiny configurations can be built for tests.

Resizing to the input resolution is bilinear, align_corners=False, *without* antialias
(PoF3D change, SPEC §4.6, §12.4); EG3D's `sr_antialias` is accepted (pickles carry it) and ignored.
Nothing here writes into a tensor autograd may have saved: EG3D adds the ToRGB output into
the incoming rgb in place, which breaks backward when rgb is a view of the feature image and
no resize happens (neural rendering res == SR input res, SPEC "Project decisions").
"""

import torch
import torch.nn.functional as F

from torch_utils import misc, persistence
from torch_utils.ops import upfirdn2d
from training.networks_stylegan2 import SynthesisBlock
from training.neural_renderer import NeuralRenderer1x1

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)


@persistence.persistent_class
class SynthesisBlockNoUp(SynthesisBlock):
    """A 'skip' synthesis block that keeps the resolution (EG3D's SynthesisBlockNoUp).

    x [N, in_channels, res, res], img [N, img_channels, res, res] or None, ws [N, 3, w_dim]
    -> (x [N, out_channels, res, res], img + ToRGB(x)): SynthesisBlock with `up = 1`, so
    conv0 is a plain modulated 3×3 conv and the incoming img is not upsampled. The EG3D
    parameter names (conv0, conv1, torgb, resample_filter) are SynthesisBlock's.
    """
    up = 1

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture='skip',
                 **block_kwargs):
        if in_channels <= 0:
            raise ValueError(f'SynthesisBlockNoUp needs in_channels > 0 (no constant input), got {in_channels}')
        if architecture != 'skip':
            raise ValueError(f"SynthesisBlockNoUp supports only architecture='skip', got {architecture!r}")
        super().__init__(in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture,
                         **block_kwargs)


def resize_bilinear(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """[N, C, h, w] -> [N, C, resolution, resolution]; bilinear, align_corners=False, no antialias."""
    return F.interpolate(x, size=(resolution, resolution), mode='bilinear', align_corners=False, antialias=False)


class _SuperresolutionHybrid(torch.nn.Module):
    """Shared body of the three EG3D SR heads; subclasses set the class attributes below."""

    input_divisor = 2                 # input resolution = img_resolution / input_divisor
    default_block_channels = (128, 64)
    block0_upsamples = False          # False: block0 is SynthesisBlockNoUp at the input res
    upsample_only = False             # True: resize only when the input is smaller (4X)

    def __init__(self, channels, img_resolution, sr_num_fp16_res, sr_antialias, num_fp16_res=4, conv_clamp=None,
                 channel_base=None, channel_max=None, w_dim=512, block_channels=None, **block_kwargs):
        # num_fp16_res, conv_clamp, channel_base, channel_max: part of EG3D's sr_kwargs, ignored
        # there too (fp16 and the clamp follow sr_num_fp16_res; the widths are fixed per class).
        # sr_antialias: EG3D's, ignored because PoF3D resizes never antialias (SPEC §12.4).
        del num_fp16_res, conv_clamp, channel_base, channel_max, sr_antialias
        if img_resolution < 8 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f'{type(self).__name__}: img_resolution must be a power of two >= 8, '
                             f'got {img_resolution}')
        super().__init__()
        self.img_resolution = img_resolution
        self.input_resolution = img_resolution // self.input_divisor
        self.w_dim = w_dim
        use_fp16 = sr_num_fp16_res > 0
        c0, c1 = block_channels if block_channels is not None else self.default_block_channels
        common = dict(w_dim=w_dim, img_channels=3, use_fp16=use_fp16, conv_clamp=(256 if use_fp16 else None),
                      **block_kwargs)
        if self.block0_upsamples:
            self.block0 = SynthesisBlock(channels, c0, resolution=self.input_resolution * 2, is_last=False, **common)
        else:
            self.block0 = SynthesisBlockNoUp(channels, c0, resolution=self.input_resolution, is_last=False,
                                             **common)
        self.block1 = SynthesisBlock(c0, c1, resolution=img_resolution, is_last=True, **common)
        self.register_buffer('resample_filter', upfirdn2d.setup_filter([1, 3, 3, 1]))  # EG3D state-dict name

    def forward(self, rgb, x, ws, **block_kwargs):
        """rgb [N, 3, R, R], x [N, channels, R, R], ws [N, num_ws, w_dim] -> [N, 3, H, H].
        block_kwargs (noise_mode, fused_modconv, force_fp32) reach every block."""
        misc.assert_shape(x, [rgb.shape[0], None, rgb.shape[2], rgb.shape[3]])
        ws = ws[:, -1:, :].repeat(1, 3, 1)        # only the last w, for every layer (SPEC §4.6)
        res = x.shape[-1]
        if res != self.input_resolution:
            if self.upsample_only and res > self.input_resolution:
                raise ValueError(f'{type(self).__name__} upsamples its input to {self.input_resolution}; '
                                 f'got a larger render ({res}); use a neural rendering resolution <= it')
            x = resize_bilinear(x, self.input_resolution)
            rgb = resize_bilinear(rgb, self.input_resolution)
        x, rgb = self.block0(x, rgb, ws, **block_kwargs)
        x, rgb = self.block1(x, rgb, ws, **block_kwargs)
        return rgb

    def extra_repr(self):
        return f'input_resolution={self.input_resolution}, img_resolution={self.img_resolution}'


@persistence.persistent_class
class SuperresolutionHybrid2X(_SuperresolutionHybrid):
    """ShapeNet (128²): render resized to H/2 whenever it differs, no-up block, up block."""


@persistence.persistent_class
class SuperresolutionHybrid4X(_SuperresolutionHybrid):
    """FFHQ / cats (256²): render upsampled to H/2 only if smaller, no-up block, up block."""
    upsample_only = True


@persistence.persistent_class
class SuperresolutionHybrid8XDC(_SuperresolutionHybrid):
    """512²: render resized to H/4 whenever it differs, two upsampling blocks (256, 128 ch)."""
    input_divisor = 4
    default_block_channels = (256, 128)
    block0_upsamples = True


SR_MODULES = {cls.__name__: cls for cls in (SuperresolutionHybrid2X, SuperresolutionHybrid4X,
                                            SuperresolutionHybrid8XDC)}
IMAGE_HEADS = {'NeuralRenderer1x1': NeuralRenderer1x1}   # VolumeGAN's (training/neural_renderer.py)
SR_BY_RESOLUTION = {128: 'SuperresolutionHybrid2X', 256: 'SuperresolutionHybrid4X',
                    512: 'SuperresolutionHybrid8XDC'}  # SPEC §4.6: the default per dataset resolution


def resolve_superresolution(name):
    """The SR class for `name`: a class name or EG3D's dotted path
    ('training.superresolution.SuperresolutionHybrid4X') or an image head of IMAGE_HEADS; None -> None."""
    if name is None:
        return None
    short = str(name).rsplit('.', 1)[-1]
    cls = SR_MODULES.get(short, IMAGE_HEADS.get(short))
    if cls is None:
        raise ValueError(f'superresolution_module must be None or one of {sorted(SR_MODULES) + sorted(IMAGE_HEADS)}, '
                         f'got {name!r}')
    return cls
