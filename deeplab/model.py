"""DeepLabV3+ from a `ModelConfig`: backbone -> ASPP -> decoder -> logits.

Example:
  >>> import numpy as np
  >>> model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3))
  >>> model(np.zeros([1, 65, 97, 3], np.uint8)).shape
  TensorShape([1, 65, 97, 3])
"""

import contextlib
import dataclasses
from typing import Dict, Iterator, Optional

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from deeplab import kernels
from deeplab.backbones import build_backbone, get_backbone_spec
from deeplab.config import SUPPORTED_PRECISIONS, ModelConfig
from deeplab.hyperparams import ConfigError, from_dict, to_dict
from deeplab.layers import (ASPP, ConvBN, Decoder, ImageNormalization, ResizeLike,
                            batch_norm_args)

# Official BatchNorm settings of the ASPP, decoder (model.py).
HEAD_BATCH_NORM_MOMENTUM = 0.9997
HEAD_BATCH_NORM_EPSILON = 1e-5
# The decoder's low-level projection width (the paper's Table 1).
LOW_LEVEL_FILTERS = 48
# Official initializer of the logits layer.
LOGITS_STDDEV = 0.01


def _logits_dtype():
  """The logits layer's dtype: float32 under a 16-bit mixed precision policy (labels
  then agree with a float32 model's on over 99% of pixels instead of about 98%, for
  about 0.2% of the multiply-adds), else None (the global policy)."""
  policy = tf_keras.mixed_precision.global_policy()
  return 'float32' if policy.compute_dtype in ('bfloat16', 'float16') else None


@tf_keras.utils.register_keras_serializable(package='deeplab')
class DeepLabModel(tf_keras.Model):
  """A DeepLabV3 / DeepLabV3+ network as a functional Keras model.

  Input: RGB pixels in [0, 255], uint8 or float32, [batch, height, width, 3], any
  height and width (at least 32). The model normalizes them itself.
  Output: float32 logits [batch, height, width, num_classes] at the input size.

  The layer names are the official TF1 variable scopes: the backbone is the nested
  model named after its scope (e.g. 'xception_65'), its layers are named like
  'entry_flow/block1/unit_1/xception_module/separable_conv1', then come 'aspp',
  'decoder' and 'logits/semantic'.

  Attributes:
    config: the `ModelConfig` the model was built from.
  """

  def __init__(self, config: ModelConfig, name: str = 'deeplab', **kwargs):
    spec = get_backbone_spec(config.backbone)
    backbone_batch_norm = batch_norm_args(
        _either(config.batch_norm_momentum, spec.batch_norm_momentum),
        _either(config.batch_norm_epsilon, spec.batch_norm_epsilon),
        bool(config.sync_batch_norm))
    head_batch_norm = batch_norm_args(
        _either(config.batch_norm_momentum, HEAD_BATCH_NORM_MOMENTUM),
        _either(config.batch_norm_epsilon, HEAD_BATCH_NORM_EPSILON),
        bool(config.sync_batch_norm))

    images = tf_keras.Input((None, None, 3), name='images')
    scale, offset = spec.normalization
    normalized = ImageNormalization(scale, offset, name='normalize')(images)
    backbone = build_backbone(
        config.backbone, output_stride=config.output_stride,
        multi_grid=config.resolved_multi_grid, depth_multiplier=config.depth_multiplier,
        batch_norm=backbone_batch_norm, low_level_stride=config.decoder_output_stride)
    backbone_outputs = backbone(normalized)
    features = ASPP(config.aspp_convs_filters, config.resolved_atrous_rates,
                    separable=config.aspp_with_separable_conv,
                    image_pooling=config.add_image_level_feature,
                    dropout=config.dropout, batch_norm=head_batch_norm,
                    name='aspp')(backbone_outputs['features'])
    if config.decoder_output_stride is not None:
      features = Decoder(config.decoder_filters, LOW_LEVEL_FILTERS,
                         separable=config.decoder_use_separable_conv,
                         batch_norm=head_batch_norm, name='decoder')(
                             [features, backbone_outputs['low_level_features']])
    logits = ConvBN(config.num_classes, 1, activation=None, batch_norm=None,
                    kernel_initializer=tf_keras.initializers.TruncatedNormal(
                        stddev=LOGITS_STDDEV),
                    name='logits/semantic', dtype=_logits_dtype())(features)
    # float32 whatever the precision policy, so losses and argmax are stable.
    upsampled = ResizeLike(name='upsample_logits', dtype='float32')([logits, images])
    super().__init__(inputs=images, outputs=upsampled, name=name, **kwargs)
    self.config = config

  @property
  def backbone(self) -> tf_keras.Model:
    """The nested backbone model (named after its official scope)."""
    return self.get_layer(get_backbone_spec(self.config.backbone).scope)

  def get_config(self):
    return {'config': to_dict(self.config), 'name': self.name}

  @classmethod
  def from_config(cls, config, custom_objects=None):
    del custom_objects  # Everything the model needs is registered.
    return cls(from_dict(ModelConfig, config['config']), name=config.get('name', 'deeplab'))


def _either(value, default):
  return default if value is None else value


@contextlib.contextmanager
def precision_policy(precision: Optional[str]) -> Iterator[None]:
  """Keras layers built inside compute in `precision` (one of
  `SUPPORTED_PRECISIONS`; their variables stay float32 under the mixed ones);
  None keeps the global policy."""
  if precision is None:
    yield
    return
  if precision not in SUPPORTED_PRECISIONS:
    raise ValueError(f'precision must be one of {", ".join(SUPPORTED_PRECISIONS)}; '
                     f'got {precision!r}.')
  if (precision == 'mixed_bfloat16' and kernels.cpu_lacks_bfloat16() and
      not tf.config.list_logical_devices('GPU')):
    logging.warning('mixed_bfloat16 on a CPU without bfloat16 instructions (AVX-512 BF16 or '
                    'AMX): TensorFlow emulates it, slower than float32; use float32 here.')
  previous = tf_keras.mixed_precision.global_policy()
  tf_keras.mixed_precision.set_global_policy(precision)
  try:
    yield
  finally:
    tf_keras.mixed_precision.set_global_policy(previous)


