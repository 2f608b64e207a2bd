"""ResNet-v1-50/101 and their "beta" variants (official `resnet_v1_beta.py`).

The beta variants replace the 7x7 stem with three 3x3 convolutions; all variants
use bottleneck units with the stride on the last unit of blocks 1-3, and a
block4 of three units whose atrous rates follow the multi-grid.
"""

from typing import Dict, Optional, Tuple

import tf_keras

from deeplab.backbones.common import atrous_schedule
from deeplab.layers import ConvBN

# Units in blocks 1-3 (block4 has one unit per multi-grid rate).
RESNET_UNITS: Dict[int, Tuple[int, int, int]] = {50: (3, 4, 6), 101: (3, 4, 23)}
_BOTTLENECK_DEPTHS = (64, 128, 256, 512)


def resnet_end_points(depth: int) -> Dict[int, str]:
  """Decoder end points keyed by stride: conv3 of the unit before each strided one.

  That is a BatchNorm output before the residual addition (official
  DECODER_END_POINTS, e.g. 'block1/unit_2/bottleneck_v1/conv3').
  """
  return {2 ** (i + 2): f'block{i + 1}/unit_{units - 1}/bottleneck_v1/conv3'
          for i, units in enumerate(RESNET_UNITS[depth])}


def build_resnet(depth: int,
                 beta: bool,
                 output_stride: int,
                 multi_grid: Tuple[int, int, int],
                 batch_norm: Dict,
                 low_level_end_point: Optional[str] = None) -> tf_keras.Model:
  """Builds a ResNet-v1 feature extractor as a functional model.

  Args:
    depth: 50 or 101.
    beta: three 3x3 stem convolutions (True) or one 7x7 (False).
    output_stride: 8, 16 or 32.
    multi_grid: unit rates of block4's three units.
    batch_norm: BatchNormalization keyword arguments.
    low_level_end_point: name of the layer whose output is returned as
      'low_level_features', or None.

  Returns:
    A model from preprocessed images [batch, H, W, 3] to
    {'features': [batch, H/os, W/os, 2048], 'low_level_features': ...}; its name is
    the official scope 'resnet_v1_<depth>'.
  """
  images = tf_keras.Input((None, None, 3), name='images')
  if beta:
    net = ConvBN(64, 3, strides=2, batch_norm=batch_norm, name='conv1_1')(images)
    net = ConvBN(64, 3, batch_norm=batch_norm, name='conv1_2')(net)
    net = ConvBN(128, 3, batch_norm=batch_norm, name='conv1_3')(net)
  else:
    net = ConvBN(64, 7, strides=2, batch_norm=batch_norm, name='conv1')(images)
  net = tf_keras.layers.MaxPool2D(3, strides=2, padding='same', name='pool1')(net)

  units = []  # (block index, unit index, stride, unit rate)
  for block, num_units in enumerate(RESNET_UNITS[depth], 1):
    units += [(block, k, 2 if k == num_units else 1, 1) for k in range(1, num_units + 1)]
  units += [(4, k, 1, rate) for k, rate in enumerate(multi_grid, 1)]
  schedule = atrous_schedule([stride for _, _, stride, _ in units], output_stride,
                             current_stride=4)

  outputs = {}
  for (block, k, _, unit_rate), (stride, rate) in zip(units, schedule):
    scope = f'block{block}/unit_{k}/bottleneck_v1'
    out_depth = _BOTTLENECK_DEPTHS[block - 1] * 4
    if out_depth == net.shape[-1]:
      # The official `subsample`: a 1x1 max pool, i.e. every stride-th pixel.
      shortcut = net if stride == 1 else tf_keras.layers.MaxPool2D(
          1, strides=stride, name=f'{scope}/shortcut')(net)
    else:
      shortcut = ConvBN(out_depth, 1, strides=stride, activation=None,
                        batch_norm=batch_norm, name=f'{scope}/shortcut')(net)
    residual = ConvBN(_BOTTLENECK_DEPTHS[block - 1], 1, batch_norm=batch_norm,
                      name=f'{scope}/conv1')(net)
    residual = ConvBN(_BOTTLENECK_DEPTHS[block - 1], 3, strides=stride,
                      dilation_rate=rate * unit_rate, batch_norm=batch_norm,
                      name=f'{scope}/conv2')(residual)
    conv3 = ConvBN(out_depth, 1, activation=None, batch_norm=batch_norm,
                   name=f'{scope}/conv3')
    residual = conv3(residual)
    if conv3.name == low_level_end_point:
      outputs['low_level_features'] = residual
    net = tf_keras.layers.Add(name=f'{scope}/add')([shortcut, residual])
    net = tf_keras.layers.ReLU(name=f'{scope}/relu')(net)
  outputs['features'] = net
  return tf_keras.Model(images, outputs, name=f'resnet_v1_{depth}')
