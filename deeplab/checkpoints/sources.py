"""Reading weights from every checkpoint format a user may hold, by official name.

Each format becomes a `CheckpointSource`: the variable shapes keyed by the
official name of the model weight they belong to (or by their own name when they
have no home in the model), the names that are training state, and a reader.
Loading then works the same way whatever the format.

Formats:
  - official TF1 checkpoints (name-based, e.g. the model zoo's `model.ckpt`);
  - native TF2 checkpoints written with `tf.train.Checkpoint(model=model, ...)`;
  - `.keras` model files and `.weights.h5` weights files.
"""

import dataclasses
import os
import re
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras
from tensorflow.core.protobuf import trackable_object_graph_pb2

from deeplab.checkpoints.names import is_training_state, official_weight_names
from deeplab.model import DeepLabModel, build_model

OFFICIAL = 'official TF1 checkpoint'
NATIVE = 'TF2 checkpoint'
KERAS = '.keras model file'
WEIGHTS = '.weights.h5 weights file'

# Only object-based (TF2) checkpoints hold this key; name-based TF1 ones never do.
_OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
_VARIABLE_SUFFIX = '/.ATTRIBUTES/VARIABLE_VALUE'
_FILE_SUFFIX = re.compile(r'\.(index|data-\d+-of-\d+)$')
EXPECTED_FORMATS = ('an official TF1 checkpoint (a prefix such as model.ckpt, or the '
                    'folder holding model.ckpt.index), a TF2 checkpoint (a prefix such as '
                    'ckpt-1000, or its directory), a .keras file or a .weights.h5 file')


@dataclasses.dataclass(frozen=True)
class CheckpointSource:
  """A checkpoint's variables, named the way the model's weights are.

  Attributes:
    path: the resolved checkpoint path.
    format: one of OFFICIAL, NATIVE, KERAS, WEIGHTS.
    shapes: shape of every variable that is not training state, keyed by the
      official name of its model weight, or by its own name when it has none.
    training_state: names of step counters, optimizer slots and moving averages.
    read: returns the value of a variable of `shapes` as a numpy array.
    by_name: whether variables were paired by name (official and Keras files);
      TF2 checkpoints pair them by their position in the model's structure, so a
      variable left over there means the structures differ.
  """
  path: str
  format: str
  shapes: Dict[str, Tuple[int, ...]]
  training_state: Tuple[str, ...]
  read: Callable[[str], np.ndarray]
  by_name: bool = True


def checkpoint_prefix(path) -> Optional[str]:
  """The checkpoint prefix `path` designates, or None if it designates none.

  `path` may be a prefix ('model.ckpt', 'ckpt-1000'), one of its files
  ('model.ckpt.index'), a directory with a `checkpoint` state file (its latest
  checkpoint), or a directory holding exactly one checkpoint (an unpacked model-zoo
  tarball).

  Raises:
    ValueError: if a directory holds several checkpoints and no state file.
  """
  path = _FILE_SUFFIX.sub('', os.fspath(path))
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest:
      return latest
    prefixes = sorted(name[:-len('.index')] for name in tf.io.gfile.glob(
        os.path.join(path, '*.index')))
    if len(prefixes) > 1:
      raise ValueError(f'Directory {path} holds several checkpoints and no "checkpoint" '
                       f'state file: {", ".join(prefixes)}; pass one of these prefixes.')
    return prefixes[0] if prefixes else None
  return path if tf.io.gfile.exists(path + '.index') else None


def _reader(prefix: str):
  try:
    return tf.train.load_checkpoint(prefix)
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError(f'Cannot read checkpoint {prefix}: {e}') from e


def is_official_checkpoint(path: str) -> bool:
  """Whether `path` designates a readable name-based (TF1) checkpoint.

  Example:
    >>> is_official_checkpoint('deeplabv3_pascal_train_aug')  # doctest: +SKIP
    True
  """
  try:
    prefix = checkpoint_prefix(path)
    return prefix is not None and _OBJECT_GRAPH_KEY not in (
        _reader(prefix).get_variable_to_shape_map())
  except ValueError:
    return False


def official_variable_shapes(path: str) -> Dict[str, Tuple[int, ...]]:
  """{official name: shape} of the model variables of the official checkpoint `path`.

  Training state (`global_step`, optimizer slots, moving averages) is left out.

  Raises:
    FileNotFoundError: if nothing exists at `path`.
    ValueError: if `path` is not an official checkpoint, or cannot be read.
  """
  return open_source(path, model=None, official_only=True).shapes


