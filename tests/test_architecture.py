"""Structural rules of the code base: import directions and layer configs."""

import ast
import inspect
import pathlib
import subprocess
import sys

import pytest
import tf_keras

from deeplab import layers

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'deeplab'
REPO = PACKAGE.parent

# Data flows one way: config -> data -> model -> training / evaluation -> export.
# A module may import deeplab modules of its own level or below, never above.
LEVELS = {
    'files': 0, 'hyperparams': 0, 'kernels': 0, 'layers': 0, 'losses': 0, 'metrics': 0,
    'config': 1, 'backbones': 1, 'distribute': 1, 'summaries': 0,
    'data': 2, 'model': 2,
    'predict': 3, 'tiling': 3, 'checkpoints': 3, 'visualization': 3, 'schedules': 3, 'costs': 3,
    'evaluation': 4, 'export': 4, 'training': 5, 'benchmark': 6,
}

# Imports every command-line tool in one process (dropping each one's flags before the
# next defines its own) and names the import that first reached TensorFlow, if any.
_IMPORT_TOOLS = '''
import importlib, sys, traceback
from absl import flags

class FirstHeavyImport:
  stack = None

  @classmethod
  def find_spec(cls, name, path=None, target=None):
    if name in ('tensorflow', 'tf_keras') and cls.stack is None:
      cls.stack = ''.join(traceback.format_list(
          [f for f in traceback.extract_stack() if not f.filename.startswith('<')]))
    return None

sys.meta_path.insert(0, FirstHeavyImport)
absl_flags = set(flags.FLAGS)
for tool in sys.argv[1:]:
  importlib.import_module(tool)
  heavy = [name for name in ('tensorflow', 'tf_keras') if name in sys.modules]
  if heavy:
    sys.exit(f'importing {tool} imported {", ".join(heavy)}:\\n{FirstHeavyImport.stack}')
  for name in set(flags.FLAGS) - absl_flags:
    delattr(flags.FLAGS, name)
'''


def _top_module(dotted: str) -> str:
  parts = dotted.split('.')
  return parts[1] if len(parts) > 1 else ''


def _deeplab_imports(path: pathlib.Path):
  tree = ast.parse(path.read_text(), filename=str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      names = [node.module] + [f'{node.module}.{alias.name}' for alias in node.names]
    else:
      continue
    for name in names:
      yield node.lineno, name


def _library_files():
  return sorted(p for p in PACKAGE.rglob('*.py') if p.name != '__init__.py' or
                p.parent != PACKAGE)


def _module_of(path: pathlib.Path) -> str:
  return path.relative_to(PACKAGE).parts[0].removesuffix('.py')


@pytest.mark.parametrize('path', _library_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_library_modules_import_only_downwards(path):
  module = _module_of(path)
  assert module in LEVELS, (f'{path.relative_to(REPO)}: add "{module}" to LEVELS in '
                            f'{pathlib.Path(__file__).name} to place it in the data flow.')
  for line, name in _deeplab_imports(path):
    assert not name.startswith(('absl.flags', 'deeplab.tools', 'deeplab.datasets')), (
        f'{path.relative_to(REPO)}:{line}: the library must not import {name} '
        f'(flags and command-line tools stay in tools/).')
    if name.startswith('deeplab.') and name.split('.')[1] in LEVELS:
      imported = _top_module(name)
      assert LEVELS[imported] <= LEVELS[module], (
          f'{path.relative_to(REPO)}:{line}: {module} (level {LEVELS[module]}) imports '
          f'{imported} (level {LEVELS[imported]}), against the data flow.')


def _registered_layers():
  return [cls for _, cls in inspect.getmembers(layers, inspect.isclass)
          if issubclass(cls, tf_keras.layers.Layer) and cls.__module__ == layers.__name__
          and not cls.__name__.startswith('_')]


@pytest.mark.parametrize('cls', _registered_layers(), ids=lambda c: c.__name__)
def test_layer_config_keys_equal_its_constructor_parameters(cls):
  # A layer without its own constructor has no arguments of its own; the config
  # keys of the Keras layer it extends are that layer's.
  init = cls.__dict__.get('__init__')
  parameters = set(inspect.signature(init).parameters) - {'self', 'kwargs'} if init else set()
  layer = cls(**_minimal_arguments(cls))
  keras_base = next(c for c in cls.__mro__ if c.__module__.startswith('tf_keras.'))
  base = set(keras_base().get_config())
  assert set(layer.get_config()) - base == parameters
  restored = cls.from_config(layer.get_config())
  assert restored.get_config() == layer.get_config()
  assert tf_keras.utils.get_registered_object(f'deeplab>{cls.__name__}') is cls


def _minimal_arguments(cls):
  required = {'filters': 8, 'scale': 1.0}
  return {name: required[name] for name, p in inspect.signature(cls.__init__).parameters.items()
          if p.default is inspect.Parameter.empty and name in required}


def test_command_line_tools_import_tensorflow_only_in_main():
  # --help and flag errors must not wait seconds for TensorFlow.
  tools = sorted(f'deeplab.tools.{p.stem}' for p in (REPO / 'tools').glob('*.py')
                 if p.stem != '__init__')
  result = subprocess.run([sys.executable, '-c', _IMPORT_TOOLS, *tools], capture_output=True,
                          text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
