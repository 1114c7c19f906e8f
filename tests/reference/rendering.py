"""Reference port of the rendering stages (EG3D's ImportanceRenderer, OSGDecoder, MipRayMarcher2).

Each function is the plain formulation that a stage of training/rendering/ replaced with a
faster one; tests/test_rendering_equivalence.py checks the package against these.
Shapes: N batch, M rays or points, S samples per ray, P = 3 planes, C channels.
"""

import torch
import torch.nn.functional as F

from training.rendering import compositing, samplers
from training.rendering.planes import cached_planes

RGB_SCALE, RGB_SHIFT = 1 + 2 * 0.001, 0.001


def project_onto_planes(planes, coordinates):
    """planes [P, 3, 3], coordinates [N, M, 3] -> [N*P, M, 2]: broadcast, full product, drop one."""
    N, M, _ = coordinates.shape
    inv_planes = torch.linalg.inv(planes.to(coordinates.dtype))
    projected = coordinates.unsqueeze(1) @ inv_planes.unsqueeze(0)          # [N, P, M, 3]
    return projected[..., :2].reshape(N * planes.shape[0], M, 2)


def sample_from_planes(plane_axes, plane_features, coordinates, box_warp):
    """[N, P, M, C] features by grid_sample (bilinear, zeros, align_corners=False)."""
    N, P, C, H, W = plane_features.shape
    M = coordinates.shape[1]
    grid = project_onto_planes(plane_axes, coordinates * (2 / box_warp)).unsqueeze(1)
    out = F.grid_sample(plane_features.reshape(N * P, C, H, W), grid.to(plane_features.dtype), mode='bilinear',
                        padding_mode='zeros', align_corners=False)
    return out.reshape(N, P, C, M).permute(0, 1, 3, 2)


def osg_decode(sampled_features, decoder):
    """EG3D's OSGDecoder.forward: plane mean -> net -> (rgb [N, M, O], sigma [N, M, 1])."""
    N, P, M, C = sampled_features.shape
    x = decoder.net(sampled_features.mean(dim=1).reshape(N * M, C)).reshape(N, M, -1)
    return torch.sigmoid(x[..., 1:]) * RGB_SCALE - RGB_SHIFT, x[..., 0:1]


def decode_params(features, params):
    """osg_decode with explicit (w1, b1, w2, b2): features [N, P, K, C] -> (rgb, sigma)."""
    w1, b1, w2, b2 = params
    x = features.mean(dim=1)
    N, K, C = x.shape
    x = torch.addmm(b2.unsqueeze(0), F.softplus(torch.addmm(b1.unsqueeze(0), x.reshape(N * K, C), w1.t())),
                    w2.t()).reshape(N, K, -1)
    return torch.sigmoid(x[..., 1:]) * RGB_SCALE - RGB_SHIFT, x[..., 0:1]


def smooth_weights(weights):
    """Max-pool (2, 1, pad 1) then average-pool (2, 1), + 0.01: [R, S-1] -> [R, S-1]."""
    w = F.max_pool1d(weights.unsqueeze(1), kernel_size=2, stride=1, padding=1)
    return F.avg_pool1d(w, kernel_size=2, stride=1).squeeze(1) + 0.01


def march_rays(colors, densities, depths, white_back=False):
    """MipRayMarcher2 on the interval midpoints -> (features, depth, weights, final T)."""
    deltas = depths[:, :, 1:] - depths[:, :, :-1]
    colors_mid = (colors[:, :, :-1] + colors[:, :, 1:]) / 2
    densities_mid = (densities[:, :, :-1] + densities[:, :, 1:]) / 2
    depths_mid = (depths[:, :, :-1] + depths[:, :, 1:]) / 2
    alpha = 1 - torch.exp(-F.softplus(densities_mid - 1) * deltas)
    survive = torch.cat([torch.ones_like(alpha[:, :, :1]), 1 - alpha + 1e-10], dim=-2)
    transmittance = torch.cumprod(survive, dim=-2)
    weights = alpha * transmittance[:, :, :-1]
    features = torch.sum(weights * colors_mid, dim=-2)
    weight_total = weights.sum(dim=-2)
    depth = torch.nan_to_num(torch.sum(weights * depths_mid, dim=-2) / weight_total, nan=float('inf'))
    depth = torch.clamp(depth, torch.min(depths), torch.max(depths))
    if white_back:
        features = features + 1 - weight_total
    return compositing.MarchResult(features * 2 - 1, depth, weights, transmittance[:, :, -1])


def unify_samples(depths1, colors1, densities1, depths2, colors2, densities2):
    """Concatenate two sample sets per ray and sort all three by depth."""
    depths = torch.cat([depths1, depths2], dim=-2)
    colors = torch.cat([colors1, colors2], dim=-2)
    densities = torch.cat([densities1, densities2], dim=-2)
    depths, order = torch.sort(depths, dim=-2)
    colors = torch.gather(colors, -2, order.expand(-1, -1, -1, colors.shape[-1]))
    return depths, colors, torch.gather(densities, -2, order)


def march_importance(depths1, colors1, densities1, depths2, colors2, densities2, white_back=False):
    return march_rays(*_reorder(unify_samples(depths1, colors1, densities1, depths2, colors2, densities2)),
                      white_back=white_back)


def _reorder(unified):
    depths, colors, densities = unified
    return colors, densities, depths


def render_planes(planes, axes, params, ray_origins, ray_dirs, depths, box_warp, white_back):
    """One pass over fixed depths: sample, decode (explicit params), march -> MarchResult."""
    N, M, S, _ = depths.shape
    points = (ray_origins.unsqueeze(-2) + depths * ray_dirs.unsqueeze(-2)).reshape(N, M * S, 3)
    rgb, sigma = decode_params(sample_from_planes(axes, planes, points, box_warp), params)
    return march_rays(rgb.reshape(N, M, S, -1), sigma.reshape(N, M, S, 1), depths, white_back=white_back)


def importance_render(planes, decoder, ray_origins, ray_dirs, opts, generator):
    """EG3D's ImportanceRenderer.forward (fixed ray_start/ray_end, no density noise), the
    same random draws as the package's renderer -> (features, depth, weight_sum)."""
    N, M, _ = ray_origins.shape
    axes = cached_planes(opts['plane_axes'] == 'legacy', planes.dtype, planes.device)
    full = dict(size=[N, M, 1], dtype=ray_origins.dtype, device=ray_origins.device)
    t0 = torch.full(fill_value=float(opts['ray_start']), **full)
    t1 = torch.full(fill_value=float(opts['ray_end']), **full)
    depths = samplers.sample_stratified(t0, t1, opts['depth_resolution'], generator=generator)

    def decode(d):
        S = d.shape[2]
        points = (ray_origins.unsqueeze(-2) + d * ray_dirs.unsqueeze(-2)).reshape(N, M * S, 3)
        rgb, sigma = osg_decode(sample_from_planes(axes, planes, points, opts['box_warp']), decoder)
        return rgb.reshape(N, M, S, -1), sigma.reshape(N, M, S, 1)
    colors, densities = decode(depths)
    white = bool(opts.get('white_back', False))
    with torch.no_grad():
        weights = march_rays(colors, densities, depths, white_back=white).weights
    fine = samplers.sample_importance(depths, weights, opts['depth_resolution_importance'], generator=generator)
    colors2, densities2 = decode(fine)
    out = march_importance(depths, colors, densities, fine, colors2, densities2, white_back=white)
    return out.features, out.depth, out.weights.sum(dim=2)
