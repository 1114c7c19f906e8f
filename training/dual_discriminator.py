"""Pose-aware dual discriminator of PoF3D/EG3D (SPEC §5; contract: docs/model_api.md).

D sees the final image and the raw neural rendering together: image_raw [N, 3, R, R] is
resized to H and concatenated with image [N, 3, H, H] into 6 channels, which a StyleGAN2
ResNet trunk (blocks `b{H}` .. `b8`, epilogue `b4`) reduces to 4×4 features. Parameter
and buffer names follow EG3D's DualDiscriminator (`b{res}.*`, `b4.*`, `mapping.*`,
`resample_filter`) so the state dicts line up; the PoF3D pose head adds `pose_head.*`.

One backbone pass per image (project decision, SPEC "Project decisions"): the reference
runs D twice per scored image, once for the pose ĉ = D_pose(x) and once for the score
D_score(x, sg ĉ). The label only enters after the epilogue (the projection with
cmap = mapping(ĉ)), so both outputs come from the same trunk features; `score_given`
keeps the two-pass form for tests and benchmarks.

Pickles: the layer classes are imported inside `__init__` only. An unpickled D re-executes
this file's source (torch_utils.persistence) and every sub-module carries its own source,
so a snapshot loads without the `training` package, like the StyleGAN2 networks.

Shapes: N batch, H = img_resolution, R = raw resolution, C4 = channels at 4×4.
"""

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import misc, persistence
from torch_utils.ops import upfirdn2d

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)
POSE_DIM = 2  # (h, v) raw radians (SPEC §4.1, §5.2)


def filtered_resizing(image_orig_tensor, size, f, filter_mode='none'):
    """Resize [N, C, h, w] -> [N, C, size, size] (EG3D's helper; PoF3D never antialiases, SPEC §12.4).

    filter_mode:
      'none':        plain bilinear, align_corners=False, no antialias — the default and
                     what DualDiscriminator uses (SPEC §5.1).
      'antialiased': EG3D's default, accepted so its callers run; PoF3D removed the antialias
                     flag (SPEC §5.1, §12.4), so this is the same plain resize as 'none'.
      'classic':     FIR upsample ×2 with `f`, bilinear to 2·size, FIR downsample ×2 with `f`.
    `f` is the FIR filter from `upfirdn2d.setup_filter` (only read by 'classic').
    Out of place: the input is never modified.
    """
    if filter_mode in ('none', 'antialiased'):
        return F.interpolate(image_orig_tensor, size=(size, size), mode='bilinear', align_corners=False,
                             antialias=False)
    if filter_mode == 'classic':
        x = upfirdn2d.upsample2d(image_orig_tensor, f, up=2)
        x = F.interpolate(x, size=(size * 2, size * 2), mode='bilinear', align_corners=False, antialias=False)
        return upfirdn2d.downsample2d(x, f, down=2)
    raise ValueError(f"filter_mode must be 'none', 'antialiased' (the same, SPEC §12.4) or 'classic', "
                     f"got {filter_mode!r}")


def _check_config(c_dim, img_resolution, pose_head, self_condition):
    if img_resolution < 8 or img_resolution & (img_resolution - 1) != 0:
        raise ValueError(f'img_resolution must be a power of two >= 8, got {img_resolution}')
    if self_condition and not pose_head:
        raise ValueError('self_condition=True conditions D on its own pose prediction: it needs pose_head=True')
    if self_condition and c_dim != POSE_DIM:
        raise ValueError(f'self_condition=True conditions D on the predicted (h, v): c_dim must be {POSE_DIM}, '
                         f'got {c_dim} (use self_condition=False for dataset labels or c_dim=0)')


