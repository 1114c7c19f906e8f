"""The metric registry and the EG3D-style entry points (SPEC §10).

    result = calc_metric('fid50k_full', G=G, dataset_kwargs=..., num_gpus=1, rank=0, device=...)
    report_metric(result, run_dir=run_dir, snapshot_pkl=pkl)   # appends run_dir/metric-fid50k_full.jsonl

Every metric is one row of `_METRICS`: name -> (function, default keyword arguments). The
function is called as fn(opts, **defaults, **metric_kwargs) and returns a float or a dict;
a dict's 'value' becomes the metric's own name and its other keys `{name}_{key}`. Protocols
are in each function's module docstring.
"""

import inspect
import json
import os
import time

import dnnlib
from metrics import frechet_inception_distance as fid
from metrics import kernel_inception_distance as kid
from metrics import (depth_variance, metric_utils, normal_error, pose_depth_error, pose_metrics, reprojection_error,
                     view_gain)

_KID = dict(num_subsets=100, max_subset_size=1000)

_METRICS = {
    # FID/KID (SPEC §10.1): max_real None = the whole dataset.
    'fid50k_full':  (fid.compute_fid, dict(max_real=None, num_gen=50000)),
    'kid50k_full':  (kid.compute_kid, dict(max_real=1000000, num_gen=50000, **_KID)),
    'fid2k':        (fid.compute_fid, dict(max_real=2000, num_gen=2000)),        # quick, biased up: not fid50k
    'kid2k':        (kid.compute_kid, dict(max_real=2000, num_gen=2000, **_KID)),
    # Paper metrics (SPEC §10.2, reconstructions).
    'pose_js':      (pose_metrics.compute_pose_js, dict(num_gen=50000)),
    'pose_js_mirror_coin': (pose_metrics.compute_pose_js, dict(num_gen=50000, mirror_coin=True)),
    'pose_err':     (pose_depth_error.compute_pose_err, dict(num_gen=1000)),
    'depth_err':    (pose_depth_error.compute_depth_err, dict(num_gen=1000)),
    'pose_err_gt':  (pose_depth_error.compute_pose_err_gt, dict()),
    'depth_err_gt': (pose_depth_error.compute_depth_err_gt, dict()),
    # Seed methods (SEEDS_SPEC §6.6): normals from depth maps vs the depth estimator's / the GT.
    'normal_err':    (normal_error.compute_normal_err, dict(num_gen=1000)),
    'normal_err_gt': (normal_error.compute_normal_err_gt, dict()),
    # GOF's weighted depth variance x 1e4 (SEEDS_SPEC §3.4 "Metric"; 128 px, 36 uniform samples).
    'depth_var_weighted': (depth_variance.compute_depth_var_weighted, dict(num_gen=1000)),
    # VolumeGAN's 3D consistency (SEEDS_SPEC §6.5-6.6): view 2 yawed 10 deg, warped into view 1 with
    # the rendered depth, masked L1 on [0, 1] (metrics/reprojection_error.py).
    'reproj_err': (reprojection_error.compute_reproj_err, dict(num_gen=1000, yaw_deg=10.0)),
    # Issue 15: do G's images turn with its camera? Slope of the estimated yaw over a +-15 deg sweep
    # of G's own camera (metrics/view_gain.py): 1 = as the data's views, 0 = a turned object.
    'view_gain': (view_gain.compute_view_gain, dict(num_gen=200, num_views=5, sweep_deg=15.0)),
}


def is_valid_metric(metric: str) -> bool:
    return metric in _METRICS


def list_valid_metrics() -> list:
    return list(_METRICS.keys())


def _metric_kwargs(metric: str, metric_kwargs: dict) -> dict:
    """The registry defaults updated by metric_kwargs (ValueError naming unknown keys)."""
    fn, defaults = _METRICS[metric]
    allowed = [p for p in inspect.signature(fn).parameters if p != 'opts']
    unknown = sorted(set(metric_kwargs) - set(allowed))
    if unknown:
        raise ValueError(f'metric {metric!r} takes no option {unknown[0]!r} (options: {", ".join(allowed)})')
    return {**defaults, **metric_kwargs}


def _named_results(metric: str, value) -> dict:
    items = value.items() if isinstance(value, dict) else [('value', value)]
    return {(metric if key == 'value' else f'{metric}_{key}'): float(v) for key, v in items}


def calc_metric(metric: str, metric_kwargs: dict = None, **kwargs) -> dnnlib.EasyDict:
    """Compute `metric`; kwargs are MetricOptions fields, metric_kwargs override the registry's
    arguments of the metric function (e.g. num_gen). Returns EasyDict(results={name: value,
    ...}, metric, total_time, total_time_str, num_gpus); values are NaN on ranks other than 0."""
    if not is_valid_metric(metric):
        raise ValueError(f'unknown metric {metric!r}; valid metrics: {", ".join(list_valid_metrics())}')
    fn_kwargs = _metric_kwargs(metric, dict(metric_kwargs or {}))
    opts = metric_utils.MetricOptions(**kwargs)
    start = time.time()
    results = _named_results(metric, _METRICS[metric][0](opts, **fn_kwargs))
    total_time = time.time() - start
    return dnnlib.EasyDict(results=dnnlib.EasyDict(results), metric=metric, total_time=total_time,
                           total_time_str=dnnlib.util.format_time(total_time), num_gpus=opts.num_gpus)


def report_metric(result_dict: dict, run_dir: str = None, snapshot_pkl: str = None) -> str:
    """Print the result as one JSON line and append it to `run_dir/metric-{metric}.jsonl`
    (when run_dir is a folder). snapshot_pkl is stored relative to run_dir. Returns the line."""
    metric = result_dict['metric']
    if not is_valid_metric(metric):
        raise ValueError(f'unknown metric {metric!r}')
    if run_dir is not None and snapshot_pkl is not None:
        snapshot_pkl = os.path.relpath(snapshot_pkl, run_dir)
    line = json.dumps(dict(result_dict, snapshot_pkl=snapshot_pkl, timestamp=time.time()))
    print(line)
    if run_dir is not None and os.path.isdir(run_dir):
        with open(os.path.join(run_dir, f'metric-{metric}.jsonl'), 'at') as f:
            f.write(line + '\n')
    return line
