"""Fused tri-plane volume rendering: sample planes -> OSG decoder -> MipRayMarcher2 (SPEC §4.5).

Public functions (shapes: N batch, M rays, S samples per ray, C plane channels, CO decoder
feature channels, 32 in every preset):

    render_triplane(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                    white_back=False, impl='cuda') -> (rgb [N,M,CO], depth [N,M,1], weight_sum [N,M,1])
    render_triplane_full(...)     the same plus final_transmittance [N,M,1] (a `TriplaneRender`)
    render_triplane_weights(...)  compositing weights [N,M,S-1,1], no gradient (coarse pass)
    query_triplane(planes, plane_axes, decoder_params, coordinates, box_warp, impl='cuda')
                                  -> (rgb [N,K,CO], sigma [N,K,1]): the point query of run_model
    osg_decoder_params(decoder)   (w1, b1, w2, b2) with the equalized-lr gains applied, or None

planes [N, 3, C, H, W]; plane_axes a [3, 3, 3] tensor or 'correct' | 'legacy'; decoder_params
(w1 [64, C], b1 [64], w2 [1+CO, 64], b2 [1+CO]) as the decoder uses them at run time (weight
times lr_mul/sqrt(fan_in), bias times lr_mul); ray_origins, ray_dirs [N, M, 3]; depths
[N, M, S, 1] sorted ray distances; box_warp the side of the cube the planes cover.

impl: 'ref' the PyTorch reference (`_render_ref`, composed from the renderer's own
`sample_from_planes`, the OSG decoder formula and `march_rays`); 'cuda' (default) the Triton
kernel when every tensor is on a CUDA device; 'triton' always try the kernel (CPU only under
TRITON_INTERPRET=1). `POF3D_IMPL=ref` forces the reference. The kernel needs fp32 tensors; a
load or launch failure means one warning and the reference (torch_utils/custom_ops.py).

Kernel coverage: forward and first-order backward w.r.t. planes, decoder params, ray origins,
ray directions and depths (render), and planes, decoder params and points (query). Plane axes
carry no gradient. No double backward (nothing in training needs it through the renderer).
The kernel never materialises [N, M, S, C] tensors; see `_triton_triplane_render.py`.
"""

import importlib
from typing import NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from torch_utils import custom_ops, misc

KERNEL_NAME = 'triplane_render'
_RGB_SCALE = 1 + 2 * 0.001  # OSG decoder: sigmoid(x) * (1 + 2*0.001) - 0.001 (SPEC §4.5)


class TriplaneRender(NamedTuple):
    rgb: torch.Tensor                    # [N, M, CO] composited features mapped to 2f - 1
    depth: torch.Tensor                  # [N, M, 1]
    weight_sum: torch.Tensor             # [N, M, 1]
    final_transmittance: torch.Tensor    # [N, M, 1]


def _load_kernel():
    kern = importlib.import_module('training.rendering._triton_triplane')
    if torch.cuda.is_available() and not custom_ops.interpreter_enabled():
        _self_check(kern, torch.device('cuda'))
    return kern


def _self_check(kern, device: torch.device, tol: float = 1e-4) -> None:
    """Compare the compiled kernel with the reference on a tiny random problem, forward and
    backward, the first time it loads on a GPU. Raising here makes custom_ops switch the
    kernel off with one warning: a miscompiled kernel must never train silently."""
    g = torch.Generator(device='cpu').manual_seed(0)
    rnd = lambda *shape: torch.randn(*shape, generator=g).to(device)  # noqa: E731
    planes = rnd(1, 3, 8, 8, 8).requires_grad_(True)
    params = [rnd(64, 8) * 0.3, rnd(64) * 0.1, rnd(33, 64) * 0.2, rnd(33) * 0.1]
    origins = torch.tensor([[[0.0, 0.0, 2.0]]], device=device).repeat(1, 6, 1)
    dirs = torch.nn.functional.normalize(rnd(1, 6, 3) * 0.1 + torch.tensor([0.0, 0.0, -1.0], device=device), dim=-1)
    depths = torch.linspace(1.4, 2.6, 5, device=device).reshape(1, 1, 5, 1).repeat(1, 6, 1, 1)
    axes = _plane_axes('correct', planes)
    results = []
    for fn in (lambda: _finish(kern.render_sums(planes, _projection(axes), *params, origins, dirs,
                                                depths.squeeze(-1), 2.0), depths, False),
               lambda: _render_ref(planes, axes, tuple(params), origins, dirs, depths, 1.0, False)):
        out = fn()
        grad, = torch.autograd.grad((out.rgb.sum() + out.depth.sum()), planes)
        results.append((out.rgb.detach(), out.depth.detach(), grad))
    for a, b in zip(*results):
        err = float((a - b).abs().max())
        if not err <= tol:
            raise RuntimeError(f'GPU self-check failed: kernel differs from the reference by {err:.3g}')


