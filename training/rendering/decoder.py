"""The tri-plane feature decoder, EG3D's `OSGDecoder` (SPEC §4.5 "OSG decoder").

Shapes: N batch, M points, P = 3 planes, C plane channels.
"""

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from torch_utils import persistence
from training.networks_stylegan2 import FullyConnectedLayer

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)


def plane_mean_rows(features: torch.Tensor) -> torch.Tensor:
    """Stored plane features [N, P, C, M] (contiguous) -> their mean over P as rows [N*M, C].

    `sample_from_planes` returns [N, P, M, C] as a permuted view of this memory; reducing
    that view over P is a strided reduction ~5x slower than the same sums over the
    contiguous memory done here (then one transposing copy to rows, which beats writing the
    rows from the reduction directly). Same additions in the same order.
    """
    N, P, C, M = features.shape
    return features.mean(dim=1).transpose(1, 2).reshape(N * M, C)


_RGB_SCALE, _RGB_SHIFT = 1 + 2 * 0.001, 0.001   # rgb = sigmoid(.) * scale - shift (MipNeRF's widening)


def _decoder_outputs(x, w1, b1, w2, b2):
    """(hidden pre-activation [K, H], output [K, 1 + O]) of the OSG MLP for x [K, C]."""
    hidden = torch.addmm(b1.unsqueeze(0), x, w1.t())
    return hidden, torch.addmm(b2.unsqueeze(0), F.softplus(hidden), w2.t())


class _RecomputedDecoder(torch.autograd.Function):
    """Plane-averaged features x [K, C] -> (rgb [K, O], sigma [K, 1]) of the OSG decoder (MLP,
    output activation), saving only x.

    Autograd through the plain MLP (tests/reference/rendering.py) keeps the softplus input
    and output [K, 64], the output [K, 1 + O] and the sigmoid [K, O] of every decoded sample
    until backward, about 11x the input, and builds each of them whole. This function keeps x and recomputes the rest in
    backward (activation checkpointing: one extra MLP forward, a few % of a render), and
    runs both directions over blocks of CHUNK rows, so the temporaries stay a few MB
    whatever K is. Same forward ops per row as the reference; the weight gradients are sums
    of per-block products (different float summation order only). Once differentiable:
    nothing in training differentiates the generator twice (R1 differentiates only D).
    """
    CHUNK = 2048

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        ctx.save_for_backward(x, w1, b1, w2, b2)
        rgb = x.new_empty([x.shape[0], w2.shape[0] - 1])
        sigma = x.new_empty([x.shape[0], 1])
        w1t, b2_column = w1.t(), b2.unsqueeze(1)
        for lo in range(0, x.shape[0], _RecomputedDecoder.CHUNK):
            hi = lo + _RecomputedDecoder.CHUNK
            hidden = torch.addmm(b1, x[lo:hi], w1t)
            hidden = torch._C._nn.softplus(hidden, 1, 20, out=hidden)    # in place: saves a block
            # The output layer transposed, W2 H^T -> [1 + O, B]: the same dot products, but
            # PyTorch's CPU GEMM is 1.4x (O 32) to 2.5x (O 3) slower for the narrow [B, 1 + O].
            out = torch.addmm(b2_column, w2, hidden.t())
            sigma[lo:hi, 0] = out[0]
            rgb[lo:hi] = out[1:].sigmoid_().mul_(_RGB_SCALE).sub_(_RGB_SHIFT).t()
        return rgb, sigma

    @staticmethod
    @once_differentiable
    def backward(ctx, g_rgb, g_sigma):
        x, w1, b1, w2, b2 = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2 = ctx.needs_input_grad
        g_x = torch.empty_like(x) if need_x else None
        g_w1, g_b1, g_w2, g_b2 = (torch.zeros_like(t) for t in (w1, b1, w2, b2))
        for lo in range(0, x.shape[0], _RecomputedDecoder.CHUNK):
            hi = lo + _RecomputedDecoder.CHUNK
            hidden, out = _decoder_outputs(x[lo:hi], w1, b1, w2, b2)
            g_out = torch.zeros_like(out)
            if g_sigma is not None:
                g_out[:, :1] = g_sigma[lo:hi]
            if g_rgb is not None:
                sig = out[:, 1:].sigmoid()
                g_out[:, 1:] = g_rgb[lo:hi] * _RGB_SCALE * sig * (1 - sig)
            g_w2.addmm_(g_out.t(), F.softplus(hidden))
            g_b2 += g_out.sum(0)
            g_hidden = g_out.mm(w2).mul_(hidden.sigmoid_())                   # softplus' = sigmoid
            g_w1.addmm_(g_hidden.t(), x[lo:hi])
            g_b1 += g_hidden.sum(0)
            if need_x:
                torch.mm(g_hidden, w1, out=g_x[lo:hi])
        grads = (g_w1, g_b1, g_w2, g_b2)
        return (g_x, *(g if need else None for g, need in zip(grads, (need_w1, need_b1, need_w2, need_b2))))


