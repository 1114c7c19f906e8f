"""StyleGAN2 building blocks, generator and discriminator (SPEC §4.3, §5.1, §11).

Class names, constructor signatures and parameter/buffer names follow StyleGAN2/EG3D so
that state dicts line up with their checkpoints (`synthesis.b8.conv0.affine.weight`,
`mapping.w_avg`, `b4.fc.weight`, ...). Shapes: N batch, C/I/O channels, H×W pixels.

Self-contained on purpose: `persistence` pickles a network together with the source of
this file and re-executes that source alone when the pickle is loaded, so this module may
import `torch_utils`/`dnnlib` but nothing from `training` (a split into two files would
need one to import the other). PoF3D additions (pose learner, pose head) live elsewhere.
"""

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc, persistence
from torch_utils.ops import bias_act, conv2d_gradfix, conv2d_resample, fma, upfirdn2d

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)


@misc.profiled_function
def normalize_2nd_moment(x, dim=1, eps=1e-8):
    """Scale `x` so that the mean of its squares along `dim` is 1 (eps for stability)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _fp16_prenormalize(weight, styles):
    """Rescale weight per output channel and styles per sample to unit max-abs.

    Demodulation cancels both factors exactly; they only keep the fp16 products of the
    modulated weight in range (SPEC §11.2).
    """
    fan_in = weight[0].numel()
    weight = weight * (1 / np.sqrt(fan_in) / weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True))
    styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)
    return weight, styles


def _modconv_grouped(x, sample_weight, noise, resample_kwargs):
    """Fused form: one grouped convolution with a separate kernel per sample.

    x: [N, I, H, W]; sample_weight: [N, O, I, kh, kw] (already modulated/demodulated).
    """
    batch_size = x.shape[0]
    x = x.reshape(1, -1, *x.shape[2:])
    w = sample_weight.reshape(-1, *sample_weight.shape[2:]).to(x.dtype)
    x = conv2d_resample.conv2d_resample(x=x, w=w, groups=batch_size, **resample_kwargs)
    x = x.reshape(batch_size, -1, *x.shape[2:])
    return x if noise is None else x + noise.to(x.dtype)


def _modconv_scaled(x, weight, styles, dcoefs, noise, resample_kwargs):
    """Unfused form: scale the activations by the styles, convolve with the shared weight,
    then scale the result by the demodulation coefficients (dcoefs [N, O] or None)."""
    batch_size = x.shape[0]
    x = x * styles.to(x.dtype).reshape(batch_size, -1, 1, 1)
    x = conv2d_resample.conv2d_resample(x=x, w=weight.to(x.dtype), **resample_kwargs)
    if dcoefs is not None:
        dcoefs = dcoefs.to(x.dtype).reshape(batch_size, -1, 1, 1)
        if noise is not None:
            return fma.fma(x, dcoefs, noise.to(x.dtype))
        return x * dcoefs
    return x if noise is None else x + noise.to(x.dtype)


def _modulate(weight, styles):
    """weight [O, I, kh, kw] * styles [N, I] per input channel -> [N, O, I, kh, kw].

    Multiplies over the flattened [O, I*kh*kw] weight by the styles repeated per tap: the
    products of the plain broadcast (tests/reference/stylegan2_layers.py), which on CPU costs
    ~1.7x more over the tiny inner kh*kw dimension (N 4: 112 -> 65 us per 64x64x3x3 layer).
    """
    N, (O, I, kh, kw) = styles.shape[0], weight.shape
    taps = styles.repeat_interleave(kh * kw, dim=1).unsqueeze(1)                   # [N, 1, I*kh*kw]
    return (weight.reshape(1, O, I * kh * kw) * taps).reshape(N, O, I, kh, kw)


@misc.profiled_function
def modulated_conv2d(x, weight, styles, noise=None, up=1, down=1, padding=0, resample_filter=None,
                     demodulate=True, flip_weight=True, fused_modconv=True):
    """StyleGAN2 modulated convolution (SPEC §11.2).

    x: [N, I, H, W]; weight: [O, I, kh, kw]; styles: [N, I]; noise: broadcastable to the
    output [N, O, H', W'] and added after demodulation. Returns [N, O, H', W'].
    `fused_modconv` picks the grouped-conv form; both forms compute the same function.
    """
    batch_size = x.shape[0]
    out_channels, in_channels = weight.shape[:2]
    misc.assert_shape(x, [batch_size, in_channels, None, None])
    misc.assert_shape(styles, [batch_size, in_channels])
    if x.dtype == torch.float16 and demodulate:
        weight, styles = _fp16_prenormalize(weight, styles)

    sample_weight = dcoefs = None
    if demodulate or fused_modconv:
        sample_weight = _modulate(weight, styles)
    if demodulate:
        dcoefs = (sample_weight.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()  # [N, O]

    resample_kwargs = {'f': resample_filter, 'up': up, 'down': down, 'padding': padding, 'flip_weight': flip_weight}
    if fused_modconv:
        if dcoefs is not None:
            sample_weight = sample_weight * dcoefs.reshape(batch_size, out_channels, 1, 1, 1)
        return _modconv_grouped(x, sample_weight, noise, resample_kwargs)
    return _modconv_scaled(x, weight, styles, dcoefs, noise, resample_kwargs)


# ----------------------------------------------------------------------------------------
# The common layer cases in fewer PyTorch calls than the StyleGAN2 composition (kept below for
# fp16, unfused and odd shapes; tests/reference/stylegan2_layers.py holds the straightforward
# port the tests compare against). At the tri-plane backbone's sizes (4²-32², 64 channels,
# batch 1-4) a layer's arithmetic takes tens of microseconds and each extra op or Python
# check costs several, so these matter.


def _fc_fast(layer, x):
    """FullyConnectedLayer on x [N, in] -> [N, out]: one addmm with the gain on the product,
    (x W^T) g + b, instead of first scaling the [out, in] weight (float rounding only)."""
    b = layer.bias if layer.bias_gain == 1 else layer.bias * layer.bias_gain
    y = torch.addmm(b, x, layer.weight.t(), alpha=layer.weight_gain)
    return y if layer.activation == 'linear' else bias_act.bias_act(y, None, act=layer.activation)


def _fc_general(layer, x):
    """FullyConnectedLayer for any input (fp16, batched, no bias): the gain applied to the
    weight, then the product, as the reference computes it."""
    w = layer.weight.to(x.dtype) * layer.weight_gain
    b = layer.bias
    if b is not None:
        b = b.to(x.dtype)
        if layer.bias_gain != 1:
            b = b * layer.bias_gain
    if layer.activation == 'linear' and b is not None:
        return torch.addmm(b.unsqueeze(0), x, w.t())
    return bias_act.bias_act(x.matmul(w.t()), b, act=layer.activation)


def _act_gain_fast(y, act, gain, clamp):
    """clamp(act(y) * gain) (`bias_act` without bias) on a tensor y that is no other op's
    saved input (a fresh conv output): lrelu runs in place, and without autograd so do the
    gain and the clamp. Same elementwise ops."""
    if act != 'lrelu':
        return bias_act.bias_act(y, None, act=act, gain=gain, clamp=clamp)
    y = F.leaky_relu_(y, bias_act.activation_funcs['lrelu'].def_alpha)
    if torch.is_grad_enabled() and y.requires_grad:   # leaky_relu_'s backward reads its result
        y = y * gain if gain != 1 else y
        return y if clamp is None else y.clamp(-clamp, clamp)
    if gain != 1:
        y.mul_(gain)
    return y if clamp is None else y.clamp_(-clamp, clamp)


def _synthesis_layer_fast(layer, x, w, noise_mode, gain):
    """SynthesisLayer (fused modulated conv, not fp16) x [N, I, h, h] -> [N, O, res, res].

    The StyleGAN2 composition's ops, fewer and cheaper: demodulation coefficients in place on
    the fresh sum, the bias inside the convolution (up = 1; added after the upsampling conv
    else), noise added and activation applied in place. Only additions are regrouped.
    """
    N, (O, I, kh, kw) = x.shape[0], layer.weight.shape
    styles = layer.affine(w)
    noise = layer._noise(x, noise_mode)
    weight = _modulate(layer.weight, styles)                                     # [N, O, I, kh, kw]
    dcoefs = weight.square().sum(dim=[2, 3, 4]).add_(1e-8).rsqrt_()              # [N, O]
    weight = (weight * dcoefs.reshape(N, O, 1, 1, 1)).reshape(N * O, I, kh, kw)
    x = x.reshape(1, N * I, *x.shape[2:])
    bias = layer.bias if N == 1 else layer.bias.repeat(N)
    if layer.up == 1:   # the padding is symmetric: conv2d_resample would run exactly this conv
        y = conv2d_gradfix.conv2d(x, weight, bias, padding=layer.padding, groups=N)
    else:
        y = conv2d_resample.conv2d_resample(x, weight, f=layer.resample_filter, up=layer.up,
                                            padding=layer.padding, groups=N, flip_weight=False)
        y = y.add_(bias.reshape(1, -1, 1, 1))
    y = y.reshape(N, O, *y.shape[2:])
    if noise is not None:
        y = y.add_(noise)
    clamp = layer.conv_clamp * gain if layer.conv_clamp is not None else None
    return _act_gain_fast(y, layer.activation, layer.act_gain * gain, clamp)


def _torgb_fast(layer, x, w):
    """ToRGBLayer (1×1 kernel, not fp16) x [N, I, H, W] -> [N, O, H, W]: the styles with both
    gains in one addmm, and the modulated 1×1 conv + bias as one batched product
    b + (W ⊙ s) x over the pixels, the same sums either convolution form does."""
    N, I, H, W = x.shape
    affine = layer.affine
    b = affine.bias if affine.bias_gain == 1 else affine.bias * affine.bias_gain
    styles = torch.addmm(b, w, affine.weight.t(), beta=layer.weight_gain,
                         alpha=affine.weight_gain * layer.weight_gain)               # [N, I]
    weight = layer.weight.reshape(1, -1, I) * styles.unsqueeze(1)                    # [N, O, I]
    y = torch.baddbmm(layer.bias.reshape(1, -1, 1), weight, x.reshape(N, I, H * W))
    y = y.reshape(N, -1, H, W)
    if layer.conv_clamp is None:
        return y
    return y.clamp(-layer.conv_clamp, layer.conv_clamp)


@persistence.persistent_class
class FullyConnectedLayer(torch.nn.Module):
    """Equalized-lr linear layer (SPEC §11.1): [N, in_features] -> [N, out_features].

    The stored weight is N(0,1)/lr_multiplier and is used as stored·lr_multiplier/sqrt(fan_in);
    the bias is stored as `bias_init` (scalar or per-feature) and used as stored·lr_multiplier.
    """

    def __init__(self, in_features, out_features, bias=True, activation='linear', lr_multiplier=1,
                 bias_init=0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        init = np.broadcast_to(np.asarray(bias_init, dtype=np.float32), [out_features])
        self.bias = torch.nn.Parameter(torch.from_numpy(init.copy())) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        if x.ndim == 2 and x.dtype == self.weight.dtype and self.bias is not None:
            return _fc_fast(self, x)
        return _fc_general(self, x)

    def extra_repr(self):
        return f'in_features={self.in_features:d}, out_features={self.out_features:d}, activation={self.activation:s}'


@persistence.persistent_class
class Conv2dLayer(torch.nn.Module):
    """Equalized-lr conv with optional FIR up/down-sampling by 2 (SPEC §11.1).

    [N, in_channels, H, W] -> [N, out_channels, H·up/down, W·up/down]. `trainable=False`
    stores weight and bias as buffers (frozen discriminator layers).
    """

    def __init__(self, in_channels, out_channels, kernel_size, bias=True, activation='linear', up=1, down=1,
                 resample_filter=(1, 3, 3, 1), conv_clamp=None, channels_last=False, trainable=True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias) if bias is not None else None
        else:
            self.register_buffer('weight', weight)
            self.register_buffer('bias', bias)  # None registers nothing but keeps the attribute

    def forward(self, x, gain=1):
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        # StyleGAN2 convention: kernels are flipped except in the transposed (up) conv.
        x = conv2d_resample.conv2d_resample(x=x, w=w.to(x.dtype), f=self.resample_filter, up=self.up,
                                            down=self.down, padding=self.padding, flip_weight=(self.up == 1))
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, '
                f'activation={self.activation:s}, up={self.up}, down={self.down}')


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    """z [N, z_dim] and c [N, c_dim] -> w [N, w_dim], or ws [N, num_ws, w_dim] if num_ws.

    z and embed(c) are each normalized to unit 2nd moment and concatenated, then go
    through `num_layers` FC layers. `w_avg` (a running mean of w, updated only when
    `update_emas`) is the truncation centre; it exists only with num_ws and w_avg_beta.
    """

    def __init__(self, z_dim, c_dim, w_dim, num_ws, num_layers=8, embed_features=None, layer_features=None,
                 activation='lrelu', lr_multiplier=0.01, w_avg_beta=0.998):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def _embed_inputs(self, z, c):
        parts = []
        if self.z_dim > 0:
            misc.assert_shape(z, [None, self.z_dim])
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            misc.assert_shape(c, [None, self.c_dim])
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        if not parts:
            raise ValueError('MappingNetwork needs z_dim > 0 or c_dim > 0')
        return torch.cat(parts, dim=1)

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        x = self._embed_inputs(z, c)
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)
        if update_emas and hasattr(self, 'w_avg'):
            # Running mean of w: w_avg <- lerp(batch mean, w_avg, beta). Owned buffer.
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            x = self._truncate(x, truncation_psi, truncation_cutoff)
        return x

    def _truncate(self, x, psi, cutoff):
        """Pull w towards w_avg: w_avg + psi·(w - w_avg), on the first `cutoff` ws only if given."""
        if not hasattr(self, 'w_avg'):
            raise ValueError('truncation needs w_avg (construct MappingNetwork with num_ws and w_avg_beta)')
        truncated = self.w_avg.lerp(x, psi)
        if self.num_ws is None or cutoff is None:
            return truncated
        return torch.cat([truncated[:, :cutoff], x[:, cutoff:]], dim=1)

    def extra_repr(self):
        return f'z_dim={self.z_dim:d}, c_dim={self.c_dim:d}, w_dim={self.w_dim:d}, num_ws={self.num_ws}'



@persistence.persistent_class
class SynthesisLayer(torch.nn.Module):
    """Modulated 3×3 conv + per-pixel noise + bias + activation (SPEC §4.3, §11.2).

    x [N, in_channels, resolution/up, resolution/up], w [N, w_dim]
    -> [N, out_channels, resolution, resolution].
    """

    def __init__(self, in_channels, out_channels, w_dim, resolution, kernel_size=3, up=1, use_noise=True,
                 activation='lrelu', resample_filter=(1, 3, 3, 1), conv_clamp=None, channels_last=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain

        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)  # styles start at 1
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = torch.nn.Parameter(weight.to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def _noise(self, x, noise_mode):
        """Noise [N, 1, res, res] (random), [res, res] (const) or None, times the strength."""
        if noise_mode not in ('random', 'const', 'none'):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        if not self.use_noise or noise_mode == 'none':
            return None
        if noise_mode == 'const':
            return self.noise_const * self.noise_strength
        shape = [x.shape[0], 1, self.resolution, self.resolution]
        return torch.randn(shape, device=x.device) * self.noise_strength

    def forward(self, x, w, noise_mode='random', fused_modconv=True, gain=1):
        in_resolution = self.resolution // self.up
        misc.assert_shape(x, [None, self.in_channels, in_resolution, in_resolution])
        if fused_modconv and x.dtype == self.weight.dtype != torch.float16:
            return _synthesis_layer_fast(self, x, w, noise_mode, gain)
        styles = self.affine(w)
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, noise=self._noise(x, noise_mode),
                             up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                             flip_weight=(self.up == 1), fused_modconv=fused_modconv)
        act_clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation,
                                 gain=self.act_gain * gain, clamp=act_clamp)

    def extra_repr(self):
        return (f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d}, '
                f'resolution={self.resolution:d}, up={self.up}, activation={self.activation:s}')


@persistence.persistent_class
class ToRGBLayer(torch.nn.Module):
    """Modulated 1×1 conv without demodulation: features [N, in, H, W] -> image [N, out, H, W].

    The styles carry the equalized-lr gain 1/sqrt(in·k²) instead of the weight (SPEC §11.2).
    """

    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size])
        self.weight = torch.nn.Parameter(weight.to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / np.sqrt(in_channels * (kernel_size ** 2))

    def forward(self, x, w, fused_modconv=True):
        if self.weight.shape[2:] == (1, 1) and x.dtype == self.weight.dtype != torch.float16:
            return _torgb_fast(self, x, w)   # both convolution forms compute this function
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x=x, weight=self.weight, styles=styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act.bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)

    def extra_repr(self):
        return f'in_channels={self.in_channels:d}, out_channels={self.out_channels:d}, w_dim={self.w_dim:d}'


@persistence.persistent_class
class SynthesisBlock(torch.nn.Module):
    """One resolution of the synthesis network (SPEC §4.3).

    The 4×4 block (in_channels == 0) starts from the learned `const`; later blocks
    upsample ×2 in conv0. Architectures: 'orig' (ToRGB only in the last block), 'skip'
    (every block adds its ToRGB to the FIR-upsampled running image), 'resnet' (1×1
    upsampling shortcut, both branches × sqrt(0.5); ToRGB only in the last block).
    """
    up = 2  # upsampling of conv0, the shortcut and the running image (1: superresolution.SynthesisBlockNoUp)

    def __init__(self, in_channels, out_channels, w_dim, resolution, img_channels, is_last, architecture='skip',
                 resample_filter=(1, 3, 3, 1), conv_clamp=256, use_fp16=False, fp16_channels_last=False,
                 fused_modconv_default=True, **layer_kwargs):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        common = {'w_dim': w_dim, 'resolution': resolution, 'conv_clamp': conv_clamp,
                  'channels_last': self.channels_last}
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=self.up, resample_filter=resample_filter,
                                        **common, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **common, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=self.up,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def _features(self, x, w_iter, fused_modconv, layer_kwargs):
        """Run the convolutions (and the resnet shortcut) of this block on x."""
        if self.in_channels == 0:
            return self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        if self.architecture == 'resnet':
            shortcut = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused_modconv, gain=np.sqrt(0.5), **layer_kwargs)
            return shortcut + x
        x = self.conv0(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)
        return self.conv1(x, next(w_iter), fused_modconv=fused_modconv, **layer_kwargs)

    def forward(self, x, img, ws, force_fp32=False, fused_modconv=None, update_emas=False, **layer_kwargs):
        """x: [N, in_channels, res/up, res/up] or None (4×4 block); img: [N, img_channels,
        res/up, res/up] float32 or None; ws: [N, num_conv + num_torgb, w_dim].
        Returns (x [N, out_channels, res, res], img [N, img_channels, res, res] or None)."""
        del update_emas  # part of the common block interface; nothing to update here
        misc.assert_shape(ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        w_iter = iter(ws.unbind(dim=1))
        use_fp16 = self.use_fp16 and not force_fp32 and ws.device.type == 'cuda'
        dtype = torch.float16 if use_fp16 else torch.float32
        memory_format = torch.channels_last if self.channels_last and use_fp16 else torch.contiguous_format
        if fused_modconv is None:
            fused_modconv = self.fused_modconv_default
        if fused_modconv == 'inference_only':
            fused_modconv = not self.training

        if self.in_channels == 0:
            x = self.const.to(dtype=dtype, memory_format=memory_format)
            x = x.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            misc.assert_shape(x, [None, self.in_channels, self.resolution // self.up, self.resolution // self.up])
            x = x.to(dtype=dtype, memory_format=memory_format)
        x = self._features(x, w_iter, fused_modconv, layer_kwargs)

        if img is not None:
            misc.assert_shape(img, [None, self.img_channels, self.resolution // self.up, self.resolution // self.up])
            if self.up > 1:
                img = upfirdn2d.upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == 'skip':
            y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv)
            y = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            img = y if img is None else img + y
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture:s}'


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> image [N, img_channels, img_resolution, img_resolution].

    Blocks b4, b8, ..., b{img_resolution} with min(channel_base/res, channel_max) channels;
    the top `num_fp16_res` resolutions (never below 8) run in fp16 on CUDA. Block ws slices
    overlap: each reads num_conv + num_torgb ws and the index advances by num_conv.
    """

    def __init__(self, w_dim, img_resolution, img_channels, channel_base=32768, channel_max=512,
                 num_fp16_res=4, **block_kwargs):
        if img_resolution < 4 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f'img_resolution must be a power of two >= 4, got {img_resolution}')
        super().__init__()
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, self.img_resolution_log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)

        self.num_ws = 0
        for res in self.block_resolutions:
            is_last = (res == img_resolution)
            block = SynthesisBlock(channels[res // 2] if res > 4 else 0, channels[res], w_dim=w_dim,
                                   resolution=res, img_channels=img_channels, is_last=is_last,
                                   use_fp16=(res >= fp16_resolution), **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f'b{res}', block)

    def forward(self, ws, **block_kwargs):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, **block_kwargs)
        return img

    def extra_repr(self):
        return (f'w_dim={self.w_dim:d}, num_ws={self.num_ws:d}, img_resolution={self.img_resolution:d}, '
                f'img_channels={self.img_channels:d}, num_fp16_res={self.num_fp16_res:d}')


