"""Snapshots and resume (SPEC §7; STYLE 12: training state apart from the network export).

Each snapshot writes two files into the run directory, both atomically (temp file + os.replace,
so a killed run never leaves a half-written file under the final name):

    network-snapshot-{kimg:06d}.pkl   EG3D format: dict(G, D, G_ema, augment_pipe=None,
                                      training_set_kwargs); deep-copied CPU modules in eval mode
    training-state-{kimg:06d}.pt      torch.save dict: counters (cur_nimg, cur_tick, batch_idx,
                                      tick_start_nimg), optimizer states, per-rank RNG states
                                      (torch, CUDA, numpy, python) and loss state (its own RNGs),
                                      the data position (batches consumed), the config

The pickle is written first: a training state always has its pickle (G, D and G_ema weights
live only there). When the tick length is not a whole number of kimg (smoke tests), the tag
gets the remainder in images, `{kimg:06d}.{nimg % 1000:03d}`, so that snapshots stay distinct.

Resume (`plan_run`): `--resume auto` continues the newest run directory in outdir whose name
has the same description (`{cfg}-{data}-gpus{N}-batch{B}-gamma{g}[-desc]`) and whose
training_options.json matches the current options (except those in RESUME_MAY_CHANGE), from
its latest training state; otherwise it starts a new run. So "resume = run the same command
again". `--resume RUN_DIR` or `--resume .../training-state-*.pt` continues that run (an error
if the options differ); `--resume network.pkl` (path or URL) starts a new run from the weights
only, as EG3D does (counters from 0).

Every file resume reads is loaded safely (torch_utils/safe_pickle.py; plain pickle only with
--trust-pickle) before any folder is made: a refused file is a one-line error. A truncated or
corrupt newest training state is skipped for the previous complete one; an unreadable
training_options.json is replaced by the config stored in the state; the `.tmp-*` files of a
snapshot killed mid-write are removed from the run being continued; `--resume auto` reuses an
orphan run folder (killed before its first tick, untouched for a minute) instead of taking a
new id.
"""

import copy
import dataclasses
import glob
import json
import os
import pickle
import random
import re
import time
from typing import List, Optional

import numpy as np
import torch

import dnnlib
from torch_utils import safe_pickle
from training.config import TrainConfig

NETWORK_FMT = 'network-snapshot-{tag}.pkl'
STATE_FMT = 'training-state-{tag}.pt'
_STATE_RE = re.compile(r'^training-state-(\d+)(?:\.(\d{3}))?\.pt$')
OPTIONS_FNAME = 'training_options.json'
RESUME_MAY_CHANGE = ('kimg', 'tick', 'snap', 'metrics', 'image_grid', 'workers', 'nobench', 'skip_bad_images')


def snapshot_tag(cur_nimg: int, fine: bool = False) -> str:
    """'{kimg:06d}' (EG3D); fine: '{kimg:06d}.{rest:03d}' for sub-kimg ticks."""
    tag = f'{cur_nimg // 1000:06d}'
    return f'{tag}.{cur_nimg % 1000:03d}' if fine else tag


def atomic_save(path: str, write) -> None:
    """write(file) into a temp file next to `path`, then rename it onto `path` (fsync'd)."""
    with dnnlib.util.atomic_output(path) as tmp, open(tmp, 'wb') as f:
        write(f)


# ---------------------------------------------------------------------------------------------
# Network pickles (EG3D format).

def snapshot_modules(modules: dict) -> dict:
    """{name: module} -> deep copies on the CPU, eval mode, requires_grad False."""
    return {name: None if m is None else copy.deepcopy(m).eval().requires_grad_(False).cpu()
            for name, m in modules.items()}


def save_network_pickle(path: str, G, D, G_ema, training_set_kwargs: dict) -> dict:
    data = dict(training_set_kwargs=dict(training_set_kwargs))
    data.update(snapshot_modules(dict(G=G, D=D, G_ema=G_ema, augment_pipe=None)))
    atomic_save(path, lambda f: pickle.dump(data, f))
    return data


def load_network_pickle(path_or_url: str, allow_exec: bool = False) -> dict:
    """Through legacy.py's safe loader (nothing in the file runs unless allow_exec); networks
    come back as our classes. ValueError with one line naming the file."""
    import legacy   # top-level module; imports training lazily
    return legacy.load_network_file(path_or_url, allow_exec=allow_exec)


