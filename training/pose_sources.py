"""Where the generator's camera comes from: pose-source strategies (SPEC §4.1, §4.9, §12.9).

One generator, four interchangeable strategies (docs/model_api.md), each a module with
`forward(w, z, c, generator=None) -> PoseOutput`:
  'learned'         PoF3D: a two-layer MLP on the untruncated w predicts (h, v) (SPEC §4.1).
  'dataset'         EG3D: the camera is the label's cam2world c[:, :16]; the mapping network is
                    conditioned on c (`conditions_mapping = True`).
  'prior'           pi-GAN/GRAF baseline: (h, v) drawn from a fixed prior (Gaussian, uniform,
                    truncated Gaussian, spherical uniform; in v or in the polar angle phi).
  'prior_residual'  CAMPARI-style: a prior draw plus a learned residual MLP(prior draw, z),
                    whose last layer starts at zero (exactly the prior at init).

Poses are (h, v) in radians with the offsets included (h around h_mean, v around pi/2, the
uniform-on-sphere parameter of SPEC §3.2). Cameras orbit the world origin at `radius` and
look at `pivot` (`training.cameras.LookAtPose`; OpenCV cam2world, y-up world).

Safety clamp (SPEC §12.9): immediately before LookAtPose, v is clamped to [1e-5, pi - 1e-5]
(switch: `safe_pose_clamp`, default on); `PoseOutput.clamped_frac` is the fraction of samples
it moved. `PoseOutput.pose` is the pose *before* this clamp (what the reference's learner
outputs), so a pose loss on it keeps a gradient even for clamped samples.

Parameter names. PoF3D keeps its pose learner inside the mapping network
(`MappingNetworkPose`), so an official generator state dict holds it as
    backbone.mapping.affine_layer1.{weight,bias}   FC(w_dim -> w_dim, lrelu, lr_multiplier_pose)
    backbone.mapping.affine_layer2.{weight,bias}   FC(w_dim -> 2, linear, lr_multiplier_pose)
(the unused `linear_pose` variant: backbone.mapping.affine_layer.{weight,bias}). Ours live at
`pose_source.affine_layer1.*` / `pose_source.affine_layer2.*` with the same shapes, storage
convention (equalized lr, SPEC §11.1) and meaning; a checkpoint converter maps them by name.
"""

import dataclasses
import math
from typing import Optional, Tuple

import torch

from torch_utils import misc, persistence
from training.cameras import V_EPS, Camera, LookAtPose, clamp_pose_v, polar_to_pose
from training.networks_stylegan2 import FullyConnectedLayer, normalize_2nd_moment

PROJECT_MODULE = 'pof3d-clean-room'  # marks this source as this project's in network pickles (legacy.py)
POSE_SOURCES = ('learned', 'dataset', 'prior', 'prior_residual')
PRIOR_DISTRIBUTIONS = ('gaussian', 'uniform', 'spherical_uniform', 'truncated_gaussian')
POSE_INPUTS = ('w', 'noise')              # what LearnedPose reads
PRIOR_PARAMETRIZATIONS = ('v', 'polar')   # what the second coordinate's law is in (PriorPose)
PHI_EPS = 1e-5   # pi-GAN clamps phi (and u of spherical_uniform) to [1e-5, pi - 1e-5] (SEEDS_SPEC §1.1)


@dataclasses.dataclass
class PoseOutput:
    """What a pose source gives the generator."""
    pose: Optional[torch.Tensor]          # [N, 2] (h, v) raw radians, before the safety clamp; None for 'dataset'
    cam2world: torch.Tensor               # [N, 4, 4] the camera to render (OpenCV convention)
    clamped_frac: Optional[torch.Tensor]  # scalar: fraction of v moved by the safety clamp; None if off/n.a.


def _as_range(name: str, value) -> Optional[Tuple[float, float]]:
    """A (min, max) pair of floats, or None; ValueError naming `name` otherwise."""
    if value is None:
        return None
    lo, hi = (float(x) for x in value)
    if not lo <= hi:
        raise ValueError(f'{name} must be (min, max) with min <= max, got {value!r}')
    return lo, hi


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f'{name} must be one of {choices}, got {value!r}')


def _as_gains(value) -> Tuple[float, float]:
    """init_gain as an (h, v) pair of floats: a float applies to both components."""
    gains = (value, value) if isinstance(value, (int, float)) else tuple(value)
    if len(gains) != 2:
        raise ValueError(f'init_gain must be a float or an (h, v) pair, got {value!r}')
    return tuple(float(g) for g in gains)


