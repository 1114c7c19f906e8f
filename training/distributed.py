"""Process launch for training: one process per GPU (SPEC §7 "Multi-GPU").

    launch(fn, num_gpus, *args)   # calls fn(ctx, *args) in every process; ctx: DistContext

Three ways in:
- `num_gpus == 1` (and no torchrun): fn runs in this process; no process group.
- `num_gpus > 1`: spawns num_gpus processes with torch.multiprocessing; they meet through a
  `file://` rendezvous in a temporary folder (no ports to pick).
- under `torchrun` (RANK, WORLD_SIZE, LOCAL_RANK and MASTER_ADDR set): this process is one
  rank already; fn runs in-process after an `env://` rendezvous. WORLD_SIZE must equal num_gpus.
Backend: NCCL when CUDA is available, else gloo (CPU processes, e.g. for tests).

Gradients are averaged by the training loop itself (EG3D's flat all-reduce, no DDP wrapper).
"""

import collections
import dataclasses
import itertools
import os
import sys
import tempfile
from typing import Any, Callable, List

import torch

from torch_utils import misc, training_stats

TORCHRUN_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR')


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Who this process is: rank in [0, world_size) and the device it trains on."""
    rank: int
    world_size: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def all_reduce_mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In place: sum over ranks, divided by world_size (EG3D's gradient averaging)."""
        if self.distributed:
            torch.distributed.all_reduce(tensor)
            tensor /= self.world_size
        return tensor

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def all_gather_object(self, obj: Any) -> List[Any]:
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()


def under_torchrun() -> bool:
    return all(k in os.environ for k in TORCHRUN_VARS)


def backend() -> str:
    return 'nccl' if torch.cuda.is_available() else 'gloo'


def _device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device('cuda', local_rank)
    return torch.device('cpu')


def _run(fn: Callable, rank: int, local_rank: int, world_size: int, init_method: str, args: tuple,
         teardown: bool = True) -> Any:
    """Join the process group (world_size > 1), set up training_stats, run fn(ctx, *args).
    teardown=False keeps the group after a successful run (the caller exits right away)."""
    device = _device(local_rank)
    if world_size > 1:
        torch.distributed.init_process_group(backend(), init_method=init_method, rank=rank, world_size=world_size)
        if device.type == 'cpu':   # share the cores instead of oversubscribing them
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
        training_stats.init_multiprocessing(rank, device)   # a single process keeps the defaults
    ok = False
    try:
        result = fn(DistContext(rank, world_size, device), *args)
        if world_size > 1:  # all ranks done before teardown: gloo aborts if a peer leaves mid-teardown
            torch.distributed.barrier()
        ok = True
        return result
    finally:
        if world_size > 1 and torch.distributed.is_initialized() and (teardown or not ok):
            torch.distributed.destroy_process_group()


def _spawned(rank: int, world_size: int, init_file: str, fn: Callable, args: tuple) -> None:
    init_method = f'file:///{init_file.replace(os.sep, "/")}' if os.name == 'nt' else f'file://{init_file}'
    _run(fn, rank, rank, world_size, init_method, args, teardown=False)
    # Success: every rank has passed the final barrier. Exit without the process-group teardown:
    # gloo's destructor can abort (SIGABRT, "terminate called without an active exception") when
    # a peer has already exited, which spawn reports as a failed run. Nothing is left to write.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def launch(fn: Callable, num_gpus: int, *args) -> None:
    """Run fn(ctx, *args) on num_gpus processes (see the module docstring). fn and args must be
    picklable when processes are spawned (a top-level function, plain data)."""
    if num_gpus < 1:
        raise ValueError(f'num_gpus must be >= 1, got {num_gpus}')
    if torch.cuda.is_available() and num_gpus > torch.cuda.device_count() and not under_torchrun():
        raise ValueError(f'--gpus {num_gpus} but only {torch.cuda.device_count()} CUDA devices are visible')
    if under_torchrun():
        world_size = int(os.environ['WORLD_SIZE'])
        if world_size != num_gpus:
            raise ValueError(f'torchrun started {world_size} processes but --gpus is {num_gpus}')
        _run(fn, int(os.environ['RANK']), int(os.environ['LOCAL_RANK']), world_size, 'env://', args)
    elif num_gpus == 1:
        _run(fn, 0, 0, 1, '', args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            init_file = os.path.abspath(os.path.join(tmp, '.torch_distributed_init'))
            torch.multiprocessing.spawn(_spawned, args=(num_gpus, init_file, fn, args), nprocs=num_gpus, join=True)


class RankSlicedSampler(torch.utils.data.Sampler):
    """Rank r's contiguous share of every global batch of one shared InfiniteSampler stream,
    starting after `start_batch` global batches (the resume position)."""

    def __init__(self, dataset, rank, num_replicas, batch, seed, start_batch=0):
        super().__init__()
        self.dataset, self.rank, self.num_replicas = dataset, rank, num_replicas
        self.batch, self.seed, self.start_batch = batch, seed, start_batch

    def __iter__(self):
        stream = iter(misc.InfiniteSampler(self.dataset, rank=0, num_replicas=1, shuffle=True, seed=self.seed))
        collections.deque(itertools.islice(stream, self.start_batch * self.batch), maxlen=0)  # skip
        per = self.batch // self.num_replicas
        while True:
            items = list(itertools.islice(stream, self.batch))
            yield from items[self.rank * per:(self.rank + 1) * per]
