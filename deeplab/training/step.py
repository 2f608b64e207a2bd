"""The distributed train step: forward, loss, gradients, all-reduce, update.

One `TrainStep` serves every `tf.distribute` strategy. Per replica it:
1. counts the pixels the loss is normalized by and sums that count over all
   replicas, so the loss is the mean over the *global* batch's valid pixels
   (independent of how the batch is split; the official multi-clone code instead
   averaged per-clone means, which differs when clones have different numbers of
   ignored pixels);
2. runs the model, the cross-entropy of its share divided by that global count,
   plus the L2 weight decay divided by the number of replicas (so, summed, it is
   added once), and the gradients (optionally XLA-compiled);
3. sums the gradients over replicas, unscales them (float16 loss scaling),
   applies the gradient multipliers and clipping, and updates the weights.

Training metrics (loss, weight decay, a confusion matrix for train mIoU, label
errors) accumulate in replica-local variables with no communication per step;
`read_metrics` sums them over replicas at logging time. Several steps run in one
`tf.function` call (`TrainStep(iterator, num_steps)`), so the host only syncs at
logging or checkpoint boundaries.

`build_train_step(config, strategy)` builds the model, optimizer and step of an
experiment exactly as training does.

Example:
  >>> step = TrainStep(model, build_optimizer(config.trainer), config, strategy)  # doctest: +SKIP
  >>> step(iterator, 10)  # ten optimizer steps  # doctest: +SKIP
  >>> step.read_metrics(10)['loss']  # their mean loss  # doctest: +SKIP
  0.5321
"""

import contextlib
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf
import tf_keras

from deeplab.config import ExperimentConfig
from deeplab.data import resolve_dataset_settings
from deeplab.losses import (hard_pixel_fraction, loss_normalizer, regularized_kernels,
                            softmax_cross_entropy, weight_decay_loss)
from deeplab.metrics import confusion_matrix, count_invalid_labels, segmentation_metrics
from deeplab.model import build_model
from deeplab.schedules import build_optimizer, gradient_multipliers

_SUM = tf.distribute.ReduceOp.SUM