def network_mismatch(data: dict, nets: dict) -> Optional[str]:
    """One line naming the first tensor whose shape differs between a pickle's networks and
    `nets` (built from the current options), with the constructor arguments that differ; None
    when every shared tensor fits (copy_params_and_buffers skips missing names)."""
    from torch_utils import misc
    for name, module in nets.items():
        src = data.get(name)
        if not isinstance(src, torch.nn.Module):
            continue
        theirs = dict(misc.named_params_and_buffers(src))
        for key, tensor in misc.named_params_and_buffers(module):
            if key in theirs and theirs[key].shape != tensor.shape:
                a, b = getattr(src, 'init_kwargs', {}) or {}, getattr(module, 'init_kwargs', {}) or {}
                diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
                return (f"{name}.{key} has shape {list(theirs[key].shape)} in the pickle but {list(tensor.shape)} "
                        f"with these options" + (f" ({name} arguments that differ: {', '.join(diff)})" if diff else ''))
    return None


# ---------------------------------------------------------------------------------------------
# Training state.

def rng_state() -> dict:
    """This process's global RNG states (torch CPU, CUDA if in use, numpy, python)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    # numpy's state as plain values, so that the file loads with torch.load(weights_only=True)
    numpy = dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos), has_gauss=int(has_gauss),
                 cached_gaussian=float(cached))
    state = dict(torch=torch.get_rng_state(), numpy=numpy, python=random.getstate())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state['torch'])
    np_state = state['numpy']
    if isinstance(np_state, dict):
        np_state = (np_state['kind'], np_state['keys'].numpy().astype(np.uint32), np_state['pos'],
                    np_state['has_gauss'], np_state['cached_gaussian'])
    np.random.set_state(np_state)   # a tuple with a numpy array in states written before the dict form
    random.setstate(state['python'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def save_training_state(path: str, state: dict) -> None:
    atomic_save(path, lambda f: torch.save(state, f))


def load_training_state(path: str, allow_exec: bool = False) -> dict:
    """Tensors, numbers, strings and containers only (safe_pickle.load_torch): a planted file
    cannot run code. safe_pickle.UnsafePickleError / pickle.UnpicklingError, one line."""
    state = safe_pickle.load_torch(path, allow_exec)
    if not isinstance(state, dict) or not {'counters', 'optimizers', 'ranks'} <= set(state):
        raise pickle.UnpicklingError(f'{path}: not a training state (no counters, optimizers, ranks)')
    return state


def _state_nimg(fname: str) -> Optional[int]:
    m = _STATE_RE.match(fname)
    return None if m is None else int(m.group(1)) * 1000 + int(m.group(2) or 0)


def _states_newest_first(run_dir: str) -> List[str]:
    """training-state-*.pt in run_dir whose network pickle exists, newest first."""
    found = []
    for path in glob.glob(os.path.join(glob.escape(run_dir), 'training-state-*.pt')):
        nimg = _state_nimg(os.path.basename(path))
        if nimg is not None and os.path.isfile(network_pickle_for(path)):
            found.append((nimg, os.path.getmtime(path), path))
    return [path for _, _, path in sorted(found, reverse=True)]


def find_latest(run_dir: str) -> Optional[str]:
    """The newest training-state-*.pt in run_dir whose network pickle exists, or None."""
    states = _states_newest_first(run_dir)
    return states[0] if states else None


def latest_loadable(run_dir: str, allow_exec: bool = False) -> Optional[str]:
    """The newest training state that loads completely: a truncated or corrupt one (disk full, a
    copy cut short) is skipped with a note, so resume falls back to the previous one. ValueError
    for a file that is refused (it would run code): that is an attack, not a crash to skip."""
    for path in _states_newest_first(run_dir):
        try:
            load_training_state(path, allow_exec)
            return path
        except safe_pickle.UnsafePickleError as err:
            raise ValueError(str(err)) from None
        except pickle.UnpicklingError as err:
            print(f'Skipping an unreadable training state: {err}')
    return None


def clean_debris(run_dir: str) -> List[str]:
    """Remove the temp files of snapshots a killed run left in run_dir (dnnlib.util.atomic_output
    names them `.tmp-{stem}-*`); call only for a run directory this process is about to own."""
    removed = []
    for stem in ('training-state-', 'network-snapshot-', 'training_options', 'stats'):
        for path in glob.glob(os.path.join(glob.escape(run_dir), f'.tmp-{stem}*')):
            if os.path.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed


def network_pickle_for(state_path: str) -> str:
    """The network pickle written with a training state."""
    name = os.path.basename(state_path)
    return os.path.join(os.path.dirname(state_path),
                        NETWORK_FMT.format(tag=name[len('training-state-'):-len('.pt')]))


# ---------------------------------------------------------------------------------------------
# Run directories and resume plans.

class PlanError(ValueError):
    """An unusable --resume or --outdir found by rank 0 under torchrun; every rank raises it."""


@dataclasses.dataclass(frozen=True)
class RunPlan:
    """Where to write and what to start from."""
    run_dir: str
    state: Optional[str] = None      # continue exactly from this training state
    network: Optional[str] = None    # initialize G, D, G_ema from this pickle (EG3D resume)
    trust_pickle: bool = False       # --trust-pickle: plain pickle for these files (code in them runs)


def new_run_dir(outdir: str, desc: str) -> str:
    """`{outdir}/{id:05d}-{desc}`, id = 1 + the largest numeric prefix in outdir (0 when empty)."""
    os.makedirs(outdir, exist_ok=True)
    while True:
        ids = [int(m.group()) for m in (re.match(r'^\d+', x) for x in os.listdir(outdir)
                                        if os.path.isdir(os.path.join(outdir, x))) if m]
        run_dir = os.path.join(outdir, f'{max(ids, default=-1) + 1:05d}-{desc}')
        try:
            os.makedirs(run_dir)
            return run_dir
        except FileExistsError:   # another launch took this id: try the next one
            continue


def _saved_config(run_dir: str) -> Optional[dict]:
    try:
        with open(os.path.join(run_dir, OPTIONS_FNAME)) as f:
            return json.load(f)['config']
    except (OSError, ValueError, KeyError, TypeError):
        return None


def options_mismatch(run_dir: str, config_dict: dict, state: Optional[str] = None,
                     allow_exec: bool = False) -> List[str]:
    """Config fields that differ between run_dir's training_options.json and config_dict
    (ignoring RESUME_MAY_CHANGE). When that file is unreadable (a copy cut short), the config
    stored in the training state `state` is used; ['training_options.json'] if neither is."""
    saved = _saved_config(run_dir)
    if saved is None and state is not None:
        try:
            saved = load_training_state(state, allow_exec).get('config')
        except pickle.UnpicklingError:
            saved = None
    if not isinstance(saved, dict):
        return [OPTIONS_FNAME]
    current = json.loads(json.dumps(config_dict))
    return sorted(_diff(_with_new_fields(json.loads(json.dumps(saved))), current, ''))


def _with_new_fields(saved: dict) -> dict:
    """A saved config with the fields added to TrainConfig since it was written, at their
    defaults (what those runs trained with), so that adding an option does not make
    `--resume auto` start a new run. A config that no longer parses is returned as it is."""
    try:
        return json.loads(json.dumps(TrainConfig.from_dict(saved).to_dict()))
    except (TypeError, ValueError):
        return saved


def _diff(a, b, prefix: str) -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key not in RESUME_MAY_CHANGE:
                out += _diff(a.get(key), b.get(key), f'{prefix}{key}.')
        return out
    return [] if a == b else [prefix.rstrip('.')]


_ORPHAN_KEEP = (OPTIONS_FNAME, 'log.txt')


def _orphan_stale(name: str, path: str) -> bool:
    """Files a run writes before its first tick; in an orphan they are stale and are removed."""
    return name == 'reals.png' or name.startswith('events.out.tfevents.') or (name == 'stats.jsonl'
                                                                               and os.path.getsize(path) == 0)


def _is_orphan(run_dir: str, config_dict: dict, quiet_sec: float = 60) -> bool:
    """A run folder killed before its first tick (options, log, and maybe an empty stats.jsonl,
    reals.png, TensorBoard events; no snapshot), of these options or with unreadable ones,
    untouched for quiet_sec (so not a run starting right now beside us): `--resume auto` reuses
    it instead of taking a new id."""
    if not os.path.isdir(run_dir):
        return False
    names = [n for n in os.listdir(run_dir) if not n.startswith('.tmp-')]
    if not all(n in _ORPHAN_KEEP or _orphan_stale(n, os.path.join(run_dir, n)) for n in names):
        return False
    newest = max([os.path.getmtime(os.path.join(run_dir, n)) for n in names] + [os.path.getmtime(run_dir)])
    return time.time() - newest > quiet_sec and (_saved_config(run_dir) is None
                                                 or not options_mismatch(run_dir, config_dict))


def _reuse_orphan(run_dir: str, allow_exec: bool) -> RunPlan:
    for name in os.listdir(run_dir):
        if name not in _ORPHAN_KEEP and _orphan_stale(name, os.path.join(run_dir, name)):
            os.remove(os.path.join(run_dir, name))   # rewritten by the fresh start
    return RunPlan(run_dir, trust_pickle=allow_exec)


def _resume_auto(outdir: str, desc: str, config_dict: dict, allow_exec: bool) -> Optional[RunPlan]:
    pattern = re.compile(r'^\d+-' + re.escape(desc) + '$')
    dirs = sorted(d for d in os.listdir(outdir) if pattern.match(d)) if os.path.isdir(outdir) else []
    if dirs and _is_orphan(os.path.join(outdir, dirs[-1]), config_dict):
        return _reuse_orphan(os.path.join(outdir, dirs[-1]), allow_exec)
    for name in reversed(dirs):
        run_dir = os.path.join(outdir, name)
        readable = _saved_config(run_dir) is not None
        if find_latest(run_dir) is None or (readable and options_mismatch(run_dir, config_dict)):
            continue   # cheap checks first: states are loaded only for a run of the same options
        try:
            state = latest_loadable(run_dir, allow_exec)
        except ValueError as err:
            raise ValueError(f'--resume auto: {err}') from None
        if state is not None and not options_mismatch(run_dir, config_dict, state, allow_exec):
            return RunPlan(run_dir, state=state, trust_pickle=allow_exec)
    return None


def _resume_state(resume: str, config_dict: dict, allow_exec: bool) -> RunPlan:
    if os.path.isdir(resume):
        state = latest_loadable(resume, allow_exec)
    else:
        try:
            load_training_state(resume, allow_exec)
        except pickle.UnpicklingError as err:
            raise ValueError(f'--resume {err}') from None
        state = resume
    if state is None:
        raise ValueError(f'--resume {resume}: no readable training-state-*.pt with its network pickle in '
                         f'that directory')
    run_dir = os.path.dirname(os.path.abspath(state))
    diff = options_mismatch(run_dir, config_dict, state, allow_exec)
    if diff:
        raise ValueError(f'--resume {resume}: the run was trained with different options: {", ".join(diff)}')
    return RunPlan(run_dir, state=state, trust_pickle=allow_exec)


def plan_run(outdir: str, desc: str, config_dict: dict, resume: Optional[str], allow_exec: bool = False,
             check_network=None) -> RunPlan:
    """Decide the run directory and starting point (module docstring). Every file resume would
    read is loaded (safely, unless allow_exec) before a folder is created or cleaned;
    check_network(data) -> None or a message vets a network pickle's contents. ValueError with a
    one-line message for an unusable --resume."""
    plan = None
    if resume == 'auto':
        plan = _resume_auto(outdir, desc, config_dict, allow_exec)
    elif resume is not None and (os.path.isdir(resume) or (resume.endswith('.pt') and os.path.isfile(resume))):
        plan = _resume_state(resume, config_dict, allow_exec)
    elif resume is not None:
        if not (dnnlib.util.is_url(resume) or os.path.isfile(resume)):
            raise ValueError(f'--resume {resume}: not a run directory, training-state .pt, network .pkl, URL or "auto"')
        try:
            data = load_network_pickle(resume, allow_exec)    # refuse a bad file before making a folder
        except ValueError as err:
            raise ValueError(f'--resume {err}') from None
        problem = check_network(data) if check_network is not None else None
        if problem:
            raise ValueError(f'--resume {resume}: {problem}')
        return RunPlan(new_run_dir(outdir, desc), network=resume, trust_pickle=allow_exec)
    if plan is None:
        return RunPlan(new_run_dir(outdir, desc), trust_pickle=allow_exec)
    for path in clean_debris(plan.run_dir):
        print(f'Removed the temp file of an interrupted snapshot: {path}')
    return plan
