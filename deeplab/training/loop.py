"""`train(config, model_dir)`: the whole training run, resumable, on any strategy.

The run, in order: check the experiment (data files, batch vs replicas, the
model directory's config) before anything heavy; build the strategy, then model,
optimizer and train step under its scope; resume from the model directory's
latest checkpoint, or start from `trainer.initial_checkpoint`; then train in
chunks that end at logging, checkpoint and evaluation steps, the only points
where the host waits for the accelerators.

Resuming is exact: the data stream is rebuilt at every checkpoint step with a seed
derived from `runtime.seed` and the step, and the dropout random state is part of
the checkpoint, so with `runtime.deterministic` a run killed at any point and
restarted with the same command ends with the same weights as one never killed.
(The cost: the input pipeline restarts, refilling its shuffle buffer, once per
checkpoint interval.)

A NaN or Inf loss, or labels outside [0, num_classes) and not the ignore label,
stop the run with an error before the next checkpoint, so the last checkpoint is
the last good state.

The classes and ignore labels the experiment leaves unset come from the converted
datasets (`deeplab.data.resolve_dataset_settings`). Before training, the setup is
checked for known traps (`deeplab.training.advice`: small BatchNorm batches,
moving averages that cannot converge, crops mostly padding, rare classes), each
logged once as a warning. BatchNorm moving statistics that cannot have converged
are recomputed from training batches before each checkpoint and evaluation
(`deeplab.training.batch_norm`), and a final model that predicts one class
everywhere, or evaluates far below its training mIoU, is reported. SIGTERM (preemption) and SIGINT finish the current chunk,
save a checkpoint and return with `preempted=True`.

Example:
  >>> from deeplab.config import load_experiment
  >>> config = load_experiment('synthetic', (), 'train_data.dataset_dir=demo_output/data')
  >>> result = train(config, '/tmp/synthetic_run')  # doctest: +SKIP
  >>> result.step, result.metrics['train_miou'] > 0.5  # doctest: +SKIP
  (500, True)
"""

import contextlib
import dataclasses
import signal
import threading
import time
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras
import yaml
from absl import logging

from deeplab import distribute
from deeplab.config import DataConfig, ExperimentConfig
from deeplab.data import build_dataset, resolve_dataset_settings
from deeplab.data.settings import dataset_info_or_none as _dataset_info
from deeplab.evaluation import EvalResult, Evaluator, write_results, write_summaries
from deeplab.evaluation.runner import EVAL_SUBDIR, eval_dataset_info
from deeplab.hyperparams import to_dict
from deeplab.metrics import confusion_matrix
from deeplab.predict import predict_labels
from deeplab.schedules import build_learning_rate
from deeplab.training import advice, batch_norm, checkpointing
from deeplab.training.reporting import ProgressReporter
from deeplab.training.step import build_train_step, dropout_generators

# A function with the keyword arguments of `deeplab.data.build_dataset`; tests and
# benchmarks pass one that serves batches from memory.
DatasetFn = Callable[..., tf.data.Dataset]
# Sample images written to TensorBoard at each checkpoint.
NUM_SAMPLE_IMAGES = 3


