"""VolumeGAN's point MLP: [volume feature || coordinate] -> density and feature (SEEDS_SPEC §5.1-5.2, §6.5).

Both networks answer the call of training/rendering/volume_field.py:

    net(points [N, K, 3] world, box_points [N, K, 3] in [-1, 1]^3, v [N, K, C_v] | None,
        directions [N, K, 3], ws [N, num_ws, w_dim]) -> (features [N, K, C_f], sigma [N, K, 1] raw)

  'modconv' (ModulatedPointMLP, the code, §5.1-5.2): input [v || PE(x)], PE of the world point
      with 10 log-frequencies (3 + 60 channels, ordered x, sin(2^0 x), cos(2^0 x), sin(2^1 x), ...);
      `layers` StyleGAN2 modulated 1x1 layers (demodulated, equalized lr, style affine bias init 1,
      LReLU gain sqrt 2), layer i modulated by ws[:, i].
  'film_siren' (FilmPointMLP, the slides, §5.1): input [v || x_box]; `layers` FiLM-sine layers
      sin(gamma_i (W_i h + b_i) + beta_i), (gamma_i, beta_i) from ws[:, i] by a Linear, gamma = 15 f
      + 30 and the SIREN inits as pi-GAN (§1.3-1.4).
Heads (§5.2): density Linear(hidden -> 1), feature Linear(hidden [+ 3 with view_dependent] -> C_f),
both linear; `feature_sigmoid` (the "NR off" row, §6.5: C_f = 3 rendered directly) puts a sigmoid on
the feature. view_dependent False is the code (directions are ignored, §5.1); True appends the unit
view direction to the feature head's input. Without a volume (v None, "FV off") the input is the
coordinate part only.
"""

import math

import torch
import torch.nn.functional as F

from torch_utils import persistence
from training.film_siren import FREQ_SCALE, FREQ_SHIFT, LAST_MAPPING_GAIN, film_sine, kaiming_init_, siren_init_
from training.networks_stylegan2 import FullyConnectedLayer

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)

PE_FREQUENCIES = 10   # NeRF's 2^0 ... 2^9 (§5.2)
POINT_MLPS = ('modconv', 'film_siren')


def positional_encoding(x: torch.Tensor, frequencies: int = PE_FREQUENCIES) -> torch.Tensor:
    """x [..., 3] -> [..., 3 + 6 * frequencies]: x, then sin(2^k x), cos(2^k x) for k = 0..F-1 (§5.2)."""
    scaled = x.unsqueeze(-2) * (2.0 ** torch.arange(frequencies, dtype=x.dtype, device=x.device)).unsqueeze(-1)
    pairs = torch.stack([scaled.sin(), scaled.cos()], dim=-2)          # [..., F, 2, 3]
    return torch.cat([x, pairs.flatten(-3)], dim=-1)


@persistence.persistent_class
class ModulatedPointLayer(torch.nn.Module):
    """A StyleGAN2 modulated 1x1 layer over points: x [N, K, in], w [N, w_dim] -> [N, K, out]
    (styles s = affine(w), weights W s demodulated per output, + bias, LReLU 0.2 x sqrt 2)."""

    def __init__(self, in_features: int, out_features: int, w_dim: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.affine = FullyConnectedLayer(w_dim, in_features, bias_init=1)
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]))
        self.bias = torch.nn.Parameter(torch.zeros([out_features]))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        weight = self.weight.unsqueeze(0) * self.affine(w).unsqueeze(1)            # [N, out, in]
        weight = weight * (weight.square().sum(dim=2, keepdim=True) + 1e-8).rsqrt()
        y = torch.baddbmm(self.bias.reshape(1, 1, -1), x, weight.transpose(1, 2))
        return F.leaky_relu(y, 0.2) * math.sqrt(2)

    def extra_repr(self):
        return f'in_features={self.in_features}, out_features={self.out_features}'


