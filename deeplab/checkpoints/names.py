"""Official TF1 variable names of a model's weights, derived from its layer names.

The model's layer names already are the official variable scopes (see
`deeplab.model.DeepLabModel`), so an official name is the scope of a convolution
layer, prefixed by the nested model it sits in (the backbone), plus the slim name
of the weight kind. This module is the only place that knows those suffixes.

Example:
  >>> from deeplab import ModelConfig, build_model
  >>> model = build_model(ModelConfig(backbone='mobilenet_v2', atrous_rates=(),
  ...                                 decoder_output_stride=None))
  >>> names = official_weight_names(model)
  >>> names['MobilenetV2/Conv/weights'].shape, names['logits/semantic/biases'].shape
  (TensorShape([3, 3, 3, 32]), TensorShape([21]))
"""

import re
from typing import Dict, Iterator, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras

from deeplab.backbones import BACKBONES
from deeplab.layers import ConvBN, DepthwiseConvBN

# Keras weight attribute of a convolution -> official (slim) variable name.
_CONVOLUTION_WEIGHTS = (('kernel', 'weights'), ('depthwise_kernel', 'depthwise_weights'),
                        ('bias', 'biases'))
_BATCH_NORM_WEIGHTS = ('gamma', 'beta', 'moving_mean', 'moving_variance')
# The official logits scope ('logits/semantic/...'): the "last layer".
LOGITS_SCOPE = 'logits/'
# Variables a TF1 training run saves besides the model: the step counter, optimizer
# slots and moving-average shadow copies. They are skipped, never assigned.
_TRAINING_STATE = re.compile(
    r'(^|/)(global_step|beta1_power|beta2_power)$'
    r'|/(Momentum|Adam|Adam_1|RMSProp|RMSProp_1|ExponentialMovingAverage)$')


def official_weight_names(model: tf_keras.Model) -> Dict[str, tf.Variable]:
  """Every weight of `model` keyed by its official TF1 checkpoint name.

  Convolutions contribute `<scope>/weights` (or `<scope>/depthwise_weights`),
  `<scope>/biases` when they have no BatchNorm, and
  `<scope>/BatchNorm/{gamma,beta,moving_mean,moving_variance}`.

  Raises:
    ValueError: if two layers claim the same name, or a weight belongs to a layer
      kind that has no official name (so no weight is ever silently left out).
  """
  names: Dict[str, tf.Variable] = {}
  for scope, layer in _convolutions(model):
    weights = [(suffix, getattr(layer, attribute, None))
               for attribute, suffix in _CONVOLUTION_WEIGHTS]
    if layer.batch_norm is not None:
      weights += [(f'BatchNorm/{attribute}', getattr(layer.batch_norm, attribute))
                  for attribute in _BATCH_NORM_WEIGHTS]
    for suffix, variable in weights:
      if variable is None:
        continue
      name = f'{scope}/{suffix}'
      if name in names:
        raise ValueError(f'Two layers of model {model.name!r} have the official name {name}; '
                         f'layer names must be unique scopes.')
      names[name] = variable
  named = {id(variable) for variable in names.values()}
  unnamed = [weight.name for weight in model.weights if id(weight) not in named]
  if unnamed:
    raise ValueError(f'Model {model.name!r} has weights with no official name (only ConvBN '
                     f'and DepthwiseConvBN layers have one): {", ".join(unnamed[:5])}.')
  return names


def _convolutions(model: tf_keras.Model,
                  scope: str = '') -> Iterator[Tuple[str, tf_keras.layers.Layer]]:
  """(official scope, layer) of every convolution in `model`.

  A nested model (the backbone) adds its name as a scope; other container layers
  (ASPP, decoder, separable convolutions) hold layers whose names are already
  complete scopes ('aspp1_depthwise', 'decoder/feature_projection0').
  """
  for child in model.layers:
    if isinstance(child, tf_keras.Model):
      yield from _convolutions(child, f'{scope}{child.name}/')
      continue
    for module in (child, *child.submodules):
      if isinstance(module, (ConvBN, DepthwiseConvBN)):
        yield f'{scope}{module.name}', module


def is_training_state(name: str) -> bool:
  """Whether checkpoint variable `name` is training state (step, optimizer slot, EMA)."""
  return bool(_TRAINING_STATE.search(name))


def backbones_in_checkpoint(names: Sequence[str]) -> Tuple[str, ...]:
  """The `ModelConfig.backbone` values whose official variables `names` holds.

  ResNet and ResNet-beta share a scope; the beta variants' stem is `conv1_1..3`
  where the original has one `conv1`.
  """
  names = set(names)
  scopes = {name.split('/', 1)[0] for name in names}
  found = []
  for backbone, spec in BACKBONES.items():
    if spec.scope not in scopes:
      continue
    if backbone.startswith('resnet_v1'):
      is_beta = f'{spec.scope}/conv1_1/weights' in names
      if is_beta != backbone.endswith('_beta'):
        continue
    found.append(backbone)
  return tuple(found)


def output_channels(shapes: Mapping[str, Sequence[int]], scope: str) -> Optional[int]:
  """Output channels of the layer `scope` in official {name: shape} variables, or None.

  `scope` is a convolution ('.../conv3'), a depthwise convolution
  ('.../depthwise') or a separable convolution, whose pointwise part gives them.

  Example:
    >>> output_channels({'a/conv3/weights': (1, 1, 64, 256)}, 'a/conv3')
    256
  """
  for name in (f'{scope}/weights', f'{scope}_pointwise/weights'):
    if name in shapes:
      return shapes[name][-1]
  depthwise = shapes.get(f'{scope}/depthwise_weights')
  return depthwise[2] * depthwise[3] if depthwise else None