def build_model(config: ModelConfig, precision: Optional[str] = None) -> DeepLabModel:
  """Builds the DeepLab network described by `config`.

  Args:
    config: a `ModelConfig`.
    precision: 'float32', 'mixed_bfloat16' (CPUs with AVX-512 BF16 or AMX, TPUs),
      'mixed_float16' (GPUs) or 'float64'; None: the global Keras policy. Under a
      mixed policy the variables stay float32 and the logits are computed in float32.

  Returns:
    A `tf_keras.Model` from RGB pixels [batch, height, width, 3] (uint8 or float32,
    0..255) to float32 logits [batch, height, width, num_classes].

  Example:
    >>> model = build_model(ModelConfig(backbone='mobilenet_v2', decoder_output_stride=None))
    >>> model.count_params() > 0
    True
  """
  if not isinstance(config, ModelConfig):
    raise TypeError(f'build_model expects a deeplab.ModelConfig; got {type(config).__name__}.')
  if config.num_classes is None:
    raise ConfigError('ModelConfig.num_classes is None: set it, or build the model of an '
                      'experiment whose data says it (deeplab.data.resolve_dataset_settings).')
  with precision_policy(precision):
    return DeepLabModel(config)


def with_output_stride(model: DeepLabModel, output_stride: int) -> DeepLabModel:
  """The same network and weights at another output stride (e.g. 16 -> 8 for eval).

  The variables are identical at every output stride; only strides and atrous
  rates change, so the new model gets a copy of every weight (and keeps its
  precision policy).

  Example:
    >>> model = build_model(ModelConfig(backbone='mobilenet_v2'))
    >>> dense = with_output_stride(model, 8)
    >>> dense.config.output_stride, len(dense.weights) == len(model.weights)
    (8, True)
  """
  rebuilt = build_model(model.config.with_output_stride(output_stride),
                        precision=model.dtype_policy.name)
  rebuilt.set_weights(model.get_weights())
  return rebuilt


def end_points(model: DeepLabModel, images) -> Dict[str, tf.Tensor]:
  """Runs `model` in inference mode and returns its intermediate tensors.

  Keys follow the official names: 'backbone_features', 'aspp_image_pooling',
  'aspp0'..'aspp3', 'aspp_concat_projection', 'decoder_feature_projection0',
  'decoder_conv0', 'decoder_conv1', 'logits' (before upsampling) and
  'logits_upsampled'. Used to find where two implementations start to differ.
  """
  images = tf.convert_to_tensor(images)
  normalized = model.get_layer('normalize')(images)
  backbone_outputs = model.backbone(normalized, training=False)
  aspp = model.get_layer('aspp')
  points = {'backbone_features': backbone_outputs['features']}
  aspp_points = aspp.end_points(backbone_outputs['features'], training=False)
  points.update({f'aspp_{k}' if not k.startswith('aspp') else k: v
                 for k, v in aspp_points.items()})
  features = aspp(backbone_outputs['features'], training=False)
  if model.config.decoder_output_stride is not None:
    decoder = model.get_layer('decoder')
    decoder_inputs = [features, backbone_outputs['low_level_features']]
    points.update({f'decoder_{k}' if not k.startswith('decoder') else k: v
                   for k, v in decoder.end_points(decoder_inputs, training=False).items()})
    features = decoder(decoder_inputs, training=False)
  points['logits'] = model.get_layer('logits/semantic')(features)
  points['logits_upsampled'] = model.get_layer('upsample_logits')([points['logits'], images])
  return points


@dataclasses.dataclass(frozen=True)
class ModelCost:
  """Size and nominal compute of a model at one input size."""
  trainable_params: int
  multiply_adds: int
  height: int
  width: int


def model_cost(config: ModelConfig, height: int = 513, width: int = 513) -> ModelCost:
  """Trainable parameters and nominal multiply-adds of `config` at height x width.

  Multiply-adds count every convolution at its logical output size:
  k_h * k_w * C_in * C_out * H_out * W_out (depthwise: k_h * k_w * C * H_out * W_out),
  the "nominal" figure of the official numbers; resizes, BatchNorm and activations
  are not counted.

  Example:
    >>> cost = model_cost(ModelConfig(backbone='mobilenet_v2', atrous_rates=(),
    ...                               decoder_output_stride=None), 513, 513)
    >>> cost.trainable_params, round(cost.multiply_adds / 1e9, 3)
    (2113557, 2.741)
  """
  model = build_model(config)
  params = int(sum(np.prod(w.shape) for w in model.trainable_weights))
  # AutoGraph off: the model is graph-safe, and converting costs time.
  forward = tf.function(lambda images: model(images, training=False), autograph=False)
  graph = forward.get_concrete_function(
      tf.TensorSpec([1, height, width, 3], tf.float32)).graph
  multiply_adds = 0
  for op in graph.get_operations():
    if op.type in ('Conv2D', 'DepthwiseConv2dNative'):
      kernel_shape = op.inputs[1].shape.as_list()
      batch, out_height, out_width, _ = op.outputs[0].shape.as_list()
      multiply_adds += int(np.prod(kernel_shape)) * batch * out_height * out_width
  return ModelCost(params, multiply_adds, height, width)