def open_source(path: str, model: Optional[DeepLabModel],
                official_only: bool = False) -> CheckpointSource:
  """Opens `path` in whichever supported format it is, for loading into `model`.

  `model` may be None with `official_only` (official checkpoints are read by name).

  Raises:
    FileNotFoundError: if nothing exists at `path`.
    ValueError: if `path` is none of the supported formats (or not an official
      checkpoint when `official_only`), or cannot be read.
  """
  path = os.fspath(path)
  if not official_only and path.endswith(('.keras', '.h5')):
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f'Weights file {path} does not exist.')
    return _keras_source(path, model)
  prefix = checkpoint_prefix(path)
  if prefix is None:
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f'Checkpoint {path} does not exist (no such file, directory '
                              f'or prefix with a .index file).')
    expected = 'an official TF1 checkpoint' if official_only else EXPECTED_FORMATS
    raise ValueError(f'{path} is not a checkpoint: expected {expected}.')
  reader = _reader(prefix)
  if _OBJECT_GRAPH_KEY not in reader.get_variable_to_shape_map():
    return _official_source(prefix, reader)
  if official_only:
    raise ValueError(f'{prefix} is a TF2 (object-based) checkpoint, not an official TF1 one; '
                     f'load it with deeplab.checkpoints.restore_weights.')
  return _native_source(prefix, reader, model)


def _official_source(prefix: str, reader) -> CheckpointSource:
  shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}
  training_state = tuple(sorted(name for name in shapes if is_training_state(name)))
  for name in training_state:
    del shapes[name]
  return CheckpointSource(prefix, OFFICIAL, shapes, training_state, reader.get_tensor)


def _native_source(prefix: str, reader, model: DeepLabModel) -> CheckpointSource:
  """Places a TF2 checkpoint's model variables by walking its object graph.

  TF2 checkpoints key variables by their path of attribute names from the
  `tf.train.Checkpoint` root. Walking the saved graph and the live model side by
  side (as TF's own restore does) finds each saved variable's model weight, so the
  same checks and options as for official checkpoints apply before anything is
  assigned.
  """
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
  roots = {child.local_name: child.node_id for child in graph.nodes[0].children}
  if 'model' not in roots:
    raise ValueError(f'TF2 checkpoint {prefix} holds no "model" object (it holds '
                     f'{", ".join(sorted(roots)) or "nothing"}); models are read from '
                     f'checkpoints written as tf.train.Checkpoint(model=model, ...).')
  official_names = {id(variable): name
                    for name, variable in official_weight_names(model).items()}
  view = tf.train.TrackableView(model)
  keys: Dict[str, str] = {}
  visited = set()
  pending = [(roots['model'], model)]
  while pending:
    node_id, trackable = pending.pop()
    if node_id in visited:
      continue
    visited.add(node_id)
    node = graph.nodes[node_id]
    for attribute in node.attributes:
      if attribute.name == 'VARIABLE_VALUE' and id(trackable) in official_names:
        keys[official_names[id(trackable)]] = attribute.checkpoint_key
    children = view.children(trackable)
    pending += [(child.node_id, children[child.local_name])
                for child in node.children if child.local_name in children]

  all_shapes = reader.get_variable_to_shape_map()
  placed = set(keys.values())
  model_keys = _variable_keys(graph, roots['model'])
  for key in sorted(model_keys - placed):
    keys[key[:-len(_VARIABLE_SUFFIX)] if key.endswith(_VARIABLE_SUFFIX) else key] = key
  shapes = {name: tuple(all_shapes[key]) for name, key in keys.items()}
  training_state = tuple(sorted(set(all_shapes) - model_keys - {_OBJECT_GRAPH_KEY}))
  return CheckpointSource(prefix, NATIVE, shapes, training_state,
                          lambda name: reader.get_tensor(keys[name]), by_name=False)


def _variable_keys(graph, node_id: int) -> set:
  """Checkpoint keys of every variable under node `node_id` of a saved object graph."""
  keys, visited, pending = set(), set(), [node_id]
  while pending:
    node_id = pending.pop()
    if node_id in visited:
      continue
    visited.add(node_id)
    node = graph.nodes[node_id]
    keys.update(a.checkpoint_key for a in node.attributes if a.name == 'VARIABLE_VALUE')
    pending += [child.node_id for child in node.children]
  return keys


def _keras_source(path: str, model: DeepLabModel) -> CheckpointSource:
  """Loads a Keras file into a scratch model and offers its weights by official name.

  A `.keras` file carries its own config, so its model may differ from `model`
  (e.g. in its class count). A `.weights.h5` file has no config: it is loaded into
  a model built from `model.config`, and must come from a model of that config.
  """
  try:
    if path.endswith('.keras'):
      scratch = tf_keras.models.load_model(path, compile=False)
      file_format = KERAS
    else:
      file_format = WEIGHTS
      scratch = build_model(model.config)
      scratch.load_weights(path)
  except Exception as e:  # Keras raises many kinds; all mean the file does not load.
    hint = ('' if path.endswith('.keras') else
            ' (a .weights.h5 file holds no config: it loads only into a model with the '
            'ModelConfig it was saved from)')
    raise ValueError(f'Cannot load {path}{hint}: {e}') from e
  variables = official_weight_names(scratch)
  return CheckpointSource(path, file_format,
                          {name: tuple(v.shape) for name, v in variables.items()}, (),
                          lambda name: variables[name].numpy())
