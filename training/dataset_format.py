"""The dataset format that the loader (training/dataset.py) and the converter (dataset_tool.py)
share, so both see the same images, labels and pixels (SPEC §2.1, §2.2).

A dataset is a folder or a .zip. Every file whose extension PIL knows is an image. An
optional `dataset.json` at the root holds `{"labels": [[relpath, [25 numbers]], ...]}` (or
`{"labels": null}`); a label is cam2world (4x4, row-major) ++ normalized intrinsics (3x3,
row-major), SPEC §3.1. Images are made square by `make_square` and resized by `resize_square`.
"""

import json
import math
import os

import numpy as np
import PIL.Image

from dnnlib.util import one_line

LABEL_DIM = 25          # cam2world (16) ++ intrinsics (9), SPEC §3.1
LABELS_FNAME = 'dataset.json'


def is_image_name(fname: str) -> bool:
    """True when PIL recognizes the file extension (SPEC §2.1)."""
    PIL.Image.init()
    return os.path.splitext(fname)[1].lower() in PIL.Image.EXTENSION


def make_square(img: PIL.Image.Image, pad: bool = False, fill: int = 255) -> PIL.Image.Image:
    """Square version of `img` (SPEC §2.2 step 1).

    Center crop to the short side s, offsets ((H - s) // 2, (W - s) // 2); or, with `pad`,
    paste the image centred on an s x s canvas of the long side filled with `fill` (white).
    """
    w, h = img.size
    if w == h:
        return img
    if pad:
        s = max(w, h)
        color = fill if len(img.getbands()) == 1 else (fill,) * len(img.getbands())
        canvas = PIL.Image.new(img.mode, (s, s), color)
        canvas.paste(img, ((s - w) // 2, (s - h) // 2))
        return canvas
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return img.crop((left, top, left + s, top + s))


def resize_square(img: PIL.Image.Image, resolution: int) -> PIL.Image.Image:
    """LANCZOS resize to resolution x resolution (a no-op when it already is)."""
    if img.size == (resolution, resolution):
        return img
    return img.resize((resolution, resolution), PIL.Image.LANCZOS)


def _label_entry(entry, source: str):
    """Validate one `[relpath, [25 numbers]]` pair; returns (relpath, list of floats)."""
    if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
        raise ValueError(f'{source}: each label must be [relpath, [{LABEL_DIM} numbers]], got {str(entry)[:60]}')
    name, values = entry
    if not isinstance(values, (list, tuple)) or len(values) != LABEL_DIM:
        got = f'{len(values)} values' if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"{source}: label for '{name}' must be {LABEL_DIM} numbers, got {got}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{source}: label for '{name}' holds {v!r}, not a finite number")
    return name.replace('\\', '/'), [float(v) for v in values]


def parse_labels(data, fnames, source: str):
    """Labels float64 [len(fnames), 25] from the bytes/str of a dataset.json, or None.

    None when the file says `"labels": null`. Raises ValueError naming `source` when the
    JSON is invalid or malformed, and naming the first image in `fnames` without a label.
    Entries for other files are ignored. float64 keeps the JSON values exact.
    """
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f'{source}: not valid JSON: {one_line(e)}') from e
    if not isinstance(obj, dict) or 'labels' not in obj:
        raise ValueError(f'{source}: expected a JSON object with a "labels" key')
    if obj['labels'] is None:
        return None
    if not isinstance(obj['labels'], list):
        raise ValueError(f'{source}: "labels" must be a list of [relpath, [{LABEL_DIM} numbers]] or null')
    table = dict(_label_entry(entry, source) for entry in obj['labels'])
    missing = [f for f in fnames if f not in table]
    if missing:
        raise ValueError(f"{source}: no label for image '{missing[0]}' ({len(missing)} images lack one)")
    return np.array([table[f] for f in fnames], dtype=np.float64).reshape(len(fnames), LABEL_DIM)
