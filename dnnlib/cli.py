"""Shared click parameter types of the command-line tools (train.py, gen_*.py, calc_metrics.py, ...).

Every float option of every CLI goes through `Float`: click's FLOAT/FloatRange accept 'nan'
and 'inf' (and `nan > 0` is False, so a NaN passes every range check), which trains forever,
turns R1 off or renders black images. `Bool` accepts a value (`--shapes true`, `--shapes=false`,
as EG3D/PoF3D's documented commands write it) and the bare flag (= true).

Outputs: `prepare_output(path, option)` checks that an output's folder can be made and
written (or fails with one line naming the option, the path and the cause) before the work
starts; `output_errors` turns an
OSError while writing (disk full, read-only file system) into one line naming the path.
"""

import contextlib
import math
import os

import click


class Float(click.FloatRange):
    """A finite float, optionally within [min, max] (open ends with min_open / max_open)."""

    name = 'float'

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f'{value!r} is not a finite number', param, ctx)
        return super().convert(number, param, ctx)

    def __repr__(self):
        return f'Float({self._describe_range()})'


FLOAT = Float()
POS_FLOAT = Float(min=0, min_open=True)
NONNEG_FLOAT = Float(min=0)
UNIT_FLOAT = Float(min=0, max=1)
FOV_DEG = Float(min=0, max=180, min_open=True, max_open=True)   # a field of view in degrees


def bool_flag(*decls, default=False, **kwargs):
    """A click option that is a flag (`--shapes` = true) and takes an optional value
    (`--shapes true`, `--shapes=false`, also 1/0, yes/no, on/off)."""
    return click.option(*decls, type=click.BOOL, default=default, is_flag=False, flag_value=True,
                        metavar='[BOOL]', show_default=True, **kwargs)


def float_params(command: click.Command) -> dict:
    """{option name: type} of every parameter whose values are floats (for tests: each must be
    a `Float`)."""
    return {p.name: p.type for p in command.params if isinstance(p.type, click.types.FloatParamType)}


def finite_float(text: str) -> float:
    """argparse `type=` of the bench scripts: a finite float, else argparse's one-line error."""
    import argparse
    try:
        number = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f'{text!r} is not a finite number')
    return number


def prepare_output(path: str, option: str, is_dir: bool = False, extensions=None, create=False) -> None:
    """Check output `path` before the work starts: a known extension, a folder that exists (made
    here unless create=False) or can be made, writable. click.UsageError (one line) otherwise."""
    if extensions is not None and os.path.splitext(path)[1].lower() not in extensions:
        raise click.UsageError(f'{option} {path}: the file name must end in {" or ".join(extensions)}')
    folder = os.path.abspath(path if is_dir else (os.path.dirname(path) or '.'))
    if create:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as err:
            raise click.UsageError(f'{option} {path}: cannot create the folder {folder} '
                                   f'({err.strerror or err})') from None
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise click.UsageError(f'{option} {path}: {existing} is a file, not a folder')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise click.UsageError(f'{option} {path}: the folder {existing} is not writable')


@contextlib.contextmanager
def output_errors(option: str, path: str):
    """Run a block that writes outputs; an OSError becomes one line naming the file and the
    cause (outputs are written by temp file + rename, so nothing half-written is left)."""
    try:
        yield
    except OSError as err:
        name = err.filename if err.filename and not os.path.basename(str(err.filename)).startswith('.tmp-') else path
        raise click.ClickException(f'{option} {name}: cannot write ({err.strerror or err})') from None


def ignored_option(*decls, why: str):
    """A hidden option of the EG3D/PoF3D scripts that has no effect here: accepted (so that a
    copied command line runs) with a note on stderr, not passed to the command."""
    def note(ctx, param, value):
        if value is not None:
            click.echo(f'note: {param.opts[0]} {value} is ignored ({why})', err=True)
    return click.option(*decls, hidden=True, expose_value=False, callback=note, default=None)