class TrainStep:
  """Builds and runs the distributed train step of a DeepLab model.

  Args:
    model: the `DeepLabModel`, built under `strategy.scope()`, with frozen parts
      already marked non-trainable.
    optimizer: from `deeplab.schedules.build_optimizer`, built under the scope.
    config: the experiment: loss settings from `trainer` and `train_data`, weight
      decay from `model`, XLA from `runtime.enable_xla`.
    strategy: the strategy the model lives in.

  Call it with an iterator over the distributed dataset and a number of steps.
  Batches are {'images': float32 [B, H, W, 3] 0..255, 'labels': int32 [B, H, W]}
  with B the per-replica batch.
  """

  def __init__(self, model: tf_keras.Model, optimizer: tf_keras.optimizers.Optimizer,
               config: ExperimentConfig, strategy: tf.distribute.Strategy):
    self.model = model
    self.optimizer = optimizer
    self.strategy = strategy
    trainer = config.trainer
    self.num_classes = model.config.num_classes
    self._ignore_label = config.train_data.ignore_label
    self._class_weights = tuple(trainer.class_weights)
    self._top_k_percent_pixels = trainer.top_k_percent_pixels
    self._hard_example_mining_step = trainer.hard_example_mining_step
    self._weight_decay = model.config.weight_decay
    self._gradient_clip_norm = trainer.gradient_clip_norm
    self._variables = model.trainable_variables
    if not self._variables:
      raise ValueError('The model has no trainable variables (everything is frozen).')
    self._multipliers = gradient_multipliers(model, trainer)
    self._kernels = regularized_kernels(model)
    self._loss_scaled = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    with strategy.scope():
      self._totals = {name: _replica_local_sum([], tf.float32)
                      for name in ('loss', 'weight_decay', 'gradient_norm', 'nonfinite')}
      self._invalid_labels = _replica_local_sum([], tf.int64)
      self._confusion = _replica_local_sum([self.num_classes] * 2, tf.int64)
    # AutoGraph off: the step branches on Python values only, and converting it
    # costs startup time.
    self._gradients = (
        tf.function(self._loss_and_gradients, jit_compile=True, autograph=False)
        if config.runtime.enable_xla else self._loss_and_gradients)
    self._run = tf.function(self._run_steps, autograph=False)
    self._read = tf.function(self._read_totals, autograph=False)

  def __call__(self, iterator, num_steps: int) -> None:
    """Runs `num_steps` optimizer steps on batches from `iterator`."""
    self._run(iterator, tf.constant(num_steps, tf.int32))

  def _run_steps(self, iterator, num_steps):
    def run_step(index):
      self.strategy.run(self.replica_step, args=(next(iterator),))
      return (index + 1,)

    tf.while_loop(lambda index: index < num_steps, run_step, (0,))

  def _top_k_fraction(self):
    if self._top_k_percent_pixels == 1.0:
      return 1.0
    return hard_pixel_fraction(self.optimizer.iterations, self._top_k_percent_pixels,
                               self._hard_example_mining_step)

  def replica_step(self, batch: Dict[str, tf.Tensor]) -> None:
    """One optimizer step on one replica's batch (call inside `strategy.run`)."""
    images = batch['images']
    labels = tf.cast(batch['labels'], tf.int32)
    context = tf.distribute.get_replica_context()
    top_k_fraction = self._top_k_fraction()
    count = loss_normalizer(labels, self.num_classes, self._ignore_label, top_k_fraction)
    global_count = context.all_reduce(_SUM, count)
    cross_entropy, weight_decay, gradients, predictions = self._gradients(
        images, labels, global_count, top_k_fraction)
    gradients = context.all_reduce(_SUM, gradients)
    if self._loss_scaled:
      gradients = self.optimizer.get_unscaled_gradients(gradients)
    gradients = [g * m if m != 1.0 else g for g, m in zip(gradients, self._multipliers)]
    gradient_norm = tf.linalg.global_norm(gradients)
    if self._gradient_clip_norm:
      gradients, _ = tf.clip_by_global_norm(gradients, self._gradient_clip_norm,
                                            use_norm=gradient_norm)
    gradient_norm = tf.cast(gradient_norm, tf.float32)
    self.optimizer.apply_gradients(zip(gradients, self._variables),
                                   skip_gradients_aggregation=True)
    # A NaN can hide from the loss (ReLU maps NaN to 0 on some kernels) but not from
    # the gradients; under float16 loss scaling non-finite gradients are expected
    # (the step is skipped and the scale lowered), so only the loss counts there.
    finite = tf.math.is_finite(cross_entropy + weight_decay)
    gradient_finite = tf.math.is_finite(gradient_norm)
    if not self._loss_scaled:
      finite = tf.logical_and(finite, gradient_finite)
    replicas = float(self.strategy.num_replicas_in_sync)
    self._totals['loss'].assign_add(cross_entropy)
    self._totals['weight_decay'].assign_add(weight_decay)
    self._totals['gradient_norm'].assign_add(
        tf.where(gradient_finite, gradient_norm, 0.0) / replicas)
    self._totals['nonfinite'].assign_add(tf.cast(tf.logical_not(finite), tf.float32) / replicas)
    self._invalid_labels.assign_add(tf.cast(tf.reduce_sum(
        count_invalid_labels(labels, self.num_classes, self._ignore_label)), tf.int64))
    self._confusion.assign_add(confusion_matrix(
        labels, predictions, self.num_classes, mask=labels != self._ignore_label))

  def _loss_and_gradients(self, images, labels, global_count, top_k_fraction):
    """This replica's share of the loss, and its gradients (the XLA-compiled part)."""
    replicas = self.strategy.num_replicas_in_sync
    with tf.GradientTape() as tape:
      logits = self.model(images, training=True)
      total, _ = softmax_cross_entropy(labels, logits, ignore_label=self._ignore_label,
                                       class_weights=self._class_weights,
                                       top_k_fraction=top_k_fraction)
      cross_entropy = tf.math.divide_no_nan(total, global_count)
      weight_decay = weight_decay_loss(self._kernels, self._weight_decay) / replicas
      loss = cross_entropy + weight_decay
      if self._loss_scaled:
        loss = self.optimizer.get_scaled_loss(loss)
    gradients = tape.gradient(loss, self._variables)
    predictions = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return cross_entropy, weight_decay, gradients, predictions

  def _read_totals(self):
    values = {name: total.read_value() for name, total in self._totals.items()}
    values['invalid_labels'] = self._invalid_labels.read_value()
    values['confusion'] = self._confusion.read_value()
    for variable in list(self._totals.values()) + [self._invalid_labels, self._confusion]:
      variable.assign(tf.zeros_like(variable))
    return values

  def read_metrics(self, num_steps: int) -> Dict[str, float]:
    """Metrics since the last read, summed over replicas, then resets them.

    Every worker must call it at the same point (it communicates across workers).

    Args:
      num_steps: the steps run since the last read.

    Returns:
      {'loss': mean cross-entropy per step, 'weight_decay': mean L2 term,
       'total_loss': their sum, 'gradient_norm': mean global gradient norm (before
       clipping), 'train_miou': mean IoU of the training predictions,
       'nonfinite_steps': steps with a NaN or Inf loss or gradient,
       'invalid_label_pixels': pixels labelled outside [0, C) and not ignored}.
    """
    values = {k: np.asarray(v) for k, v in self._read().items()}
    steps = max(num_steps, 1)
    loss = float(values['loss']) / steps
    weight_decay = float(values['weight_decay']) / steps
    return {
        'loss': loss,
        'weight_decay': weight_decay,
        'total_loss': loss + weight_decay,
        'gradient_norm': float(values['gradient_norm']) / steps,
        'train_miou': segmentation_metrics(values['confusion']).mean_iou,
        'nonfinite_steps': int(np.ceil(values['nonfinite'])),
        'invalid_label_pixels': int(values['invalid_labels']),
    }


