"""pi-GAN's FiLM-SIREN representation: the networks with parameters (SEEDS_SPEC §1.3-1.4, §6.2).

The generator's representation slot 'film_siren' (training/representations.py) holds two of
these modules where the tri-plane generator holds its StyleGAN2 backbone and OSG decoder:

    backbone = FilmSirenBackbone
        .mapping    z [N, z_dim] -> w [N, w_dim] (3 x Linear + LReLU(0.2), §1.3), broadcast to
                    ws [N, num_ws, w_dim] and truncated toward w_avg as StyleGAN2's mapping
        .synthesis  ws -> FiLM code (gamma, beta) [N, num_ws, hidden] each: pi-GAN's last
                    mapping Linear (w -> num_ws * hidden * 2), one chunk per ws row, and
                    gamma = 15 f + 30 (§1.3)
    decoder = SirenNetwork: points in [-1, 1]^3, directions, (gamma, beta) -> rgb, raw sigma
              (n_layers FiLM-sine layers, the sigma head, the direction-conditioned colour
              FiLM layer, §1.4)

num_ws = n_layers + 1 (the trunk's FiLM layers, then the colour layer). Splitting pi-GAN's
mapping after its last LReLU makes w the PoF3D pose learner's input and keeps the EG3D
meaning of `G.mapping` (ws = broadcast w). Because the last layer is affine, truncating w
toward its running mean is pi-GAN's truncation of (gamma, beta) toward their means (§1.3).

Initializations (§1.3-1.4): the mapping's Linear weights Kaiming-normal (a = 0.2, fan_in,
leaky_relu), the last one (here `synthesis.affine`) then x 0.25; the SIREN's Linear weights
U(+-sqrt(6 / fan_in) / 25), the first FiLM layer's U(+-1 / fan_in); every bias keeps PyTorch's
default U(+-1 / sqrt(fan_in)).
"""

import math

import torch
import torch.nn.functional as F

from torch_utils import misc, persistence

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)

FREQ_SCALE, FREQ_SHIFT = 15.0, 30.0   # gamma = 15 f + 30 (SEEDS_SPEC §1.3)
SIREN_INIT_DIVISOR = 25.0             # the SIREN layers' U(+-sqrt(6 / fan_in) / 25) (§1.4)
LAST_MAPPING_GAIN = 0.25              # the mapping's last weight x 0.25 (§1.3)
LRELU_SLOPE = 0.2


def kaiming_init_(linear: torch.nn.Linear, gain: float = 1.0) -> None:
    """pi-GAN's mapping init: Kaiming-normal (a = 0.2, fan_in, leaky_relu) times `gain`; the
    bias keeps PyTorch's default (SEEDS_SPEC §1.3)."""
    with torch.no_grad():
        torch.nn.init.kaiming_normal_(linear.weight, a=LRELU_SLOPE, mode='fan_in', nonlinearity='leaky_relu')
        linear.weight.mul_(gain)


def siren_init_(linear: torch.nn.Linear, first: bool = False) -> None:
    """SIREN weight init (SEEDS_SPEC §1.4): U(+-1 / fan_in) for the first FiLM layer, else
    U(+-sqrt(6 / fan_in) / 25); the bias keeps PyTorch's default."""
    fan_in = linear.weight.shape[1]
    bound = 1 / fan_in if first else math.sqrt(6 / fan_in) / SIREN_INIT_DIVISOR
    with torch.no_grad():
        linear.weight.uniform_(-bound, bound)


