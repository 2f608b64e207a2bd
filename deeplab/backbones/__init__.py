"""The backbone registry: one `BackboneSpec` per supported backbone name.

Each spec says how to build the feature extractor, its official variable scope,
its decoder end points, its input normalization and its official BatchNorm
settings. `build_backbone` is the only entry point the model builder needs.
"""

import dataclasses
from typing import Callable, Dict, Optional, Tuple

import tf_keras

from deeplab.backbones.mobilenet_v2 import MOBILENET_V2_END_POINTS, build_mobilenet_v2
from deeplab.backbones.resnet import build_resnet, resnet_end_points
from deeplab.backbones.xception import XCEPTION_END_POINTS, build_xception

# Official preprocessing: most backbones map pixels to [-1, 1]; the non-beta ResNets
# subtract the ImageNet mean instead (official `_MEAN_RGB`).
SYMMETRIC_NORMALIZATION = (2.0 / 255.0, -1.0)
MEAN_SUBTRACTION = (1.0, (-123.15, -115.90, -103.06))


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """How to build one backbone, and the official facts about it.

  Attributes:
    build: builder taking (output_stride, multi_grid, depth_multiplier, batch_norm,
      low_level_end_point) and returning a functional model whose outputs are
      {'features', 'low_level_features'}.
    scope: official variable scope (and the built model's name).
    end_points: decoder end point layer names keyed by nominal stride.
    normalization: (scale, offset) applied to pixels in [0, 255].
    batch_norm_momentum: official BatchNorm decay.
    batch_norm_epsilon: official BatchNorm epsilon.
  """
  build: Callable[..., tf_keras.Model]
  scope: str
  end_points: Dict[int, str]
  normalization: Tuple
  batch_norm_momentum: float
  batch_norm_epsilon: float


def _xception(name: str) -> BackboneSpec:

  def build(output_stride, multi_grid, depth_multiplier, batch_norm, low_level_end_point):
    del depth_multiplier  # Xception has none.
    return build_xception(name, output_stride, multi_grid, batch_norm, low_level_end_point)

  return BackboneSpec(build, name, XCEPTION_END_POINTS[name], SYMMETRIC_NORMALIZATION,
                      batch_norm_momentum=0.9997, batch_norm_epsilon=1e-3)


def _resnet(depth: int, beta: bool) -> BackboneSpec:

  def build(output_stride, multi_grid, depth_multiplier, batch_norm, low_level_end_point):
    del depth_multiplier  # ResNet has none.
    return build_resnet(depth, beta, output_stride, multi_grid, batch_norm,
                        low_level_end_point)

  return BackboneSpec(build, f'resnet_v1_{depth}', resnet_end_points(depth),
                      SYMMETRIC_NORMALIZATION if beta else MEAN_SUBTRACTION,
                      batch_norm_momentum=0.95, batch_norm_epsilon=1e-5)


def _mobilenet_v2() -> BackboneSpec:

  def build(output_stride, multi_grid, depth_multiplier, batch_norm, low_level_end_point):
    del multi_grid  # MobileNetV2 has no multi-grid.
    return build_mobilenet_v2(output_stride, depth_multiplier, batch_norm,
                              low_level_end_point)

  return BackboneSpec(build, 'MobilenetV2', MOBILENET_V2_END_POINTS,
                      SYMMETRIC_NORMALIZATION, batch_norm_momentum=0.997,
                      batch_norm_epsilon=1e-3)


BACKBONES: Dict[str, BackboneSpec] = {
    'xception_41': _xception('xception_41'),
    'xception_65': _xception('xception_65'),
    'xception_71': _xception('xception_71'),
    'resnet_v1_50': _resnet(50, beta=False),
    'resnet_v1_50_beta': _resnet(50, beta=True),
    'resnet_v1_101': _resnet(101, beta=False),
    'resnet_v1_101_beta': _resnet(101, beta=True),
    'mobilenet_v2': _mobilenet_v2(),
}


def get_backbone_spec(name: str) -> BackboneSpec:
  """The spec of backbone `name`; raises a ValueError listing the known names."""
  if name not in BACKBONES:
    raise ValueError(f'Unknown backbone {name!r}; choose one of: '
                     f'{", ".join(sorted(BACKBONES))}.')
  return BACKBONES[name]


def build_backbone(name: str,
                   output_stride: int = 16,
                   multi_grid: Tuple[int, int, int] = (1, 1, 1),
                   depth_multiplier: float = 1.0,
                   batch_norm: Optional[Dict] = None,
                   low_level_stride: Optional[int] = None) -> tf_keras.Model:
  """Builds backbone `name` as a functional feature extractor.

  Args:
    name: a key of `BACKBONES`.
    output_stride: 8, 16 or 32.
    multi_grid: unit rates of the last block (ResNet, Xception).
    depth_multiplier: MobileNetV2 width multiplier.
    batch_norm: BatchNormalization keyword arguments; None uses the backbone's
      official momentum and epsilon.
    low_level_stride: also return the decoder end point of this stride (4 or 8) as
      'low_level_features'.

  Returns:
    A model from preprocessed images [batch, H, W, 3] to a dict with 'features'
    [batch, ceil(H/os), ceil(W/os), C] (and 'low_level_features').

  Example:
    >>> import tensorflow as tf
    >>> backbone = build_backbone('mobilenet_v2', output_stride=16, low_level_stride=4)
    >>> outputs = backbone(tf.zeros([1, 65, 65, 3]))
    >>> outputs['features'].shape, outputs['low_level_features'].shape
    (TensorShape([1, 5, 5, 320]), TensorShape([1, 17, 17, 144]))
  """
  spec = get_backbone_spec(name)
  if batch_norm is None:
    batch_norm = {'momentum': spec.batch_norm_momentum, 'epsilon': spec.batch_norm_epsilon}
  end_point = None
  if low_level_stride is not None:
    if low_level_stride not in spec.end_points:
      raise ValueError(f'Backbone {name!r} has no decoder end point at stride '
                       f'{low_level_stride}; it has {sorted(spec.end_points)}.')
    end_point = spec.end_points[low_level_stride]
  return spec.build(output_stride, tuple(multi_grid), depth_multiplier, batch_norm,
                    end_point)


__all__ = ['BACKBONES', 'BackboneSpec', 'build_backbone', 'get_backbone_spec']
