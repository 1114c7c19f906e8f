"""Compute metrics of a network snapshot (EG3D `calc_metrics.py` CLI; SPEC §10).

    python calc_metrics.py --network run/network-snapshot-000400.pkl --metrics fid50k_full,pose_js
    python calc_metrics.py --network net.pkl --metrics kid2k --data ~/datasets/cars128.zip --detector inception.pt

Results are printed and appended to `metric-{name}.jsonl` beside the snapshot (or in
--run_dir). The dataset defaults to the snapshot's `training_set_kwargs`; --data replaces its
path (keeping create_label_fov / pad_long). The feature detector defaults to the Inception
URL of SPEC §10.1; offline, pass a local TorchScript/pickle file with --detector or
$POF3D_DETECTOR. Errors (missing file, unknown metric) are one line on stderr, exit code 1.
"""

import os
import pickle
import tempfile

import click
import torch

import dnnlib
import legacy
from metrics import metric_main, metric_utils
from torch_utils import safe_pickle
from dnnlib.util import one_line

_KEEP_FROM_TRAINING = ('create_label_fov', 'pad_long')   # image preprocessing that --data keeps


def load_network(network_pkl: str, allow_exec: bool = False) -> dict:
    """The snapshot dict ({'G_ema': ..., 'training_set_kwargs': ...}) through legacy.py's safe
    loader (checkpoint conversion; the file's code runs only with allow_exec)."""
    data = legacy.load_network_file(network_pkl, allow_exec=allow_exec)
    if isinstance(data, torch.nn.Module):
        data = {'G_ema': data}
    if not isinstance(data, dict) or data.get('G_ema') is None:
        raise ValueError(f'{network_pkl}: not a network snapshot (no G_ema)')
    return data


def dataset_options(data, snapshot: dict, G) -> dict:
    """Dataset kwargs for the metrics: the snapshot's training set (or --data) at G's
    resolution, with labels when G takes c (EG3D), without max_size and without xflip unless
    --mirror asks for it (SPEC §10.1: real statistics over the whole set, no xflip)."""
    training = snapshot.get('training_set_kwargs') or {}
    if data is not None:
        if not os.path.exists(data):
            raise FileNotFoundError(f'--data: no such file or directory: {data}')
        kwargs = {k: training[k] for k in _KEEP_FROM_TRAINING if k in training}
        kwargs.update(class_name='training.dataset.ImageFolderDataset', path=data)
    elif training:
        kwargs = {k: v for k, v in training.items() if k not in ('max_size', 'xflip')}
    else:
        raise ValueError('the snapshot does not record its dataset; pass --data')
    kwargs.setdefault('class_name', 'training.dataset.ImageFolderDataset')
    return dict(kwargs, resolution=G.img_resolution, use_labels=G.c_dim != 0)


def subprocess_fn(rank: int, args: dnnlib.EasyDict, temp_dir: str) -> None:
    """One rank: join the process group (several GPUs), compute and report every metric."""
    if args.num_gpus > 1:
        backend = 'nccl' if torch.cuda.is_available() else 'gloo'
        init_file = os.path.abspath(os.path.join(temp_dir, '.torch_distributed_init'))
        torch.distributed.init_process_group(backend=backend, init_method=f'file://{init_file}', rank=rank,
                                             world_size=args.num_gpus)
    device = torch.device('cuda', rank) if torch.cuda.is_available() else torch.device('cpu')
    progress = metric_utils.print_progress if args.verbose and rank == 0 else None
    for metric in args.metrics:
        result = metric_main.calc_metric(metric, G=args.G, dataset_kwargs=args.dataset_kwargs,
                                         num_gpus=args.num_gpus, rank=rank, device=device, progress=progress,
                                         detector_url=args.detector_url, trust_pickle=args.trust_pickle,
                                         cache_dir=args.cache_dir)
        if rank == 0:
            metric_main.report_metric(result, run_dir=args.run_dir, snapshot_pkl=args.network_pkl)


