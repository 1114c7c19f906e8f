"""The tri-plane rendering stages fused into one Triton kernel (SPEC §4.5): sample the planes,
run the OSG decoder, composite (MipRayMarcher2), without ever storing per-sample features.

Public functions (shapes: N batch, M rays, S samples per ray, C plane channels, CO decoder
feature channels, 32 in every preset):

    render_triplane(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                    white_back=False, impl='auto') -> (rgb [N,M,CO], depth [N,M,1], weight_sum [N,M,1])
    render_triplane_full(...)     the same plus final_transmittance [N,M,1] (a `TriplaneRender`)
    render_triplane_weights(...)  compositing weights [N,M,S-1,1], no gradient (coarse pass)
    query_triplane(planes, plane_axes, decoder_params, coordinates, box_warp, impl='auto')
                                  -> (rgb [N,K,CO], sigma [N,K,1]): the renderer's point query

planes [N, 3, C, H, W]; plane_axes a [3, 3, 3] tensor or 'correct' | 'legacy'; decoder_params
(w1 [64, C], b1 [64], w2 [1+CO, 64], b2 [1+CO]) as `OSGDecoder.params()` gives them;
ray_origins, ray_dirs [N, M, 3]; depths [N, M, S, 1] sorted ray distances; box_warp the side
of the cube the planes cover.

impl (training/rendering/options.py): 'auto' the kernel when every tensor is a CUDA float32
tensor; 'torch' never; 'triton' always try it (CPU only under TRITON_INTERPRET=1). Where the
kernel does not run, or fails to load or launch (one warning, torch_utils/custom_ops.py), the
same stages run in PyTorch (the package's own bodies). `POF3D_IMPL=ref` forces PyTorch.

Kernel coverage: forward and first-order backward w.r.t. planes, decoder params, ray origins,
ray directions and depths (render), and planes, decoder params and points (query). Plane axes
carry no gradient. No double backward (nothing in training needs it through the renderer).
The kernel never materialises [N, M, S, C] tensors; see `_triton_triplane.py`.
"""

import importlib
from typing import NamedTuple, Tuple, Union

import torch

from torch_utils import custom_ops, misc
from training.rendering.compositing import coarse_weights, finish_rays, march_rays
from training.rendering.field import decode_triplane
from training.rendering.planes import cached_planes, plane_projection
from training.rendering.rays import ray_points

