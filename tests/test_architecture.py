"""The layering of docs/architecture.md, checked on the import statements of the tree."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _imports(path: pathlib.Path):
    """Every module name a file imports (absolute imports, at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f'{node.module}.{alias.name}' for alias in node.names)
    return names


def _files(folder):
    return sorted((ROOT / folder).rglob('*.py'))


@pytest.mark.parametrize('folder', ['torch_utils', 'dnnlib'])
def test_lower_layers_import_nothing_from_training(folder):
    bad = {str(f.relative_to(ROOT)): sorted(n for n in _imports(f) if n.split('.')[0] == 'training')
           for f in _files(folder)}
    assert {f: n for f, n in bad.items() if n} == {}


def test_rendering_package_imports_nothing_above_it():
    # The renderer may use the StyleGAN2 layers (the decoder's FC layers), nothing else of training/.
    allowed = ('training.rendering', 'training.networks_stylegan2')
    bad = {}
    for f in _files('training/rendering'):
        names = [n for n in _imports(f) if n.split('.')[0] == 'training' and n != 'training'
                 and not n.startswith(allowed)]
        if names:
            bad[str(f.relative_to(ROOT))] = sorted(names)
    assert bad == {}
    assert len(_files('training/rendering')) >= 10   # the package is where the docs say


def test_no_global_speed_switch():
    # One body per stage: the implementation choice lives in the config, not in a flag read at
    # call time (issue 17); the environment switch POF3D_IMPL is read in custom_ops only.
    readers = [str(f.relative_to(ROOT)) for folder in ('training', 'torch_utils', 'metrics')
               for f in _files(folder) if 'POF3D_IMPL' in f.read_text() and 'os.environ' in f.read_text()]
    assert readers == ['torch_utils/custom_ops.py']
    assert not (ROOT / 'torch_utils' / 'fastpath.py').exists()
