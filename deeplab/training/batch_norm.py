"""BatchNorm moving statistics that fit the trained weights ("precise BatchNorm").

Training normalizes with each batch's statistics; evaluation and export use the
moving averages, which follow the batch statistics with a decay of 0.997
(MobileNetV2) or 0.9997 (Xception, ASPP, decoder). After `n` steps an average
still holds `decay ** n` of the value it started from: 74% after 1,000 steps at
0.9997. When fine-tuning a checkpoint on other data that starting value belongs to
other data (or, in a model-zoo checkpoint whose BatchNorm was folded, it is mean 0
and variance 1), and the evaluated model can predict one class everywhere while
training looks fine.

`MovingStatisticsRecomputer` replaces every trained BatchNorm's moving mean and
variance by the mean of its batch statistics over training batches, run forward
with every layer as in training (no weight changes). Training calls it when
`staleness` says the averages cannot have converged, before it saves a
checkpoint or evaluates.

Example:
  >>> staleness(model, step=1000)  # doctest: +SKIP
  0.7408
  >>> recompute_moving_statistics(model, iterator, num_batches=100)  # doctest: +SKIP
"""

from typing import List, Optional, Tuple

import tensorflow as tf
import tf_keras

# Averages holding more than this share of their initial value are recomputed.
STALE_SHARE = 0.01


def trained_batch_norms(model: tf_keras.Model) -> List[tf_keras.layers.BatchNormalization]:
  """The model's BatchNorm layers that training updates (not frozen)."""
  return [layer for layer in model.submodules
          if isinstance(layer, tf_keras.layers.BatchNormalization) and layer.trainable
          and layer.built]


def staleness(model: tf_keras.Model, step: int) -> float:
  """The largest share of its initial value a moving average keeps after `step` updates
  (`momentum ** step` of the slowest trained BatchNorm; 0 when none is trained)."""
  momenta = [layer.momentum for layer in trained_batch_norms(model)]
  return max(momenta, default=0.0) ** max(step, 0)


class MovingStatisticsRecomputer:
  """Sets each trained BatchNorm's moving statistics to the mean of its batch
  statistics over training batches; traced once, called at every checkpoint.

  The batches run through the model in training mode (dropout included), each
  layer normalizing with its batch statistics as in a train step; no weight but
  the moving statistics changes. Under a strategy each replica averages its own
  batches and reading the statistics averages the replicas (synchronized
  BatchNorm gives every replica the same).

  Args:
    model: a DeepLab model built under `strategy`'s scope.
    strategy: the model's strategy; default the current one.
    traced: run the batches in a `tf.function` (traced on the first call; TPU
      strategies need it); False runs them eagerly, which saves the trace where
      few batches are run in all (`eager_recomputation`).
  """

  def __init__(self, model: tf_keras.Model, strategy: Optional[tf.distribute.Strategy] = None,
               traced: bool = True):
    self.strategy = strategy or tf.distribute.get_strategy()
    self.layers = trained_batch_norms(model)
    self._model = model
    self._variables = [v for layer in self.layers
                       for v in (layer.moving_mean, layer.moving_variance)]

    def local(value):
      return tf.Variable(value, trainable=False,
                         synchronization=tf.VariableSynchronization.ON_READ,
                         aggregation=tf.VariableAggregation.MEAN)

    with self.strategy.scope():
      self._sums = [local(tf.zeros_like(v)) for v in self._variables]
      # Each forward pass overwrites the moving statistics; these restore a kept layer.
      self._originals = [local(tf.zeros_like(v)) for v in self._variables]
      self._kept = tf.Variable(0, trainable=False,
                               synchronization=tf.VariableSynchronization.ON_READ,
                               aggregation=tf.VariableAggregation.SUM)
    # AutoGraph off: graph-safe Python, and converting it costs startup time.
    self._run = (tf.function(self._run_batches, autograph=False) if traced
                 else self._run_batches)

  def _start(self):
    for total, original, variable in zip(self._sums, self._originals, self._variables):
      total.assign(tf.zeros_like(total))
      original.assign(variable)
    self._kept.assign(0)

  def _accumulate(self, batch):
    self._model(batch['images'], training=True)
    for total, variable in zip(self._sums, self._variables):
      total.assign_add(variable)

  def _assign_means(self, num_batches):
    for index in range(0, len(self._variables), 2):
      pair = slice(index, index + 2)
      means = [total / tf.cast(num_batches, total.dtype) for total in self._sums[pair]]
      finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(m)) for m in means])
      for mean, original, variable in zip(means, self._originals[pair], self._variables[pair]):
        variable.assign(tf.where(finite, mean, original))
      self._kept.assign_add(tf.cast(tf.logical_not(finite), tf.int32))

  def _run_batches(self, iterator, num_batches):
    self.strategy.run(self._start)

    def accumulate(index):
      self.strategy.run(self._accumulate, args=(next(iterator),))
      return (index + 1,)

    tf.while_loop(lambda index: index < num_batches, accumulate, (0,))
    self.strategy.run(self._assign_means, args=(num_batches,))

  def __call__(self, iterator, num_batches: int) -> Tuple[int, int]:
    """Recomputes the statistics from `num_batches` batches of `iterator`.

    Args:
      iterator: yields {'images': float32 [B, H, W, 3] 0..255, ...} (distributed
        batches under a strategy).
      num_batches: batches to average over.

    Returns:
      (recomputed, kept): the numbers of BatchNorm layers recomputed, and of
      those left as they were because a batch gave a NaN or Inf statistic
      (corrupt inputs must not poison the checkpoint saved next).
    """
    if not self.layers or num_batches < 1:
      return 0, 0
    # A momentum of 0 makes each forward pass set the moving statistics to the
    # batch's own; it is read when the function is traced (or, eagerly, while it
    # runs), so only this function sees it.
    momenta = [layer.momentum for layer in self.layers]
    try:
      for layer in self.layers:
        layer.momentum = 0.0
      self._run(iterator, tf.constant(num_batches, tf.int32))
    finally:
      for layer, momentum in zip(self.layers, momenta):
        layer.momentum = momentum
    # Summed over replicas: a layer counts once if any replica kept it.
    return len(self.layers), min(int(self._kept.numpy()), len(self.layers))


def recompute_moving_statistics(model: tf_keras.Model, iterator, num_batches: int,
                                strategy: Optional[tf.distribute.Strategy] = None,
                                traced: Optional[bool] = None) -> Tuple[int, int]:
  """`MovingStatisticsRecomputer(model, strategy, traced)(iterator, num_batches)`,
  once; `traced` defaults to `not eager_recomputation(num_batches, strategy)`."""
  strategy = strategy or tf.distribute.get_strategy()
  if traced is None:
    traced = not eager_recomputation(num_batches, strategy)
  return MovingStatisticsRecomputer(model, strategy, traced)(iterator, num_batches)


# Tracing the recomputation costs about as much as running 5 batches of Xception-65
# at 513x513 (CPU, batch 2: a 5.5 s trace; eager and traced batches take the same
# time there) and 25 of a small MobileNetV2; up to this many batches in all, eager
# execution is the cheaper way.
EAGER_MAX_BATCHES = 4


def eager_recomputation(total_batches: int, strategy: tf.distribute.Strategy) -> bool:
  """Whether a run that recomputes from `total_batches` batches in all should run
  them eagerly: few batches, and a strategy that runs eagerly (not a TPU's)."""
  return (total_batches <= EAGER_MAX_BATCHES and
          not isinstance(strategy, tf.distribute.TPUStrategy))
