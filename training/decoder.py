"""The tri-plane feature decoder, EG3D's `OSGDecoder` (SPEC §4.5 "OSG decoder").

Shapes: N batch, M points, P = 3 planes, C plane channels.
"""

import torch

from torch_utils import persistence
from training.networks_stylegan2 import FullyConnectedLayer


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

    def forward(self, sampled_features, ray_directions=None):
        """sampled_features [N, P, M, C] -> {'rgb': [N, M, out_dim], 'sigma': [N, M, 1]}.

        sigma is raw (the marcher applies softplus(sigma - 1)). rgb is a sigmoid widened by
        0.001 on each side (MipNeRF's clamp), so the range [0, 1] is reachable. ray_directions
        are accepted for API compatibility and ignored (no view dependence).
        """
        x = sampled_features.mean(dim=1)                          # [N, M, C]: average the planes
        N, M, C = x.shape
        x = self.net(x.reshape(N * M, C)).reshape(N, M, -1)
        rgb = torch.sigmoid(x[..., 1:]) * (1 + 2 * 0.001) - 0.001
        sigma = x[..., 0:1]
        return {'rgb': rgb, 'sigma': sigma}
