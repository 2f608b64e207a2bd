"""Modified aligned Xception-41/65/71 (the paper's Section 3.2, official `xception.py`).

The three variants differ only in their block table. Each block is a number of
identical units; a unit is three 3x3 separable convolutions (stride on the third)
plus a skip connection.
"""

import dataclasses
from typing import Dict, Optional, Tuple

import tf_keras

from deeplab.backbones.common import atrous_schedule
from deeplab.layers import ConvBN, SeparableConvBN


@dataclasses.dataclass(frozen=True)
class XceptionBlock:
  """One row of an Xception table.

  Attributes:
    scope: official scope, e.g. 'entry_flow/block1'.
    num_units: identical units in the block.
    depths: output channels of the three separable convolutions.
    skip: 'conv' (1x1 strided conv + BN), 'sum' (identity) or 'none'.
    stride: stride of the unit's last separable convolution.
    activation_in_separable_conv: ReLU after each BatchNorm (exit_flow/block2)
      rather than on each separable convolution's input (all other blocks).
  """
  scope: str
  num_units: int
  depths: Tuple[int, int, int]
  skip: str
  stride: int
  activation_in_separable_conv: bool = False


def _blocks(entry: Tuple[XceptionBlock, ...], middle_units: int):
  return entry + (
      XceptionBlock('middle_flow/block1', middle_units, (728, 728, 728), 'sum', 1),
      XceptionBlock('exit_flow/block1', 1, (728, 1024, 1024), 'conv', 2),
      XceptionBlock('exit_flow/block2', 1, (1536, 1536, 2048), 'none', 1,
                    activation_in_separable_conv=True),
  )


_ENTRY_FLOW = (
    XceptionBlock('entry_flow/block1', 1, (128, 128, 128), 'conv', 2),
    XceptionBlock('entry_flow/block2', 1, (256, 256, 256), 'conv', 2),
    XceptionBlock('entry_flow/block3', 1, (728, 728, 728), 'conv', 2),
)
_ENTRY_FLOW_71 = (
    XceptionBlock('entry_flow/block1', 1, (128, 128, 128), 'conv', 2),
    XceptionBlock('entry_flow/block2', 1, (256, 256, 256), 'conv', 1),
    XceptionBlock('entry_flow/block3', 1, (256, 256, 256), 'conv', 2),
    XceptionBlock('entry_flow/block4', 1, (728, 728, 728), 'conv', 1),
    XceptionBlock('entry_flow/block5', 1, (728, 728, 728), 'conv', 2),
)

XCEPTION_BLOCKS: Dict[str, Tuple[XceptionBlock, ...]] = {
    'xception_41': _blocks(_ENTRY_FLOW, middle_units=8),
    'xception_65': _blocks(_ENTRY_FLOW, middle_units=16),
    'xception_71': _blocks(_ENTRY_FLOW_71, middle_units=16),
}

# Low-level features for the decoder, keyed by their stride (official
# DECODER_END_POINTS): the output of a unit's second separable convolution, a
# BatchNorm output with no activation.
_END_POINT = '{}/unit_1/xception_module/separable_conv2'
XCEPTION_END_POINTS: Dict[str, Dict[int, str]] = {
    'xception_41': {4: _END_POINT.format('entry_flow/block2'),
                    8: _END_POINT.format('entry_flow/block3'),
                    16: _END_POINT.format('exit_flow/block1')},
    'xception_71': {4: _END_POINT.format('entry_flow/block3'),
                    8: _END_POINT.format('entry_flow/block5'),
                    16: _END_POINT.format('exit_flow/block1')},
}
XCEPTION_END_POINTS['xception_65'] = XCEPTION_END_POINTS['xception_41']


def build_xception(name: str,
                   output_stride: int,
                   multi_grid: Tuple[int, int, int],
                   batch_norm: Dict,
                   low_level_end_point: Optional[str] = None) -> tf_keras.Model:
  """Builds an Xception feature extractor as a functional model.

  Args:
    name: 'xception_41', 'xception_65' or 'xception_71'; also the model's name,
      which is the official variable scope.
    output_stride: 8, 16 or 32.
    multi_grid: unit rates of the three separable convolutions of exit_flow/block2.
    batch_norm: BatchNormalization keyword arguments.
    low_level_end_point: name of the layer whose output is returned as
      'low_level_features', or None.

  Returns:
    A model from preprocessed images [batch, H, W, 3] (values in [-1, 1]) to
    {'features': [batch, H/os, W/os, 2048], 'low_level_features': ...}.
  """
  blocks = XCEPTION_BLOCKS[name]
  images = tf_keras.Input((None, None, 3), name='images')
  net = ConvBN(32, 3, strides=2, batch_norm=batch_norm, name='entry_flow/conv1_1')(images)
  net = ConvBN(64, 3, batch_norm=batch_norm, name='entry_flow/conv1_2')(net)

  units = [(block, k) for block in blocks for k in range(1, block.num_units + 1)]
  schedule = atrous_schedule([block.stride for block, _ in units], output_stride,
                             current_stride=2)
  outputs = {}
  for (block, k), (stride, rate) in zip(units, schedule):
    scope = f'{block.scope}/unit_{k}/xception_module'
    unit_rates = multi_grid if block.scope == 'exit_flow/block2' else (1, 1, 1)
    residual = net
    for i, (depth, unit_rate) in enumerate(zip(block.depths, unit_rates)):
      layer = SeparableConvBN(
          depth, 3, strides=stride if i == 2 else 1, dilation_rate=rate * unit_rate,
          preactivation=not block.activation_in_separable_conv,
          batch_norm=batch_norm, name=f'{scope}/separable_conv{i + 1}')
      residual = layer(residual)
      if layer.name == low_level_end_point:
        outputs['low_level_features'] = residual
    if block.skip == 'conv':
      shortcut = ConvBN(block.depths[-1], 1, strides=stride, activation=None,
                        batch_norm=batch_norm, name=f'{scope}/shortcut')(net)
      net = tf_keras.layers.Add(name=f'{scope}/add')([residual, shortcut])
    elif block.skip == 'sum':
      net = tf_keras.layers.Add(name=f'{scope}/add')([residual, net])
    else:
      net = residual
  outputs['features'] = net
  return tf_keras.Model(images, outputs, name=name)
