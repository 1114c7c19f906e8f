"""Shapes from a tri-plane generator: density grid, .mrc volume, marching-cubes .ply (SPEC §9.2 step 10).

The grid, as the reference's gen_samples_pose builds it:
- N^3 points in a cube of side box_warp centred at the origin: voxel = box_warp/(N-1),
  origin = -box_warp/2, coordinate = index*voxel + origin (world units, y-up world).
- Linear index i, z-index = i mod N (fastest). The reference computes the y and x indices with
  *float* division, y = (i/N) mod N and x = ((i/N)/N) mod N, in float32: y gets +iz/N and x gets
  +iy/N + iz/N^2 (sub-voxel offsets; float32 rounding too once i > 2^24). SPEC §9.2 keeps this
  quirk for parity (`legacy_index=True`, the default); `legacy_index=False` uses exact integer
  indices.
- sigma = the decoder's raw density (before softplus), queried in chunks of 1e6 points with a
  generator reseeded to 0 before each chunk (the reference reseeds the global RNG).
- The volume has axes (x, y, z) and is flipped along axis 0; a border of
  pad = int(30*N/256) voxels on all six faces is set to -1000 (closes the surface).
- .mrc: that float32 volume as is (MRC mode 2). .ply: the volume transposed to (z, y, x), then
  marching cubes at `level` (10 in the reference) in voxel units (origin 0, voxel size 1), as
  EG3D's `convert_sdf_samples_to_ply`. Marching cubes is PyMCubes' (`mcubes`), not skimage's
  Lewiner variant: the surface is the same, the triangulation may differ.

The field is every representation's raw output (`G.sample_mixed`): the density before its
activation for the tri-plane and pi-GAN's FiLM-SIREN, the occupancy logit for GOF's alpha rule
'occupancy'. `surface_level(G)` is the level that means "surface" for that field.

All writers are atomic: the file appears complete under its name or not at all.
"""


import math

import numpy as np
import torch

import dnnlib

PAD_PER_256 = 30          # border voxels per 256 of resolution (SPEC §12.8)
PAD_VALUE = -1000.0       # density written into the border
DEFAULT_LEVEL = 10.0      # iso level of the reference's .ply export
CHUNK = 1_000_000         # points per decoder query


atomic_output = dnnlib.util.atomic_output  # temp name beside the file, rename on success


def surface_level(G) -> float:
    """The default iso level of G's raw field: logit(tau) for the occupancy alpha rule (GOF's
    surface, sigmoid(raw) = tau, SEEDS_SPEC §3.2; tau = G's surface_level, 0.5 -> 0), else the
    reference's density level DEFAULT_LEVEL (tri-plane; pi-GAN's relu density alike)."""
    rk = G.rendering_kwargs
    if rk.get('alpha_rule') != 'occupancy':
        return DEFAULT_LEVEL
    tau = float(rk.get('surface_level', 0.5))
    return math.log(tau / (1 - tau))


