"""VolumeGAN's neural renderer, the image head 'modconv1x1' (SEEDS_SPEC §5.2 "Neural renderer", §6.5).

It sits where EG3D's super-resolution sits (the generator's `superresolution` slot, chosen by
rendering_kwargs['superresolution_module'] = 'NeuralRenderer1x1'), with the same call:

    forward(rgb [N, 3, R, R], x [N, C_f, R, R] (the composited feature map M), ws [N, num_ws, w_dim])
        -> image [N, 3, H, H],  H = R * 2^blocks

Base image = M[:, :3] (`rgb_init_res_out` False, §5.2); then per block at resolution r:
    conv0  ModConv 1x1 (in -> out) with x2 FIR [1, 3, 3, 1] upsampling, LReLU, noise (strength 0 at init)
    conv1  ModConv 1x1 (out -> out), LReLU, noise
    torgb  ModConv 1x1 (out -> 3), no demodulation, linear;  image = torgb + FIR-upsample(image)
Widths out = min(channel_base / r, channel_max) (FFHQ 32768, 512: 512, 256, 128 at 64, 128, 256).
The 1x1 convolutions treat every pixel alone; only the FIR upsampling mixes neighbours (§5.1), so a
change of one pixel of M reaches at most the FIR footprint of its own output pixels.
Codes: the head reads the last 2 * blocks + 1 rows of ws; block b's conv0, conv1 read rows 2b,
2b + 1 and its torgb row 2b + 2 (the StyleGAN2 sharing with the next block's conv0).
No tanh (§5.2).
"""

import math

import torch

from torch_utils import misc, persistence
from torch_utils.ops import upfirdn2d
from training.networks_stylegan2 import SynthesisLayer, ToRGBLayer

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)


def head_blocks(img_resolution: int, input_resolution: int) -> int:
    """Number of x2 blocks from the render R to the image H; ValueError unless H = R * 2^k, k >= 1."""
    ratio = img_resolution / input_resolution
    blocks = int(round(math.log2(ratio))) if ratio >= 1 else 0
    if blocks < 1 or input_resolution * 2 ** blocks != img_resolution:
        raise ValueError(f'the modconv1x1 neural renderer upsamples by powers of two: img_resolution '
                         f'({img_resolution}) must be input_resolution ({input_resolution}) x 2^k, k >= 1')
    return blocks


@persistence.persistent_class
class NeuralRenderer1x1(torch.nn.Module):
    """The 1x1 modulated-conv neural renderer (module docstring). Constructor arguments follow the
    super-resolution modules (channels, img_resolution, sr_num_fp16_res, sr_antialias, w_dim) plus
    input_resolution (R), channel_base and channel_max."""

    def __init__(self, channels, img_resolution, sr_num_fp16_res=0, sr_antialias=False, w_dim=512,
                 input_resolution=None, channel_base=32768, channel_max=512, **unused):
        del sr_antialias, unused   # no resize here; the fp16 flag is refused below (CPU-scale head)
        if sr_num_fp16_res:
            raise ValueError('NeuralRenderer1x1 runs in float32 only (sr_num_fp16_res must be 0)')
        if channels < 3:
            raise ValueError(f'the neural renderer reads its base RGB from feature channels 0-2; got {channels}')
        super().__init__()
        self.channels, self.img_resolution, self.w_dim = channels, img_resolution, w_dim
        self.input_resolution = int(input_resolution if input_resolution is not None else img_resolution // 2)
        self.blocks = head_blocks(img_resolution, self.input_resolution)
        self.num_ws = self.num_ws_for(img_resolution, self.input_resolution)
        self.layers = torch.nn.ModuleList()
        in_channels = channels
        for b in range(self.blocks):
            res = self.input_resolution * 2 ** (b + 1)
            out = min(channel_base // res, channel_max)
            self.layers.append(torch.nn.ModuleDict(dict(
                conv0=SynthesisLayer(in_channels, out, w_dim, res, kernel_size=1, up=2),
                conv1=SynthesisLayer(out, out, w_dim, res, kernel_size=1),
                torgb=ToRGBLayer(out, 3, w_dim))))
            in_channels = out
        self.register_buffer('resample_filter', upfirdn2d.setup_filter([1, 3, 3, 1]))

    @staticmethod
    def num_ws_for(img_resolution: int, input_resolution: int) -> int:
        """Codes the head reads: 2 per block + 1 (the last ToRGB)."""
        return 2 * head_blocks(img_resolution, input_resolution) + 1

    def forward(self, rgb, x, ws, noise_mode='none', **unused):
        """rgb [N, 3, R, R] (unused: the base is x[:, :3]), x [N, C_f, R, R], ws [N, num_ws, w_dim]
        -> [N, 3, H, H]. unused: the SR kwargs (fused_modconv, force_fp32)."""
        del rgb, unused
        misc.assert_shape(x, [None, self.channels, self.input_resolution, self.input_resolution])
        ws = ws[:, -self.num_ws:].to(torch.float32)
        img = x[:, :3]
        for b, block in enumerate(self.layers):
            x = block['conv0'](x, ws[:, 2 * b], noise_mode=noise_mode)
            x = block['conv1'](x, ws[:, 2 * b + 1], noise_mode=noise_mode)
            img = upfirdn2d.upsample2d(img, self.resample_filter) + block['torgb'](x, ws[:, 2 * b + 2])
        return img

    def extra_repr(self):
        return (f'channels={self.channels}, input_resolution={self.input_resolution}, '
                f'img_resolution={self.img_resolution}, blocks={self.blocks}')