class _PointMLP(torch.nn.Module):
    """Shared heads and input assembly of the two point MLPs (module docstring)."""

    def __init__(self, volume_channels, hidden, layers, feature_channels, view_dependent, feature_sigmoid):
        super().__init__()
        self.volume_channels, self.hidden, self.layers = volume_channels, hidden, layers
        self.feature_channels, self.view_dependent = feature_channels, bool(view_dependent)
        self.feature_sigmoid = bool(feature_sigmoid)

    def _heads(self, h, directions, sigma_head, feature_head):
        N, K = h.shape[:2]
        sigma = sigma_head(h.reshape(N * K, -1)).reshape(N, K, 1)
        if self.view_dependent:
            h = torch.cat([h, directions.to(h.dtype)], dim=-1)
        features = feature_head(h.reshape(N * K, -1)).reshape(N, K, -1)
        return (torch.sigmoid(features) if self.feature_sigmoid else features), sigma

    def _input(self, coordinates, v):
        if (v is None) != (self.volume_channels == 0):
            raise ValueError(f'this point MLP reads {self.volume_channels} volume channels; got '
                             f'{"none" if v is None else v.shape[-1]}')
        return coordinates if v is None else torch.cat([v.to(coordinates.dtype), coordinates], dim=-1)

    def extra_repr(self):
        return (f'volume_channels={self.volume_channels}, hidden={self.hidden}, layers={self.layers}, '
                f'feature_channels={self.feature_channels}, view_dependent={self.view_dependent}, '
                f'feature_sigmoid={self.feature_sigmoid}')


@persistence.persistent_class
class ModulatedPointMLP(_PointMLP):
    """'modconv': [v || PE(x)] -> `layers` modulated layers -> heads (module docstring)."""

    def __init__(self, w_dim, volume_channels=32, hidden=256, layers=4, feature_channels=512, view_dependent=False,
                 feature_sigmoid=False):
        super().__init__(volume_channels, hidden, layers, feature_channels, view_dependent, feature_sigmoid)
        dims = [volume_channels + 3 + 6 * PE_FREQUENCIES] + [hidden] * layers
        self.net = torch.nn.ModuleList(ModulatedPointLayer(a, b, w_dim) for a, b in zip(dims[:-1], dims[1:]))
        self.sigma_head = FullyConnectedLayer(hidden, 1)
        self.feature_head = FullyConnectedLayer(hidden + 3 * self.view_dependent, feature_channels)

    def forward(self, points, box_points, v, directions, ws):
        del box_points
        h = self._input(positional_encoding(points), v)
        for i, layer in enumerate(self.net):
            h = layer(h, ws[:, i])
        return self._heads(h, directions, self.sigma_head, self.feature_head)


@persistence.persistent_class
class FilmPointMLP(_PointMLP):
    """'film_siren': [v || x_box] -> `layers` FiLM-sine layers coded by ws[:, i] -> heads."""

    def __init__(self, w_dim, volume_channels=32, hidden=256, layers=4, feature_channels=512, view_dependent=False,
                 feature_sigmoid=False):
        super().__init__(volume_channels, hidden, layers, feature_channels, view_dependent, feature_sigmoid)
        dims = [volume_channels + 3] + [hidden] * layers
        self.film = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.code = torch.nn.Linear(w_dim, layers * hidden * 2)   # per layer i: its chunk, applied to ws[:, i]
        self.sigma_head = torch.nn.Linear(hidden, 1)
        self.feature_head = torch.nn.Linear(hidden + 3 * self.view_dependent, feature_channels)
        for i, layer in enumerate(self.film):
            siren_init_(layer, first=i == 0)
        for layer in (self.sigma_head, self.feature_head):
            siren_init_(layer)
        kaiming_init_(self.code, gain=LAST_MAPPING_GAIN)

    def forward(self, points, box_points, v, directions, ws):
        del points
        weight = self.code.weight.reshape(self.layers, 2 * self.hidden, -1)
        bias = self.code.bias.reshape(self.layers, 2 * self.hidden)
        code = torch.einsum('nlw,lkw->nlk', ws[:, :self.layers].to(weight.dtype), weight) + bias
        gamma, beta = code[..., :self.hidden] * FREQ_SCALE + FREQ_SHIFT, code[..., self.hidden:]
        h = self._input(box_points, v)
        for i, layer in enumerate(self.film):
            h = film_sine(h, layer, gamma[:, i], beta[:, i])
        return self._heads(h, directions, self.sigma_head, self.feature_head)


POINT_MLP_CLASSES = {'modconv': ModulatedPointMLP, 'film_siren': FilmPointMLP}