def film_sine(x: torch.Tensor, linear: torch.nn.Linear, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """One FiLM-SIREN layer, sin(gamma * (W x + b) + beta) (SEEDS_SPEC §1.4): x [N, K, in],
    gamma and beta [N, out] (one code per sample, shared by its K points) -> [N, K, out]."""
    return torch.sin(gamma.unsqueeze(1) * linear(x) + beta.unsqueeze(1))


@persistence.persistent_class
class FilmMapping(torch.nn.Module):
    """z [N, z_dim] -> ws [N, num_ws, w_dim]: `num_layers` x (Linear, LReLU(0.2)) (pi-GAN's
    mapping without its last Linear, SEEDS_SPEC §1.3), then StyleGAN2's w_avg tracking,
    broadcast and truncation. z is used as drawn (pi-GAN does not normalize it); c is ignored
    (c_dim 0: pi-GAN has no label conditioning)."""

    c_dim = 0

    def __init__(self, z_dim, w_dim, num_ws, num_layers=3, w_avg_beta=0.995):
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        self.w_avg_beta = w_avg_beta
        dims = [z_dim] + [w_dim] * num_layers
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        for layer in self.layers:
            kaiming_init_(layer)
        self.register_buffer('w_avg', torch.zeros([w_dim]))

    def forward(self, z, c=None, truncation_psi=1, truncation_cutoff=None, update_emas=False):
        """z [N, z_dim] -> ws [N, num_ws, w_dim] (c ignored); update_emas tracks w_avg."""
        del c
        misc.assert_shape(z, [None, self.z_dim])
        x = z.to(torch.float32)
        for layer in self.layers:
            x = F.leaky_relu(layer(x), LRELU_SLOPE)
        if update_emas:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        ws = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi == 1:
            return ws
        truncated = self.w_avg.lerp(ws, truncation_psi)
        if truncation_cutoff is None:
            return truncated
        return torch.cat([truncated[:, :truncation_cutoff], ws[:, truncation_cutoff:]], dim=1)

    def extra_repr(self):
        return f'z_dim={self.z_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, num_layers={self.num_layers}'


@persistence.persistent_class
class FilmAffine(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> FiLM code (gamma, beta) [N, num_ws, hidden] each: pi-GAN's last
    mapping Linear(w_dim -> num_ws * hidden * 2) (outputs: all frequencies, then all phases;
    layer i's chunk is i*hidden:(i+1)*hidden of each half, SEEDS_SPEC §1.3), applied to row i
    of ws for layer i, then gamma = 15 f + 30. With equal rows (no mixing) this is the Linear."""

    def __init__(self, w_dim, hidden, num_ws):
        super().__init__()
        self.w_dim, self.hidden, self.num_ws = w_dim, hidden, num_ws
        self.affine = torch.nn.Linear(w_dim, num_ws * hidden * 2)
        kaiming_init_(self.affine, gain=LAST_MAPPING_GAIN)

    def forward(self, ws):
        misc.assert_shape(ws, [None, self.num_ws, self.w_dim])
        weight = self.affine.weight.reshape(2, self.num_ws, self.hidden, self.w_dim)
        bias = self.affine.bias.reshape(2, 1, self.num_ws, self.hidden)
        out = torch.einsum('nlw,klhw->knlh', ws.to(weight.dtype), weight) + bias   # [2, N, num_ws, hidden]
        return out[0] * FREQ_SCALE + FREQ_SHIFT, out[1]


@persistence.persistent_class
class FilmSirenBackbone(torch.nn.Module):
    """mapping (z -> ws) + synthesis (ws -> FiLM code), the film_siren counterpart of the
    tri-plane generator's StyleGAN2 backbone (module docstring)."""

    def __init__(self, z_dim, w_dim, hidden=256, n_layers=8, mapping_layers=3):
        super().__init__()
        self.z_dim, self.w_dim, self.hidden, self.n_layers = z_dim, w_dim, hidden, n_layers
        self.num_ws = n_layers + 1
        self.mapping = FilmMapping(z_dim, w_dim, self.num_ws, num_layers=mapping_layers)
        self.synthesis = FilmAffine(w_dim, hidden, self.num_ws)

    def latents(self, z):
        """z [N, z_dim] -> (gamma, beta) [N, n_layers + 1, hidden] each (SEEDS_SPEC §6.2)."""
        return self.synthesis(self.mapping(z))


@persistence.persistent_class
class SirenNetwork(torch.nn.Module):
    """The FiLM-SIREN point network (SEEDS_SPEC §1.4, `SPATIALSIRENBASELINE`):
    x [N, K, 3] in the box's [-1, 1]^3 -> n_layers x FiLM-sine (3 -> hidden, then hidden ->
    hidden) -> h; sigma = Linear(h -> 1) raw; rgb = sigmoid(Linear(FiLM-sine(concat(d, h)))),
    the colour layer using the last code row. The box warp (x * 2 / box_warp) is the field's
    (training/rendering/siren_field.py), so box_warp stays a rendering option.

    ShadeGAN's albedo head (SEEDS_SPEC §4.2) is the same colour layer read as albedo, its input
    [d (view_condition), h, l (light_condition)] in that order: view_condition False drops the
    direction (ShadeGAN's `_noview` configs), light_condition True appends the image's light
    l = (a, d, l_x, l_y) (every shipped ShadeGAN config; it lets the albedo absorb shading, §4.6 q3).
    The defaults are pi-GAN's head, unchanged."""

    def __init__(self, hidden=256, n_layers=8, out_channels=3, view_condition=True, light_condition=False):
        super().__init__()
        self.hidden, self.n_layers, self.out_channels = hidden, n_layers, out_channels
        self.view_condition, self.light_condition = bool(view_condition), bool(light_condition)
        dims = [3] + [hidden] * n_layers
        self.film = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.sigma_head = torch.nn.Linear(hidden, 1)
        self.color_film = torch.nn.Linear(3 * self.view_condition + hidden + 4 * self.light_condition, hidden)
        self.color_head = torch.nn.Linear(hidden, out_channels)
        for i, layer in enumerate(self.film):
            siren_init_(layer, first=i == 0)
        for layer in (self.sigma_head, self.color_film, self.color_head):
            siren_init_(layer)

    def forward(self, x, directions, gamma, beta, light=None):
        """x [N, K, 3] (box coordinates), directions [N, K, 3], gamma and beta [N, n_layers + 1,
        hidden], light [N, 4] (light_condition only) -> (rgb [N, K, out_channels] in [0, 1],
        sigma [N, K, 1] raw)."""
        misc.assert_shape(gamma, [x.shape[0], self.n_layers + 1, self.hidden])
        h = x
        for i, layer in enumerate(self.film):
            h = film_sine(h, layer, gamma[:, i], beta[:, i])
        sigma = self.sigma_head(h)
        parts = [directions.to(h.dtype)] if self.view_condition else []
        parts.append(h)
        if self.light_condition:
            if light is None:
                raise ValueError('this albedo head is light-conditioned (light_condition=True): pass light [N, 4]')
            parts.append(light.to(h.dtype).unsqueeze(1).expand(-1, h.shape[1], -1))
        color = film_sine(torch.cat(parts, dim=-1), self.color_film, gamma[:, -1], beta[:, -1])
        return torch.sigmoid(self.color_head(color)), sigma

    def extra_repr(self):
        return (f'hidden={self.hidden}, n_layers={self.n_layers}, out_channels={self.out_channels}, '
                f'view_condition={self.view_condition}, light_condition={self.light_condition}')
