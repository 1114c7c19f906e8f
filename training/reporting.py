"""What a run writes besides snapshots (SPEC §7 "Logs"), rank 0 only.

    log.txt                 tee of stdout/stderr (dnnlib.util.Logger, appended on resume)
    training_options.json   the config and the constructor kwargs of dataset, G, D and loss
    stats.jsonl             one row per tick: {name: {num, mean, std}, ..., 'timestamp': t}
    TensorBoard events      every stat mean at step = images seen (kimg * 1000; EG3D's int(kimg)
                            put every tick of a sub-kimg run on step 0), Metrics/*, histograms of
                            G_ema's poses for 256 fixed z (Pose/G_h, Pose/G_v) and of D's
                            predicted poses on reals (Pose/D_real_h, Pose/D_real_v), image grids
    reals.png               a grid of training images (at start)
    fakes{tag}.png, fakes{tag}_raw.png, fakes{tag}_depth.png   G_ema on a fixed z grid at every
                            snapshot (depth negated and min-max normalized); also in TensorBoard

On resume from cur_nimg N, stats.jsonl keeps only the rows up to N and TensorBoard purges the
steps after N written by the interrupted attempt, so a resumed run reads as one curve.

Grid size (SPEC §7): gw = clip(7680 // W, 7, 32), gh = clip(4320 // H, 4, 32) with W, H the raw
image shape, unless the config gives `image_grid`.
"""

import json
import os
import time
from typing import Optional

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F

import dnnlib
from torch_utils import training_stats

NUM_POSE_PROBES = 256


def save_image_grid(img: torch.Tensor, path: Optional[str], drange, grid_size) -> np.ndarray:
    """img [N, C, H, W] (C = 1 or 3) in drange -> uint8 grid [gh*H, gw*W, C]; saved as PNG if path."""
    lo, hi = drange
    x = ((img.detach().float().cpu().numpy() - lo) * (255 / max(hi - lo, 1e-8))).round().clip(0, 255)
    gw, gh = grid_size
    n, c, h, w = x.shape
    x = x.astype(np.uint8).reshape(gh, gw, c, h, w).transpose(0, 3, 1, 4, 2).reshape(gh * h, gw * w, c)
    if path is not None:
        PIL.Image.fromarray(x[:, :, 0] if c == 1 else x, 'L' if c == 1 else 'RGB').save(path)
    return x


