"""Image datasets with the EG3D API, plus the PoF3D loading options (SPEC §2).

A dataset is a folder or a .zip of images with an optional `dataset.json` of labels, in the
format of training/dataset_format.py (SPEC §2.1, §3.1); images are ordered by their relative
path ('/'-separated, so a folder and its zip agree).

Items are `(image, label)`: image uint8 [C, H, W], label float32 [label_dim]. Like EG3D, the
dataset does not convert colour modes: grayscale gives C = 1, RGBA gives C = 4, and images
that are not 8 bits per channel are refused. `dataset_tool.py` writes RGB zips; use it to
normalize a folder of mixed images.

PoF3D changes (SPEC §2.2): `resolution` is the requested size, and an image that is not
resolution x resolution is LANCZOS-resized at load; `create_label_fov` first makes each image
square (center crop, or a white canvas with `pad_long`) and synthesizes labels when there
are none. Deliberate difference: the reference decides "no resize" when the requested size
equals the height *or* the width of image 0, which lets non-square images through; here the
check is exact (H == W == resolution) and made per image, so every item has one shape.
"""

import io
import os
import zipfile
from typing import Optional

import numpy as np
import PIL.Image
import torch

import dnnlib
from dnnlib.util import one_line
from training.cameras import FOV_to_intrinsics, corner_aligned_intrinsics
from training.dataset_format import LABEL_DIM, LABELS_FNAME, is_image_name, make_square, parse_labels, resize_square
from training.dataset_gt import load_ground_truth


class BadImageError(IOError):
    """An image of the dataset cannot be read; the message (one line) names the file and member."""


LABEL_GRIDS = ('eg3d', 'corner')   # focal rules of create_label_fov (fov_label)


def fov_label(fov_degrees: float, grid: str = 'eg3d', resolution: Optional[int] = None) -> np.ndarray:
    """Synthetic label float32 [25]: 16 zeros, then K from EG3D's FOV formula (SPEC §2.2).

    f = 1 / (tan(fov * 3.14159 / 360) * 1.414) with the literal constants; 18.837 -> 4.2634.
    grid 'corner': the pi-GAN family's corner-aligned ray grid at `resolution` instead,
    f = (R - 1) / (2R tan(fov/2)) (training/cameras.py corner_aligned_focal, SEEDS_SPEC §6.0).
    """
    if grid not in LABEL_GRIDS:
        raise ValueError(f'create_label_grid {grid!r}: choose from {LABEL_GRIDS}')
    if grid == 'corner' and resolution is None:
        raise ValueError("create_label_grid 'corner' needs the training resolution")
    K = FOV_to_intrinsics(float(fov_degrees)) if grid == 'eg3d' else corner_aligned_intrinsics(fov_degrees, resolution)
    K = K.numpy().reshape(-1)
    return np.concatenate([np.zeros(16, dtype=np.float32), K.astype(np.float32)])


# ----------------------------------------------------------------------------


