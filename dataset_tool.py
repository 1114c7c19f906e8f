"""Convert a folder or a zip of images into a training zip (EG3D layout, SPEC §2.1).

    python dataset_tool.py --source SRC --dest DEST.zip [--resolution N]
        [--transform center-crop|center-crop-wide|pad] [--labels labels.json] [--max-images N]
    python dataset_tool.py --check DATASET.zip     # validate only: decode every image, parse labels

SRC is a folder (searched recursively) or a .zip; every file whose extension PIL knows is an
image, taken in order of relative path. DEST.zip gets `{idx//1000:05d}/img{idx:08d}.png` for
image idx and a `dataset.json` with the labels under the new names (or `"labels": null`).

Labels come from --labels, else from a `dataset.json` at the root of SRC: the EG3D format
`{"labels": [[relpath, [25 numbers]], ...]}` with paths relative to SRC; every converted image
needs one (entries for other files are ignored). Values are copied exactly.

Each image becomes 8-bit RGB:
  - grayscale (L, 1, 16-bit I;16 scaled by 1/257) -> RGB by replicating the channel;
  - RGBA / LA / PA / P, and any image with a transparency key -> composited over white;
  - CMYK, YCbCr, ... -> RGB by PIL's conversion.
Then --transform makes it square:
  - center-crop (default): the centred square of the short side;
  - pad: centred on a white square canvas of the long side;
  - center-crop-wide: keep the full width (cropping the height to at most the width) and
    letterbox the result on a white square canvas;
and --resolution N resizes it to N x N with LANCZOS. Without --resolution every image must
have the same size after the transform.

Bad input stops the tool with a one-line error and no output. The zip is written to a
hidden temporary file beside DEST and renamed at the end; an error or Ctrl-C removes it.
"""

import io
import json
import os
import zipfile

import click
import numpy as np
import PIL.Image

import dnnlib
from dnnlib import cli
from dnnlib.util import one_line
from training.dataset_format import LABELS_FNAME, is_image_name, make_square, parse_labels, resize_square

TRANSFORMS = ('center-crop', 'center-crop-wide', 'pad')
WHITE = 255

# ----------------------------------------------------------------------------


class ImageSource:
    """Read-only view of a folder or a zip: `names` (all files, '/'-separated) and `read(name)`."""

    def __init__(self, path):
        self.path = path
        self._zip = None
        if os.path.isdir(path):
            self.names = sorted(self._walk(path))
        elif not os.path.exists(path):
            raise click.UsageError(f"--source '{path}': no such file or folder")
        elif not path.lower().endswith('.zip'):
            raise click.UsageError(f"--source '{path}': must be a folder or a .zip file")
        else:
            try:
                self._zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise click.ClickException(f"--source '{path}': cannot open zip: {one_line(e)}") from e
            self.names = sorted(n for n in self._zip.namelist() if not n.endswith('/'))
        self.image_names = [n for n in self.names if is_image_name(n)]

    @staticmethod
    def _walk(root):
        for folder, _dirs, files in os.walk(root):
            rel = os.path.relpath(folder, root)
            for fname in files:
                yield os.path.normpath(os.path.join(rel, fname)).replace(os.sep, '/')

    def read(self, name) -> bytes:
        if self._zip is not None:
            return self._zip.read(name)
        with open(os.path.join(self.path, name), 'rb') as f:
            return f.read()

    def close(self):
        if self._zip is not None:
            self._zip.close()

# ----------------------------------------------------------------------------


def to_rgb(img: PIL.Image.Image) -> PIL.Image.Image:
    """8-bit RGB version of any PIL image (see the module docstring for the rules)."""
    if img.mode in ('I', 'I;16', 'I;16L', 'I;16B', 'I;16N'):     # 16-bit grayscale
        img = PIL.Image.fromarray(np.clip(np.asarray(img, dtype=np.float64) / 257, 0, 255).round().astype(np.uint8))
    elif img.mode == 'F':
        raise ValueError('floating-point images (mode F) are not supported')
    if img.mode in ('RGBA', 'LA', 'PA', 'P', 'RGBa', 'La') or 'transparency' in img.info:
        rgba = img.convert('RGBA')
        background = PIL.Image.new('RGBA', rgba.size, (WHITE, WHITE, WHITE, 255))
        return PIL.Image.alpha_composite(background, rgba).convert('RGB')
    return img.convert('RGB')


