"""The state a training run keeps in its model directory, and how it resumes from it.

`<model_dir>/config.yaml` is the resolved experiment config (written atomically);
a restart with settings that would change the run's meaning is refused.
`<model_dir>/ckpt-<step>.*` are `tf.train.Checkpoint(model=..., optimizer=...,
step=...)` checkpoints, the last `max_checkpoints_to_keep` kept. A checkpoint only
becomes the latest once completely written (TensorFlow writes its files, then
replaces the `checkpoint` state file atomically), so a run killed while saving
resumes from the previous one; if the latest cannot be read, older ones are tried.

Under MultiWorkerMirroredStrategy every worker saves (the save is collective) but
only the chief writes to the model directory; the others write to a scratch
directory they delete.

Example:
  >>> prepare_model_dir(config, '/tmp/run', is_chief=True)  # doctest: +SKIP
  >>> checkpoints = TrainingCheckpoints('/tmp/run', model, optimizer, strategy, 5)  # doctest: +SKIP
  >>> checkpoints.restore()  # the step to resume from (0: fresh start)  # doctest: +SKIP
  0
"""

import os
import shutil
from typing import Any, Dict, List, Optional

import tensorflow as tf
import tf_keras
from absl import logging

from deeplab.checkpoints import CheckpointMismatchError, restore_weights
from deeplab.config import ExperimentConfig, load_experiment_yaml
from deeplab.hyperparams import ConfigError, from_dict, save_yaml, to_dict
from deeplab import distribute

CONFIG_FILENAME = 'config.yaml'
CHECKPOINT_NAME = 'ckpt'
# Settings that may change when a run resumes: where things are, how often to
# log / save / evaluate, how long to train, and how to run. Everything else (the
# model, the loss, the schedule's shape, the data's content) must stay.
RESUMABLE_SETTINGS = (
    'trainer.train_steps', 'trainer.checkpoint_every_n_steps',
    'trainer.max_checkpoints_to_keep', 'trainer.log_every_n_steps',
    'trainer.eval_every_n_steps', 'trainer.precise_batch_norm_batches',
    'trainer.initial_checkpoint',
    'trainer.initialize_last_layer', 'train_data.dataset_dir', 'train_data.cache',
    'eval_data', 'evaluation', 'export', 'model.sync_batch_norm',
    'runtime.distribution_strategy', 'runtime.tpu', 'runtime.enable_xla',
    'runtime.deterministic',
)


def _flatten(values, prefix=''):
  if isinstance(values, dict):
    for key, value in values.items():
      yield from _flatten(value, f'{prefix}{key}.')
  else:
    yield prefix[:-1], values


