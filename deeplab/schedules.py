"""The optimizer of DeepLab training: SGD with momentum on a poly learning rate.

As the official train.py: the learning rate follows the "poly" policy
`base * (1 - step / steps) ** power`, optionally after a linear warm-up (the poly
decay then runs over the remaining steps, as the official slow start); the last
layers' gradients may be multiplied (`last_layer_gradient_multiplier`) and the
bias gradients are doubled (official `get_model_gradient_multipliers`).

Momentum follows the Keras form (velocity = m * velocity - lr * g). The official TF1
`MomentumOptimizer` applies the current learning rate to the whole accumulated
velocity instead; the two are equal at a constant learning rate, and the poly
schedule changes little over the ~10 steps the velocity remembers.

Example:
  >>> from deeplab.config import TrainerConfig
  >>> schedule = build_learning_rate(TrainerConfig(train_steps=100, base_learning_rate=0.01))
  >>> round(float(schedule(50)), 6)  # 0.01 * (1 - 50 / 100) ** 0.9
  0.005359
"""

from typing import List

import tensorflow as tf
import tf_keras

from deeplab.config import TrainerConfig
from deeplab.layers import ConvBN, DepthwiseConvBN

# Official `get_model_gradient_multipliers`: biases learn twice as fast.
BIAS_GRADIENT_MULTIPLIER = 2.0
# Top-level layers of the model that the official code counts as "last layers"
# (scopes logits, image_pooling, aspp, concat_projection, decoder).
_LAST_LAYERS = ('aspp', 'decoder', 'logits/semantic')
_LOGITS_LAYER = 'logits/semantic'


@tf_keras.utils.register_keras_serializable(package='deeplab')
class PolynomialDecayWithWarmup(tf_keras.optimizers.schedules.LearningRateSchedule):
  """The official "poly" learning rate, after an optional linear warm-up.

  lr(step) = base * step / warmup_steps                        if step < warmup_steps
           = (base - end) * (1 - t / T) ** power + end          otherwise,
  with t = step - warmup_steps and T = train_steps - warmup_steps.

  Args:
    base_learning_rate: the learning rate at the end of the warm-up.
    train_steps: the step at which the learning rate reaches `end_learning_rate`.
    power: the poly power (0.9).
    end_learning_rate: the final learning rate.
    warmup_steps: linear warm-up steps from 0; 0 disables the warm-up.
  """

  def __init__(self, base_learning_rate: float, train_steps: int, power: float = 0.9,
               end_learning_rate: float = 0.0, warmup_steps: int = 0):
    self.base_learning_rate = base_learning_rate
    self.train_steps = train_steps
    self.power = power
    self.end_learning_rate = end_learning_rate
    self.warmup_steps = warmup_steps

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    decay_steps = float(self.train_steps - self.warmup_steps)
    progress = tf.minimum(tf.maximum(step - self.warmup_steps, 0.0), decay_steps) / decay_steps
    poly = ((self.base_learning_rate - self.end_learning_rate) * (1.0 - progress) ** self.power
            + self.end_learning_rate)
    if not self.warmup_steps:
      return poly
    warmup = self.base_learning_rate * step / float(self.warmup_steps)
    return tf.where(step < self.warmup_steps, warmup, poly)

  def get_config(self):
    return {'base_learning_rate': self.base_learning_rate, 'train_steps': self.train_steps,
            'power': self.power, 'end_learning_rate': self.end_learning_rate,
            'warmup_steps': self.warmup_steps}


def build_learning_rate(config: TrainerConfig) -> PolynomialDecayWithWarmup:
  """The learning-rate schedule of `config` (a function of the optimizer step)."""
  return PolynomialDecayWithWarmup(config.base_learning_rate, config.train_steps,
                                   config.learning_power, config.end_learning_rate,
                                   config.warmup_steps)


def build_optimizer(config: TrainerConfig,
                    mixed_precision_dtype: str = 'float32') -> tf_keras.optimizers.Optimizer:
  """SGD with momentum on the poly schedule; loss-scaled under 'mixed_float16'.

  Gradient clipping and multipliers are applied by the train step (after the
  gradients are summed over replicas), not by the optimizer.

  Example:
    >>> optimizer = build_optimizer(TrainerConfig(), 'mixed_float16')
    >>> isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
    True
  """
  optimizer = tf_keras.optimizers.SGD(learning_rate=build_learning_rate(config),
                                      momentum=config.momentum)
  if mixed_precision_dtype == 'mixed_float16':
    # Dynamic loss scaling keeps float16 gradients from underflowing; steps with
    # non-finite gradients are skipped and the scale lowered.
    optimizer = tf_keras.mixed_precision.LossScaleOptimizer(optimizer)
  return optimizer


def last_layer_variables(model: tf_keras.Model, logits_only: bool = False) -> List[tf.Variable]:
  """The variables of the official "last layers": the logits layer, and unless
  `logits_only` also ASPP (image pooling and projection included) and the decoder."""
  names = (_LOGITS_LAYER,) if logits_only else _LAST_LAYERS
  layer_names = {layer.name for layer in model.layers}
  return [v for name in names if name in layer_names for v in model.get_layer(name).weights]


def gradient_multipliers(model: tf_keras.Model, config: TrainerConfig) -> List[float]:
  """One gradient multiplier per `model.trainable_variables` entry, in that order.

  As the official `get_model_gradient_multipliers`: biases get 2, last-layer
  variables `last_layer_gradient_multiplier`, last-layer biases twice that, every
  other variable 1.

  Example:
    >>> from deeplab import ModelConfig, build_model
    >>> model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3))
    >>> max(gradient_multipliers(model, TrainerConfig(last_layer_gradient_multiplier=10)))
    20.0
  """
  last = {id(v) for v in last_layer_variables(model, config.last_layers_contain_logits_only)}
  biases = {id(layer.bias) for layer in model.submodules
            if isinstance(layer, (ConvBN, DepthwiseConvBN)) and layer.bias is not None}
  multipliers = []
  for variable in model.trainable_variables:
    multiplier = config.last_layer_gradient_multiplier if id(variable) in last else 1.0
    if id(variable) in biases:
      multiplier *= BIAS_GRADIENT_MULTIPLIER
    multipliers.append(float(multiplier))
  return multipliers