def pose_to_camera(pose: torch.Tensor, radius: float, pivot, safe_pose_clamp: bool = True):
    """Look-at camera of a pose: pose [N, 2] (h, v) -> (cam2world [N, 4, 4], clamped_frac).

    With safe_pose_clamp, v is clamped to [1e-5, pi - 1e-5] first (SPEC §12.9: without it
    arccos(1 - 2v/pi) is NaN outside [0, pi]) and clamped_frac is the fraction of rows it
    changed (a detached scalar); without it clamped_frac is None.
    """
    misc.assert_shape(pose, [None, 2])
    h, v = pose[:, 0:1], pose[:, 1:2]
    clamped_frac = None
    if safe_pose_clamp:
        clamped_frac = ((v < V_EPS) | (v > math.pi - V_EPS)).to(pose.dtype).mean()
        v = clamp_pose_v(v)
    return LookAtPose(h, v, pivot, radius), clamped_frac


class PoseSource(torch.nn.Module):
    """Base of the strategies. forward(w [N, w_dim] untruncated, z [N, z_dim], c [N, 25],
    generator: optional torch.Generator for the random ones) -> PoseOutput."""

    conditions_mapping = False  # True: the generator's mapping network is conditioned on c
    z_extra = 0                 # latent dims this source reads after the object's z (G.z_dim grows by it)

    def forward(self, w, z, c, generator=None) -> PoseOutput:
        raise NotImplementedError


@persistence.persistent_class
class LearnedPose(PoseSource):
    """PoF3D pose learner on w (SPEC §4.1, two-layer form):
    p = FC(w->2, linear)(FC(w->w, lrelu)(w)), both with lr multiplier `lr_multiplier_pose` and
    zero bias init (the last layer's initial weights scaled by `init_gain`: a float, or an
    (h, v) pair, 1 = reference);
    h = p0 + h_mean, v = p1 + pi/2; then clamp_h, clamp_v (followed by the
    reference's clamp of v to [1e-5, pi - 1e-5]) when configured; then the safety clamp.

    pose_input: 'w' (PoF3D: the learner reads the object's w, so G can turn each object against
    its own camera) | 'noise' (extension: the learner reads its own w_dim Gaussian dims, appended
    to z and normalized like z; `z_extra` = w_dim; camera and object are then independent draws,
    so no object can know, and counter-turn, its camera: a learned prior)."""

    def __init__(self, w_dim, radius, pivot, h_mean=math.pi / 2, clamp_h=None, clamp_v=None,
                 safe_pose_clamp=True, lr_multiplier_pose=0.01, init_gain=1.0, pose_input='w'):
        _check_choice('pose_input', pose_input, POSE_INPUTS)
        super().__init__()
        self.w_dim = w_dim
        self.pose_input = pose_input
        self.z_extra = w_dim if pose_input == 'noise' else 0
        self.radius = float(radius)
        self.pivot = tuple(float(x) for x in pivot)
        self.h_mean = float(h_mean)
        self.clamp_h = _as_range('clamp_h', clamp_h)
        self.clamp_v = _as_range('clamp_v', clamp_v)
        self.safe_pose_clamp = bool(safe_pose_clamp)
        self.affine_layer1 = FullyConnectedLayer(w_dim, w_dim, activation='lrelu', lr_multiplier=lr_multiplier_pose)
        self.affine_layer2 = FullyConnectedLayer(w_dim, 2, activation='linear', lr_multiplier=lr_multiplier_pose)
        self.init_gain = _as_gains(init_gain)
        if self.init_gain != (1.0, 1.0):
            # The reference's init spreads the initial poses by ~0.8 rad per component around a
            # shared random offset (w has a nonzero mean), so a seed can start with a third of
            # the cameras at the pole (SPEC §12.9). A v gain < 1 starts v near pi/2 instead.
            with torch.no_grad():
                self.affine_layer2.weight.mul_(torch.tensor(self.init_gain).unsqueeze(1))

    def forward(self, w, z=None, c=None, generator=None) -> PoseOutput:
        del c, generator  # the pose is a function of w (SPEC §4.9), or of z's pose dims
        if self.pose_input == 'noise':
            x = normalize_2nd_moment(z[:, z.shape[1] - self.z_extra:].to(torch.float32))   # [N, w_dim]
        else:
            x = w.to(torch.float32)
        misc.assert_shape(x, [None, self.w_dim])
        p = self.affine_layer2(self.affine_layer1(x))    # [N, 2]
        h = p[:, 0:1] + self.h_mean
        v = p[:, 1:2] + math.pi / 2
        if self.clamp_h is not None:
            h = h.clamp(*self.clamp_h)
        if self.clamp_v is not None:
            v = clamp_pose_v(v.clamp(*self.clamp_v))   # the reference's second clamp (SPEC §4.1)
        pose = torch.cat([h, v], dim=1)
        cam2world, clamped_frac = pose_to_camera(pose, self.radius, self.pivot, self.safe_pose_clamp)
        return PoseOutput(pose, cam2world, clamped_frac)

    def extra_repr(self):
        return (f'w_dim={self.w_dim}, pose_input={self.pose_input}, h_mean={self.h_mean:.4f}, '
                f'clamp_h={self.clamp_h}, clamp_v={self.clamp_v}, '
                f'init_gain={self.init_gain}')