def grid_coordinates(start: int, stop: int, N: int, box_warp: float, legacy_index: bool = True,
                     device='cpu') -> torch.Tensor:
    """World coordinates [stop - start, 3] (x, y, z) of linear grid indices [start, stop)."""
    i = torch.arange(start, stop, dtype=torch.int64, device=device)
    iz = (i % N).to(torch.float32)
    if legacy_index:   # the reference's float division, in float32 (see the module docstring)
        fi = i.to(torch.float32)
        iy = (fi / N) % N
        ix = ((fi / N) / N) % N
    else:
        iy = ((i // N) % N).to(torch.float32)
        ix = (i // (N * N)).to(torch.float32)
    voxel_size = box_warp / (N - 1)
    return torch.stack([ix, iy, iz], dim=-1) * voxel_size + (-box_warp / 2)


def pad_border(volume: np.ndarray, pad: int, value: float = PAD_VALUE) -> np.ndarray:
    """Set `pad` voxels on each of the six faces of volume [N, N, N] to `value` (in place)."""
    if pad > 0:
        volume[:pad] = value
        volume[-pad:] = value
        volume[:, :pad] = value
        volume[:, -pad:] = value
        volume[:, :, :pad] = value
        volume[:, :, -pad:] = value
    return volume


@torch.no_grad()
def extract_density(G, ws: torch.Tensor, resolution: int, box_warp=None, chunk: int = CHUNK,
                    legacy_index: bool = True, noise_mode: str = 'const', progress=None) -> np.ndarray:
    """Raw density volume float32 [N, N, N] (axes x, y, z; flipped along x; border padded).

    G: a TriPlaneGenerator; ws [1, num_ws, w_dim] (truncated as for the image); box_warp None =
    G.rendering_kwargs['box_warp']. progress: optional callable(points_done) per chunk.
    """
    if ws.shape[0] != 1:
        raise ValueError(f'extract_density takes one latent (ws [1, num_ws, w_dim]), got {list(ws.shape)}')
    if resolution < 2:
        raise ValueError(f'shape resolution must be >= 2, got {resolution}')
    N = int(resolution)
    box_warp = float(G.rendering_kwargs['box_warp'] if box_warp is None else box_warp)
    sigma = torch.empty(N ** 3, dtype=torch.float32)
    for start in range(0, N ** 3, chunk):
        stop = min(start + chunk, N ** 3)
        points = grid_coordinates(start, stop, N, box_warp, legacy_index, ws.device)[None]
        dirs = torch.zeros_like(points)
        dirs[..., 2] = -1
        generator = torch.Generator(device=ws.device).manual_seed(0)
        out = G.sample_mixed(points, dirs, ws, noise_mode=noise_mode, generator=generator)
        sigma[start:stop] = out['sigma'][0, :, 0].to(torch.float32).cpu()
        if progress is not None:
            progress(stop - start)
    volume = np.flip(sigma.reshape(N, N, N).numpy(), 0).copy()
    return pad_border(volume, int(PAD_PER_256 * N / 256))


def write_mrc(path: str, volume: np.ndarray) -> None:
    """The float32 volume as an MRC file (mode 2), atomically."""
    import mrcfile
    with atomic_output(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(volume, dtype=np.float32))


def mesh_from_volume(volume: np.ndarray, level: float = DEFAULT_LEVEL):
    """Marching cubes of volume.transpose(2, 1, 0) at `level` -> (vertices float32 [V, 3] in voxel
    units, faces int32 [F, 3]). F = 0 when the level is never crossed."""
    import mcubes
    field = np.ascontiguousarray(volume.transpose(2, 1, 0), dtype=np.float32)
    vertices, faces = mcubes.marching_cubes(field, float(level))
    return vertices.astype(np.float32).reshape(-1, 3), faces.astype(np.int32).reshape(-1, 3)


def write_ply(path: str, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY: float x, y, z per vertex; `list uchar int vertex_indices` per face."""
    vertices = np.asarray(vertices, dtype='<f4').reshape(-1, 3)
    faces = np.asarray(faces).reshape(-1, 3)
    header = (f'ply\nformat binary_little_endian 1.0\nelement vertex {len(vertices)}\n'
              'property float x\nproperty float y\nproperty float z\n'
              f'element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n')
    face_records = np.empty(len(faces), dtype=[('n', 'u1'), ('idx', '<i4', (3,))])
    face_records['n'] = 3
    face_records['idx'] = faces
    with atomic_output(path) as tmp, open(tmp, 'wb') as f:
        f.write(header.encode('ascii'))
        f.write(vertices.tobytes())
        f.write(face_records.tobytes())


def read_ply(path: str):
    """Read back a PLY written by `write_ply` -> (vertices [V, 3] float32, faces [F, 3] int32)."""
    with open(path, 'rb') as f:
        lines = []
        while not lines or lines[-1] != 'end_header':
            lines.append(f.readline().decode('ascii').strip())
        counts = {ln.split()[1]: int(ln.split()[2]) for ln in lines if ln.startswith('element')}
        if 'format binary_little_endian 1.0' not in lines:
            raise ValueError(f'{path}: only binary little-endian PLY files written by write_ply are supported')
        vertices = np.frombuffer(f.read(12 * counts['vertex']), dtype='<f4').reshape(-1, 3)
        records = np.frombuffer(f.read(13 * counts['face']), dtype=[('n', 'u1'), ('idx', '<i4', (3,))])
    return vertices.copy(), records['idx'].astype(np.int32)


def export_shape(G, ws: torch.Tensor, stem: str, resolution: int, formats=('.mrc',), level: float = DEFAULT_LEVEL,
                 legacy_index: bool = True, noise_mode: str = 'const') -> dict:
    """Extract the density of ws and write `stem + fmt` for fmt in formats ('.mrc', '.ply').
    Returns {'volume_range': (min, max) inside the border, 'faces': F or None}."""
    volume = extract_density(G, ws, resolution, legacy_index=legacy_index, noise_mode=noise_mode)
    pad = int(PAD_PER_256 * resolution / 256)
    inner = volume[pad:resolution - pad, pad:resolution - pad, pad:resolution - pad] if pad else volume
    info = {'volume_range': (float(inner.min()), float(inner.max())) if inner.size else None, 'faces': None}
    if '.mrc' in formats:
        write_mrc(stem + '.mrc', volume)
    if '.ply' in formats:
        vertices, faces = mesh_from_volume(volume, level)
        write_ply(stem + '.ply', vertices, faces)
        info['faces'] = len(faces)
    return info
