"""The straightforward StyleGAN2 layer port, kept as the test reference for the leaner
formulations in `training/networks_stylegan2.py` (weight modulation, FullyConnectedLayer,
fused SynthesisLayer, ToRGBLayer). Each function takes the package's layer for its
parameters and computes its forward the way the StyleGAN2 code does."""


from torch_utils.ops import bias_act, conv2d_resample
from training import networks_stylegan2 as nets


def modulate(weight, styles):
    """weight [O, I, kh, kw] * styles [N, I] per input channel -> [N, O, I, kh, kw]."""
    N, I = styles.shape
    return weight.unsqueeze(0) * styles.reshape(N, 1, I, 1, 1)


def modulated_conv2d(x, weight, styles, noise=None, up=1, padding=0, resample_filter=None,
                     demodulate=True, flip_weight=True, fused_modconv=True):
    """StyleGAN2's modulated convolution (float32/float64: no fp16 pre-normalization)."""
    N, O = x.shape[0], weight.shape[0]
    kwargs = dict(f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
    w = modulate(weight, styles)
    dcoefs = (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt() if demodulate else None   # [N, O]
    if fused_modconv:
        if dcoefs is not None:
            w = w * dcoefs.reshape(N, O, 1, 1, 1)
        y = conv2d_resample.conv2d_resample(x.reshape(1, -1, *x.shape[2:]), w.reshape(-1, *w.shape[2:]),
                                            groups=N, **kwargs)
        y = y.reshape(N, -1, *y.shape[2:])
    else:
        y = conv2d_resample.conv2d_resample(x * styles.reshape(N, -1, 1, 1), weight, **kwargs)
        if dcoefs is not None:
            y = y * dcoefs.reshape(N, -1, 1, 1)
    return y if noise is None else y + noise


def fully_connected(layer, x):
    """FullyConnectedLayer as the port computes it: the weight scaled by its gain first, then the
    product. The package keeps exactly this body for the inputs its lean form does not take
    (fp16, batched, no bias), so the reference is that body."""
    return nets._fc_general(layer, x)


def synthesis_layer(layer, x, w, noise_mode='random', fused_modconv=True, gain=1):
    """SynthesisLayer: affine, modulated conv (+ noise), then bias_act (noise drawn after the affine)."""
    styles = fully_connected(layer.affine, w)
    y = modulated_conv2d(x, layer.weight, styles, noise=layer._noise(x, noise_mode), up=layer.up,
                         padding=layer.padding, resample_filter=layer.resample_filter,
                         flip_weight=(layer.up == 1), fused_modconv=fused_modconv)
    clamp = layer.conv_clamp * gain if layer.conv_clamp is not None else None
    return bias_act.bias_act(y, layer.bias, act=layer.activation, gain=layer.act_gain * gain, clamp=clamp)


def to_rgb(layer, x, w, fused_modconv=True):
    """ToRGBLayer: styles carry the weight gain; modulated conv without demodulation; bias, clamp."""
    styles = fully_connected(layer.affine, w) * layer.weight_gain
    y = modulated_conv2d(x, layer.weight, styles, demodulate=False, fused_modconv=fused_modconv)
    return bias_act.bias_act(y, layer.bias, clamp=layer.conv_clamp)
