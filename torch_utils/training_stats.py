"""Running statistics reported from anywhere in the training code and collected per tick
(the StyleGAN2/EG3D `training_stats` API).

    training_stats.report('Loss/G/loss', loss)    # any tensor/number; returns it unchanged
    stats = training_stats.Collector(regex='.*')
    stats.update()                                # all-reduce over ranks, reset the window
    stats.mean('Loss/G/loss'), stats.std(...), stats.num(...), stats.as_dict()

Each name keeps three moments (count, sum, sum of squares) in float64 per device; `update`
adds them up over all ranks with one all-reduce, so every rank sees the same numbers.
"""

import re
from typing import Dict, List, Optional

import numpy as np
import torch

import dnnlib

_num_moments = 3               # [count, sum, sum of squares]
_reduce_dtype = torch.float32  # dtype for the all-reduce (float64 is not supported by NCCL everywhere)
_counter_dtype = torch.float64  # dtype of the accumulators

_rank: int = 0
_sync_device: Optional[torch.device] = None
_sync_called: bool = False
_counters: Dict[str, Dict[torch.device, torch.Tensor]] = {}  # name -> device -> moments
_cumulative: Dict[str, torch.Tensor] = {}                    # name -> moments, on CPU


def init_multiprocessing(rank: int, sync_device: Optional[torch.device]) -> None:
    """Call once per process before the first `Collector.update` in a multi-process run.

    sync_device: the device whose tensors the all-reduce uses (the rank's CUDA device with
    NCCL, CPU with gloo), or None for single-process runs.
    """
    global _rank, _sync_device
    if _sync_called:
        raise RuntimeError('training_stats.init_multiprocessing must be called before any update')
    _rank = rank
    _sync_device = sync_device


def report(name: str, value) -> torch.Tensor:
    """Add the elements of `value` to statistic `name`; returns `value` (for chaining)."""
    if name not in _counters:
        _counters[name] = dict()
    elems = torch.as_tensor(value)
    if elems.numel() == 0:
        return value
    elems = elems.detach().flatten().to(_reduce_dtype)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    assert moments.ndim == 1 and moments.shape[0] == _num_moments
    moments = moments.to(_counter_dtype)
    device = moments.device
    if device not in _counters[name]:
        _counters[name][device] = torch.zeros_like(moments)
    _counters[name][device].add_(moments)
    return value


def report0(name: str, value) -> torch.Tensor:
    """Like `report`, but only rank 0 contributes (others still register the name, so that
    every rank takes part in the same all-reduce)."""
    report(name, value if _rank == 0 else [])
    return value


def local_mean(name: str) -> Optional[float]:
    """Mean of what THIS process reported to `name` since its last sync, without syncing (no
    collective call: safe between ticks on one rank); None when nothing was reported."""
    moments = sum((c.detach().cpu() for c in _counters.get(name, {}).values()),
                  torch.zeros([_num_moments], dtype=_counter_dtype))
    return float(moments[1] / moments[0]) if moments[0] > 0 else None


def _sync(names: List[str]) -> List[torch.Tensor]:
    """Gather the moments of `names` from every device and rank; add to the cumulative sums."""
    global _sync_called
    if len(names) == 0:
        return []
    _sync_called = True
    deltas = []
    device = _sync_device if _sync_device is not None else torch.device('cpu')
    for name in names:
        delta = torch.zeros([_num_moments], dtype=_counter_dtype, device=device)
        for counter in _counters[name].values():
            delta.add_(counter.to(device))
            counter.copy_(torch.zeros_like(counter))
        deltas.append(delta)
    deltas = torch.stack(deltas)
    if _sync_device is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        deltas = deltas.to(_reduce_dtype)
        torch.distributed.all_reduce(deltas)
        deltas = deltas.to(_counter_dtype)
    deltas = deltas.cpu()
    for idx, name in enumerate(names):
        if name not in _cumulative:
            _cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        _cumulative[name].add_(deltas[idx])
    return [_cumulative[name] for name in names]


class Collector:
    """Reads the statistics whose names match `regex`, over the window between two `update`s.

    keep_previous: names that received no reports in the last window keep their previous
    numbers (True) or disappear from `names()` (False).
    """

    def __init__(self, regex: str = '.*', keep_previous: bool = True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._cumulative: Dict[str, torch.Tensor] = dict()
        self._moments: Dict[str, torch.Tensor] = dict()
        self.update()
        self._moments.clear()

    def names(self) -> List[str]:
        return [name for name in _counters if self._regex.fullmatch(name)]

    def update(self) -> None:
        """Close the window: the statistics read afterwards cover reports since the last update."""
        if not self._keep_previous:
            self._moments.clear()
        names = self.names()
        for name, cumulative in zip(names, _sync(names)):
            if name not in self._cumulative:
                self._cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
            delta = cumulative - self._cumulative[name]
            self._cumulative[name].copy_(cumulative)
            if float(delta[0]) != 0:
                self._moments[name] = delta

    def _get_delta(self, name: str) -> torch.Tensor:
        if not self._regex.fullmatch(name):
            raise KeyError(f'{name!r} does not match the collector regex')
        if name not in self._moments:
            self._moments[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        return self._moments[name]

    def num(self, name: str) -> int:
        return int(self._get_delta(name)[0])

    def mean(self, name: str) -> float:
        delta = self._get_delta(name)
        if int(delta[0]) == 0:
            return float('nan')
        return float(delta[1] / delta[0])

    def std(self, name: str) -> float:
        delta = self._get_delta(name)
        if int(delta[0]) == 0 or not np.isfinite(float(delta[1])):
            return float('nan')
        if int(delta[0]) == 1:
            return float(0)
        mean = float(delta[1] / delta[0])
        raw_var = float(delta[2] / delta[0])
        return float(np.sqrt(max(raw_var - np.square(mean), 0)))

    def as_dict(self) -> dnnlib.EasyDict:
        """{name: EasyDict(num, mean, std)} for every collected name (stats.jsonl rows)."""
        stats = dnnlib.EasyDict()
        for name in self.names():
            stats[name] = dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
        return stats

    def __getitem__(self, name: str) -> float:
        return self.mean(name)