class Dataset(torch.utils.data.Dataset):
    """EG3D dataset base: index bookkeeping (max_size, xflip) and labels.

    Subclasses implement `_load_raw_image(raw_idx) -> uint8 [C, H, W]` and
    `_load_raw_labels() -> [N, label_dim] float32, [N] int64 (class ids) or None`.
    """

    def __init__(self, name, raw_shape, max_size=None, use_labels=False, xflip=False, random_seed=0):
        self._name = name
        self._raw_shape = list(raw_shape)           # [N, C, H, W] of the raw images
        self._use_labels = use_labels
        self._raw_labels = None
        self._label_shape = None
        self._raw_idx = np.arange(self._raw_shape[0], dtype=np.int64)
        if max_size is not None:
            if max_size < 1:
                raise ValueError(f'max_size must be positive, got {max_size}')
            if self._raw_idx.size > max_size:   # random subset, then back in file order
                np.random.RandomState(random_seed % (1 << 31)).shuffle(self._raw_idx)
                self._raw_idx = np.sort(self._raw_idx[:max_size])
        self._xflip = np.zeros(self._raw_idx.size, dtype=np.uint8)
        if xflip:   # second half: the same images, mirrored at load; labels untouched (SPEC §2.2)
            self._raw_idx = np.tile(self._raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, np.ones_like(self._xflip)])

    def _get_raw_labels(self):
        if self._raw_labels is None:
            labels = self._load_raw_labels() if self._use_labels else None
            if labels is None:
                labels = np.zeros([self._raw_shape[0], 0], dtype=np.float32)
            labels = np.asarray(labels)
            if labels.shape[0] != self._raw_shape[0] or labels.dtype not in (np.float32, np.int64):
                raise ValueError(f'{self._name}: labels must be float32 [N, D] or int64 [N] for N images')
            self._raw_labels = labels
        return self._raw_labels

    def close(self):
        pass

    def _load_raw_image(self, raw_idx):
        raise NotImplementedError

    def _load_raw_labels(self):
        raise NotImplementedError

    def __getstate__(self):
        return dict(self.__dict__)      # labels stay: small, and workers need not re-parse them

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: modules may already be gone
            pass

    def __len__(self):
        return self._raw_idx.size

    def __getitem__(self, idx):
        image = self._load_raw_image(self._raw_idx[idx])
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3):
            raise TypeError(f'{self._name}: _load_raw_image must give uint8 [C, H, W]')
        if self._xflip[idx]:
            image = image[:, :, ::-1]
        return image.copy(), self.get_label(idx)

    def get_label(self, idx):
        label = self._get_raw_labels()[self._raw_idx[idx]]
        if label.dtype == np.int64:
            onehot = np.zeros(self.label_shape, dtype=np.float32)
            onehot[label] = 1
            label = onehot
        return label.copy()

    def get_details(self, idx):
        return dnnlib.EasyDict(raw_idx=int(self._raw_idx[idx]), xflip=int(self._xflip[idx]) != 0,
                               raw_label=self._get_raw_labels()[self._raw_idx[idx]].copy())

    @property
    def name(self):
        return self._name

    @property
    def image_shape(self):
        return list(self._raw_shape[1:])

    @property
    def num_channels(self):
        return self.image_shape[0]

    @property
    def resolution(self):
        c, h, w = self.image_shape
        if h != w:
            raise ValueError(f'{self._name}: images are {w}x{h}, not square; pass a resolution to resize them')
        return h

    @property
    def label_shape(self):
        if self._label_shape is None:
            raw_labels = self._get_raw_labels()
            if raw_labels.dtype == np.int64:
                self._label_shape = [int(np.max(raw_labels)) + 1]
            else:
                self._label_shape = list(raw_labels.shape[1:])
        return list(self._label_shape)

    @property
    def label_dim(self):
        return self.label_shape[0]

    @property
    def has_labels(self):
        return any(x != 0 for x in self.label_shape)

    @property
    def has_onehot_labels(self):
        return self._get_raw_labels().dtype == np.int64

# ----------------------------------------------------------------------------


def _open_zip(path):
    """Open a zip for reading (one place, so tests can count the opens)."""
    return zipfile.ZipFile(path)