def _parse_metrics(value: str) -> list:
    metrics = [m.strip() for m in value.split(',') if m.strip()]
    unknown = [m for m in metrics if not metric_main.is_valid_metric(m)]
    if unknown or not metrics:
        raise ValueError(f'unknown metric {unknown[0] if unknown else value!r}; '
                         f'valid: {", ".join(metric_main.list_valid_metrics())}')
    return metrics


def _setup(network_pkl, metrics, data, mirror, gpus, detector, run_dir, verbose, trust,
           cache=None) -> dnnlib.EasyDict:
    args = dnnlib.EasyDict(metrics=_parse_metrics(metrics), num_gpus=gpus, verbose=verbose,
                           network_pkl=network_pkl, detector_url=detector, trust_pickle=trust, cache_dir=cache)
    if gpus < 1 or (gpus > 1 and torch.cuda.is_available() and gpus > torch.cuda.device_count()):
        raise ValueError(f'--gpus must be between 1 and the number of CUDA devices, got {gpus}')
    if detector is not None and '://' not in detector and not os.path.isfile(detector):
        raise FileNotFoundError(f'--detector: no such file: {detector}')
    if not trust and metric_utils.detector_needs_trust(metric_utils.resolve_detector_url(detector)):
        raise safe_pickle.UnsafePickleError(f'--detector {metric_utils.resolve_detector_url(detector)}: a pickle, '
                                            f'not a TorchScript archive: {safe_pickle.TRUST_HINT}')
    snapshot = load_network(network_pkl, trust)
    args.G = snapshot['G_ema']
    args.dataset_kwargs = dataset_options(data, snapshot, args.G)
    if mirror is not None:
        args.dataset_kwargs['xflip'] = mirror
    if run_dir is None and os.path.isfile(network_pkl):
        run_dir = os.path.dirname(os.path.abspath(network_pkl))
    args.run_dir = run_dir
    return args


@click.command()
@click.option('--network', 'network_pkl', help='Network pickle filename or URL', metavar='PATH', required=True)
@click.option('--metrics', help='Comma-separated list, or "none"', default='fid50k_full', show_default=True)
@click.option('--data', help='Dataset (zip or folder) to compare against [default: the snapshot\'s]', metavar='PATH')
@click.option('--mirror', help='Also use x-flipped real images [default: the snapshot\'s]', type=bool, metavar='BOOL')
@click.option('--gpus', help='Number of GPUs (processes) to use', type=int, default=1, show_default=True)
@click.option('--detector', help=f'Feature detector file or URL [default: ${metric_utils.DETECTOR_ENV}, '
                                 'else the Inception URL]', metavar='PATH')
@click.option('--run_dir', help='Folder for metric-*.jsonl [default: the snapshot\'s folder]', metavar='DIR')
@click.option('--cache', help='Folder of the cached dataset statistics and trained estimators (a pose-learning '
              'bench\'s cache/ reuses its estimators) [default: ~/.cache/dnnlib]', metavar='DIR')
@click.option('--verbose', help='Print progress', type=bool, default=True, show_default=True, metavar='BOOL')
@click.option('--trust-pickle', 'trust', is_flag=True,
              help='Load pickles with plain pickle: code in --network/--detector RUNS (trusted files only)')
def main(network_pkl, metrics, data, mirror, gpus, detector, run_dir, cache, verbose, trust):
    """Compute metrics of a trained network snapshot."""
    if metrics.strip() == 'none':
        return
    try:
        args = _setup(network_pkl, metrics, data, mirror, gpus, detector, run_dir, verbose, trust, cache)
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as err:
        raise click.ClickException(one_line(err)) from None
    with tempfile.TemporaryDirectory() as temp_dir:
        if args.num_gpus > 1:
            torch.multiprocessing.spawn(fn=subprocess_fn, args=(args, temp_dir), nprocs=args.num_gpus)
            return
        try:
            subprocess_fn(0, args, temp_dir)
        except (OSError, pickle.UnpicklingError) as err:   # offline download; a refused detector pickle
            raise click.ClickException(one_line(err)) from None


if __name__ == '__main__':
    main()