def center_crop_wide(img: PIL.Image.Image, resolution=None) -> PIL.Image.Image:
    """Full width kept, height cropped to at most the width, letterboxed on a white square."""
    w, h = img.size
    ch = min(h, w)
    img = img.crop((0, (h - ch) // 2, w, (h - ch) // 2 + ch))
    size = resolution or w
    new_h = max(1, round(ch * size / w))
    if img.size != (size, new_h):
        img = img.resize((size, new_h), PIL.Image.LANCZOS)
    canvas = PIL.Image.new('RGB', (size, size), (WHITE,) * 3)
    canvas.paste(img, (0, (size - new_h) // 2))
    return canvas


def transform_image(img: PIL.Image.Image, transform: str, resolution=None) -> PIL.Image.Image:
    """Square RGB image: `transform` (one of TRANSFORMS), then LANCZOS to `resolution` if given."""
    if transform == 'center-crop-wide':
        return center_crop_wide(img, resolution)
    img = make_square(img, pad=(transform == 'pad'), fill=WHITE)
    return img if resolution is None else resize_square(img, resolution)


def encode_png(img: PIL.Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format='png')
    return buf.getvalue()


def archive_name(idx: int) -> str:
    return f'{idx // 1000:05d}/img{idx:08d}.png'


def load_image(source: ImageSource, name: str, transform: str, resolution) -> PIL.Image.Image:
    """Decode, convert and transform one source image; a bad one is a one-line error naming it."""
    try:
        img = PIL.Image.open(io.BytesIO(source.read(name)))
        img.load()
        return transform_image(to_rgb(img), transform, resolution)
    except Exception as e:  # PIL reports corrupt data with many exception types
        raise click.ClickException(f"cannot read image '{name}' in '{source.path}': {one_line(e)}") from e


def read_labels(source: ImageSource, labels_path, names):
    """float64 [len(names), 25] from --labels or SRC/dataset.json, or None when there are none."""
    if labels_path is not None:
        try:
            with open(labels_path, 'rb') as f:
                data = f.read()
        except OSError as e:
            raise click.ClickException(f"--labels '{labels_path}': cannot read: {one_line(e)}") from e
        where = f"--labels '{labels_path}'"
    elif LABELS_FNAME in source.names:
        data, where = source.read(LABELS_FNAME), f"'{source.path}/{LABELS_FNAME}'"
    else:
        return None
    try:
        return parse_labels(data, names, where)
    except ValueError as e:
        raise click.ClickException(str(e)) from e

# ----------------------------------------------------------------------------


def write_atomically(dest: str, write_fn):
    """Call write_fn(tmp_path) on a hidden file beside `dest`, then rename it to `dest`; on any
    exception (KeyboardInterrupt included) nothing appears at `dest` (dnnlib.util.atomic_output)."""
    with dnnlib.util.atomic_output(dest) as tmp:
        write_fn(tmp)


def write_dataset(zip_path, source, names, labels, transform, resolution):
    """Convert `names` from `source` into the zip at `zip_path` (images, then dataset.json)."""
    first = None    # (name, size) of the first image, for the same-size check
    entries = []
    with zipfile.ZipFile(zip_path, 'w', compression=zipfile.ZIP_STORED) as zf:
        for idx, name in enumerate(names):
            img = load_image(source, name, transform, resolution)
            if first is None:
                first = (name, img.size)
            elif img.size != first[1]:
                (w0, h0), (w, h) = first[1], img.size
                raise click.ClickException(
                    f"image '{name}' is {w}x{h} after --transform {transform} but '{first[0]}' is {w0}x{h0}; "
                    f'pass --resolution to resize all images')
            zf.writestr(archive_name(idx), encode_png(img))
            if labels is not None:
                entries.append([archive_name(idx), labels[idx].tolist()])
        zf.writestr(LABELS_FNAME, json.dumps({'labels': entries if labels is not None else None}))


def convert_dataset(source_path, dest, resolution=None, transform='center-crop', labels_path=None,
                    max_images=None, overwrite=False) -> int:
    """Library entry point of the CLI; returns the number of images written."""
    if not dest.lower().endswith('.zip'):
        raise click.UsageError(f"--dest '{dest}': must end in .zip")
    if os.path.isdir(dest):
        raise click.UsageError(f"--dest '{dest}': is a folder")
    if os.path.exists(dest) and not overwrite:
        raise click.UsageError(f"--dest '{dest}': already exists (pass --overwrite to replace it)")
    if transform not in TRANSFORMS:
        raise click.UsageError(f"--transform '{transform}': must be one of {', '.join(TRANSFORMS)}")
    source = ImageSource(source_path)
    try:
        names = source.image_names[:max_images]
        if not names:
            raise click.ClickException(f"--source '{source_path}': no image files found")
        labels = read_labels(source, labels_path, names)
        cli.prepare_output(dest, '--dest')
        with cli.output_errors('--dest', dest):
            write_atomically(dest, lambda tmp: write_dataset(tmp, source, names, labels, transform, resolution))
    finally:
        source.close()
    return len(names)


def check_dataset(path: str) -> str:
    """`--check`: open `path` as training does, parse its labels and decode every image.
    Returns a one-line summary; click.ClickException listing every bad image otherwise."""
    from training.dataset import ImageFolderDataset
    from training.dataset_check import check_images
    try:
        dataset = ImageFolderDataset(path)
        labels = dataset._load_raw_labels()      # parses dataset.json: a one-line ValueError if bad
    except (OSError, ValueError) as err:
        raise click.ClickException(one_line(err)) from None
    bad = check_images(dataset, full=True)
    if bad:
        raise click.ClickException('\n'.join(bad + [f'{len(bad)} of {len(dataset)} images are bad']))
    c, h, w = dataset.image_shape
    return (f"{path}: OK, {len(dataset)} images, {w}x{h}, {c} channels, "
            f"{'labels for every image' if labels is not None else 'no labels'}")


@click.command(help='\n\n'.join('\b\n' + part for part in __doc__.strip().split('\n\n')))  # \b: keep layout
@click.option('--check', 'check', metavar='PATH', help='Only validate a dataset (decode every image, parse labels).')
@click.option('--source', 'source', metavar='PATH', help='Folder or .zip of input images [required].')
@click.option('--dest', 'dest', metavar='ZIP', help='Output .zip (must not exist) [required].')
@click.option('--resolution', type=click.IntRange(min=1), help='Output size N (N x N, LANCZOS).')
@click.option('--transform', type=click.Choice(TRANSFORMS), default='center-crop', show_default=True,
              help='How to make images square.')
@click.option('--labels', 'labels_path', metavar='JSON', help='Labels file (default: SRC/dataset.json).')
@click.option('--max-images', type=click.IntRange(min=1), help='Convert only the first N images.')
@cli.bool_flag('--overwrite', help='Replace DEST if it exists.')
def main(check, source, dest, resolution, transform, labels_path, max_images, overwrite):
    if check is not None:
        click.echo(check_dataset(check))
        return
    if source is None or dest is None:
        raise click.UsageError(f"Missing option '{'--source' if source is None else '--dest'}' (or pass --check PATH)")
    n = convert_dataset(source, dest, resolution=resolution, transform=transform, labels_path=labels_path,
                        max_images=max_images, overwrite=overwrite)
    click.echo(f"Wrote {n} images to '{dest}'")


if __name__ == '__main__':
    main()