class ImageFolderDataset(Dataset):
    """Images from a folder or a .zip (SPEC §2), with PoF3D's resize / square / FOV options.

    path:             folder or .zip.
    resolution:       requested H = W; images of another size are LANCZOS-resized at load.
                      `resolution` returns it; `image_shape` keeps the raw shape of image 0.
    use_labels:       read dataset.json (else label_dim = 0).
    create_label_fov: FOV in degrees: make every image square first (center crop; white
                      canvas of the long side with `pad_long`), and when there are no labels
                      use 16 zeros ++ K(fov) for every image (SPEC §2.2).
    create_label_grid: 'eg3d' (EG3D's FOV formula) or 'corner' (pi-GAN's corner-aligned grid at
                      `resolution`; `fov_label`).
    The open zip is per process: it is not pickled and is reopened lazily, once, in each
    DataLoader worker (also after a fork, which would otherwise share the parent's handle).
    """

    def __init__(self, path, resolution=None, use_labels=False, max_size=None, xflip=False, random_seed=0,
                 create_label_fov=None, pad_long=False, create_label_grid='eg3d', **super_kwargs):
        self._path = os.fspath(path)
        self._zipfile = None
        self._zip_pid = None
        if resolution is not None and (not isinstance(resolution, (int, np.integer)) or resolution < 1):
            raise ValueError(f'resolution must be a positive integer, got {resolution!r}')
        self._resolution = None if resolution is None else int(resolution)
        self._create_label_fov = None if create_label_fov is None else float(create_label_fov)
        self._pad_long = bool(pad_long)
        self._create_label_grid = str(create_label_grid)
        if self._create_label_fov is not None:
            fov_label(self._create_label_fov, self._create_label_grid, self._resolution)   # ValueError early
        self._all_fnames = self._list_files()
        self._image_fnames = sorted(f for f in self._all_fnames if is_image_name(f))
        if not self._image_fnames:
            raise IOError(f'{self._path}: no image files found')
        name = os.path.splitext(os.path.basename(os.path.normpath(self._path)))[0]
        raw_shape = [len(self._image_fnames)] + list(self._load_raw_image(0, resize=False).shape)
        super().__init__(name=name, raw_shape=raw_shape, max_size=max_size, use_labels=use_labels,
                         xflip=xflip, random_seed=random_seed, **super_kwargs)
        if use_labels:
            self._get_raw_labels()      # fail now, with the file named, not inside a worker

    def _list_files(self):
        if os.path.isdir(self._path):
            self._type = 'dir'
            found = set()
            for root, _dirs, files in os.walk(self._path):
                rel = os.path.relpath(root, self._path)
                for fname in files:
                    found.add(os.path.normpath(os.path.join(rel, fname)).replace(os.sep, '/'))
            return found
        if not os.path.exists(self._path):
            raise IOError(f'{self._path}: no such file or directory')
        if os.path.splitext(self._path)[1].lower() != '.zip':
            raise IOError(f'{self._path}: a dataset must be a folder or a .zip file')
        self._type = 'zip'
        return {n for n in self._get_zipfile().namelist() if not n.endswith('/')}

    def _get_zipfile(self):
        assert self._type == 'zip'
        if self._zipfile is None or self._zip_pid != os.getpid():
            try:
                self._zipfile = _open_zip(self._path)
            except (zipfile.BadZipFile, OSError) as e:
                raise IOError(f'{self._path}: cannot open zip: {one_line(e)}') from e
            self._zip_pid = os.getpid()
        return self._zipfile

    def _open_file(self, fname):
        if self._type == 'dir':
            return open(os.path.join(self._path, fname), 'rb')
        return self._get_zipfile().open(fname, 'r')

    def close(self):
        try:
            if self._zipfile is not None and self._zip_pid == os.getpid():
                self._zipfile.close()
        finally:
            self._zipfile = None
            self._zip_pid = None

    def __getstate__(self):
        return dict(super().__getstate__(), _zipfile=None, _zip_pid=None)

    def _read_image(self, fname) -> PIL.Image.Image:
        try:
            with self._open_file(fname) as f:
                img = PIL.Image.open(io.BytesIO(f.read()))
                img.load()
        except Exception as e:  # PIL reports corrupt data with many exception types
            raise BadImageError(f"{self._path}: cannot read image '{fname}': {one_line(e)}") from e
        return img

    def _load_raw_image(self, raw_idx, resize=True):
        fname = self._image_fnames[raw_idx]
        img = self._read_image(fname)
        if self._create_label_fov is not None:
            img = make_square(img, pad=self._pad_long)
        if resize and self._resolution is not None:
            img = resize_square(img, self._resolution)
        image = np.asarray(img)
        if image.dtype != np.uint8:
            raise IOError(f"{self._path}: image '{fname}' (mode {img.mode}) is not 8 bits per channel; "
                          f'convert the dataset with dataset_tool.py')
        if image.ndim == 2:
            image = image[:, :, np.newaxis]     # HW -> HW1 (EG3D)
        return image.transpose(2, 0, 1)

    def _load_raw_labels(self):
        labels = None
        if LABELS_FNAME in self._all_fnames:
            with self._open_file(LABELS_FNAME) as f:
                data = f.read()
            labels = parse_labels(data, self._image_fnames, f'{self._path}/{LABELS_FNAME}')
        if labels is None and self._create_label_fov is not None:
            label = fov_label(self._create_label_fov, self._create_label_grid, self._resolution)
            labels = np.tile(label, (len(self._image_fnames), 1))
        return None if labels is None else labels.astype(np.float32)

    @property
    def resolution(self):
        return self._resolution if self._resolution is not None else super().resolution

    @property
    def image_fnames(self):
        """Relative paths of the raw images, in raw index order."""
        return list(self._image_fnames)

    def get_pose_labels(self):
        """Labels float32 [len(self), 25] in item order (even with use_labels=False), or None."""
        raw = self._get_raw_labels() if self._use_labels else self._load_raw_labels()
        if raw is None or raw.ndim != 2 or raw.shape[1] != LABEL_DIM:
            return None
        return raw[self._raw_idx].copy()

    def get_ground_truth(self):
        """The `<stem>_gt.npz` sidecar (see `load_ground_truth`) in item order, or None.

        Arrays with one row per raw image are re-indexed like the items (max_size, xflip);
        anything else is returned as stored.
        """
        gt = load_ground_truth(self._path)
        if gt is None:
            return None
        n = self._raw_shape[0]
        return {k: (v[self._raw_idx] if v.ndim >= 1 and v.shape[0] == n else v) for k, v in gt.items()}
