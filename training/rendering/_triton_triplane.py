"""Triton kernels for fused tri-plane volume rendering (SPEC §4.5), loaded lazily by
`training/rendering/fused.py` through `custom_ops.get_kernel`. Importing this module
raises when Triton cannot run here (no CUDA device and no TRITON_INTERPRET=1).

One program owns BLOCK_R_FWD (BLOCK_R_BWD) rays and walks their S samples in order; per sample it projects the
point onto the 3 planes, gathers bilinear features (channels-last planes: one contiguous
C-vector per texel), runs the OSG decoder MLP (two `tl.dot`s) and composites MipRayMarcher2
style (interval midpoints), keeping only running sums in registers. Nothing of size
[N, M, S, C] is written, in the forward or the backward.

Custom ops (`torch.library`), all on fp32 tensors; planes are channels-last [N, 3, H, W, C]:
  pof3d::triplane_render           -> raw sums (feat [N,M,CO], dsum [N,M], wsum [N,M], tfin [N,M])
      feat = sum_i w_i c_mid_i, dsum = sum_i w_i t_mid_i, wsum = sum_i w_i, tfin = prod(1-a_i+1e-10).
      Differentiable (first order) w.r.t. planes, decoder params, origins, dirs and depths.
      The caller (`fused.py`) turns the sums into rgb/depth (`compositing.finish_rays`).
  pof3d::triplane_render_weights   -> w_i [N, M, S-1] (coarse pass; not differentiable)
  pof3d::triplane_query            -> decoder output at points: rgb [N,M,CO], sigma [N,M,1]
      Differentiable (first order) w.r.t. planes, decoder params and the points.
Backward kernels recompute each sample (second pass). The gradient of the samples behind
interval i uses "suffix = total - running" (L = sum_k w_k e_k is known from the forward
outputs), plane gradients are scattered with bilinear atomic adds, and decoder-parameter
gradients are summed per program in registers, written once per program to a partial buffer
and reduced with `torch.sum` (deterministic, no contention on 4k hot addresses).
Fallback (one warning, via `custom_ops.call`): a failing forward launch runs the package's
PyTorch stages inside the op (planes.sample_projected -> decoder.decode_rows ->
compositing.march_sums, the same contract); the backward ops raise instead, and their autograd
formulas (`_render_backward`, `_query_backward`) differentiate those stages, since autograd
does not record inside a custom op's implementation.
"""

import os
from typing import List, Tuple

import torch
import triton  # an ImportError here is the loud failure custom_ops.get_kernel expects
import triton.language as tl

from torch_utils import custom_ops
from training.rendering.compositing import march_sums
from training.rendering.decoder import decode_rows, plane_mean_rows
from training.rendering.planes import sample_projected
from training.rendering.rays import ray_points

if not (torch.cuda.is_available() or os.environ.get('TRITON_INTERPRET', '0') == '1'):
    raise custom_ops.KernelUnavailable('Triton kernels need a CUDA device (or TRITON_INTERPRET=1 on CPU)')

KERNEL_NAME = 'triplane_render'
# Launch shape, chosen from an offline sm_90 compile (ptxas spill report; no GPU timing yet):
# 16 rays x 8 warps keeps the forward nearly spill-free (32 B/thread of stack vs 0.7-1.8 KB
# at 32 rays). The backward carries two samples' activations and the decoder-gradient
# accumulators and still spills ~0.5 KB/thread (RAY_GRAD) at this shape, its best tried.
BLOCK_R_FWD = 16   # rays per program (tl.dot needs >= 16 rows)
BLOCK_R_BWD = 16
NUM_WARPS = 8
RGB_SCALE = tl.constexpr(1 + 2 * 0.001)  # OSG decoder: sigmoid(x) * (1 + 2*0.001) - 0.001
Tensor = torch.Tensor

# ----------------------------------------------------------------------------------------
# Device helpers.