@persistence.persistent_class
class DatasetPose(PoseSource):
    """EG3D: render the label's camera, cam2world = c[:, :16] as 4x4 (SPEC §3.1); no pose."""

    conditions_mapping = True

    def forward(self, w, z, c, generator=None) -> PoseOutput:
        del w, z, generator
        return PoseOutput(None, Camera.from_label(c).cam2world, None)


def truncated_normal(shape, generator=None, device='cpu', bound=2.0, tries=4) -> torch.Tensor:
    """pi-GAN's truncated normal (SEEDS_SPEC §1.1): per element, `tries` N(0, 1) candidates; the
    first inside (-bound, bound) is used, else the first candidate (so it is *not* exactly
    truncated: P(|x| >= 2)^4 ~ 4e-6 of the values stay outside). [*shape] float32."""
    draws = torch.randn([*shape, tries], generator=generator, device=device)
    inside = draws.abs() < bound
    first = inside.to(torch.uint8).argmax(-1)   # the first True; 0 (the first draw) when none is
    return draws.gather(-1, first.unsqueeze(-1)).squeeze(-1)


@persistence.persistent_class
class PriorPose(PoseSource):
    """Fixed prior over the camera pose, drawn per call (pi-GAN/GRAF baseline; EG3D's samplers).

    With n the noise of `distribution` (per coordinate, independent):
      'gaussian': n ~ N(0, 1);  'uniform': n ~ U(-1, 1) (std = half range);
      'truncated_gaussian': pi-GAN's first-of-4-draws inside (-2, 2) (`truncated_normal`);
      'spherical_uniform': n ~ U(-1, 1), and the second coordinate is v itself, clamped to
          pi [1e-5, 1 - 1e-5]: uniform in v is uniform in cos(phi), i.e. uniform on the sphere
          (pi-GAN's u = v/pi, SEEDS_SPEC §1.1), whatever `parametrization` says.
    h = h_mean + h_std n_h in both parametrizations (pi-GAN's theta = pi - h, SEEDS_SPEC §6.0;
    the law is the same for a symmetric n). The second coordinate s = v_mean + v_std n_v is
      parametrization 'v' (default): v itself, the uniform-on-sphere parameter of SPEC §3.2;
      parametrization 'polar': the polar angle phi (pi-GAN's prior, SEEDS_SPEC §6.0), clamped
          to [1e-5, pi - 1e-5] as pi-GAN does, then v = pi (1 - cos phi)/2. A Gaussian in phi
          with std 0.155 is not a Gaussian in v (near the equator sigma_v ~ 0.24).
    Defaults are pi-GAN's CelebA prior (0.3, 0.155) around the frontal view, read in v.
    """

    def __init__(self, radius, pivot, distribution='gaussian', h_mean=math.pi / 2, v_mean=math.pi / 2,
                 h_std=0.3, v_std=0.155, safe_pose_clamp=True, parametrization='v'):
        _check_choice('distribution', distribution, PRIOR_DISTRIBUTIONS)
        _check_choice('parametrization', parametrization, PRIOR_PARAMETRIZATIONS)
        super().__init__()
        self.radius = float(radius)
        self.pivot = tuple(float(x) for x in pivot)
        self.distribution = distribution
        self.parametrization = parametrization
        self.mean = (float(h_mean), float(v_mean))
        self.std = (float(h_std), float(v_std))
        self.safe_pose_clamp = bool(safe_pose_clamp)

    def _noise(self, shape, device, generator):
        if self.distribution == 'gaussian':
            return torch.randn(shape, generator=generator, device=device)
        if self.distribution == 'truncated_gaussian':
            return truncated_normal(shape, generator, device)
        return torch.rand(shape, generator=generator, device=device) * 2 - 1

    def sample(self, batch_size: int, device, generator=None) -> torch.Tensor:
        """[batch_size, 2] draws (h, v), before the safety clamp; `generator` must live on `device`."""
        noise = self._noise([batch_size, 2], device, generator)
        mean = torch.tensor(self.mean, device=device)
        std = torch.tensor(self.std, device=device)
        pose = mean + std * noise
        if self.distribution == 'spherical_uniform':
            v = pose[:, 1:2].clamp(math.pi * PHI_EPS, math.pi * (1 - PHI_EPS))
            return torch.cat([pose[:, 0:1], v], dim=1)
        if self.parametrization == 'polar':
            _, v = polar_to_pose(0.0, pose[:, 1:2].clamp(PHI_EPS, math.pi - PHI_EPS))
            return torch.cat([pose[:, 0:1], v.to(pose.dtype)], dim=1)
        return pose

    def forward(self, w, z, c=None, generator=None) -> PoseOutput:
        ref = w if w is not None else z
        pose = self.sample(ref.shape[0], ref.device, generator)
        cam2world, clamped_frac = pose_to_camera(pose, self.radius, self.pivot, self.safe_pose_clamp)
        return PoseOutput(pose, cam2world, clamped_frac)

    def extra_repr(self):
        return (f'distribution={self.distribution}, parametrization={self.parametrization}, mean={self.mean}, '
                f'std={self.std}')


