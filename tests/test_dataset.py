"""ImageFolderDataset (SPEC §2): EG3D behaviour, PoF3D options, labels, pickling, workers."""

import collections
import json
import math
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

import training.dataset as dataset_module
from training.dataset import ImageFolderDataset, fov_label
from training.dataset_gt import load_ground_truth

RNG = np.random.RandomState(123)


def _save(path, array, mode=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    PIL.Image.fromarray(np.asarray(array, dtype=np.uint8), mode).save(path)


def _label(i):
    return [i + k / 8 for k in range(25)]   # exact in float32


def _make_folder(root, n=4, size=8, labels=True):
    """n random RGB PNGs in two subfolders (+ a non-image file), and dataset.json."""
    names = [f'{"a" if i % 2 else "b"}/img{i}.png' for i in range(n)]
    for name in names:
        _save(os.path.join(root, name), RNG.randint(0, 256, (size, size, 3)))
    with open(os.path.join(root, 'notes.txt'), 'w') as f:
        f.write('not an image')
    if labels:
        with open(os.path.join(root, 'dataset.json'), 'w') as f:
            json.dump({'labels': [[name, _label(i)] for i, name in enumerate(names)]}, f)
    return names


def _zip_folder(root, zip_path):
    with zipfile.ZipFile(zip_path, 'w') as zf:
        for folder, _dirs, files in os.walk(root):
            for fname in files:
                full = os.path.join(folder, fname)
                zf.write(full, os.path.relpath(full, root).replace(os.sep, '/'))
    return zip_path


def _items(ds):
    return [ds[i] for i in range(len(ds))]


def test_folder_and_zip_give_identical_items(tmp_path):
    names = _make_folder(tmp_path / 'src')
    folder = ImageFolderDataset(tmp_path / 'src', use_labels=True)
    zipped = ImageFolderDataset(_zip_folder(tmp_path / 'src', tmp_path / 'ds.zip'), use_labels=True)
    assert folder.image_fnames == zipped.image_fnames == sorted(names)
    assert len(folder) == len(zipped) == 4
    assert (folder.name, zipped.name) == ('src', 'ds')
    for (img_a, c_a), (img_b, c_b) in zip(_items(folder), _items(zipped)):
        assert img_a.dtype == np.uint8 and img_a.shape == (3, 8, 8) and c_a.dtype == np.float32
        np.testing.assert_array_equal(img_a, img_b)
        np.testing.assert_array_equal(c_a, c_b)
    # Labels follow the sorted order: 'a/img1.png' comes first.
    np.testing.assert_array_equal(folder.get_label(0), np.float32(_label(1)))
    assert folder.image_shape == [3, 8, 8] and folder.resolution == 8 and folder.num_channels == 3
    assert folder.label_shape == [25] and folder.label_dim == 25
    assert folder.has_labels and not folder.has_onehot_labels
    details = folder.get_details(1)
    assert details.raw_idx == 1 and details.xflip is False
    zipped.close()


def test_without_labels_label_dim_is_zero(tmp_path):
    _make_folder(tmp_path, labels=False)
    ds = ImageFolderDataset(tmp_path, use_labels=True)
    assert ds.label_dim == 0 and not ds.has_labels and ds[0][1].shape == (0,)
    assert ds.get_pose_labels() is None


def test_grayscale_is_one_channel(tmp_path):
    _save(tmp_path / 'g.png', np.full((4, 4), 7), 'L')
    ds = ImageFolderDataset(tmp_path)
    assert ds.num_channels == 1 and ds[0][0].shape == (1, 4, 4) and ds[0][0][0, 0, 0] == 7


def test_xflip_doubles_and_mirrors_second_half(tmp_path):
    _make_folder(tmp_path, n=3)
    plain = ImageFolderDataset(tmp_path, use_labels=True)
    flipped = ImageFolderDataset(tmp_path, use_labels=True, xflip=True)
    assert len(flipped) == 6
    for i in range(3):
        np.testing.assert_array_equal(flipped[i][0], plain[i][0])
        np.testing.assert_array_equal(flipped[i + 3][0], plain[i][0][:, :, ::-1])
        np.testing.assert_array_equal(flipped[i + 3][1], plain[i][1])     # labels are not flipped
    assert flipped.get_details(4).xflip is True and flipped.get_details(4).raw_idx == 1


def test_resize_at_load_keeps_a_two_colour_split(tmp_path):
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    img[:, 8:] = 255                    # left half black, right half white
    _save(tmp_path / 'split.png', img)
    ds = ImageFolderDataset(tmp_path, resolution=8)
    out = ds[0][0]
    assert out.shape == (3, 8, 8)
    assert ds.resolution == 8 and ds.image_shape == [3, 16, 16]     # requested vs raw (SPEC §2.2)
    assert out[:, :, :3].max() <= 10 and out[:, :, 5:].min() >= 245   # LANCZOS rings only at the edge
    same = ImageFolderDataset(tmp_path, resolution=16)
    np.testing.assert_array_equal(same[0][0], img.transpose(2, 0, 1))   # no resize when sizes match


def test_create_label_fov_intrinsics():
    # f = 1 / (tan(18.837 * 3.14159 / 360) * 1.414) = 4.263391 (literal constants, SPEC §2.2)
    f = 1 / (math.tan(18.837 * 3.14159 / 360) * 1.414)
    assert abs(f - 4.2634) < 1e-4
    expected = np.array([0] * 16 + [f, 0, 0.5, 0, f, 0.5, 0, 0, 1], dtype=np.float32)
    np.testing.assert_array_equal(fov_label(18.837), expected)


def test_create_label_fov_synthesizes_labels_and_crops(tmp_path):
    wide = np.tile(np.arange(6, dtype=np.uint8) * 10, (4, 1))          # 4 tall x 6 wide, value = 10 * column
    tall = np.tile((np.arange(7, dtype=np.uint8) * 10)[:, None], (1, 4))   # 7 tall x 4 wide, value = 10 * row
    _save(tmp_path / 'a.png', wide, 'L')
    _save(tmp_path / 'b.png', tall, 'L')
    ds = ImageFolderDataset(tmp_path, use_labels=True, create_label_fov=18.837)
    # Short side s = 4; offsets (W - s) // 2 = 1 for the wide image, (H - s) // 2 = 1 for the tall one.
    np.testing.assert_array_equal(ds[0][0][0], wide[:, 1:5])
    np.testing.assert_array_equal(ds[1][0][0], tall[1:5, :])
    assert ds.label_dim == 25
    np.testing.assert_array_equal(ds.get_label(1), fov_label(18.837))
    np.testing.assert_array_equal(ds.get_pose_labels(), np.stack([fov_label(18.837)] * 2))


def test_create_label_fov_pad_long_is_white_and_centred(tmp_path):
    _save(tmp_path / 'a.png', np.zeros((2, 4, 3)))                    # 2 tall x 4 wide, black
    ds = ImageFolderDataset(tmp_path, create_label_fov=18.837, pad_long=True, resolution=4)
    img = ds[0][0]
    assert img.shape == (3, 4, 4)
    assert (img[:, [0, 3]] == 255).all() and (img[:, 1:3] == 0).all()  # offset (4 - 2) // 2 = 1


def test_create_label_fov_keeps_existing_labels(tmp_path):
    _make_folder(tmp_path, n=2)
    ds = ImageFolderDataset(tmp_path, use_labels=True, create_label_fov=30)
    np.testing.assert_array_equal(ds.get_label(0), np.float32(_label(1)))


def test_max_size_is_a_deterministic_sorted_subset(tmp_path):
    for i in range(10):
        _save(tmp_path / f'{i:02d}.png', np.full((2, 2, 3), i))
    a = ImageFolderDataset(tmp_path, max_size=4, random_seed=5)
    b = ImageFolderDataset(tmp_path, max_size=4, random_seed=5)
    idx = [a.get_details(i).raw_idx for i in range(len(a))]
    assert len(a) == 4 and idx == sorted(idx) and idx == [b.get_details(i).raw_idx for i in range(4)]
    perm = np.arange(10)
    np.random.RandomState(5).shuffle(perm)
    assert idx == sorted(perm[:4].tolist())
    assert [int(a[i][0][0, 0, 0]) for i in range(4)] == idx            # pixel value = file index
    assert len(ImageFolderDataset(tmp_path, max_size=50)) == 10


class _OpenCounter:
    """Replaces training.dataset._open_zip; logs the pid of every open to a file (works across forks)."""

    def __init__(self, log_path):
        self.log_path = str(log_path)
        self.real = dataset_module._open_zip

    def __call__(self, path):
        with open(self.log_path, 'a') as f:
            f.write(f'{os.getpid()}\n')
        return self.real(path)

    def counts(self):
        with open(self.log_path) as f:
            return collections.Counter(int(line) for line in f)


def test_pickle_drops_the_zip_handle_and_reopens_once(tmp_path, monkeypatch):
    _make_folder(tmp_path / 'src', n=3)
    counter = _OpenCounter(tmp_path / 'opens.log')
    monkeypatch.setattr(dataset_module, '_open_zip', counter)
    ds = ImageFolderDataset(_zip_folder(tmp_path / 'src', tmp_path / 'ds.zip'), use_labels=True)
    assert ds._zipfile is not None and counter.counts()[os.getpid()] == 1
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._zipfile is None
    for (img_a, c_a), (img_b, c_b) in zip(_items(ds), _items(clone)):
        np.testing.assert_array_equal(img_a, img_b)
        np.testing.assert_array_equal(c_a, c_b)
    assert counter.counts()[os.getpid()] == 2          # one open for ds, one for clone, none per item


def test_dataloader_workers_open_the_zip_once_each(tmp_path, monkeypatch):
    _make_folder(tmp_path / 'src', n=6)
    counter = _OpenCounter(tmp_path / 'opens.log')
    monkeypatch.setattr(dataset_module, '_open_zip', counter)
    ds = ImageFolderDataset(_zip_folder(tmp_path / 'src', tmp_path / 'ds.zip'), use_labels=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=1, num_workers=2, multiprocessing_context='fork')
    batches = list(loader)
    assert len(batches) == 6
    for i, (img, c) in enumerate(batches):
        np.testing.assert_array_equal(img[0].numpy(), ds[i][0])
        np.testing.assert_array_equal(c[0].numpy(), ds.get_label(i))
    workers = {pid: n for pid, n in counter.counts().items() if pid != os.getpid()}
    assert len(workers) == 2 and set(workers.values()) == {1}, workers


@pytest.mark.parametrize('labels, message', [
    ({'labels': [['a/img1.png', _label(0)]]}, "no label for image 'a/img3.png'"),
    ({'labels': [['a/img1.png', [0.0] * 24]]}, "label for 'a/img1.png' must be 25 numbers, got 24 values"),
    ({'labels': [['a/img1.png', [0.0] * 24 + ['x']]]}, "holds 'x', not a finite number"),
    ({'labelz': []}, 'expected a JSON object with a "labels" key'),
    ('{not json', 'not valid JSON'),
])
def test_bad_labels_raise_one_line_value_error(tmp_path, labels, message):
    _make_folder(tmp_path, n=4, labels=False)
    with open(tmp_path / 'dataset.json', 'w') as f:
        f.write(labels if isinstance(labels, str) else json.dumps(labels))
    with pytest.raises(ValueError) as info:
        ImageFolderDataset(tmp_path, use_labels=True)
    text = str(info.value)
    assert message in text and 'dataset.json' in text and '\n' not in text


def test_bad_paths_and_images_raise_clear_errors(tmp_path):
    with pytest.raises(IOError, match='no such file'):
        ImageFolderDataset(tmp_path / 'missing.zip')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(IOError, match='no image files found'):
        ImageFolderDataset(tmp_path / 'empty')
    (tmp_path / 'bad.zip').write_bytes(b'not a zip')
    with pytest.raises(IOError, match='bad.zip: cannot open zip'):
        ImageFolderDataset(tmp_path / 'bad.zip')
    (tmp_path / 'corrupt').mkdir()
    (tmp_path / 'corrupt' / 'x.png').write_bytes(b'\x89PNG garbage')
    with pytest.raises(IOError, match="cannot read image 'x.png'"):
        ImageFolderDataset(tmp_path / 'corrupt')
    (tmp_path / 'deep').mkdir()
    PIL.Image.fromarray(np.full((2, 2), 1000, dtype=np.uint16)).save(tmp_path / 'deep' / 'x.png')
    with pytest.raises(IOError, match="'x.png' .* not 8 bits per channel"):
        ImageFolderDataset(tmp_path / 'deep')


def test_non_square_without_resolution_has_no_resolution(tmp_path):
    _save(tmp_path / 'a.png', np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match='not square'):
        _ = ImageFolderDataset(tmp_path).resolution


def test_ground_truth_sidecar(tmp_path):
    _make_folder(tmp_path / 'ds', n=4)
    assert load_ground_truth(tmp_path / 'ds') is None
    assert ImageFolderDataset(tmp_path / 'ds').get_ground_truth() is None
    pose = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.savez(tmp_path / 'ds_gt.npz', pose=pose, cam2world=np.zeros((4, 4, 4)), radius=np.float32(2.7))
    gt = load_ground_truth(tmp_path / 'ds')
    assert set(gt) == {'pose', 'cam2world', 'radius'}
    np.testing.assert_array_equal(gt['pose'], pose)
    ds = ImageFolderDataset(tmp_path / 'ds', xflip=True, max_size=2, random_seed=1)
    raw = [ds.get_details(i).raw_idx for i in range(len(ds))]
    np.testing.assert_array_equal(ds.get_ground_truth()['pose'], pose[raw])     # in item order
    assert ds.get_ground_truth()['radius'] == np.float32(2.7)
    (tmp_path / 'ds_gt.npz').write_bytes(b'garbage')
    with pytest.raises(ValueError, match='ds_gt.npz: cannot read ground-truth sidecar'):
        load_ground_truth(tmp_path / 'ds')


def test_get_pose_labels_in_item_order_even_without_use_labels(tmp_path):
    _make_folder(tmp_path, n=3)
    ds = ImageFolderDataset(tmp_path, use_labels=False, xflip=True)
    assert ds.label_dim == 0
    labels = ds.get_pose_labels()
    assert labels.shape == (6, 25) and labels.dtype == np.float32
    np.testing.assert_array_equal(labels[4], np.float32(_label(0)))    # item 4 = raw 1 = 'b/img0.png'


def test_ground_truth_sidecar_shared_by_labeled_and_unlabeled_zips(tmp_path):
    # make_synthetic.py writes NAME_labeled.zip, NAME_unlabeled.zip and one NAME_gt.npz.
    from training.dataset_gt import ground_truth_path
    np.savez(tmp_path / 'car32_gt.npz', pose=np.zeros((3, 2), np.float32))
    for name in ('car32_labeled.zip', 'car32_unlabeled.zip'):
        assert ground_truth_path(str(tmp_path / name)) == str(tmp_path / 'car32_gt.npz')
    assert ground_truth_path(str(tmp_path / 'other.zip')) == str(tmp_path / 'other_gt.npz')