def _plane_axes(plane_axes: Union[str, torch.Tensor], planes: torch.Tensor) -> torch.Tensor:
    from training.rendering.planes import cached_planes
    if isinstance(plane_axes, str):
        if plane_axes not in ('correct', 'legacy'):
            raise ValueError(f"plane_axes must be 'correct', 'legacy' or a [3, 3, 3] tensor, got {plane_axes!r}")
        return cached_planes(plane_axes == 'legacy', planes.dtype, planes.device)
    if not isinstance(plane_axes, torch.Tensor) or tuple(plane_axes.shape) != (3, 3, 3):
        raise ValueError(f'plane_axes must be a [3, 3, 3] tensor, got {getattr(plane_axes, "shape", plane_axes)}')
    return plane_axes


def _projection(axes: torch.Tensor) -> torch.Tensor:
    """[3, 3, 2]: point @ proj[k] = the (u, v) of plane k (`project_onto_planes`)."""
    return torch.linalg.inv_ex(axes.detach().float()).inverse[:, :, :2]


def _check(planes, decoder_params, points, dirs=None, depths=None):
    """Shape contract of the public functions (raises with the offending shape)."""
    if planes.ndim != 5 or planes.shape[1] != 3:
        raise ValueError(f'planes must be [N, 3, C, H, W], got {list(planes.shape)}')
    if len(decoder_params) != 4:
        raise ValueError('decoder_params must be (w1, b1, w2, b2)')
    w1, b1, w2, b2 = decoder_params
    misc.assert_shape(w1, [None, planes.shape[2]])
    misc.assert_shape(b1, [w1.shape[0]])
    misc.assert_shape(w2, [None, w1.shape[0]])
    misc.assert_shape(b2, [w2.shape[0]])
    misc.assert_shape(points, [planes.shape[0], None, 3])
    if dirs is not None:
        misc.assert_shape(dirs, list(points.shape))
        misc.assert_shape(depths, [points.shape[0], points.shape[1], None, 1])


def _kernel(impl: str, planes, decoder_params, *tensors):
    """The loaded kernel module when this call should (and can) use it, else None."""
    all_tensors = [planes, *decoder_params, *tensors]
    if not custom_ops.wants_kernel(impl, *all_tensors):
        return None
    if any(t.dtype != torch.float32 for t in all_tensors) or len({t.device for t in all_tensors}) != 1:
        return None
    if planes.shape[2] > 128 or decoder_params[0].shape[0] > 128 or decoder_params[2].shape[0] > 129:
        return None  # register tiles sized for the OSG decoder (C = 32, hidden 64, 33 outputs)
    return custom_ops.get_kernel(KERNEL_NAME, _load_kernel)


def kernel_ready(impl: str, *tensors: torch.Tensor) -> bool:
    """Would a call with `impl` on these tensors run the kernel (loading it if needed)?"""
    if not custom_ops.wants_kernel(impl, *tensors) or any(t.dtype != torch.float32 for t in tensors):
        return False
    return custom_ops.get_kernel(KERNEL_NAME, _load_kernel) is not None and not custom_ops.is_disabled(KERNEL_NAME)

# ----------------------------------------------------------------------------------------
# Reference: the existing renderer pieces, in the order ImportanceRenderer uses them.


def decode_ref(features: torch.Tensor, decoder_params: Sequence[torch.Tensor]):
    """OSGDecoder.forward with explicit parameters: features [N, P, K, C] ->
    (rgb [N, K, CO], sigma [N, K, 1]). Same ops as FullyConnectedLayer (addmm), bit-exact."""
    w1, b1, w2, b2 = decoder_params
    x = features.mean(dim=1)
    N, K, C = x.shape
    x = torch.addmm(b2.unsqueeze(0), F.softplus(torch.addmm(b1.unsqueeze(0), x.reshape(N * K, C), w1.t())),
                    w2.t()).reshape(N, K, -1)
    return torch.sigmoid(x[..., 1:]) * _RGB_SCALE - 0.001, x[..., 0:1]


def _points(ray_origins, ray_dirs, depths):
    N, M, S, _ = depths.shape
    return (ray_origins.unsqueeze(-2) + depths * ray_dirs.unsqueeze(-2)).reshape(N, M * S, 3)


def _march_ref(planes, axes, decoder_params, ray_origins, ray_dirs, depths, box_warp, white_back):
    from training.rendering.compositing import march_rays
    from training.rendering.planes import sample_from_planes
    N, M, S, _ = depths.shape
    features = sample_from_planes(axes, planes, _points(ray_origins, ray_dirs, depths), box_warp=box_warp)
    rgb, sigma = decode_ref(features, decoder_params)
    return march_rays(rgb.reshape(N, M, S, -1), sigma.reshape(N, M, S, 1), depths, white_back=white_back)


def _render_ref(planes, axes, decoder_params, ray_origins, ray_dirs, depths, box_warp, white_back):
    res = _march_ref(planes, axes, decoder_params, ray_origins, ray_dirs, depths, box_warp, white_back)
    return TriplaneRender(res.features, res.depth, res.weights.sum(dim=2), res.final_transmittance)