class TrainingDivergedError(RuntimeError):
  """The loss became NaN or Inf; the model directory keeps the last good checkpoint."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
  """How a training run ended.

  Attributes:
    step: the last step trained (train_steps unless preempted).
    metrics: the last logged training metrics (see `TrainStep.read_metrics`).
    checkpoint: the last checkpoint written or restored ('' if none).
    preempted: stopped early by SIGTERM / SIGINT, after saving a checkpoint.
    evaluations: the periodic evaluation results, oldest first.
    warnings: the warnings logged about the setup (before training) and the
      trained model (at the end).
  """
  step: int
  metrics: Dict[str, float]
  checkpoint: str
  preempted: bool = False
  evaluations: Tuple[EvalResult, ...] = ()
  warnings: Tuple[str, ...] = ()


def data_seed(seed: int, step: int) -> int:
  """The seed of the data stream that starts at `step` (a checkpoint step)."""
  return (seed * 1_000_003 + step) % (2**31 - 1)


def check_experiment(config: ExperimentConfig, dataset_fn: Optional[DatasetFn] = None) -> None:
  """Fails fast, naming the setting, on problems found before any training work.

  Raises:
    FileNotFoundError: no training (or, with periodic evaluation, evaluation)
      files, or no initial checkpoint where the config says.
    ValueError: inconsistent settings.
  """
  trainer = config.trainer
  if dataset_fn is None:
    _check_data(config.train_data, 'train_data')
  if trainer.eval_every_n_steps:
    _check_data(config.eval_data, 'eval_data')
  if trainer.eval_every_n_steps is None and not _has_eval_data(config):
    logging.info('No evaluation during training: no eval_data files match %r '
                 '(trainer.eval_every_n_steps).', config.eval_data.file_pattern)
  path = trainer.initial_checkpoint
  if path and not (tf.io.gfile.exists(path) or tf.io.gfile.exists(path + '.index')):
    raise FileNotFoundError(f'trainer.initial_checkpoint {path} does not exist (neither a '
                            f'file, a directory nor a checkpoint prefix with a .index file).')
  if config.runtime.distribution_strategy == 'tpu' and (
      config.runtime.mixed_precision_dtype == 'mixed_float16'):
    raise ValueError('runtime.mixed_precision_dtype: TPUs compute in bfloat16; use '
                     'mixed_bfloat16 with the tpu strategy.')


def _has_eval_data(config: ExperimentConfig) -> bool:
  return bool(config.eval_data.dataset_dir and tf.io.gfile.glob(config.eval_data.file_pattern))


def resolve_training_settings(config: ExperimentConfig) -> ExperimentConfig:
  """`config` with what its data decides: classes and ignore labels from the datasets
  (`resolve_dataset_settings`), and evaluation at every checkpoint when
  `trainer.eval_every_n_steps` is None and the evaluation split exists."""
  config = resolve_dataset_settings(config)
  if config.trainer.eval_every_n_steps is None:
    every = config.trainer.checkpoint_every_n_steps if _has_eval_data(config) else 0
    config = dataclasses.replace(
        config, trainer=dataclasses.replace(config.trainer, eval_every_n_steps=every))
  return config


def _check_data(data: DataConfig, field: str) -> None:
  if not data.dataset_dir:
    raise ValueError(f'{field}.dataset_dir is empty; set it to the directory of the '
                     f'converted TFRecords (deeplab-convert).')
  if not tf.io.gfile.glob(data.file_pattern):
    raise FileNotFoundError(f'{field}: no files match {data.file_pattern} (check '
                            f'{field}.dataset_dir and {field}.split; convert the dataset '
                            f'with deeplab-convert).')


def train(config: ExperimentConfig, model_dir: str, *,
          dataset_fn: Optional[DatasetFn] = None,
          progress_bar: bool = False) -> TrainResult:
  """Trains (or resumes training of) the experiment's model in `model_dir`.

  Args:
    config: the experiment.
    model_dir: where checkpoints, `config.yaml`, summaries and evaluation results
      go; an existing run there is resumed.
    dataset_fn: builds the training (and evaluation) datasets; takes the keyword
      arguments of `deeplab.data.build_dataset` (the default).
    progress_bar: show a progress bar (interactive terminals).

  Returns:
    A `TrainResult`.

  Raises:
    ConfigError, ValueError, FileNotFoundError: bad settings, found before training.
    TrainingDivergedError: the loss became NaN or Inf.
  """
  check_experiment(config, dataset_fn)
  config = resolve_training_settings(config)
  dataset_fn = dataset_fn or build_dataset
  runtime = config.runtime
  if runtime.deterministic:
    tf.config.experimental.enable_op_determinism()
  tf_keras.utils.set_random_seed(runtime.seed)
  strategy = distribute.build_strategy(runtime)
  distribute.per_replica_batch_size(config.train_data.batch_size, strategy)
  config = dataclasses.replace(config, model=distribute.resolve_model_config(config.model,
                                                                               strategy))
  is_chief = distribute.is_chief(strategy)
  checkpointing.prepare_model_dir(config, model_dir, is_chief)
  logging.info('Training in %s on %s with the config:\n%s', model_dir,
               distribute.describe(strategy), _yaml(config))

  train_step = build_train_step(config, strategy)
  model, optimizer = train_step.model, train_step.optimizer
  warnings = advice.setup_warnings(
      config, _dataset_info(config.train_data.dataset_dir), strategy.num_replicas_in_sync,
      max((layer.momentum for layer in batch_norm.trained_batch_norms(model)), default=0.0))
  for warning in warnings:
    logging.warning('%s', warning)
  checkpoints = checkpointing.TrainingCheckpoints(
      model_dir, model, optimizer, strategy, config.trainer.max_checkpoints_to_keep,
      extra={'dropout_rng': dropout_generators(model)})
  step = checkpoints.restore()
  if step == 0 and config.trainer.initial_checkpoint:
    checkpointing.initialize_weights(model, config.trainer.initial_checkpoint,
                                     config.trainer.initialize_last_layer)
  reporter = ProgressReporter(model_dir, config.trainer.train_steps, is_chief, progress_bar,
                              _colormap(config), config.train_data.ignore_label)
  loop = _Loop(config, model_dir, strategy, train_step, checkpoints, reporter, dataset_fn,
               warnings)
  with _stop_on_signals() as stop_requested:
    return loop.run(step, stop_requested)


def _yaml(config: ExperimentConfig) -> str:
  return yaml.safe_dump(to_dict(config), sort_keys=False)


def _colormap(config: ExperimentConfig):
  info = _dataset_info(config.train_data.dataset_dir)
  return info.colormap_table() if info else 'pascal'


@contextlib.contextmanager
def _stop_on_signals():
  """Yields a threading.Event set by SIGTERM or SIGINT while training runs."""
  stop = threading.Event()
  if threading.current_thread() is not threading.main_thread():
    yield stop
    return

  def request_stop(signum, frame):
    del frame
    logging.warning('Received %s: saving a checkpoint after the current steps, then '
                    'stopping.', signal.Signals(signum).name)
    stop.set()

  previous = {s: signal.signal(s, request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield stop
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)


class _Loop:
  """The chunked training loop of `train` (one instance per run)."""

  def __init__(self, config, model_dir, strategy, train_step, checkpoints, reporter,
               dataset_fn, warnings):
    self.config = config
    self.trainer = config.trainer
    self.model_dir = model_dir
    self.strategy = strategy
    self.model = train_step.model
    self.optimizer = train_step.optimizer
    self.learning_rate = build_learning_rate(config.trainer)
    self.train_step = train_step
    self.checkpoints = checkpoints
    self.reporter = reporter
    self.dataset_fn = dataset_fn
    self.is_chief = distribute.is_chief(strategy)
    self.evaluator = None
    self.eval_writer = None
    self.evaluations = []
    self.sample_batch = None
    self.sample_predictions = None
    self.warnings = list(warnings)
    self.batch_norm_refreshed_at = None
    self.recompute_statistics = None

  def _train_dataset(self, seed: int, input_context=None, batch_size=None):
    data = self.config.train_data
    return self.dataset_fn(
        data.file_pattern, training=True, batch_size=batch_size or data.batch_size,
        crop_size=data.crop_size, ignore_label=data.ignore_label,
        min_scale_factor=data.min_scale_factor, max_scale_factor=data.max_scale_factor,
        scale_factor_step_size=data.scale_factor_step_size, random_flip=data.random_flip,
        seed=seed, input_context=input_context, cache=data.cache,
        shuffle_buffer_size=data.shuffle_buffer_size, num_classes=self.config.model.num_classes)

  def _iterator(self, step: int):
    seed = data_seed(self.config.runtime.seed, step)
    logging.info('Starting the input stream of step %d (seed %d).', step, seed)
    dataset = self.strategy.distribute_datasets_from_function(
        lambda context: self._train_dataset(seed, context))
    return iter(dataset)

  def _next_stop(self, step: int) -> int:
    """The next step at which to log, save, evaluate or end."""
    stops = [self.trainer.train_steps]
    for every in (self.trainer.log_every_n_steps, self.trainer.checkpoint_every_n_steps,
                  self.trainer.eval_every_n_steps):
      if every:
        stops.append((step // every + 1) * every)
    return min(stops)

  def run(self, step: int, stop_requested: threading.Event) -> TrainResult:
    trainer = self.trainer
    checkpoint = self.checkpoints.latest() or ''
    metrics: Dict[str, float] = {}
    iterator = None
    preempted = False
    if step >= trainer.train_steps:
      logging.info('Already trained to step %d (trainer.train_steps is %d); nothing to do.',
                   step, trainer.train_steps)
    while step < trainer.train_steps:
      if iterator is None or step % trainer.checkpoint_every_n_steps == 0:
        iterator = self._iterator(step)
      stop = self._next_stop(step)
      start_time = time.perf_counter()
      self.train_step(iterator, stop - step)
      metrics = self.train_step.read_metrics(stop - step)
      images_per_second = (self.config.train_data.batch_size * (stop - step) /
                           (time.perf_counter() - start_time))
      self._check(metrics, step, stop)
      step = stop
      # The learning rate of the last step run.
      self.reporter.report(step, metrics, float(self.learning_rate(step - 1)),
                           images_per_second)
      preempted = _any_worker(self.strategy, stop_requested.is_set())
      if preempted:
        # A preempted job has seconds left: save and go.
        checkpoint = self.checkpoints.save(step)
        logging.warning('Stopped at step %d; rerun the same command to resume from %s.',
                        step, checkpoint)
        break
      if step % trainer.checkpoint_every_n_steps == 0 or step == trainer.train_steps:
        self._refresh_batch_norm(step)
        checkpoint = self.checkpoints.save(step)
        self._write_sample_images(step)
      if trainer.eval_every_n_steps and (step % trainer.eval_every_n_steps == 0 or
                                         step == trainer.train_steps):
        self._refresh_batch_norm(step)
        self._evaluate(step)
    if step >= trainer.train_steps and not preempted:
      self._check_final_model(step, metrics)
    self.reporter.flush()
    return TrainResult(step, metrics, checkpoint, preempted, tuple(self.evaluations),
                       tuple(self.warnings))

  def _refresh_batch_norm(self, step: int) -> None:
    """Recomputes the BatchNorm moving statistics if they cannot have converged."""
    batches = min(self._batches_per_refresh(), step)
    share = batch_norm.staleness(self.model, step)
    if not batches or self.batch_norm_refreshed_at == step or share <= batch_norm.STALE_SHARE:
      return
    logging.info('Step %d: the BatchNorm moving averages still hold %.0f%% of their initial '
                 'values; recomputing them from %d training batches '
                 '(trainer.precise_batch_norm_batches).', step, 100 * share, batches)
    start_time = time.perf_counter()
    # A stream of its own, so the training stream is the same with and without it.
    seed = data_seed(self.config.runtime.seed, -2 - step)
    dataset = self.strategy.distribute_datasets_from_function(
        lambda context: self._train_dataset(seed, context))
    if self.recompute_statistics is None:
      self.recompute_statistics = batch_norm.MovingStatisticsRecomputer(
          self.model, self.strategy,
          traced=not batch_norm.eager_recomputation(self._planned_recompute_batches(),
                                                    self.strategy))
    recomputed, kept = self.recompute_statistics(iter(dataset), batches)
    logging.info('Recomputed the statistics of %d BatchNorm layers in %.1f s.',
                 recomputed - kept, time.perf_counter() - start_time)
    if kept:
      logging.warning('%d BatchNorm layers kept their moving averages: a training batch gave '
                      'them a NaN or Inf statistic (non-finite input images?).', kept)
    self.batch_norm_refreshed_at = step

  def _batches_per_refresh(self) -> int:
    """The most batches one recomputation runs: the setting, capped at a quarter of a
    checkpoint interval's batches (forward passes only), so recomputing costs under a
    tenth of the training time."""
    return min(self.trainer.precise_batch_norm_batches,
               max(1, self.trainer.checkpoint_every_n_steps // 4))

  def _planned_recompute_batches(self) -> int:
    """At most how many batches the whole run recomputes BatchNorm statistics from
    (from the settings alone, so a resumed run decides as an uninterrupted one)."""
    trainer = self.trainer
    refreshes = -(-trainer.train_steps // trainer.checkpoint_every_n_steps)
    if trainer.eval_every_n_steps:
      refreshes += -(-trainer.train_steps // trainer.eval_every_n_steps)
    return refreshes * self._batches_per_refresh()

  def _check_final_model(self, step: int, metrics: Dict[str, float]) -> None:
    """Warns when the trained model's evaluation (or, without one, its predictions on
    training crops) collapsed."""
    train_miou = metrics.get('train_miou')
    if self.evaluations and self.evaluations[-1].step == step:
      result = self.evaluations[-1]
      confusion, what = result.confusion_matrix, f'The evaluation at step {step}'
      class_names = result.metrics.class_names
    elif self.sample_predictions is not None:
      labels = self.sample_batch['labels'].numpy()
      predictions = self.sample_predictions
      confusion = confusion_matrix(labels, predictions, self.config.model.num_classes,
                                   mask=labels != self.config.train_data.ignore_label).numpy()
      what = f'At step {step}, the model (inference mode) on {len(labels)} training crops'
      class_names = ()
    else:
      return
    warning = advice.collapse_warning(confusion, train_miou, self.config, what, class_names)
    if warning:
      logging.warning('%s', warning)
      self.warnings.append(warning)

  def _check(self, metrics: Dict[str, float], start: int, stop: int) -> None:
    if metrics['invalid_label_pixels']:
      raise ValueError(
          f'Between steps {start} and {stop}, {metrics["invalid_label_pixels"]} training '
          f'pixels were labelled outside 0..{self.config.model.num_classes - 1} and not the '
          f'ignore label {self.config.train_data.ignore_label}: corrupt labels, or '
          f'model.num_classes / train_data.ignore_label do not match the dataset. Nothing '
          f'was saved since step {start}.')
    if metrics['nonfinite_steps'] or not np.isfinite(metrics['total_loss']):
      raise TrainingDivergedError(
          f'The loss or gradients became NaN or Inf between steps {start} and {stop}; '
          f'training stopped without saving, so {self.checkpoints.latest() or "no checkpoint"} '
          f'is the last good state. Lower trainer.base_learning_rate, add warm-up '
          f'(trainer.warmup_steps) or gradient clipping (trainer.gradient_clip_norm).')

  def _write_sample_images(self, step: int) -> None:
    # Every worker predicts (reading the BatchNorm statistics in cross-replica
    # context is collective); the chief writes.
    if isinstance(self.strategy, tf.distribute.TPUStrategy):
      return
    if self.sample_batch is None:
      dataset = self._train_dataset(data_seed(self.config.runtime.seed, -1),
                                    batch_size=NUM_SAMPLE_IMAGES)
      self.sample_batch = next(iter(dataset.take(1)))
    images = self.sample_batch['images']
    self.sample_predictions = predict_labels(self.model, images).numpy()
    if self.is_chief:
      self.reporter.sample_images(step, images.numpy(), self.sample_batch['labels'].numpy(),
                                  self.sample_predictions)

  def _evaluate(self, step: int) -> None:
    data = self.config.eval_data
    if self.evaluator is None:
      info = eval_dataset_info(self.config)
      self.evaluator = Evaluator(self.model, ignore_label=data.ignore_label,
                                 class_names=info.class_names if info else None,
                                 config=self.config.evaluation, strategy=self.strategy)
      self.eval_writer = (tf.summary.create_file_writer(f'{self.model_dir}/{EVAL_SUBDIR}')
                          if self.is_chief else None)
    if self.evaluator.model is not self.model:
      # The evaluator runs a copy at another output stride; bring it up to date.
      self.evaluator.model.set_weights(self.model.get_weights())
    dataset = self.dataset_fn(data.file_pattern, training=False, batch_size=data.batch_size,
                              ignore_label=data.ignore_label,
                              num_classes=self.config.model.num_classes)
    result = self.evaluator.evaluate(dataset, step=step)
    logging.info('Evaluation at step %d: mIoU %.4f, pixel accuracy %.4f.', step,
                 result.metrics.mean_iou, result.metrics.pixel_accuracy)
    self.reporter.report_evaluation(step, result.metrics.mean_iou)
    if self.is_chief:
      write_results(result, f'{self.model_dir}/{EVAL_SUBDIR}')
      write_summaries(result, self.eval_writer, step)
    self.evaluations.append(result)


def _any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
  """Whether `flag` is set on any worker (all workers must call this together)."""
  if strategy.num_replicas_in_sync > 1:
    value = strategy.reduce(tf.distribute.ReduceOp.SUM,
                            strategy.experimental_distribute_values_from_function(
                                lambda _: tf.constant(float(flag))), axis=None)
    return bool(value.numpy() > 0)
  return flag