@persistence.persistent_class
class Generator(torch.nn.Module):
    """StyleGAN2 generator: (z [N, z_dim], c [N, c_dim]) -> image [N, img_channels, H, H].

    `mapping_kwargs` (None = {}) go to MappingNetwork, the rest to SynthesisNetwork; forward's
    extra kwargs (noise_mode, fused_modconv, force_fp32) reach every synthesis block/layer.
    """

    def __init__(self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None, **synthesis_kwargs):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False, **synthesis_kwargs):
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)


# ----------------------------------------------------------------------------------------
# Discriminator side (SPEC §5.1, §5.3, §11.3).


@persistence.persistent_class
class DiscriminatorBlock(torch.nn.Module):
    """One resolution of the ResNet/skip/orig discriminator (SPEC §5.1).

    x [N, in_channels, res, res] (None in the first block) and img [N, img_channels, res, res]
    -> (x [N, out_channels, res/2, res/2], img downsampled for 'skip', else None).
    Layers with a global index below `freeze_layers` hold their weights as buffers.
    """

    def __init__(self, in_channels, tmp_channels, out_channels, resolution, img_channels, first_layer_idx,
                 architecture='resnet', activation='lrelu', resample_filter=(1, 3, 3, 1), conv_clamp=None,
                 use_fp16=False, fp16_channels_last=False, freeze_layers=0):
        if in_channels not in (0, tmp_channels):
            raise ValueError(f'in_channels must be 0 or tmp_channels ({tmp_channels}), got {in_channels}')
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.first_layer_idx = first_layer_idx
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = (use_fp16 and fp16_channels_last)
        self.freeze_layers = freeze_layers
        self.register_buffer('resample_filter', upfirdn2d.setup_filter(resample_filter))
        self.num_layers = 0
        common = {'activation': activation, 'conv_clamp': conv_clamp, 'channels_last': self.channels_last}

        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, trainable=self._next_trainable(),
                                       **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=self._next_trainable(),
                                 **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2, resample_filter=resample_filter,
                                 trainable=self._next_trainable(), **common)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    resample_filter=resample_filter, trainable=self._next_trainable(),
                                    channels_last=self.channels_last)

    def _next_trainable(self):
        """Count one more layer; it trains unless its global index is below freeze_layers."""
        layer_idx = self.first_layer_idx + self.num_layers
        self.num_layers += 1
        return layer_idx >= self.freeze_layers

    def forward(self, x, img, force_fp32=False):
        device = (x if x is not None else img).device
        use_fp16 = self.use_fp16 and not force_fp32 and device.type == 'cuda'
        dtype = torch.float16 if use_fp16 else torch.float32
        memory_format = torch.channels_last if self.channels_last and use_fp16 else torch.contiguous_format
        if x is not None:
            misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
            x = x.to(dtype=dtype, memory_format=memory_format)

        if self.in_channels == 0 or self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            img = img.to(dtype=dtype, memory_format=memory_format)
            y = self.fromrgb(img)
            x = y if x is None else x + y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None

        if self.architecture == 'resnet':
            shortcut = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = shortcut + self.conv1(x, gain=np.sqrt(0.5))
        else:
            x = self.conv1(self.conv0(x))
        return x, img

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture:s}'