def config_differences(saved: ExperimentConfig, config: ExperimentConfig) -> List[str]:
  """'key: saved -> new' for every setting that differs, dotted keys."""
  old, new = dict(_flatten(to_dict(saved))), dict(_flatten(to_dict(config)))
  return [f'{key}: {old.get(key)!r} -> {new.get(key)!r}'
          for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def _resumable(difference: str) -> bool:
  key = difference.split(':', 1)[0]
  return any(key == setting or key.startswith(setting + '.') for setting in RESUMABLE_SETTINGS)


def prepare_model_dir(config: ExperimentConfig, model_dir: str, is_chief: bool) -> None:
  """Checks `config` against the one the model directory was trained with, then saves it.

  Raises:
    ValueError: the directory holds a run with incompatible settings (each named,
      with its old and new value).
  """
  path = os.path.join(model_dir, CONFIG_FILENAME)
  if tf.io.gfile.exists(path):
    try:
      saved = from_dict(ExperimentConfig, load_experiment_yaml(path), path)
    except ConfigError as e:
      raise ValueError(f'{path} is not a valid experiment config ({e}); is {model_dir} the '
                       f'model directory of another program?') from e
    differences = config_differences(saved, config)
    refused = [d for d in differences if not _resumable(d)]
    if refused:
      raise ValueError(
          f'{model_dir} holds a run trained with other settings, which cannot be resumed '
          f'with this config:\n  ' + '\n  '.join(refused) +
          f'\nUse a new --model_dir, or restore these settings (see {path}).')
    for difference in differences:
      logging.warning('Resuming %s with a changed setting: %s', model_dir, difference)
  if is_chief:
    tf.io.gfile.makedirs(model_dir)
    save_yaml(config, path)


class TrainingCheckpoints:
  """Saves and restores model, optimizer and step in the model directory.

  Args:
    model_dir: the run's directory (shared by all workers).
    model, optimizer: what is saved; the optimizer must be built.
    strategy: decides who writes (the chief) and who writes to scratch space.
    max_to_keep: checkpoints kept.
    extra: more trackable objects to save, by name (e.g. random generators).
  """

  def __init__(self, model_dir: str, model: tf_keras.Model,
               optimizer: tf_keras.optimizers.Optimizer, strategy: tf.distribute.Strategy,
               max_to_keep: int, extra: Optional[Dict[str, Any]] = None):
    self.model_dir = model_dir
    self.checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer,
                                          step=optimizer.iterations, **(extra or {}))
    self._step = optimizer.iterations
    self._is_chief = distribute.is_chief(strategy)
    self._write_dir = model_dir if self._is_chief else os.path.join(
        model_dir, f'.worker-{distribute.worker_index(strategy)}-scratch')
    self._manager = tf.train.CheckpointManager(self.checkpoint, self._write_dir,
                                               max_to_keep=max_to_keep,
                                               checkpoint_name=CHECKPOINT_NAME)

  def latest(self) -> Optional[str]:
    return tf.train.latest_checkpoint(self.model_dir)

  def restore(self) -> int:
    """Restores the latest readable checkpoint; returns its step (0 if there is none).

    Raises:
      ValueError: checkpoints exist but none can be read.
    """
    if self._is_chief:
      # A save killed midway leaves its `ckpt-N_temp` folder; the state file never
      # named it, so it is only wasted space.
      for path in tf.io.gfile.glob(os.path.join(self.model_dir, f'{CHECKPOINT_NAME}-*_temp')):
        logging.warning('Removing %s, left by a checkpoint save that did not finish.', path)
        tf.io.gfile.rmtree(path)
    state = tf.train.get_checkpoint_state(self.model_dir)
    if state is None or not state.model_checkpoint_path:
      return 0
    candidates = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    if state.model_checkpoint_path not in candidates:
      candidates.append(state.model_checkpoint_path)
    errors = []
    for path in reversed(candidates):
      path = path if os.path.isabs(path) else os.path.join(self.model_dir, path)
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
      except (tf.errors.OpError, AssertionError, ValueError) as e:
        logging.error('Cannot restore %s (%s); trying an older checkpoint.', path,
                      str(e).splitlines()[0])
        errors.append(f'{path}: {str(e).splitlines()[0]}')
        continue
      step = int(self._step.numpy())
      logging.info('Resumed from %s at step %d.', path, step)
      return step
    raise ValueError(f'No checkpoint in {self.model_dir} can be restored:\n  ' +
                     '\n  '.join(errors))

  def save(self, step: int) -> str:
    """Writes a checkpoint of the current state, numbered `step`; every worker calls it."""
    path = self._manager.save(checkpoint_number=step)
    if not self._is_chief:
      shutil.rmtree(self._write_dir, ignore_errors=True)
    else:
      logging.info('Saved checkpoint %s.', path)
    return path


def initialize_weights(model, path: str, initialize_last_layer: bool) -> None:
  """Starts a fresh run from a native, official TF1 or ImageNet backbone checkpoint.

  The format is detected (`deeplab.checkpoints.restore_weights`). A checkpoint
  whose weights all belong to the backbone (an ImageNet classification checkpoint)
  initializes the backbone only. The logits are loaded when `initialize_last_layer`
  and their shape matches (a checkpoint trained on another number of classes
  leaves them at their initial values, with a log line).

  Raises:
    FileNotFoundError, ValueError, CheckpointMismatchError: the checkpoint is
      missing, unreadable or does not fit the model (naming what to change).
  """
  last_layer = 'auto' if initialize_last_layer else False
  try:
    report = restore_weights(model, path, initialize_last_layer=last_layer)
  except CheckpointMismatchError as e:
    backbone_scope = model.backbone.name + '/'
    if not e.report.matched or any(not name.startswith(backbone_scope)
                                   for name in e.report.matched):
      raise
    logging.info('%s holds a backbone only (e.g. ImageNet weights); initializing the '
                 'backbone from it.', path)
    report = restore_weights(model, path, backbone_only=True)
  logging.info('Initialized from %s', report.summary())