@triton.jit
def _log1p(z):
    u = 1.0 + z  # log(u) * z / (u - 1) is accurate to a few ulp (Goldberg's trick)
    d = u - 1.0
    return tl.where(d == 0.0, z, tl.log(u) * (z / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def _softplus(x):  # torch.nn.functional.softplus, beta=1, threshold=20
    return tl.where(x > 20.0, x, _log1p(tl.exp(tl.minimum(x, 20.0))))


@triton.jit
def _sigmoid(x):
    return 1.0 / (1.0 + tl.exp(-x))


@triton.jit
def _dsoftplus(x):
    return tl.where(x > 20.0, 1.0, _sigmoid(x))


@triton.jit
def _project(px, py, pz, proj_ptr, k: tl.constexpr, scale, H, W):
    """Pixel coordinates (ix, iy) of points on plane k (grid_sample, align_corners=False)
    and d(ix)/d(p), d(iy)/d(p) coefficients (a_j0 * scale * W/2, a_j1 * scale * H/2)."""
    a = proj_ptr + k * 6  # proj [3, 3, 2]: u = sum_j p_j*scale*proj[k, j, 0], v with [.., 1]
    a00 = tl.load(a)
    a01 = tl.load(a + 1)
    a10 = tl.load(a + 2)
    a11 = tl.load(a + 3)
    a20 = tl.load(a + 4)
    a21 = tl.load(a + 5)
    sx = px * scale
    sy = py * scale
    sz = pz * scale
    u = sx * a00 + sy * a10 + sz * a20
    v = sx * a01 + sy * a11 + sz * a21
    ix = ((u + 1.0) * W - 1.0) / 2.0
    iy = ((v + 1.0) * H - 1.0) / 2.0
    # Far-away points stay far outside (every corner masked) but finite for the int cast.
    ix = tl.minimum(tl.maximum(ix, -2.0), W + 1.0)
    iy = tl.minimum(tl.maximum(iy, -2.0), H + 1.0)
    return ix, iy, a00, a01, a10, a11, a20, a21


@triton.jit
def _corner(base, x, y, H, W, s_h, s_w, cc, mc, mr):
    """Offsets [BR, CP] and mask of texel (x, y) of one plane (zeros padding)."""
    ok = mr & (x >= 0) & (x < W) & (y >= 0) & (y < H)
    off = base + y.to(tl.int64) * s_h + x.to(tl.int64) * s_w
    return off[:, None] + cc[None, :], ok[:, None] & mc[None, :]


@triton.jit
def _bilinear_setup(ix, iy):
    x0f = tl.floor(ix)
    y0f = tl.floor(iy)
    # PyTorch's weights: nw = (x_se - ix)(y_se - iy), ne = (ix - x_sw)(y_sw - iy), ...
    wx1 = ix - x0f
    wx0 = (x0f + 1.0) - ix
    wy1 = iy - y0f
    wy0 = (y0f + 1.0) - iy
    return x0f.to(tl.int32), y0f.to(tl.int32), wx0, wx1, wy0, wy1


@triton.jit
def _decode(planes_ptr, nbase, px, py, pz, proj_ptr, scale, H, W, s_p, s_h, s_w, cc, mc, mr,
            w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, HID, CO, BR: tl.constexpr, CP: tl.constexpr, HP: tl.constexpr,
            OP: tl.constexpr, DOT_PREC: tl.constexpr):
    """Mean tri-plane feature [BR, CP], hidden pre-activation h [BR, HP], sigmoid of the
    colour logits rs [BR, OP] and raw sigma [BR] at points p. The decoder weights are
    (re)loaded here, at their use, from L1/L2: hoisted out of the sample loop they would
    occupy registers for the whole kernel."""
    feat = tl.zeros([BR, CP], dtype=tl.float32)
    for k in tl.static_range(3):
        ix, iy, _, _, _, _, _, _ = _project(px, py, pz, proj_ptr, k, scale, H, W)
        x0, y0, wx0, wx1, wy0, wy1 = _bilinear_setup(ix, iy)
        base = nbase + k * s_p
        o, m = _corner(base, x0, y0, H, W, s_h, s_w, cc, mc, mr)
        f = tl.load(planes_ptr + o, mask=m, other=0.0) * (wx0 * wy0)[:, None]
        o, m = _corner(base, x0 + 1, y0, H, W, s_h, s_w, cc, mc, mr)
        f += tl.load(planes_ptr + o, mask=m, other=0.0) * (wx1 * wy0)[:, None]
        o, m = _corner(base, x0, y0 + 1, H, W, s_h, s_w, cc, mc, mr)
        f += tl.load(planes_ptr + o, mask=m, other=0.0) * (wx0 * wy1)[:, None]
        o, m = _corner(base, x0 + 1, y0 + 1, H, W, s_h, s_w, cc, mc, mr)
        f += tl.load(planes_ptr + o, mask=m, other=0.0) * (wx1 * wy1)[:, None]
        feat += f
    feat = feat / 3.0  # mean over the planes (OSG decoder)
    w1t, b1, w2ct, w2s, b2c, b2s = _load_decoder(w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, HID, CO, CP, HP, OP)
    h = tl.dot(feat, w1t, input_precision=DOT_PREC) + b1[None, :]
    a = _softplus(h)
    rs = _sigmoid(tl.dot(a, w2ct, input_precision=DOT_PREC) + b2c[None, :])
    sig = tl.sum(a * w2s[None, :], axis=1) + b2s
    return feat, h, rs, sig


@triton.jit
def _load_decoder(w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, HID, CO,
                  CP: tl.constexpr, HP: tl.constexpr, OP: tl.constexpr):
    """w1 [HID, C], w2 [1+CO, HID] (row 0 = sigma) as zero-padded tiles for tl.dot."""
    cc = tl.arange(0, CP)
    hh = tl.arange(0, HP)
    oo = tl.arange(0, OP)
    mc = cc < C
    mh = hh < HID
    mo = oo < CO
    w1t = tl.load(w1_ptr + hh[None, :] * C + cc[:, None], mask=mh[None, :] & mc[:, None], other=0.0)  # [CP,HP]
    b1 = tl.load(b1_ptr + hh, mask=mh, other=0.0)
    w2ct = tl.load(w2_ptr + (oo[None, :] + 1) * HID + hh[:, None], mask=mo[None, :] & mh[:, None], other=0.0)
    w2s = tl.load(w2_ptr + hh, mask=mh, other=0.0)
    b2c = tl.load(b2_ptr + 1 + oo, mask=mo, other=0.0)
    b2s = tl.load(b2_ptr)
    return w1t, b1, w2ct, w2s, b2c, b2s


@triton.jit
def _sample_backward(planes_ptr, gplanes_ptr, nbase, px, py, pz, proj_ptr, scale, H, W, s_p, s_h, s_w,
                     cc, mc, mr, feat, h, rs, g_rgb, g_sig, w1_ptr, w2_ptr, C, HID, CO,
                     BR: tl.constexpr, CP: tl.constexpr, HP: tl.constexpr, OP: tl.constexpr,
                     RAY_GRAD: tl.constexpr, DOT_PREC: tl.constexpr):
    """Backprop one sample from (g_rgb [BR, OP], g_sig [BR]): scatters plane gradients and
    returns this sample's decoder-parameter gradients and d/d(point)."""
    hh = tl.arange(0, HP)
    oo = tl.arange(0, OP)
    mh = hh < HID
    w2c = tl.load(w2_ptr + (oo[:, None] + 1) * HID + hh[None, :], mask=(oo < CO)[:, None] & mh[None, :], other=0.0)
    w2s = tl.load(w2_ptr + hh, mask=mh, other=0.0)
    g_oc = g_rgb * RGB_SCALE * rs * (1.0 - rs)
    a = _softplus(h)
    g_a = tl.dot(g_oc, w2c, input_precision=DOT_PREC) + g_sig[:, None] * w2s[None, :]
    g_h = g_a * _dsoftplus(h)
    w1 = tl.load(w1_ptr + hh[:, None] * C + cc[None, :], mask=mh[:, None] & mc[None, :], other=0.0)
    g_f = tl.dot(g_h, w1, input_precision=DOT_PREC) / 3.0
    dw2c = tl.dot(tl.trans(g_oc), a, input_precision=DOT_PREC)          # [OP, HP]
    dw2s = tl.sum(g_sig[:, None] * a, axis=0)
    db2c = tl.sum(g_oc, axis=0)
    dw1 = tl.dot(tl.trans(g_h), feat, input_precision=DOT_PREC)         # [HP, CP]
    db1 = tl.sum(g_h, axis=0)
    gpx = tl.zeros([BR], dtype=tl.float32)
    gpy = tl.zeros([BR], dtype=tl.float32)
    gpz = tl.zeros([BR], dtype=tl.float32)
    for k in tl.static_range(3):
        ix, iy, a00, a01, a10, a11, a20, a21 = _project(px, py, pz, proj_ptr, k, scale, H, W)
        x0, y0, wx0, wx1, wy0, wy1 = _bilinear_setup(ix, iy)
        base = nbase + k * s_p
        o00, m00 = _corner(base, x0, y0, H, W, s_h, s_w, cc, mc, mr)
        o10, m10 = _corner(base, x0 + 1, y0, H, W, s_h, s_w, cc, mc, mr)
        o01, m01 = _corner(base, x0, y0 + 1, H, W, s_h, s_w, cc, mc, mr)
        o11, m11 = _corner(base, x0 + 1, y0 + 1, H, W, s_h, s_w, cc, mc, mr)
        tl.atomic_add(gplanes_ptr + o00, g_f * (wx0 * wy0)[:, None], mask=m00, sem='relaxed')
        tl.atomic_add(gplanes_ptr + o10, g_f * (wx1 * wy0)[:, None], mask=m10, sem='relaxed')
        tl.atomic_add(gplanes_ptr + o01, g_f * (wx0 * wy1)[:, None], mask=m01, sem='relaxed')
        tl.atomic_add(gplanes_ptr + o11, g_f * (wx1 * wy1)[:, None], mask=m11, sem='relaxed')
        if RAY_GRAD:
            v00 = tl.load(planes_ptr + o00, mask=m00, other=0.0)
            v10 = tl.load(planes_ptr + o10, mask=m10, other=0.0)
            v01 = tl.load(planes_ptr + o01, mask=m01, other=0.0)
            v11 = tl.load(planes_ptr + o11, mask=m11, other=0.0)
            gix = tl.sum(g_f * ((v10 - v00) * wy0[:, None] + (v11 - v01) * wy1[:, None]), axis=1)
            giy = tl.sum(g_f * ((v01 - v00) * wx0[:, None] + (v11 - v10) * wx1[:, None]), axis=1)
            # Clamped (far-away) points have every corner masked, so gix = giy = 0 there.
            gu = gix * (W * scale / 2.0)
            gv = giy * (H * scale / 2.0)
            gpx += a00 * gu + a01 * gv
            gpy += a10 * gu + a11 * gv
            gpz += a20 * gu + a21 * gv
    return dw1, db1, dw2c, dw2s, db2c, gpx, gpy, gpz

# ----------------------------------------------------------------------------------------
# Kernels.


@triton.jit
def _program_rows(pid, R, M, s_n, BR: tl.constexpr):
    """Rows (rays or points) of program pid, their mask and their sample's plane offset."""
    rr = pid * BR + tl.arange(0, BR)
    return rr, rr < R, (rr // M).to(tl.int64) * s_n


@triton.jit
def _lanes(C, CP: tl.constexpr, HP: tl.constexpr, OP: tl.constexpr):
    """Lane indices of the plane channels (with their mask), hidden units and outputs."""
    cc = tl.arange(0, CP)
    return cc, cc < C, tl.arange(0, HP), tl.arange(0, OP)


@triton.jit
def _load_xyz(ptr, rr, mr):
    """The 3-vectors [R, 3] of rows rr (masked by mr) as three [BR] columns."""
    return (tl.load(ptr + rr * 3, mask=mr, other=0.0), tl.load(ptr + rr * 3 + 1, mask=mr, other=0.0),
            tl.load(ptr + rr * 3 + 2, mask=mr, other=0.0))


@triton.jit
def _store_xyz(ptr, rr, mr, x, y, z):
    tl.store(ptr + rr * 3, x, mask=mr)
    tl.store(ptr + rr * 3 + 1, y, mask=mr)
    tl.store(ptr + rr * 3 + 2, z, mask=mr)


@triton.jit
def _render_fwd_kernel(planes_ptr, proj_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, o_ptr, d_ptr, t_ptr,
                       feat_ptr, dsum_ptr, wsum_ptr, tfin_ptr, wts_ptr,
                       R, M, S, C, HID, CO, H, W, s_n, s_p, s_h, s_w, scale,
                       BR: tl.constexpr, CP: tl.constexpr, HP: tl.constexpr, OP: tl.constexpr,
                       SUMS: tl.constexpr, WEIGHTS: tl.constexpr, DOT_PREC: tl.constexpr):
    rr = tl.program_id(0) * BR + tl.arange(0, BR)
    mr = rr < R
    nbase = (rr // M).to(tl.int64) * s_n
    cc = tl.arange(0, CP)
    mc = cc < C
    oo = tl.arange(0, OP)
    ox, oy, oz = _load_xyz(o_ptr, rr, mr)
    dx, dy, dz = _load_xyz(d_ptr, rr, mr)
    tbase = rr.to(tl.int64) * S
    t_prev = tl.load(t_ptr + tbase, mask=mr, other=0.0)
    _, _, rs, sig_prev = _decode(planes_ptr, nbase, ox + t_prev * dx, oy + t_prev * dy, oz + t_prev * dz,
                                 proj_ptr, scale, H, W, s_p, s_h, s_w, cc, mc, mr,
                                 w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, HID, CO, BR, CP, HP, OP, DOT_PREC)
    rgb_prev = rs * RGB_SCALE - 0.001
    acc_c = tl.zeros([BR, OP], dtype=tl.float32)
    acc_d = tl.zeros([BR], dtype=tl.float32)
    acc_w = tl.zeros([BR], dtype=tl.float32)
    trans = tl.full([BR], 1.0, dtype=tl.float32)
    for s in range(1, S):
        t = tl.load(t_ptr + tbase + s, mask=mr, other=0.0)
        _, _, rs, sig = _decode(planes_ptr, nbase, ox + t * dx, oy + t * dy, oz + t * dz,
                                proj_ptr, scale, H, W, s_p, s_h, s_w, cc, mc, mr,
                                w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, HID, CO, BR, CP, HP, OP, DOT_PREC)
        rgb = rs * RGB_SCALE - 0.001
        # MipRayMarcher2 on interval (s-1, s): midpoint colour/density/depth (SPEC §4.5).
        delta = t - t_prev
        alpha = 1.0 - tl.exp(-_softplus((sig_prev + sig) / 2.0 - 1.0) * delta)
        w = alpha * trans
        if SUMS:
            acc_c += w[:, None] * ((rgb_prev + rgb) / 2.0)
            acc_d += w * ((t_prev + t) / 2.0)
            acc_w += w
        if WEIGHTS:
            tl.store(wts_ptr + rr.to(tl.int64) * (S - 1) + (s - 1), w, mask=mr)
        trans = trans * (1.0 - alpha + 1e-10)
        t_prev = t
        sig_prev = sig
        rgb_prev = rgb
    if SUMS:
        tl.store(feat_ptr + rr[:, None] * CO + oo[None, :], acc_c, mask=mr[:, None] & (oo < CO)[None, :])
        tl.store(dsum_ptr + rr, acc_d, mask=mr)
        tl.store(wsum_ptr + rr, acc_w, mask=mr)
        tl.store(tfin_ptr + rr, trans, mask=mr)


@triton.jit
def _render_bwd_kernel(planes_ptr, proj_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, o_ptr, d_ptr, t_ptr,
                       gfeat_ptr, gdsum_ptr, gwsum_ptr, gtfin_ptr, feat_ptr, dsum_ptr, wsum_ptr, tfin_ptr,
                       gplanes_ptr, pw1_ptr, pb1_ptr, pw2_ptr, pb2_ptr, go_ptr, gd_ptr, gt_ptr,
                       R, M, S, C, HID, CO, H, W, s_n, s_p, s_h, s_w, scale,
                       BR: tl.constexpr, CP: tl.constexpr, HP: tl.constexpr, OP: tl.constexpr,
                       RAY_GRAD: tl.constexpr, DOT_PREC: tl.constexpr):
    pid = tl.program_id(0)
    rr, mr, nbase = _program_rows(pid, R, M, s_n, BR)
    cc, mc, hh, oo = _lanes(C, CP, HP, OP)
    mo = oo < CO
    ox, oy, oz = _load_xyz(o_ptr, rr, mr)
    dx, dy, dz = _load_xyz(d_ptr, rr, mr)
    m2 = mr[:, None] & mo[None, :]
    g_c = tl.load(gfeat_ptr + rr[:, None] * CO + oo[None, :], mask=m2, other=0.0)
    g_d = tl.load(gdsum_ptr + rr, mask=mr, other=0.0)
    g_w = tl.load(gwsum_ptr + rr, mask=mr, other=0.0)
    g_tf = tl.load(gtfin_ptr + rr, mask=mr, other=0.0) * tl.load(tfin_ptr + rr, mask=mr, other=0.0)
    # L = sum_i w_i e_i with e_i = g_c . c_mid_i + g_d t_mid_i + g_w, from the forward's sums.
    total = (tl.sum(g_c * tl.load(feat_ptr + rr[:, None] * CO + oo[None, :], mask=m2, other=0.0), axis=1)
             + g_d * tl.load(dsum_ptr + rr, mask=mr, other=0.0) + g_w * tl.load(wsum_ptr + rr, mask=mr, other=0.0))
    tbase = rr.to(tl.int64) * S
    t_p = tl.load(t_ptr + tbase, mask=mr, other=0.0)
    feat_p, h_p, rs_p, sig_p = _decode(planes_ptr, nbase, ox + t_p * dx, oy + t_p * dy, oz + t_p * dz,
                                       proj_ptr, scale, H, W, s_p, s_h, s_w, cc, mc, mr,
                                       w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, HID, CO, BR, CP, HP, OP, DOT_PREC)
    g_rgb_p = tl.zeros([BR, OP], dtype=tl.float32)
    g_sig_p = tl.zeros([BR], dtype=tl.float32)
    g_t_p = tl.zeros([BR], dtype=tl.float32)
    acc_w1 = tl.zeros([HP, CP], dtype=tl.float32)
    acc_b1 = tl.zeros([HP], dtype=tl.float32)
    acc_w2c = tl.zeros([OP, HP], dtype=tl.float32)
    acc_w2s = tl.zeros([HP], dtype=tl.float32)
    acc_b2c = tl.zeros([OP], dtype=tl.float32)
    acc_b2s = tl.zeros([BR], dtype=tl.float32)
    gox = tl.zeros([BR], dtype=tl.float32)
    goy = tl.zeros([BR], dtype=tl.float32)
    goz = tl.zeros([BR], dtype=tl.float32)
    gdx = tl.zeros([BR], dtype=tl.float32)
    gdy = tl.zeros([BR], dtype=tl.float32)
    gdz = tl.zeros([BR], dtype=tl.float32)
    trans = tl.full([BR], 1.0, dtype=tl.float32)
    running = tl.zeros([BR], dtype=tl.float32)
    for s in range(1, S + 1):
        if s < S:  # interval (s-1, s): its gradient completes sample s-1's
            t = tl.load(t_ptr + tbase + s, mask=mr, other=0.0)
            feat, h, rs, sig = _decode(planes_ptr, nbase, ox + t * dx, oy + t * dy, oz + t * dz,
                                       proj_ptr, scale, H, W, s_p, s_h, s_w, cc, mc, mr,
                                       w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, HID, CO, BR, CP, HP, OP, DOT_PREC)
            c_mid = ((rs_p * RGB_SCALE - 0.001) + (rs * RGB_SCALE - 0.001)) / 2.0
            s_mid = (sig_p + sig) / 2.0 - 1.0
            t_mid = (t_p + t) / 2.0
            delta = t - t_p
            sg = _softplus(s_mid)
            ex = tl.exp(-sg * delta)
            alpha = 1.0 - ex
            surv = 1.0 - alpha + 1e-10
            w = alpha * trans
            e = tl.sum(g_c * c_mid, axis=1) + g_d * t_mid + g_w
            running += w * e
            # dL/dalpha = T e - (sum_{k>i} w_k e_k + g_T T_final) / surv; dalpha/dx = exp(-x).
            g_x = ex * (trans * e - ((total - running) + g_tf) / surv)
            g_smid = g_x * delta * _dsoftplus(s_mid) / 2.0
            g_delta = g_x * sg
            g_cmid = (w / 2.0)[:, None] * g_c
            g_rgb_p += g_cmid
            g_sig_p += g_smid
            g_t_p += w * g_d / 2.0 - g_delta
            g_rgb_n = g_cmid
            g_sig_n = g_smid
            g_t_n = w * g_d / 2.0 + g_delta
            trans = trans * surv
        else:  # past the last sample: nothing new, only sample S-1's backprop below
            t = t_p
            feat = feat_p
            h = h_p
            rs = rs_p
            sig = sig_p
            g_rgb_n = g_rgb_p
            g_sig_n = g_sig_p
            g_t_n = g_t_p
        px = ox + t_p * dx
        py = oy + t_p * dy
        pz = oz + t_p * dz
        dw1, db1, dw2c, dw2s, db2c, gpx, gpy, gpz = _sample_backward(
            planes_ptr, gplanes_ptr, nbase, px, py, pz, proj_ptr, scale, H, W, s_p, s_h, s_w,
            cc, mc, mr, feat_p, h_p, rs_p, g_rgb_p, g_sig_p, w1_ptr, w2_ptr, C, HID, CO, BR, CP, HP, OP,
            RAY_GRAD, DOT_PREC)
        acc_w1 += dw1
        acc_b1 += db1
        acc_w2c += dw2c
        acc_w2s += dw2s
        acc_b2c += db2c
        acc_b2s += g_sig_p
        if RAY_GRAD:
            tl.store(gt_ptr + tbase + (s - 1), g_t_p + gpx * dx + gpy * dy + gpz * dz, mask=mr)
            gox += gpx
            goy += gpy
            goz += gpz
            gdx += t_p * gpx
            gdy += t_p * gpy
            gdz += t_p * gpz
        t_p = t
        feat_p = feat
        h_p = h
        rs_p = rs
        sig_p = sig
        g_rgb_p = g_rgb_n
        g_sig_p = g_sig_n
        g_t_p = g_t_n
    _store_param_grads(pid, pw1_ptr, pb1_ptr, pw2_ptr, pb2_ptr, acc_w1, acc_b1, acc_w2c, acc_w2s, acc_b2c,
                       tl.sum(acc_b2s, axis=0), C, HID, CO, cc, hh, oo)
    if RAY_GRAD:
        _store_xyz(go_ptr, rr, mr, gox, goy, goz)
        _store_xyz(gd_ptr, rr, mr, gdx, gdy, gdz)


@triton.jit
def _store_param_grads(pid, pw1_ptr, pb1_ptr, pw2_ptr, pb2_ptr, acc_w1, acc_b1, acc_w2c, acc_w2s, acc_b2c,
                       acc_b2s, C, HID, CO, cc, hh, oo):
    """One program's decoder-parameter gradients -> row `pid` of the partial buffers."""
    mc = cc < C
    mh = hh < HID
    mo = oo < CO
    pid = pid.to(tl.int64)
    tl.store(pw1_ptr + pid * HID * C + hh[:, None] * C + cc[None, :], acc_w1, mask=mh[:, None] & mc[None, :])
    tl.store(pb1_ptr + pid * HID + hh, acc_b1, mask=mh)
    w2_row = pw2_ptr + pid * (CO + 1) * HID
    tl.store(w2_row + hh, acc_w2s, mask=mh)
    tl.store(w2_row + (oo[:, None] + 1) * HID + hh[None, :], acc_w2c, mask=mo[:, None] & mh[None, :])
    tl.store(pb2_ptr + pid * (CO + 1), acc_b2s)
    tl.store(pb2_ptr + pid * (CO + 1) + 1 + oo, acc_b2c, mask=mo)


@triton.jit
def _query_fwd_kernel(planes_ptr, proj_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, p_ptr, rgb_ptr, sig_ptr,
                      R, M, C, HID, CO, H, W, s_n, s_p, s_h, s_w, scale,
                      BR: tl.constexpr, CP: tl.constexpr, HP: tl.constexpr, OP: tl.constexpr,
                      DOT_PREC: tl.constexpr):
    rr = tl.program_id(0) * BR + tl.arange(0, BR)
    mr = rr < R
    cc = tl.arange(0, CP)
    oo = tl.arange(0, OP)
    px, py, pz = _load_xyz(p_ptr, rr, mr)
    _, _, rs, sig = _decode(planes_ptr, (rr // M).to(tl.int64) * s_n, px, py, pz, proj_ptr, scale, H, W,
                            s_p, s_h, s_w, cc, cc < C, mr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, HID, CO,
                            BR, CP, HP, OP, DOT_PREC)
    tl.store(rgb_ptr + rr[:, None] * CO + oo[None, :], rs * RGB_SCALE - 0.001,
             mask=mr[:, None] & (oo < CO)[None, :])
    tl.store(sig_ptr + rr, sig, mask=mr)


@triton.jit
def _query_bwd_kernel(planes_ptr, proj_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, p_ptr, grgb_ptr, gsig_ptr,
                      gplanes_ptr, pw1_ptr, pb1_ptr, pw2_ptr, pb2_ptr, gp_ptr,
                      R, M, C, HID, CO, H, W, s_n, s_p, s_h, s_w, scale,
                      BR: tl.constexpr, CP: tl.constexpr, HP: tl.constexpr, OP: tl.constexpr,
                      RAY_GRAD: tl.constexpr, DOT_PREC: tl.constexpr):
    pid = tl.program_id(0)
    rr, mr, nbase = _program_rows(pid, R, M, s_n, BR)
    cc, mc, hh, oo = _lanes(C, CP, HP, OP)
    px, py, pz = _load_xyz(p_ptr, rr, mr)
    feat, h, rs, _ = _decode(planes_ptr, nbase, px, py, pz, proj_ptr, scale, H, W, s_p, s_h, s_w, cc, mc, mr,
                             w1_ptr, b1_ptr, w2_ptr, b2_ptr, C, HID, CO, BR, CP, HP, OP, DOT_PREC)
    g_rgb = tl.load(grgb_ptr + rr[:, None] * CO + oo[None, :], mask=mr[:, None] & (oo < CO)[None, :], other=0.0)
    g_sig = tl.load(gsig_ptr + rr, mask=mr, other=0.0)
    dw1, db1, dw2c, dw2s, db2c, gpx, gpy, gpz = _sample_backward(
        planes_ptr, gplanes_ptr, nbase, px, py, pz, proj_ptr, scale, H, W, s_p, s_h, s_w,
        cc, mc, mr, feat, h, rs, g_rgb, g_sig, w1_ptr, w2_ptr, C, HID, CO, BR, CP, HP, OP, RAY_GRAD, DOT_PREC)
    _store_param_grads(pid, pw1_ptr, pb1_ptr, pw2_ptr, pb2_ptr, dw1, db1, dw2c, dw2s, db2c,
                       tl.sum(g_sig, axis=0), C, HID, CO, cc, hh, oo)
    if RAY_GRAD:
        _store_xyz(gp_ptr, rr, mr, gpx, gpy, gpz)

# ----------------------------------------------------------------------------------------
# The package's PyTorch stages with the kernels' contracts: the launch-failure fallback.


def _decode_torch(planes: Tensor, proj: Tensor, w1, b1, w2, b2, points: Tensor, scale: float):
    """planes [N,3,H,W,C] (channels-last), points [N,K,3] -> (rgb [N,K,CO], sigma [N,K,1])."""
    N, K = points.shape[:2]
    features = sample_projected(planes.permute(0, 1, 4, 2, 3), points, proj, scale)      # [N, 3, K, C]
    rgb, sigma = decode_rows(plane_mean_rows(features.transpose(2, 3).contiguous()), (w1, b1, w2, b2))
    return rgb.reshape(N, K, -1), sigma.reshape(N, K, 1)


def _render_torch(planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale):
    """Raw sums (feat, dsum, wsum, tfin) and the weights [N, M, S-1]; depths [N, M, S]."""
    N, M, S = depths.shape
    t = depths.unsqueeze(-1)
    rgb, sigma = _decode_torch(planes, proj, w1, b1, w2, b2, ray_points(origins, dirs, t), scale)
    sums = march_sums(rgb.reshape(N, M, S, -1), sigma.reshape(N, M, S, 1), t)
    return (sums.features, sums.depth_sum.squeeze(-1), sums.weight_sum.squeeze(-1),
            sums.final_transmittance.squeeze(-1), sums.weights.squeeze(-1))


def _torch_grads(fn, inputs, grads, outputs_of_interest):
    """Gradients of sum(g * out) w.r.t. every tensor in `inputs` (zeros where unused)."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_() for t in inputs]
        outs = fn(*leaves)[:outputs_of_interest]
        res = torch.autograd.grad(outs, leaves, grads, allow_unused=True)
    return [torch.zeros_like(t) if r is None else r.contiguous() for r, t in zip(res, inputs)]

# ----------------------------------------------------------------------------------------
# Host side.


def _pad(n: int) -> int:
    return max(16, triton.next_power_of_2(int(n)))  # tl.dot tiles are >= 16 on every side


def _common(planes: Tensor, w1: Tensor, w2: Tensor, scale: float):
    """Arguments shared by every launch: sizes, channels-last strides, and the constexprs."""
    N, P, H, W, C = planes.shape
    if planes.stride(-1) != 1:
        raise ValueError('triplane kernels need channels-last planes [N, 3, H, W, C] with unit C stride')
    HID, CO = w1.shape[0], w2.shape[0] - 1
    s_n, s_p, s_h, s_w, _ = planes.stride()
    # Mirror torch's fp32 matmul setting: TF32 only when allowed; otherwise 3xTF32, within ~1 ulp-level
    # error of fp32 on tensor cores (the 'ieee' FMA dot needs ~2x the registers and spills).
    dot = 'tf32' if torch.backends.cuda.matmul.allow_tf32 else 'tf32x3'
    args = (C, HID, CO, H, W, s_n, s_p, s_h, s_w, float(scale))
    return args, dict(CP=_pad(C), HP=_pad(HID), OP=_pad(CO), DOT_PREC=dot)


def _render_launch(planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale, sums, weights):
    N, M, S = depths.shape
    R = N * M
    args, meta = _common(planes, w1, w2, scale)
    grid = (triton.cdiv(R, BLOCK_R_FWD),)
    dummy = depths  # never touched when the matching constexpr flag is off
    feat, dsum, wsum, tfin = sums if sums is not None else (dummy,) * 4
    _render_fwd_kernel[grid](planes, proj, w1, b1, w2, b2, origins, dirs, depths,
                             feat, dsum, wsum, tfin, weights if weights is not None else dummy,
                             R, M, S, *args, BR=BLOCK_R_FWD, SUMS=sums is not None,
                             WEIGHTS=weights is not None, num_warps=NUM_WARPS, **meta)


def _param_grads_buffers(planes, w1, w2, programs):
    HID, C, CO1 = w1.shape[0], w1.shape[1], w2.shape[0]
    new = planes.new_empty
    return new([programs, HID, C]), new([programs, HID]), new([programs, CO1, HID]), new([programs, CO1])


@torch.library.custom_op('pof3d::triplane_render', mutates_args=())
def _render_op(planes: Tensor, proj: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
               origins: Tensor, dirs: Tensor, depths: Tensor, scale: float) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    N, M, S = depths.shape
    new = depths.new_empty
    sums = (new([N, M, w2.shape[0] - 1]), new([N, M]), new([N, M]), new([N, M]))

    def kernel():
        _render_launch(planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale, sums, None)
        return sums

    def ref():
        return tuple(t.contiguous() for t in _render_torch(planes, proj, w1, b1, w2, b2, origins, dirs,
                                                           depths, scale)[:4])
    return custom_ops.call(KERNEL_NAME, kernel, ref)


@_render_op.register_fake
def _(planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale):
    N, M, S = depths.shape
    new = depths.new_empty
    return new([N, M, w2.shape[0] - 1]), new([N, M]), new([N, M]), new([N, M])


@torch.library.custom_op('pof3d::triplane_render_weights', mutates_args=())
def _weights_op(planes: Tensor, proj: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
                origins: Tensor, dirs: Tensor, depths: Tensor, scale: float) -> Tensor:
    N, M, S = depths.shape
    weights = depths.new_empty([N, M, max(S - 1, 0)])

    def kernel():
        _render_launch(planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale, None, weights)
        return weights

    def ref():
        return _render_torch(planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale)[4].contiguous()
    return custom_ops.call(KERNEL_NAME, kernel, ref)


@_weights_op.register_fake
def _(planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale):
    N, M, S = depths.shape
    return depths.new_empty([N, M, max(S - 1, 0)])


@torch.library.custom_op('pof3d::triplane_render_backward', mutates_args=())
def _render_bwd_op(grads: List[Tensor], outs: List[Tensor], planes: Tensor, proj: Tensor, w1: Tensor,
                   b1: Tensor, w2: Tensor, b2: Tensor, origins: Tensor, dirs: Tensor, depths: Tensor,
                   scale: float, ray_grad: bool) -> List[Tensor]:
    """grads/outs: (feat, dsum, wsum, tfin) -> d/d(planes, w1, b1, w2, b2, origins, dirs, depths);
    the ray terms are zeros unless ray_grad. A launch failure raises: the fallback lives in
    `_render_backward`, the only place where autograd can differentiate the reference."""
    N, M, S = depths.shape
    R = N * M
    args, meta = _common(planes, w1, w2, scale)
    programs = triton.cdiv(R, BLOCK_R_BWD)
    gplanes = torch.zeros_like(planes)
    parts = _param_grads_buffers(planes, w1, w2, programs)
    gray = [torch.zeros_like(origins), torch.zeros_like(dirs), torch.zeros_like(depths)]
    _render_bwd_kernel[(programs,)](planes, proj, w1, b1, w2, b2, origins, dirs, depths, *grads, *outs,
                                    gplanes, *parts, *gray, R, M, S, *args, BR=BLOCK_R_BWD,
                                    RAY_GRAD=ray_grad, num_warps=NUM_WARPS, **meta)
    return [gplanes] + [p.sum(0) for p in parts] + gray


@_render_bwd_op.register_fake
def _(grads, outs, planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale, ray_grad):
    return [torch.empty_like(t) for t in (planes, w1, b1, w2, b2, origins, dirs, depths)]


def _render_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:9], *output)
    ctx.scale = inputs[9]


def _render_backward(ctx, *grads):
    planes, proj, w1, b1, w2, b2, origins, dirs, depths, *outs = ctx.saved_tensors
    need = ctx.needs_input_grad
    grads = [torch.zeros_like(o) if g is None else g.contiguous() for g, o in zip(grads, outs)]

    def kernel():
        return torch.ops.pof3d.triplane_render_backward(grads, outs, planes, proj, w1, b1, w2, b2, origins, dirs,
                                                        depths, ctx.scale, any(need[6:9]))

    def ref():
        fn = lambda p, a, b, c, d, o, r, t: _render_torch(p, proj, a, b, c, d, o, r, t, ctx.scale)  # noqa: E731
        return _torch_grads(fn, [planes, w1, b1, w2, b2, origins, dirs, depths], grads, 4)
    res = custom_ops.call(KERNEL_NAME, kernel, ref)
    res = [r if n else None for r, n in zip(res, need[:1] + need[2:9])]
    return res[0], None, *res[1:], None


_render_op.register_autograd(_render_backward, setup_context=_render_setup)


@torch.library.custom_op('pof3d::triplane_query', mutates_args=())
def _query_op(planes: Tensor, proj: Tensor, w1: Tensor, b1: Tensor, w2: Tensor, b2: Tensor,
              points: Tensor, scale: float) -> Tuple[Tensor, Tensor]:
    N, M, _ = points.shape
    rgb, sigma = points.new_empty([N, M, w2.shape[0] - 1]), points.new_empty([N, M, 1])

    def kernel():
        args, meta = _common(planes, w1, w2, scale)
        _query_fwd_kernel[(triton.cdiv(N * M, BLOCK_R_FWD),)](planes, proj, w1, b1, w2, b2, points, rgb, sigma,
                                                              N * M, M, *args, BR=BLOCK_R_FWD,
                                                              num_warps=NUM_WARPS, **meta)
        return rgb, sigma

    def ref():
        return tuple(t.contiguous() for t in _decode_torch(planes, proj, w1, b1, w2, b2, points, scale))
    return custom_ops.call(KERNEL_NAME, kernel, ref)


@_query_op.register_fake
def _(planes, proj, w1, b1, w2, b2, points, scale):
    N, M, _ = points.shape
    return points.new_empty([N, M, w2.shape[0] - 1]), points.new_empty([N, M, 1])


@torch.library.custom_op('pof3d::triplane_query_backward', mutates_args=())
def _query_bwd_op(g_rgb: Tensor, g_sigma: Tensor, planes: Tensor, proj: Tensor, w1: Tensor, b1: Tensor,
                  w2: Tensor, b2: Tensor, points: Tensor, scale: float, point_grad: bool) -> List[Tensor]:
    """-> d/d(planes, w1, b1, w2, b2, points); the points term is zeros unless point_grad.
    A launch failure raises (the fallback is in `_query_backward`)."""
    N, M, _ = points.shape
    args, meta = _common(planes, w1, w2, scale)
    programs = triton.cdiv(N * M, BLOCK_R_BWD)
    gplanes, gpoints = torch.zeros_like(planes), torch.zeros_like(points)
    parts = _param_grads_buffers(planes, w1, w2, programs)
    _query_bwd_kernel[(programs,)](planes, proj, w1, b1, w2, b2, points, g_rgb, g_sigma, gplanes, *parts,
                                   gpoints, N * M, M, *args, BR=BLOCK_R_BWD, RAY_GRAD=point_grad,
                                   num_warps=NUM_WARPS, **meta)
    return [gplanes] + [p.sum(0) for p in parts] + [gpoints]


@_query_bwd_op.register_fake
def _(g_rgb, g_sigma, planes, proj, w1, b1, w2, b2, points, scale, point_grad):
    return [torch.empty_like(t) for t in (planes, w1, b1, w2, b2, points)]


def _query_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs[:7])
    ctx.scale = inputs[7]


def _query_backward(ctx, g_rgb, g_sigma):
    planes, proj, w1, b1, w2, b2, points = ctx.saved_tensors
    need = ctx.needs_input_grad
    g_rgb = torch.zeros(points.shape[:2] + (w2.shape[0] - 1,), dtype=points.dtype, device=points.device) \
        if g_rgb is None else g_rgb.contiguous()
    g_sigma = torch.zeros_like(points[..., :1]) if g_sigma is None else g_sigma.contiguous()

    def kernel():
        return torch.ops.pof3d.triplane_query_backward(g_rgb, g_sigma, planes, proj, w1, b1, w2, b2, points,
                                                       ctx.scale, need[6])

    def ref():
        fn = lambda p, a, b, c, d, x: _decode_torch(p, proj, a, b, c, d, x, ctx.scale)  # noqa: E731
        return _torch_grads(fn, [planes, w1, b1, w2, b2, points], [g_rgb, g_sigma], 2)
    res = custom_ops.call(KERNEL_NAME, kernel, ref)
    res = [r if n else None for r, n in zip(res, need[:1] + need[2:7])]
    return res[0], None, *res[1:], None


_query_op.register_autograd(_query_backward, setup_context=_query_setup)

# ----------------------------------------------------------------------------------------
# Entry points for the dispatcher (`fused.py`). planes [N, 3, C, H, W] (any layout:
# the channels-last copy is made here, under autograd); proj [3, 3, 2]; depths [N, M, S].


def _cl(planes: Tensor) -> Tensor:
    return planes.permute(0, 1, 3, 4, 2).contiguous()


def _c(*tensors):
    return [t.contiguous() for t in tensors]


def render_sums(planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale):
    """(feat [N,M,CO], dsum [N,M], wsum [N,M], tfin [N,M]); differentiable (first order)."""
    return torch.ops.pof3d.triplane_render(_cl(planes), *_c(proj, w1, b1, w2, b2, origins, dirs, depths),
                                           float(scale))


def render_weights(planes, proj, w1, b1, w2, b2, origins, dirs, depths, scale):
    """Compositing weights [N, M, S-1] (no autograd: the coarse pass steers sampling only)."""
    return torch.ops.pof3d.triplane_render_weights(_cl(planes), *_c(proj, w1, b1, w2, b2, origins, dirs, depths),
                                                   float(scale))


def query(planes, proj, w1, b1, w2, b2, points, scale):
    """(rgb [N, K, CO], sigma [N, K, 1]) at points [N, K, 3]; differentiable (first order)."""
    return torch.ops.pof3d.triplane_query(_cl(planes), *_c(proj, w1, b1, w2, b2, points), float(scale))
