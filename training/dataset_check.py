"""Check a dataset's images before training (issue 16 item 3; used by train.py and
`dataset_tool.py --check`).

`check_images(dataset)` reads every image header (format, size, mode: PIL parses only the
first bytes of each file, cheap) and reports what would stop training mid-run: a file PIL cannot identify, a mode
that is not 8 bits per channel, a channel count or (without resizing) a size unlike image 0's.
`full=True` also decodes every image, which catches truncated files too (dataset_tool --check).
A decode that still fails during training raises `training.dataset.BadImageError`, whose
one-line message names the zip member; `bad_image_line` finds it in the text of an exception
re-raised by a DataLoader worker or a spawned process. With train.py's opt-in
`--skip-bad-images` the dataset is a `SkipBadImagesDataset`: it logs each bad image (one line on
stderr) and returns the next readable item instead.
"""

import io
import re
import sys
from typing import Callable, List, Optional

import PIL.Image

from dnnlib.util import one_line
from training.dataset import BadImageError, ImageFolderDataset

_EIGHT_BIT_MODES = ('1', 'L', 'P', 'RGB', 'RGBA', 'CMYK', 'YCbCr', 'LAB', 'HSV', 'LA', 'PA', 'RGBX', 'RGBa', 'La')


def _image_facts(dataset: ImageFolderDataset, fname: str, full: bool):
    """(mode, size, bands) of one image; raises on an unreadable one."""
    with dataset._open_file(fname) as f:   # the dataset's own reader (folder or zip member)
        img = PIL.Image.open(io.BytesIO(f.read()) if full else f)   # lazy: open() parses the header only
        if full:
            img.load()
        return img.mode, img.size, len(img.getbands())


def check_images(dataset: ImageFolderDataset, full: bool = False,
                 progress: Optional[Callable[[int, int], None]] = None) -> List[str]:
    """One-line messages, one per bad image (empty: all good)."""
    bad, first = [], None
    names = dataset.image_fnames
    for i, fname in enumerate(names):
        where = f"{dataset._path}: image '{fname}'"
        try:
            mode, size, bands = _image_facts(dataset, fname, full)
        except Exception as e:    # PIL reports corrupt data with many exception types
            bad.append(f'{where}: {one_line(e)}')
            continue
        first = first or (size, bands)
        if mode not in _EIGHT_BIT_MODES:
            bad.append(f'{where}: mode {mode} is not 8 bits per channel (convert with dataset_tool.py)')
        elif bands != first[1]:
            bad.append(f'{where}: {bands} channels, image 0 has {first[1]} (convert with dataset_tool.py)')
        elif dataset._resolution is None and dataset._create_label_fov is None and size != first[0]:
            bad.append(f'{where}: size {size[0]}x{size[1]}, image 0 is {first[0][0]}x{first[0][1]} '
                       f'(pass --dataset_resolution or convert with dataset_tool.py)')
        if progress is not None:
            progress(i + 1, len(names))
    return bad


def bad_image_line(err: BaseException) -> Optional[str]:
    """The one-line BadImageError message inside `err` (possibly re-raised with a worker's
    traceback as its text), or None."""
    lines = [re.sub(r'^.*BadImageError: ', '', ln).strip() for ln in str(err).splitlines()
             if ": cannot read image '" in ln]
    return lines[-1] if lines else None


class SkipBadImagesDataset(ImageFolderDataset):
    """ImageFolderDataset whose items skip images that fail to decode (opt-in): the next
    readable item (image and its label) stands in, and a line names the bad member."""

    def __getitem__(self, idx):
        for step in range(len(self)):
            try:
                return super().__getitem__((idx + step) % len(self))
            except BadImageError as err:
                print(f'warning: skipping a bad image: {err}', file=sys.stderr)
        raise BadImageError(f'{self._path}: no image of the dataset can be decoded')