KERNEL_NAME = 'triplane_render'
_OPS_IMPL = {'auto': 'cuda', 'torch': 'ref', 'triton': 'triton', 'cuda': 'cuda', 'ref': 'ref'}   # custom_ops' names


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
    """Compare the compiled kernel with the PyTorch stages on a tiny random problem, forward and
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
               lambda: _render_torch(planes, axes, tuple(params), origins, dirs, depths, 1.0, False)):
        out = fn()
        grad, = torch.autograd.grad((out.rgb.sum() + out.depth.sum()), planes)
        results.append((out.rgb.detach(), out.depth.detach(), grad))
    for a, b in zip(*results):
        err = float((a - b).abs().max())
        if not err <= tol:
            raise RuntimeError(f'GPU self-check failed: kernel differs from the reference by {err:.3g}')


def _plane_axes(plane_axes: Union[str, torch.Tensor], planes: torch.Tensor) -> torch.Tensor:
    if isinstance(plane_axes, str):
        if plane_axes not in ('correct', 'legacy'):
            raise ValueError(f"plane_axes must be 'correct', 'legacy' or a [3, 3, 3] tensor, got {plane_axes!r}")
        return cached_planes(plane_axes == 'legacy', planes.dtype, planes.device)
    if not isinstance(plane_axes, torch.Tensor) or tuple(plane_axes.shape) != (3, 3, 3):
        raise ValueError(f'plane_axes must be a [3, 3, 3] tensor, got {getattr(plane_axes, "shape", plane_axes)}')
    return plane_axes


def _projection(axes: torch.Tensor) -> torch.Tensor:
    """[3, 3, 2]: point @ proj[k] = the (u, v) of plane k, in float32 for the kernel."""
    return plane_projection(axes.detach(), torch.float32)


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
    if not custom_ops.wants_kernel(_ops_impl(impl), *all_tensors):
        return None
    if any(t.dtype != torch.float32 for t in all_tensors) or len({t.device for t in all_tensors}) != 1:
        return None
    if planes.shape[2] > 128 or decoder_params[0].shape[0] > 128 or decoder_params[2].shape[0] > 129:
        return None  # register tiles sized for the OSG decoder (C = 32, hidden 64, 33 outputs)
    return custom_ops.get_kernel(KERNEL_NAME, _load_kernel)


def kernel_ready(impl: str, *tensors: torch.Tensor) -> bool:
    """Would a call with `impl` on these tensors run the kernel (loading it if needed)?"""
    if not custom_ops.wants_kernel(_ops_impl(impl), *tensors) or any(t.dtype != torch.float32 for t in tensors):
        return False
    return custom_ops.get_kernel(KERNEL_NAME, _load_kernel) is not None and not custom_ops.is_disabled(KERNEL_NAME)

def _ops_impl(impl: str) -> str:
    if impl not in _OPS_IMPL:
        raise ValueError(f"impl must be 'auto', 'torch' or 'triton', got {impl!r}")
    return _OPS_IMPL[impl]

# ----------------------------------------------------------------------------------------
# The same stages in PyTorch (where the kernel does not run).


def _decode_rays(planes, axes, decoder_params, ray_origins, ray_dirs, depths, box_warp):
    """(rgb [N, M, S, CO], sigma [N, M, S, 1]) at the ray samples."""
    N, M, S, _ = depths.shape
    rgb, sigma = decode_triplane(planes, axes, decoder_params, ray_points(ray_origins, ray_dirs, depths), box_warp)
    return rgb.reshape(N, M, S, -1), sigma.reshape(N, M, S, 1)


def _render_torch(planes, axes, decoder_params, ray_origins, ray_dirs, depths, box_warp, white_back):
    rgb, sigma = _decode_rays(planes, axes, decoder_params, ray_origins, ray_dirs, depths, box_warp)
    res = march_rays(rgb, sigma, depths, white_back=white_back)
    return TriplaneRender(res.features, res.depth, res.weights.sum(dim=2), res.final_transmittance)


def _axes_for_torch(plane_axes, axes):
    """The PyTorch stages take the axis-set name where there is one (the plane-mean gather)."""
    return plane_axes if isinstance(plane_axes, str) else axes


def _finish(sums, depths, white_back) -> TriplaneRender:
    """The marcher's epilogue on the kernel's raw sums (autograd flows through it)."""
    feat, dsum, wsum, tfin = sums
    wsum = wsum.unsqueeze(-1)
    rgb, depth = finish_rays(feat, dsum.unsqueeze(-1), wsum, depths, white_back)
    return TriplaneRender(rgb, depth, wsum, tfin.unsqueeze(-1))

# ----------------------------------------------------------------------------------------
# Public API.


def render_triplane_full(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                         white_back: bool = False, impl: str = 'auto') -> TriplaneRender:
    """`render_triplane` plus the final transmittance; see the module docstring."""
    _check(planes, decoder_params, ray_origins, ray_dirs, depths)
    axes = _plane_axes(plane_axes, planes)
    args = (planes, _axes_for_torch(plane_axes, axes), tuple(decoder_params), ray_origins, ray_dirs, depths,
            float(box_warp), bool(white_back))
    kern = _kernel(impl, planes, decoder_params, ray_origins, ray_dirs, depths)
    if kern is None:
        return _render_torch(*args)

    def run():
        sums = kern.render_sums(planes, _projection(axes), *decoder_params, ray_origins, ray_dirs,
                                depths.squeeze(-1), 2 / float(box_warp))
        return _finish(sums, depths, white_back)
    return custom_ops.call(KERNEL_NAME, run, lambda: _render_torch(*args))


def render_triplane(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                    white_back: bool = False, impl: str = 'auto') -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Volume-render tri-plane features along rays -> (rgb [N,M,CO], depth [N,M,1], weight_sum [N,M,1])."""
    out = render_triplane_full(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                               white_back=white_back, impl=impl)
    return out.rgb, out.depth, out.weight_sum


@torch.no_grad()
def render_triplane_weights(planes, plane_axes, decoder_params, ray_origins, ray_dirs, depths, box_warp,
                            impl: str = 'auto') -> torch.Tensor:
    """Compositing weights [N, M, S-1, 1] of the coarse pass (importance sampling), no gradient."""
    _check(planes, decoder_params, ray_origins, ray_dirs, depths)
    axes = _plane_axes(plane_axes, planes)
    args = (planes, _axes_for_torch(plane_axes, axes), tuple(decoder_params), ray_origins, ray_dirs, depths,
            float(box_warp))
    ref = lambda: coarse_weights(_decode_rays(*args)[1], depths)  # noqa: E731
    kern = _kernel(impl, planes, decoder_params, ray_origins, ray_dirs, depths)
    if kern is None:
        return ref()
    run = lambda: kern.render_weights(planes, _projection(axes), *decoder_params, ray_origins, ray_dirs,  # noqa: E731
                                      depths.squeeze(-1), 2 / float(box_warp)).unsqueeze(-1)
    return custom_ops.call(KERNEL_NAME, run, ref)


def query_triplane(planes, plane_axes, decoder_params, coordinates, box_warp,
                   impl: str = 'auto') -> Tuple[torch.Tensor, torch.Tensor]:
    """Decoder output at points: coordinates [N, K, 3] -> (rgb [N, K, CO], sigma [N, K, 1] raw)."""
    _check(planes, decoder_params, coordinates)
    axes = _plane_axes(plane_axes, planes)

    def ref():
        return decode_triplane(planes, _axes_for_torch(plane_axes, axes), decoder_params, coordinates,
                               float(box_warp))
    kern = _kernel(impl, planes, decoder_params, coordinates)
    if kern is None:
        return ref()
    return custom_ops.call(KERNEL_NAME, lambda: kern.query(planes, _projection(axes), *decoder_params, coordinates,
                                                           2 / float(box_warp)), ref)