@persistence.persistent_class
class MinibatchStdLayer(torch.nn.Module):
    """Append the within-group feature stddev as extra channels (SPEC §11.3).

    [N, C, H, W] -> [N, C + num_channels, H, W]. Group g holds samples g, g + N/G, ...
    (G = min(group_size, N)); the stddev over the group (+1e-8 inside the sqrt) is averaged
    over each of the `num_channels` channel slices and all pixels.
    """

    def __init__(self, group_size, num_channels=1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x):
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        if n % g != 0 or c % f != 0:
            raise ValueError(f'MinibatchStdLayer: batch {n} must be divisible by the group size {g} '
                             f'and channels {c} by num_channels {f}')
        y = x.reshape(g, -1, f, c // f, h, w)                # [G, N/G, F, C/F, H, W]
        y = y - y.mean(dim=0)                                 # deviation from the group mean
        y = (y.square().mean(dim=0) + 1e-8).sqrt()            # [N/G, F, C/F, H, W] stddev
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)        # [N/G, F, 1, 1]
        y = y.repeat(g, 1, h, w)                              # [N, F, H, W]
        return torch.cat([x, y], dim=1)

    def extra_repr(self):
        return f'group_size={self.group_size}, num_channels={self.num_channels:d}'


@persistence.persistent_class
class DiscriminatorEpilogue(torch.nn.Module):
    """4×4 head, always fp32 (SPEC §5.1): mbstd -> conv 3×3 -> fc -> out.

    x [N, in_channels, res, res] -> [N, 1] logits, or with cmap [N, cmap_dim] the projection
    score (out(x)·cmap).sum / sqrt(cmap_dim) as [N, 1] (SPEC §5.3).
    """

    def __init__(self, in_channels, cmap_dim, resolution, img_channels, architecture='resnet', mbstd_group_size=4,
                 mbstd_num_channels=1, activation='lrelu', conv_clamp=None):
        if architecture not in ('orig', 'skip', 'resnet'):
            raise ValueError(f"architecture must be 'orig', 'skip' or 'resnet', got {architecture!r}")
        super().__init__()
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * (resolution ** 2), in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x, img, cmap, force_fp32=False):
        del force_fp32  # the epilogue always runs in fp32
        misc.assert_shape(x, [None, self.in_channels, self.resolution, self.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            misc.assert_shape(img, [None, self.img_channels, self.resolution, self.resolution])
            x = x + self.fromrgb(img.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.out(self.fc(x.flatten(1)))
        if self.cmap_dim > 0:
            misc.assert_shape(cmap, [None, self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x

    def extra_repr(self):
        return f'resolution={self.resolution:d}, architecture={self.architecture:s}'


@persistence.persistent_class
class Discriminator(torch.nn.Module):
    """StyleGAN2 discriminator: img [N, img_channels, H, H], c [N, c_dim] -> logits [N, 1].

    Blocks b{H}, ..., b8 then the epilogue b4. With c_dim > 0 a MappingNetwork (no z,
    no w_avg) turns c into cmap [N, cmap_dim] for the projection score (SPEC §5.3).
    cmap_dim None = channels at 4×4. block/mapping/epilogue_kwargs: None = {}.
    """

    def __init__(self, c_dim, img_resolution, img_channels, architecture='resnet', channel_base=32768,
                 channel_max=512, num_fp16_res=4, conv_clamp=256, cmap_dim=None, block_kwargs=None,
                 mapping_kwargs=None, epilogue_kwargs=None):
        if img_resolution < 8 or img_resolution & (img_resolution - 1) != 0:
            raise ValueError(f'img_resolution must be a power of two >= 8, got {img_resolution}')
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        if cmap_dim is None:
            cmap_dim = channels[4]
        if c_dim == 0:
            cmap_dim = 0

        common = {'img_channels': img_channels, 'architecture': architecture, 'conv_clamp': conv_clamp}
        layer_idx = 0
        for res in self.block_resolutions:
            block = DiscriminatorBlock(channels[res] if res < img_resolution else 0, channels[res], channels[res // 2],
                                       resolution=res, first_layer_idx=layer_idx, use_fp16=(res >= fp16_resolution),
                                       **(block_kwargs or {}), **common)
            setattr(self, f'b{res}', block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4,
                                        **(epilogue_kwargs or {}), **common)

    def forward(self, img, c, update_emas=False, **block_kwargs):
        del update_emas  # part of the common D interface; nothing to update here
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, img, cmap)

    def extra_repr(self):
        return f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}'