def _finish(sums, depths, white_back) -> TriplaneRender:
    """The marcher's epilogue on the kernel's raw sums (autograd flows through it)."""
    feat, dsum, wsum, tfin = sums
    wsum = wsum.unsqueeze(-1)
    depth = torch.nan_to_num(dsum.unsqueeze(-1) / wsum, nan=float('inf'))  # empty ray: 0/0 -> far end
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    if white_back:
        feat = feat + 1 - wsum
    return TriplaneRender(feat * 2 - 1, depth, wsum, tfin.unsqueeze(-1))

# ----------------------------------------------------------------------------------------
# Public API.


def render_triplane_full(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                         white_back: bool = False, impl: str = 'cuda') -> TriplaneRender:
    """`render_triplane` plus the final transmittance; see the module docstring."""
    _check(planes, decoder_params, ray_origins, ray_dirs, depths)
    axes = _plane_axes(plane_axes, planes)
    args = (planes, axes, tuple(decoder_params), ray_origins, ray_dirs, depths, float(box_warp), bool(white_back))
    kern = _kernel(impl, planes, decoder_params, ray_origins, ray_dirs, depths)
    if kern is None:
        return _render_ref(*args)

    def run():
        sums = kern.render_sums(planes, _projection(axes), *decoder_params, ray_origins, ray_dirs,
                                depths.squeeze(-1), 2 / float(box_warp))
        return _finish(sums, depths, white_back)
    return custom_ops.call(KERNEL_NAME, run, lambda: _render_ref(*args))


def render_triplane(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                    white_back: bool = False, impl: str = 'cuda') -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Volume-render tri-plane features along rays -> (rgb [N,M,CO], depth [N,M,1], weight_sum [N,M,1])."""
    out = render_triplane_full(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                               white_back=white_back, impl=impl)
    return out.rgb, out.depth, out.weight_sum


@torch.no_grad()
def render_triplane_weights(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                            impl: str = 'cuda') -> torch.Tensor:
    """Compositing weights [N, M, S-1, 1] of the coarse pass (importance sampling), no gradient."""
    _check(planes, decoder_params, ray_origins, ray_dirs, depths)
    axes = _plane_axes(plane_axes, planes)
    args = (planes, axes, tuple(decoder_params), ray_origins, ray_dirs, depths, float(box_warp), False)
    ref = lambda: _march_ref(*args).weights  # noqa: E731
    kern = _kernel(impl, planes, decoder_params, ray_origins, ray_dirs, depths)
    if kern is None:
        return ref()
    run = lambda: kern.render_weights(planes, _projection(axes), *decoder_params, ray_origins, ray_dirs,  # noqa: E731
                                      depths.squeeze(-1), 2 / float(box_warp)).unsqueeze(-1)
    return custom_ops.call(KERNEL_NAME, run, ref)


def query_triplane(planes, plane_axes, decoder_params, coordinates, box_warp,
                   impl: str = 'cuda') -> Tuple[torch.Tensor, torch.Tensor]:
    """Decoder output at points: coordinates [N, K, 3] -> (rgb [N, K, CO], sigma [N, K, 1] raw)."""
    from training.rendering.planes import sample_from_planes
    _check(planes, decoder_params, coordinates)
    axes = _plane_axes(plane_axes, planes)

    def ref():
        return decode_ref(sample_from_planes(axes, planes, coordinates, box_warp=float(box_warp)), decoder_params)
    kern = _kernel(impl, planes, decoder_params, coordinates)
    if kern is None:
        return ref()
    return custom_ops.call(KERNEL_NAME, lambda: kern.query(planes, _projection(axes), *decoder_params, coordinates,
                                                           2 / float(box_warp)), ref)


def osg_decoder_params(decoder: torch.nn.Module) -> Optional[Tuple[torch.Tensor, ...]]:
    """(w1, b1, w2, b2) of an OSG decoder as its forward uses them, or None for any other
    module (the renderer then keeps calling the module itself).

    Recognised: a class named OSGDecoder (also when reloaded from a pickle) whose `net` is
    [FullyConnectedLayer(linear), Softplus(beta=1, threshold=20), FullyConnectedLayer(linear)].
    The expressions repeat FullyConnectedLayer.forward, so the values are bit-identical.
    """
    net = getattr(decoder, 'net', None)
    if type(decoder).__name__ != 'OSGDecoder' or not isinstance(net, torch.nn.Sequential) or len(net) != 3:
        return None
    fc1, act, fc2 = net
    if not isinstance(act, torch.nn.Softplus) or act.beta != 1 or act.threshold != 20:
        return None
    params = []
    for fc in (fc1, fc2):
        if getattr(fc, 'activation', None) != 'linear' or getattr(fc, 'bias', None) is None:
            return None
        w = fc.weight.to(torch.float32) * fc.weight_gain
        b = fc.bias.to(torch.float32)
        params += [w, b * fc.bias_gain if fc.bias_gain != 1 else b]
    return tuple(params)