def grid_size(training_set, image_grid=None):
    if image_grid is not None:
        return tuple(image_grid)
    _, h, w = training_set.image_shape
    return int(np.clip(7680 // w, 7, 32)), int(np.clip(4320 // h, 4, 32))


class Reporter:
    """Files and TensorBoard of one run (construct on rank 0 only)."""

    def __init__(self, run_dir: str, training_set, image_grid, z_dim: int, device, resume_nimg=None):
        from torch.utils.tensorboard import SummaryWriter  # tensorboard is a dependency of training only
        self.run_dir, self.device = run_dir, device
        if resume_nimg is not None:
            truncate_stats(os.path.join(run_dir, 'stats.jsonl'), resume_nimg)
        self.stats_jsonl = open(os.path.join(run_dir, 'stats.jsonl'), 'at')
        self.writer = SummaryWriter(run_dir, purge_step=None if resume_nimg is None else resume_nimg + 1)
        self.grid_size = grid_size(training_set, image_grid)
        n = self.grid_size[0] * self.grid_size[1]
        idx = np.random.RandomState(0).choice(len(training_set), n, replace=len(training_set) < n)
        items = [training_set[int(i)] for i in idx]
        self.grid_img = torch.from_numpy(np.stack([x[0] for x in items]))                 # uint8 [n, C, H, W]
        self.grid_c = torch.from_numpy(np.stack([x[1] for x in items])).to(device)       # [n, 25]
        gen = torch.Generator().manual_seed(0)
        self.grid_z = torch.randn([n, z_dim], generator=gen).to(device)
        self.probe_z = torch.randn([NUM_POSE_PROBES, z_dim], generator=gen).to(device)
        self.probe_c = self.grid_c[torch.arange(NUM_POSE_PROBES) % n]

    def save_reals(self) -> None:
        grid = save_image_grid(self.grid_img.float(), os.path.join(self.run_dir, 'reals.png'), (0, 255),
                               self.grid_size)
        self.writer.add_image('Images/reals', grid, 0, dataformats='HWC')

    def write_stats(self, stats: dict, kimg: float, timestamp: float) -> None:
        """One stats.jsonl row and a TensorBoard scalar per stat (step = images seen)."""
        self.stats_jsonl.write(json.dumps(dict(stats, timestamp=timestamp)) + '\n')
        self.stats_jsonl.flush()
        step = tb_step(kimg)
        for name, value in stats.items():
            self.writer.add_scalar(name, value['mean'], global_step=step, walltime=timestamp)
        self.writer.flush()

    def write_metrics(self, results: dict, kimg: float) -> None:
        for name, value in results.items():
            self.writer.add_scalar(f'Metrics/{name}', value, global_step=tb_step(kimg))
        self.writer.flush()

    @torch.no_grad()
    def pose_histograms(self, G_ema, D, real_img: torch.Tensor, kimg: float) -> None:
        """Histograms of G_ema's (h, v) for the fixed probe z and of D's pose on the reals."""
        step = tb_step(kimg)
        gen = torch.Generator(self.device).manual_seed(1)
        pose = G_ema.pose(self.probe_z, self.probe_c, generator=gen).pose
        if pose is not None:
            self.writer.add_histogram('Pose/G_h', pose[:, 0].cpu(), step)
            self.writer.add_histogram('Pose/G_v', pose[:, 1].cpu(), step)
        if getattr(D, 'pose_head', None) is not None:
            raw = F.interpolate(real_img, size=G_ema.neural_rendering_resolution, mode='bilinear',
                                align_corners=False, antialias=False)
            pred = D.pose_only({'image': real_img, 'image_raw': raw})
            self.writer.add_histogram('Pose/D_real_h', pred[:, 0].cpu(), step)
            self.writer.add_histogram('Pose/D_real_v', pred[:, 1].cpu(), step)
        self.writer.flush()

    @torch.no_grad()
    def save_fakes(self, G_ema, tag: str, kimg: float, batch: int) -> None:
        """fakes{tag}.png, _raw.png, _depth.png from G_ema (noise 'const', seeded renderer)."""
        gen = torch.Generator(self.device).manual_seed(0)
        outs = [G_ema(z, c, noise_mode='const', generator=gen)
                for z, c in zip(self.grid_z.split(batch), self.grid_c.split(batch))]
        images = {key: torch.cat([o[key] for o in outs]) for key in ('image', 'image_raw', 'image_depth')}
        depth = -images['image_depth']
        for key, suffix, img, drange in (('fakes', '', images['image'], (-1, 1)),
                                         ('fakes_raw', '_raw', images['image_raw'], (-1, 1)),
                                         ('fakes_depth', '_depth', depth, (float(depth.min()), float(depth.max())))):
            grid = save_image_grid(img, os.path.join(self.run_dir, f'fakes{tag}{suffix}.png'), drange,
                                   self.grid_size)
            self.writer.add_image(f'Images/{key}', grid, tb_step(kimg), dataformats='HWC')
        self.writer.flush()

    def close(self) -> None:
        self.stats_jsonl.close()
        self.writer.close()


class Progress:
    """Between ticks (a tick can take minutes on a CPU), a line at most every `interval` seconds:
    kimg done of --kimg, images per second since the start of this process, ETA, and the mean G
    and D losses this rank has reported since the last tick."""

    def __init__(self, total_kimg: float, start_nimg: int, interval: float = 10.0, clock=time.time):
        self.total_nimg, self.start_nimg, self.interval, self.clock = total_kimg * 1000, start_nimg, interval, clock
        self.start = self.last = clock()

    def mark(self) -> None:
        """A tick line was just printed: wait a full interval for the next progress line."""
        self.last = self.clock()

    def line(self, cur_nimg: int, losses: Optional[dict] = None) -> Optional[str]:
        """losses: {'G': float or None, 'D': ...} appended when given."""
        now = self.clock()
        if now - self.last < self.interval:
            return None
        self.last = now
        rate = (cur_nimg - self.start_nimg) / max(now - self.start, 1e-9)
        eta = dnnlib.util.format_time((self.total_nimg - cur_nimg) / rate) if rate > 0 else '?'
        text = f'progress: kimg {cur_nimg / 1e3:.3f} of {self.total_nimg / 1e3:g}  {rate:.1f} img/s  ETA {eta}'
        shown = [f'loss {k} {v:.3f}' for k, v in (losses or {}).items() if v is not None]
        return '  '.join([text] + shown)


def status_line(fields: dict) -> str:
    """EG3D's progress line from the tick's Progress/Timing/Resources values."""
    parts = [f"tick {fields['Progress/tick']:<5d}", f"kimg {fields['Progress/kimg']:<8.3f}",
             f"time {fields['time_str']:<12s}", f"sec/tick {fields['Timing/sec_per_tick']:<7.1f}",
             f"sec/kimg {fields['Timing/sec_per_kimg']:<7.2f}", f"maintenance {fields['Timing/maintenance_sec']:<6.1f}",
             f"cpumem {fields['Resources/cpu_mem_gb']:<6.2f}", f"gpumem {fields['Resources/peak_gpu_mem_gb']:<6.2f}",
             f"reserved {fields['Resources/peak_gpu_mem_reserved_gb']:<6.2f}", f"augment {0:.3f}"]
    return ' '.join(parts)


def resource_stats(device) -> dict:
    """CPU RSS and CUDA peak memory in GB (reset the CUDA peak for the next tick)."""
    try:
        with open('/proc/self/statm') as f:
            cpu = int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 30
    except (OSError, ValueError, AttributeError):
        cpu = 0.0
    gpu = reserved = 0.0
    if device.type == 'cuda':
        gpu = torch.cuda.max_memory_allocated(device) / 2 ** 30
        reserved = torch.cuda.max_memory_reserved(device) / 2 ** 30
        torch.cuda.reset_peak_memory_stats()
    return {'Resources/cpu_mem_gb': cpu, 'Resources/peak_gpu_mem_gb': gpu,
            'Resources/peak_gpu_mem_reserved_gb': reserved}


def report_tick(tick: int, cur_nimg: int, start_time: float, tick_start_time: float, tick_start_nimg: int,
                maintenance_sec: float, device) -> dict:
    """Report the Progress/Timing/Resources stats (report0: rank 0's values) and return them."""
    now = time.time()
    tick_sec = now - tick_start_time
    fields = {'Progress/tick': tick, 'Progress/kimg': cur_nimg / 1e3, 'Timing/total_sec': now - start_time,
              'Timing/sec_per_tick': tick_sec,
              'Timing/sec_per_kimg': tick_sec / max(cur_nimg - tick_start_nimg, 1) * 1e3,
              'Timing/maintenance_sec': maintenance_sec, 'Timing/total_hours': (now - start_time) / 3600,
              'Timing/total_days': (now - start_time) / 86400, **resource_stats(device)}
    for name, value in fields.items():
        training_stats.report0(name, value)
    return fields


def write_options(run_dir: str, options: dict) -> None:
    """training_options.json, atomically: resume compares against it, so it is never half-written."""
    dnnlib.util.write_atomic(os.path.join(run_dir, 'training_options.json'),
                             json.dumps(options, indent=2).encode('utf-8'))


def tb_step(kimg: float) -> int:
    """TensorBoard step of a tick: images seen (int(kimg) put every sub-kimg tick on step 0)."""
    return int(round(kimg * 1000))


def truncate_stats(path: str, resume_nimg: int) -> int:
    """Keep the stats.jsonl rows up to `resume_nimg` images (what the resumed state saw), drop
    later rows from the interrupted attempt and a half-written last line; atomic. Returns the
    number of rows dropped."""
    if not os.path.isfile(path):
        return 0
    with open(path, 'rt') as f:
        lines = f.read().splitlines()
    keep = []
    for line in lines:
        try:
            row = json.loads(line)
            seen = tb_step(row['Progress/kimg']['mean'])
        except (ValueError, KeyError, TypeError):
            continue
        if seen <= resume_nimg:
            keep.append(line)
    if len(keep) != len(lines):
        dnnlib.util.write_atomic(path, ''.join(x + '\n' for x in keep).encode('utf-8'))
    return len(lines) - len(keep)
