"""PoF3D pose head of the discriminator (SPEC §5.2).

The head regresses the generator's raw pose (h, v) in radians, offsets included (h_mean
and π/2 are part of the target; SPEC §4.1, §12.2), from the flattened 4×4 features right
after the epilogue's 3×3 conv. It has no output activation and no range squashing.

Kept out of `networks_stylegan2.py` on purpose (STYLE.md item 15: PoF3D additions live in
their own modules). Parameter names: `fc.*` (hidden layer, absent in the linear variant)
and `out.*`, so a DualDiscriminator holds `pose_head.fc.weight`, `pose_head.out.weight`, ...
FullyConnectedLayer is imported at construction time only, so that a pickled head (which
re-executes this source) loads without the `training` package.
"""

import torch

from torch_utils import misc, persistence

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)


@persistence.persistent_class
class PoseHead(torch.nn.Module):
    """x [N, in_features] -> pose [N, pose_dim] (raw (h, v) radians for pose_dim = 2).

    Default (SPEC §5.2): FC(in→hidden, lrelu) -> FC(hidden→pose_dim, linear); with the
    reference's 512·4·4 = 8192 inputs and hidden 4096 that is ~33.6 M parameters.
    `linear=True` (`dis_linear_pose`): a single FC(in→pose_dim, linear). All biases start at 0
    and every layer uses lr multiplier `lr_multiplier` (1 in the reference).
    """

    def __init__(self, in_features, hidden_features=4096, pose_dim=2, linear=False, activation='lrelu',
                 lr_multiplier=1):
        if in_features <= 0 or pose_dim <= 0:
            raise ValueError(f'PoseHead needs in_features > 0 and pose_dim > 0, got {in_features}, {pose_dim}')
        if not linear and hidden_features <= 0:
            raise ValueError(f'PoseHead hidden_features must be > 0, got {hidden_features}')
        from training.networks_stylegan2 import FullyConnectedLayer  # construction time only (pickles)

        super().__init__()
        self.in_features = in_features
        self.hidden_features = None if linear else hidden_features
        self.pose_dim = pose_dim
        self.linear = linear
        if not linear:
            self.fc = FullyConnectedLayer(in_features, hidden_features, activation=activation,
                                          lr_multiplier=lr_multiplier, bias_init=0)
        out_in = in_features if linear else hidden_features
        self.out = FullyConnectedLayer(out_in, pose_dim, activation='linear', lr_multiplier=lr_multiplier,
                                       bias_init=0)

    def forward(self, x):
        misc.assert_shape(x, [None, self.in_features])
        x = x.to(torch.float32)
        if not self.linear:
            x = self.fc(x)
        return self.out(x)

    def extra_repr(self):
        return (f'in_features={self.in_features:d}, hidden_features={self.hidden_features}, '
                f'pose_dim={self.pose_dim:d}, linear={self.linear}')
