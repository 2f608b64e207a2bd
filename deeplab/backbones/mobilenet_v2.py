"""MobileNetV2 up to its last inverted residual (official `layer_18`), with a depth
multiplier, as the official DeepLab MobileNetV2 models use it.

Strided convolutions pad as TF's 'SAME' here, as the official slim MobileNet does
(unlike Xception and ResNet, which pad explicitly).
"""

from typing import Dict, Optional

import tf_keras

from deeplab.backbones.common import atrous_schedule
from deeplab.layers import ConvBN, DepthwiseConvBN

# (expansion factor, output channels, stride) of expanded_conv, expanded_conv_1, ...
MOBILENET_V2_UNITS = (
    (1, 16, 1),
    (6, 24, 2), (6, 24, 1),
    (6, 32, 2), (6, 32, 1), (6, 32, 1),
    (6, 64, 2), (6, 64, 1), (6, 64, 1), (6, 64, 1),
    (6, 96, 1), (6, 96, 1), (6, 96, 1),
    (6, 160, 2), (6, 160, 1), (6, 160, 1),
    (6, 320, 1),
)
_STEM_CHANNELS = 32

# Official end points 'layer_4', 'layer_7', 'layer_14' + '/depthwise_output'; layer_k
# is unit k-2 (layer_1 is the stem), and the depthwise output is after BN + ReLU6.
MOBILENET_V2_END_POINTS: Dict[int, str] = {
    4: 'expanded_conv_2/depthwise',
    8: 'expanded_conv_5/depthwise',
    16: 'expanded_conv_12/depthwise',
}


def make_divisible(value: float, divisor: int, min_value: Optional[int] = None) -> int:
  """Rounds a channel count to a multiple of `divisor`, losing at most 10% (slim's rule)."""
  min_value = divisor if min_value is None else min_value
  rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
  if rounded < 0.9 * value:
    rounded += divisor
  return rounded


def _unit_scope(index: int) -> str:
  return 'expanded_conv' if index == 0 else f'expanded_conv_{index}'


def build_mobilenet_v2(output_stride: int,
                       depth_multiplier: float,
                       batch_norm: Dict,
                       low_level_end_point: Optional[str] = None) -> tf_keras.Model:
  """Builds a MobileNetV2 feature extractor as a functional model.

  Args:
    output_stride: 8, 16 or 32.
    depth_multiplier: width multiplier of every output channel count; at 1.0 counts
      are rounded to multiples of 8, otherwise to integers (official DeepLab).
    batch_norm: BatchNormalization keyword arguments.
    low_level_end_point: name of the layer whose output is returned as
      'low_level_features', or None.

  Returns:
    A model from preprocessed images [batch, H, W, 3] to
    {'features': [batch, H/os, W/os, 320 * multiplier], 'low_level_features': ...},
    named 'MobilenetV2' (the official scope).
  """
  divisor = 8 if depth_multiplier == 1.0 else 1

  def width(channels):
    return make_divisible(channels * depth_multiplier, divisor)

  images = tf_keras.Input((None, None, 3), name='images')
  strides = [2] + [stride for _, _, stride in MOBILENET_V2_UNITS]
  schedule = atrous_schedule(strides, output_stride)
  net = ConvBN(width(_STEM_CHANNELS), 3, strides=schedule[0][0], activation='relu6',
               batch_norm=batch_norm, explicit_padding=False, name='Conv')(images)
  outputs = {}
  for index, ((expansion, channels, _), (stride, rate)) in enumerate(
      zip(MOBILENET_V2_UNITS, schedule[1:])):
    scope = _unit_scope(index)
    unit_input = net
    # Expansion widths are always rounded to multiples of 8 (slim's
    # expand_input_by_factor), whatever the depth multiplier.
    expanded = make_divisible(net.shape[-1] * expansion, 8)
    if expanded > net.shape[-1]:
      net = ConvBN(expanded, 1, activation='relu6', batch_norm=batch_norm,
                   name=f'{scope}/expand')(net)
    depthwise = DepthwiseConvBN(3, strides=stride, dilation_rate=rate, activation='relu6',
                                batch_norm=batch_norm, explicit_padding=False,
                                name=f'{scope}/depthwise')
    net = depthwise(net)
    if depthwise.name == low_level_end_point:
      outputs['low_level_features'] = net
    net = ConvBN(width(channels), 1, activation=None, batch_norm=batch_norm,
                 name=f'{scope}/project')(net)
    if stride == 1 and net.shape[-1] == unit_input.shape[-1]:
      net = tf_keras.layers.Add(name=f'{scope}/add')([net, unit_input])
  outputs['features'] = net
  return tf_keras.Model(images, outputs, name='MobilenetV2')
