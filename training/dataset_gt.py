"""The ground-truth sidecar of a synthetic dataset (make_synthetic.py): `<stem>_gt.npz`
beside the dataset, read by the metrics and plots that compare learned poses and depth with it.
"""

import os
import zipfile

import numpy as np

from dnnlib.util import one_line


def ground_truth_path(path: str) -> str:
    """Where the synthetic-data sidecar of a dataset lives: `<dir>/<stem>_gt.npz`, or, for
    make_synthetic.py's `NAME_labeled.zip` / `NAME_unlabeled.zip`, the shared `NAME_gt.npz`.
    Returns the first that exists (the plain `<stem>_gt.npz` name when neither does)."""
    path = os.path.normpath(str(path))
    folder, stem = os.path.dirname(path), os.path.splitext(os.path.basename(path))[0]
    candidates = [stem] + [stem[:-len(suffix)] for suffix in ('_labeled', '_unlabeled') if stem.endswith(suffix)]
    for name in candidates:
        if os.path.isfile(os.path.join(folder, name + '_gt.npz')):
            return os.path.join(folder, name + '_gt.npz')
    return os.path.join(folder, stem + '_gt.npz')


def load_ground_truth(path):
    """Ground truth of a synthetic dataset as {key: ndarray}, or None when there is none.

    `path` is the dataset (zip or folder; the sidecar `<stem>_gt.npz` beside it is read) or
    the .npz itself. Any keys are accepted (e.g. 'pose' [N, 2], 'cam2world' [N, 4, 4],
    'depth' [N, H, W]), arrays in raw image order. An unreadable sidecar is a ValueError.
    """
    npz = str(path) if str(path).endswith('.npz') else ground_truth_path(path)
    if not os.path.isfile(npz):
        return None
    try:
        with np.load(npz, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f'{npz}: cannot read ground-truth sidecar: {one_line(e)}') from e