@persistence.persistent_class
class DualDiscriminator(torch.nn.Module):
    """{image [N,3,H,H], image_raw [N,3,R,R]} (+ c [N, c_dim]) -> {'score' [N,1], 'pose' [N,2] | None}.

    c_dim: 2 for PoF3D (self_condition: the label is sg(own pose), SPEC §5.3), 25 for EG3D
    with dataset labels (self_condition=False), 0 for unconditional. cmap_dim None =
    C4 (0 when c_dim = 0: the out layer then has 1 unit). disc_c_noise: add
    N(0,1)·std_batch(c)·disc_c_noise to the label. pose_head: build the PoF3D head on the
    flattened post-conv 4×4 features (SPEC §5.2); pose_head_channels its hidden width
    (4096 as the reference; scale it down with the channels for tiny configs);
    dis_linear_pose: a single linear layer instead. img_channels is per image (3); the
    trunk sees 2·img_channels.
    """

    def __init__(self, c_dim, img_resolution, img_channels, architecture='resnet', channel_base=32768,
                 channel_max=512, num_fp16_res=4, conv_clamp=256, cmap_dim=None, disc_c_noise=0,
                 pose_head=True, dis_linear_pose=False, self_condition=True, pose_head_channels=4096,
                 block_kwargs={}, mapping_kwargs={}, epilogue_kwargs={}):
        from training.networks_stylegan2 import DiscriminatorBlock, DiscriminatorEpilogue, MappingNetwork
        from training.pose_head import PoseHead  # construction-time imports: see the module docstring

        _check_config(c_dim, img_resolution, pose_head, self_condition)
        super().__init__()
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_resolution_log2 = int(np.log2(img_resolution))
        self.img_channels = img_channels
        self.disc_c_noise = disc_c_noise
        self.self_condition = self_condition
        self.block_resolutions = [2 ** i for i in range(self.img_resolution_log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        cmap_dim = 0 if c_dim == 0 else (channels[4] if cmap_dim is None else cmap_dim)
        self.cmap_dim = cmap_dim

        # SPEC §5.1: the trunk is the StyleGAN2 D on 6 channels, fp16 in the num_fp16_res highest resolutions.
        common = {'img_channels': img_channels * 2, 'architecture': architecture, 'conv_clamp': conv_clamp}
        fp16_resolution = max(2 ** (self.img_resolution_log2 + 1 - num_fp16_res), 8)
        layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels[res], channels[res // 2], resolution=res,
                                       first_layer_idx=layer_idx, use_fp16=(res >= fp16_resolution),
                                       **block_kwargs, **common)
            setattr(self, f'b{res}', block)
            layer_idx += block.num_layers
        if c_dim > 0:
            # SPEC §5.3: no z, no w_avg; D's mapping_kwargs are empty in the reference -> 8 layers.
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=cmap_dim, num_ws=None, w_avg_beta=None,
                                          **mapping_kwargs)
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=cmap_dim, resolution=4, **epilogue_kwargs, **common)
        self.pose_head = PoseHead(channels[4] * 4 * 4, hidden_features=pose_head_channels, pose_dim=POSE_DIM,
                                  linear=dis_linear_pose) if pose_head else None
        self.register_buffer('resample_filter', upfirdn2d.setup_filter([1, 3, 3, 1]))

    # -- trunk ------------------------------------------------------------------------

    def _input_image(self, img):
        """{image [N,C,H,H], image_raw [N,C,R,R]} -> [N, 2C, H, H] (new tensor; the dict is untouched)."""
        if not isinstance(img, dict) or 'image' not in img or 'image_raw' not in img:
            raise TypeError("DualDiscriminator expects a dict with keys 'image' and 'image_raw'")
        image, image_raw = img['image'], img['image_raw']
        misc.assert_shape(image, [None, self.img_channels, self.img_resolution, self.img_resolution])
        misc.assert_shape(image_raw, [image.shape[0], self.img_channels, None, None])
        if image_raw.shape[-2:] != image.shape[-2:]:
            # SPEC §5.1: bilinear, align_corners False, no antialias (PoF3D).
            image_raw = filtered_resizing(image_raw, size=self.img_resolution, f=self.resample_filter)
        return torch.cat([image, image_raw.to(image.dtype)], dim=1)

    def _features(self, img, **block_kwargs):
        """img dict -> flattened post-conv 4×4 features [N, C4·16] (fp32).

        This is the tensor that feeds both `b4.fc` and the pose head (SPEC §5.2). The
        epilogue steps are the ones of DiscriminatorEpilogue.forward up to its flatten.
        """
        x, img6 = None, self._input_image(img)
        for res in self.block_resolutions:
            x, img6 = getattr(self, f'b{res}')(x, img6, **block_kwargs)
        epi = self.b4
        misc.assert_shape(x, [None, epi.in_channels, epi.resolution, epi.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)  # the epilogue runs in fp32
        if epi.architecture == 'skip':
            x = x + epi.fromrgb(img6.to(dtype=torch.float32, memory_format=torch.contiguous_format))
        if epi.mbstd is not None:
            x = epi.mbstd(x)
        return epi.conv(x).flatten(1)

    # -- conditioning and score --------------------------------------------------------

    def _cmap(self, c):
        """c [N, c_dim] -> cmap [N, cmap_dim] through the conditioning mapping (SPEC §5.3)."""
        if c is None:
            raise ValueError(f'this discriminator is conditional (c_dim={self.c_dim}): pass c')
        misc.assert_shape(c, [None, self.c_dim])
        c = c.to(torch.float32)
        if self.disc_c_noise > 0:
            c = c + torch.randn_like(c) * c.std(0) * self.disc_c_noise  # out of place (STYLE.md item 6)
        return self.mapping(None, c)

    def _score(self, feats, c):
        """feats [N, C4·16], c [N, c_dim] or None -> score [N, 1] = (out(x)·cmap).sum / sqrt(cmap_dim)."""
        x = self.b4.out(self.b4.fc(feats))
        if self.cmap_dim == 0:
            return x
        cmap = self._cmap(c)
        misc.assert_shape(cmap, [x.shape[0], self.cmap_dim])
        return (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))

    # -- public API ----------------------------------------------------------------------

    def forward(self, img, c=None, update_emas=False, cond_grad=False, **block_kwargs):
        """One trunk pass -> {'score': [N, 1], 'pose': [N, 2] or None}.

        self_condition: the score is conditioned on sg(pose) and `c` is ignored (SPEC §5.3,
        §12.2); otherwise on `c` (c_dim > 0) or on nothing (c_dim = 0). 'pose' keeps its
        graph: pose losses backpropagate into the head and the trunk through it.
        cond_grad (self_condition only; G's adversarial terms with --pose_cond_grad): the score
        is conditioned on pose itself, so the gradient w.r.t. the image also flows through D's
        pose estimate. Only for G phases: a D phase would train the head with the score.
        """
        del update_emas  # part of the common D interface; D has no running statistics
        feats = self._features(img, **block_kwargs)
        pose = self.pose_head(feats) if self.pose_head is not None else None
        if self.self_condition:
            c = pose if cond_grad else pose.detach()  # ĉ = sg(D_pose(x)): the score never trains the pose head
        return {'score': self._score(feats, c), 'pose': pose}

    def pose_only(self, img, **block_kwargs):
        """img dict -> pose [N, 2]: trunk + pose head, no mapping or projection (the
        reference's cam_pred pass; used by the pose losses, SPEC §6.1 L3, §6.3 L4)."""
        if self.pose_head is None:
            raise RuntimeError('pose_only needs a discriminator built with pose_head=True')
        return self.pose_head(self._features(img, **block_kwargs))

    def score_given(self, img, c, **block_kwargs):
        """img dict, c [N, c_dim] (or None for c_dim 0) -> score [N, 1], conditioned on the
        given c whatever self_condition says. A second full trunk pass: the reference's
        two-pass path, kept for equivalence tests and benchmarks."""
        return self._score(self._features(img, **block_kwargs), c)

    def extra_repr(self):
        return (f'c_dim={self.c_dim:d}, img_resolution={self.img_resolution:d}, img_channels={self.img_channels:d}, '
                f'self_condition={self.self_condition}')