@persistence.persistent_class
class PriorResidualPose(PoseSource):
    """CAMPARI-style: xi = xi0 + MLP(concat(xi0, normalize(z))), xi0 ~ the prior.

    MLP = FC(2 + z_dim -> hidden, lrelu) -> FC(hidden -> 2, linear), lr multiplier
    `lr_multiplier`; the last layer's weight and bias start at exactly zero, so at init the
    pose equals the prior draw bit for bit (and trains from there: its weight gradient is
    the hidden activation times the upstream gradient, nonzero).
    """

    def __init__(self, z_dim, radius, pivot, hidden_features=128, lr_multiplier=0.01, safe_pose_clamp=True,
                 **prior_kwargs):
        super().__init__()
        self.z_dim = z_dim
        self.radius = float(radius)
        self.pivot = tuple(float(x) for x in pivot)
        self.safe_pose_clamp = bool(safe_pose_clamp)
        self.prior = PriorPose(radius, pivot, safe_pose_clamp=safe_pose_clamp, **prior_kwargs)
        self.fc0 = FullyConnectedLayer(2 + z_dim, hidden_features, activation='lrelu', lr_multiplier=lr_multiplier)
        self.fc1 = FullyConnectedLayer(hidden_features, 2, activation='linear', lr_multiplier=lr_multiplier)
        with torch.no_grad():
            self.fc1.weight.zero_()  # construction-time init: identity at the start of training

    def forward(self, w, z, c=None, generator=None) -> PoseOutput:
        misc.assert_shape(z, [None, self.z_dim])
        pose0 = self.prior.sample(z.shape[0], z.device, generator)          # [N, 2]
        x = torch.cat([pose0, normalize_2nd_moment(z.to(torch.float32))], dim=1)
        pose = pose0 + self.fc1(self.fc0(x))
        cam2world, clamped_frac = pose_to_camera(pose, self.radius, self.pivot, self.safe_pose_clamp)
        return PoseOutput(pose, cam2world, clamped_frac)


_SOURCES = {'learned': LearnedPose, 'dataset': DatasetPose, 'prior': PriorPose,
            'prior_residual': PriorResidualPose}


def build_pose_source(name: str, **kwargs) -> PoseSource:
    """The pose source called `name` (one of POSE_SOURCES), constructed with kwargs."""
    if name not in _SOURCES:
        raise ValueError(f'pose_source must be one of {POSE_SOURCES}, got {name!r}')
    return _SOURCES[name](**kwargs)