def _replica_local_sum(shape, dtype) -> tf.Variable:
  """A variable each replica adds to locally; reading it sums over all replicas."""
  return tf.Variable(tf.zeros(shape, dtype), trainable=False,
                     synchronization=tf.VariableSynchronization.ON_READ,
                     aggregation=tf.VariableAggregation.SUM)


@contextlib.contextmanager
def _checkpointable_dropout():
  """Layers built inside draw dropout masks from a `tf.random.Generator`, whose
  state can be checkpointed (the default stateful ops restart their sequence in a
  new process, so a resumed run would differ)."""
  generator_enabled = tf_keras.backend.experimental.is_tf_random_generator_enabled()
  tf_keras.backend.experimental.enable_tf_random_generator()
  try:
    yield
  finally:
    if not generator_enabled:
      tf_keras.backend.experimental.disable_tf_random_generator()


def build_train_step(config: ExperimentConfig,
                     strategy: Optional[tf.distribute.Strategy] = None) -> TrainStep:
  """The model, optimizer and train step `train` runs for `config`, under `strategy`.

  `config.model.sync_batch_norm` should be resolved (`resolve_model_config`).
  Benchmarks time `step(iterator, num_steps)` on the returned step; its `model`
  and `optimizer` attributes are the ones it trains.

  Example:
    >>> from deeplab.config import load_experiment
    >>> step = build_train_step(load_experiment('synthetic'))  # doctest: +SKIP
    >>> step(iter(batches), 10)  # ten steps on {'images', 'labels'} batches  # doctest: +SKIP
  """
  strategy = strategy or tf.distribute.get_strategy()
  config = resolve_dataset_settings(config)
  with strategy.scope():
    with _checkpointable_dropout():
      model = build_model(config.model, precision=config.runtime.mixed_precision_dtype)
    if not config.trainer.fine_tune_batch_norm:
      # A non-trainable BatchNormalization also normalizes with its moving statistics.
      for layer in model.submodules:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
          layer.trainable = False
    if config.trainer.freeze_backbone:
      model.backbone.trainable = False
    optimizer = build_optimizer(config.trainer, config.runtime.mixed_precision_dtype)
    optimizer.build(model.trainable_variables)
  return TrainStep(model, optimizer, config, strategy)


def dropout_generators(model: tf_keras.Model) -> List[tf.random.Generator]:
  """The random generators of the model's dropout layers (their state is checkpointed)."""
  # Keras keeps each layer's generator private; reaching it is the only way to put
  # the dropout random state into the checkpoint.
  generators = [layer._random_generator._generator  # pylint: disable=protected-access
                for layer in model.submodules if isinstance(layer, tf_keras.layers.Dropout)]
  return [g for g in generators if g is not None]