def decode_rows_autograd(x: torch.Tensor, params) -> tuple:
    """`decode_rows` with plain autograd ops (every derivative order, e.g. the normals' double
    backward, SEEDS_SPEC §3.3); keeps the MLP's temporaries, so only for small point sets."""
    _, out = _decoder_outputs(x, *params)
    return out[:, 1:].sigmoid() * _RGB_SCALE - _RGB_SHIFT, out[:, :1]


def decode_rows(x: torch.Tensor, params) -> tuple:
    """Plane-averaged features x [K, C] -> (rgb [K, O], sigma [K, 1]) through the decoder MLP,
    params = `OSGDecoder.params()` (the renderer's fused sampling feeds rows directly)."""
    return _RecomputedDecoder.apply(x, *params)


@persistence.persistent_class
class OSGDecoder(torch.nn.Module):
    """Mean of the plane features -> FC(C->64) -> softplus -> FC(64->1+out_dim).

    Parameter names (`net.0.*`, `net.2.*`) follow EG3D so checkpoints load by name.
    options: 'decoder_lr_mul' (learning-rate multiplier of both layers) and
    'decoder_output_dim' (feature channels returned as 'rgb'; the first 3 are RGB).
    """

    def __init__(self, n_features=32, options={'decoder_lr_mul': 1, 'decoder_output_dim': 32}):
        super().__init__()
        self.hidden_dim = 64
        lr_mul = options['decoder_lr_mul']
        self.net = torch.nn.Sequential(
            FullyConnectedLayer(n_features, self.hidden_dim, lr_multiplier=lr_mul),
            torch.nn.Softplus(),
            FullyConnectedLayer(self.hidden_dim, 1 + options['decoder_output_dim'], lr_multiplier=lr_mul),
        )

    def params(self, channels=None):
        """(w1, b1, w2, b2) as the layers apply them (weights times their equalized-lr gains),
        for `decode_rows` and the fused kernel. channels: keep only the sigma row and the
        first `channels` feature rows of the output layer (None: all), for callers that
        read no other feature channel."""
        fc1, _, fc2 = self.net
        rows = fc2.weight.shape[0] if channels is None else 1 + channels
        return (fc1.weight * fc1.weight_gain, fc1.bias * fc1.bias_gain,
                fc2.weight[:rows] * fc2.weight_gain, fc2.bias[:rows] * fc2.bias_gain)

    def forward(self, sampled_features, ray_directions=None):
        """sampled_features [N, P, M, C] -> {'rgb': [N, M, out_dim], 'sigma': [N, M, 1]}.

        sigma is raw (the marcher applies softplus(sigma - 1)). rgb is a sigmoid widened by
        0.001 on each side (MipNeRF's clamp), so the range [0, 1] is reachable. ray_directions
        are accepted for API compatibility and ignored (no view dependence).
        """
        N, P, M, C = sampled_features.shape
        rgb, sigma = decode_rows(plane_mean_rows(sampled_features.transpose(2, 3).contiguous()), self.params())
        return {'rgb': rgb.reshape(N, M, -1), 'sigma': sigma.reshape(N, M, 1)}
