"""Train a PoF3D (or EG3D-style) tri-plane GAN. A thin command-line layer over training/config.py.

Examples:

    # PoF3D on FFHQ as in the paper (the shipped recipe: bash ffhq.sh)
    python train.py --outdir runs --cfg ffhq --data FFHQ_512.zip --gpus 8 --batch 32 --gamma 1 \\
        --dis_cam_weight 2 --pose_gd_weight 1 --plane_axes legacy --resume auto

    # small CPU run on make_synthetic.py data (one thread per process is much faster on a busy box)
    OMP_NUM_THREADS=1 python train.py --outdir runs --cfg synthetic --data data/car32_unlabeled.zip --kimg 20

    # ShadeGAN at CPU scale on lit heads (make_synthetic.py --family head --resolution 32 --light mvn
    # --pose gaussian:h_std=0.3,v_std=0.15); add --light_source fixed for the wrong-fixed-light ablation
    OMP_NUM_THREADS=1 python train.py --outdir runs --cfg shadegan --data data/head32_unlabeled.zip

Options left unset take the value of the --cfg preset (training/config.py: PRESETS), else the
EG3D/PoF3D default. Resume is "run the same command again" with `--resume auto`: it continues
the newest run directory of the same description and options from its latest training state
(see training/checkpoint.py). `--resume PATH.pkl` starts a new run from a network pickle.
`--kimg` and `--tick` may be fractions (smoke tests); snapshot names then carry the images past
the kimg (`network-snapshot-000000.016.pkl`). Hidden `--override FIELD=JSON` (repeatable) sets
any config field by name, e.g. `--override plane_resolution=16` (tests, experiments).
"""

import errno
import json
import os

import click
import torch

import dnnlib
# The option table and the usage checks have their own modules; the names train.py had stay importable
# from it (train.OPTIONS, train.check_config, ...): the unused ones are re-exports.
from train_checks import (VOLUME_FIELDS, check_config, check_dataset, check_feature_volume,  # noqa: F401
                          check_geometry, check_metrics, check_representation, check_shading)
from train_options import NOT_CONFIG, OPTIONS, POS_INT, _add_options, _pair  # noqa: F401
from training import config as config_lib


def make_config(opts: dict):
    """Config from the CLI options (None = not given)."""
    fields = {k: v for k, v in opts.items() if k not in NOT_CONFIG}
    fields.update(clamp_h=_pair(opts, 'clamp_h'), clamp_v=_pair(opts, 'clamp_v'))
    try:   # an --override is set as given, null too (ema_rampup=null: no ramp-up)
        return config_lib.replace(config_lib.build_config(**fields), **opts['override'])
    except (KeyError, TypeError, ValueError) as err:
        raise click.UsageError(f'bad --override: {err}') from None


def build_nets(c) -> dict:
    """G and D as the training loop builds them (for checking a --resume pickle's shapes)."""
    with torch.random.fork_rng(devices=[]):   # random init only: leave the global RNG as it was
        return {name: dnnlib.util.construct_class_by_name(**kwargs) for name, kwargs in (('G', c.G_kwargs()),
                                                                                         ('D', c.D_kwargs()))}


def dry_run(c) -> None:
    from training.training_loop import describe
    print(json.dumps(describe(c), indent=2))
    for name, kwargs in (('G', c.G_kwargs()), ('D', c.D_kwargs())):
        net = dnnlib.util.construct_class_by_name(**kwargs)
        print(f'{name} parameters: {sum(p.numel() for p in net.parameters()):,}')
    print(f'Run directory name: <id>-{c.run_desc}\nDry run; exiting.')


@click.command(context_settings=dict(max_content_width=120))
@_add_options
def main(**opts):
    """Train a PoF3D tri-plane GAN (SPEC §8). Unset options take the --cfg preset's value."""
    c = make_config(opts)
    check_config(c)
    check_dataset(c)
    check_metrics(c, opts['trust_pickle'])
    if opts['cache_dir']:
        dnnlib.util.set_cache_dir(opts['cache_dir'])
        os.environ['DNNLIB_CACHE_DIR'] = opts['cache_dir']   # for spawned processes
    if opts['dry_run']:
        dry_run(c)
        return
    from training import checkpoint, distributed, training_loop
    if torch.cuda.is_available() and c.gpus > torch.cuda.device_count() and not distributed.under_torchrun():
        raise click.UsageError(f'--gpus {c.gpus}: only {torch.cuda.device_count()} CUDA devices are visible')
    plan = None
    if not distributed.under_torchrun():   # under torchrun, rank 0 plans inside the process group
        try:
            plan = checkpoint.plan_run(opts['outdir'], c.run_desc, c.to_dict(), opts['resume'], opts['trust_pickle'],
                                       check_network=lambda data: checkpoint.network_mismatch(data, build_nets(c)))
        except ValueError as err:
            raise click.UsageError(str(err)) from None
        except OSError as err:   # outdir under a regular file, read-only, ...
            raise click.UsageError(f'--outdir {opts["outdir"]}: cannot create the run folder '
                                   f'({err.strerror or err}: {err.filename or opts["outdir"]})') from None
    try:
        distributed.launch(training_loop.main, c.gpus, c, opts['outdir'], opts['resume'], plan, opts['trust_pickle'],
                           opts['verbose'])
    except Exception as err:     # an image that fails to decode, a full disk: one line naming the file
        raise click.ClickException(run_error_line(err)) from None


def run_error_line(err: Exception) -> str:
    """One line for an error that stops a run; re-raises errors that are bugs (tracebacks)."""
    from training.checkpoint import PlanError
    from training.dataset_check import bad_image_line
    if isinstance(err, PlanError):
        return str(err)
    line = bad_image_line(err)
    if line is not None:
        return f'{line} (resume with --resume auto after fixing the dataset)'
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES):
        return (f'{err.filename or "a run file"}: cannot write ({err.strerror}); the last complete snapshot is '
                f'kept: resume with --resume auto')
    raise err


if __name__ == '__main__':
    main()
