"""Keras layers of DeepLabV3+: (atrous, separable) convolutions with BatchNorm, ASPP,
the decoder, and the resizes that join them.

Every layer here stores its constructor arguments and returns them from
`get_config`, and is registered, so models save and load as `.keras` files or
SavedModels. Layers take plain arguments; `deeplab.model.build_model` maps a
`ModelConfig` to them.

The layer names used by the model builder are the official TF1 variable scopes
(e.g. `entry_flow/block1/unit_1/xception_module/separable_conv1`), which is how
`deeplab.checkpoints` finds each official variable's home.
"""

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras

_PACKAGE = 'deeplab'
_ACTIVATIONS = {None: None, 'relu': tf.nn.relu, 'relu6': tf.nn.relu6}


def _activation(name: Optional[str]):
  if name not in _ACTIVATIONS:
    raise ValueError(f'activation must be one of {sorted(_ACTIVATIONS, key=str)}; '
                     f'got {name!r}.')
  return _ACTIVATIONS[name]


def _padding(kernel_size: int, strides: int, dilation_rate: int, explicit_padding: bool):
  """The padding argument of tf.nn.conv2d / depthwise_conv2d.

  Strided convolutions of the official Xception and ResNet pad explicitly and
  symmetrically (`conv2d_same`), not as TF's 'SAME' (which pads the bottom/right
  more on even sizes); matching it is what lets official weights reproduce.
  At stride 1, 'SAME' is already symmetric for odd kernels.
  """
  if strides == 1 or not explicit_padding:
    return 'SAME'
  effective = kernel_size + (kernel_size - 1) * (dilation_rate - 1)
  begin = (effective - 1) // 2
  end = effective - 1 - begin
  return [[0, 0], [begin, end], [begin, end], [0, 0]]


def _make_batch_norm(batch_norm: Optional[Dict[str, Any]]):
  if batch_norm is None:
    return None
  return tf_keras.layers.BatchNormalization(name='BatchNorm', **batch_norm)


class _ConvLayer(tf_keras.layers.Layer):
  """Shared config handling of the convolution layers below."""

  def get_config(self):
    config = super().get_config()
    config.update(self._layer_config)
    return config


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class ConvBN(_ConvLayer):
  """A (possibly atrous) convolution, then BatchNorm, then an activation.

  This is the official code's `slim.conv2d` unit. Without BatchNorm the convolution
  has a bias instead (the logits layer).

  Args:
    filters: output channels.
    kernel_size: square kernel size.
    strides: square stride.
    dilation_rate: atrous rate; runs as a native dilated convolution.
    activation: 'relu', 'relu6' or None, applied after BatchNorm.
    batch_norm: keyword arguments of `tf_keras.layers.BatchNormalization`
      (momentum, epsilon, synchronized), or None for no BatchNorm and a bias.
    explicit_padding: pad strided convolutions symmetrically (official
      `conv2d_same`) instead of TF's 'SAME'.
    kernel_initializer: initializer of the kernel.

  Input: float [batch, height, width, channels]. Output: [batch, height', width',
  filters] with height' = ceil(height / strides).

  Example:
    >>> layer = ConvBN(8, 3, strides=2, batch_norm={'epsilon': 1e-5})
    >>> layer(tf.zeros([1, 65, 65, 3])).shape
    TensorShape([1, 33, 33, 8])
  """

  def __init__(self,
               filters: int,
               kernel_size: int = 1,
               strides: int = 1,
               dilation_rate: int = 1,
               activation: Optional[str] = 'relu',
               batch_norm: Optional[Dict[str, Any]] = None,
               explicit_padding: bool = True,
               kernel_initializer: Any = 'glorot_uniform',
               **kwargs):
    super().__init__(**kwargs)
    self._layer_config = dict(
        filters=filters, kernel_size=kernel_size, strides=strides,
        dilation_rate=dilation_rate, activation=activation,
        batch_norm=None if batch_norm is None else dict(batch_norm),
        explicit_padding=explicit_padding,
        kernel_initializer=tf_keras.initializers.serialize(
            tf_keras.initializers.get(kernel_initializer)))
    self.filters = filters
    self.kernel_size = kernel_size
    self.strides = strides
    self.dilation_rate = dilation_rate
    self._activation_fn = _activation(activation)
    self._padding = _padding(kernel_size, strides, dilation_rate, explicit_padding)
    self.kernel_initializer = tf_keras.initializers.get(kernel_initializer)
    self.batch_norm = _make_batch_norm(batch_norm)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.kernel = self.add_weight(
        'kernel', [self.kernel_size, self.kernel_size, channels, self.filters],
        initializer=self.kernel_initializer)
    self.bias = None
    if self.batch_norm is None:
      self.bias = self.add_weight('bias', [self.filters], initializer='zeros')
    else:
      self.batch_norm.build(list(input_shape[:-1]) + [self.filters])
    super().build(input_shape)

  def call(self, inputs, training=None):
    outputs = tf.nn.conv2d(inputs, self.kernel, strides=self.strides,
                           padding=self._padding, dilations=self.dilation_rate)
    if self.batch_norm is not None:
      outputs = self.batch_norm(outputs, training=training)
    else:
      outputs = tf.nn.bias_add(outputs, self.bias)
    if self._activation_fn is not None:
      outputs = self._activation_fn(outputs)
    return outputs


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class DepthwiseConvBN(_ConvLayer):
  """A (possibly atrous) depthwise convolution, then BatchNorm, then an activation.

  Args:
    kernel_size, strides, dilation_rate, activation, batch_norm, explicit_padding,
    kernel_initializer: as for `ConvBN`; the depth multiplier is 1.

  Example:
    >>> DepthwiseConvBN(3, dilation_rate=2, batch_norm={})(tf.zeros([1, 9, 9, 4])).shape
    TensorShape([1, 9, 9, 4])
  """

  def __init__(self,
               kernel_size: int = 3,
               strides: int = 1,
               dilation_rate: int = 1,
               activation: Optional[str] = 'relu',
               batch_norm: Optional[Dict[str, Any]] = None,
               explicit_padding: bool = True,
               kernel_initializer: Any = 'glorot_uniform',
               **kwargs):
    super().__init__(**kwargs)
    self._layer_config = dict(
        kernel_size=kernel_size, strides=strides, dilation_rate=dilation_rate,
        activation=activation, batch_norm=None if batch_norm is None else dict(batch_norm),
        explicit_padding=explicit_padding,
        kernel_initializer=tf_keras.initializers.serialize(
            tf_keras.initializers.get(kernel_initializer)))
    self.kernel_size = kernel_size
    self.strides = strides
    self.dilation_rate = dilation_rate
    self._activation_fn = _activation(activation)
    self._padding = _padding(kernel_size, strides, dilation_rate, explicit_padding)
    self.kernel_initializer = tf_keras.initializers.get(kernel_initializer)
    self.batch_norm = _make_batch_norm(batch_norm)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.depthwise_kernel = self.add_weight(
        'depthwise_kernel', [self.kernel_size, self.kernel_size, channels, 1],
        initializer=self.kernel_initializer)
    self.bias = None
    if self.batch_norm is None:
      self.bias = self.add_weight('bias', [channels], initializer='zeros')
    else:
      self.batch_norm.build(input_shape)
    super().build(input_shape)

  def call(self, inputs, training=None):
    # The native op runs dilations directly; tf.nn.depthwise_conv2d would wrap a
    # dilated one in SpaceToBatchND / BatchToSpaceND copies.
    outputs = tf.compat.v1.nn.depthwise_conv2d_native(
        inputs, self.depthwise_kernel, strides=[1, self.strides, self.strides, 1],
        padding=self._padding, dilations=[1, self.dilation_rate, self.dilation_rate, 1])
    if self.batch_norm is not None:
      outputs = self.batch_norm(outputs, training=training)
    else:
      outputs = tf.nn.bias_add(outputs, self.bias)
    if self._activation_fn is not None:
      outputs = self._activation_fn(outputs)
    return outputs


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class SeparableConvBN(_ConvLayer):
  """Atrous depthwise-separable convolution: depthwise 3x3 + BN, pointwise 1x1 + BN.

  Unlike `tf_keras.layers.SeparableConv2D`, BatchNorm (and optionally the
  activation) sits between the depthwise and the pointwise convolution, as in the
  official code's `split_separable_conv2d`, whose checkpoints store
  `<name>_depthwise` and `<name>_pointwise` separately.

  Args:
    filters: output channels of the pointwise convolution.
    kernel_size, strides, dilation_rate: of the depthwise convolution.
    activation: 'relu', 'relu6' or None.
    preactivation: apply `activation` to the input only, none after the BatchNorms
      (the official Xception modules' `activation_fn_in_separable_conv=False`);
      otherwise apply it after each BatchNorm.
    batch_norm: BatchNormalization keyword arguments (required: both halves have BN).
    explicit_padding: as for `ConvBN`.

  Example:
    >>> SeparableConvBN(16, dilation_rate=6, batch_norm={})(tf.zeros([1, 17, 17, 8])).shape
    TensorShape([1, 17, 17, 16])
  """

  def __init__(self,
               filters: int,
               kernel_size: int = 3,
               strides: int = 1,
               dilation_rate: int = 1,
               activation: Optional[str] = 'relu',
               preactivation: bool = False,
               batch_norm: Optional[Dict[str, Any]] = None,
               explicit_padding: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    batch_norm = dict(batch_norm or {})
    self._layer_config = dict(
        filters=filters, kernel_size=kernel_size, strides=strides,
        dilation_rate=dilation_rate, activation=activation, preactivation=preactivation,
        batch_norm=batch_norm, explicit_padding=explicit_padding)
    self.preactivation = preactivation
    self._input_activation_fn = _activation(activation) if preactivation else None
    inner_activation = None if preactivation else activation
    self.depthwise = DepthwiseConvBN(
        kernel_size, strides=strides, dilation_rate=dilation_rate,
        activation=inner_activation, batch_norm=batch_norm,
        explicit_padding=explicit_padding, name=f'{self.name}_depthwise')
    self.pointwise = ConvBN(filters, 1, activation=inner_activation,
                            batch_norm=batch_norm, name=f'{self.name}_pointwise')

  def build(self, input_shape):
    self.depthwise.build(input_shape)
    self.pointwise.build(list(input_shape[:-1]) + [input_shape[-1]])
    super().build(input_shape)

  def call(self, inputs, training=None):
    if self._input_activation_fn is not None:
      inputs = self._input_activation_fn(inputs)
    return self.pointwise(self.depthwise(inputs, training=training), training=training)


def _conv_or_separable(filters: int, dilation_rate: int, separable: bool,
                       batch_norm: Dict[str, Any], name: str):
  """A 3x3 ConvBN+ReLU, split into depthwise and pointwise parts when separable."""
  if separable:
    return SeparableConvBN(filters, 3, dilation_rate=dilation_rate,
                           batch_norm=batch_norm, name=name)
  return ConvBN(filters, 3, dilation_rate=dilation_rate, batch_norm=batch_norm, name=name)


def resize_bilinear(images: tf.Tensor, size) -> tf.Tensor:
  """Bilinear resize with corners aligned, as every resize of the official model.

  Args:
    images: float [batch, height, width, channels].
    size: [new_height, new_width], ints or int32 tensors.

  Returns:
    The resized images, in the dtype of `images`.
  """
  resized = tf.compat.v1.image.resize_bilinear(images, size, align_corners=True)
  return tf.cast(resized, images.dtype)


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class ImageNormalization(tf_keras.layers.Layer):
  """Maps RGB pixels in [0, 255] to a backbone's input range: pixels * scale + offset.

  Args:
    scale: multiplier (2/255 for the [-1, 1] range of most official backbones).
    offset: added after scaling; a number or one per channel (e.g. minus the
      ImageNet mean for the non-beta ResNets).

  Input: uint8 or float [batch, height, width, 3]. Output: float, same shape.

  Example:
    >>> ImageNormalization(2 / 255, -1.0)(tf.constant([[[[0, 255, 127.5]]]])).numpy()
    array([[[[-1.,  1.,  0.]]]], dtype=float32)
  """

  def __init__(self, scale: float, offset: Any = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.scale = scale
    self.offset = list(offset) if isinstance(offset, (list, tuple)) else offset

  def call(self, images):
    if images.shape.rank is not None and (images.shape.rank != 4 or images.shape[-1] != 3):
      raise ValueError(f'images must be RGB pixels [batch, height, width, 3]; got shape '
                       f'{images.shape}. Convert grayscale or RGBA images to RGB first.')
    offset = tf.constant(self.offset, self.compute_dtype)
    return tf.cast(images, self.compute_dtype) * tf.cast(self.scale, self.compute_dtype) + offset

  def get_config(self):
    config = super().get_config()
    config.update(scale=self.scale, offset=self.offset)
    return config


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class ResizeLike(tf_keras.layers.Layer):
  """Resizes its first input (bilinear, corners aligned) to the spatial size of the
  second: the decoder's upsampling of ASPP features and the logits' upsampling to
  the input image size.

  Example:
    >>> ResizeLike()([tf.zeros([1, 9, 9, 2]), tf.zeros([1, 33, 33, 3])]).shape
    TensorShape([1, 33, 33, 2])
  """

  def call(self, inputs):
    features, reference = inputs
    return resize_bilinear(features, tf.shape(reference)[1:3])


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class ASPP(tf_keras.layers.Layer):
  """Atrous Spatial Pyramid Pooling.

  Branches, concatenated in the official order: image pooling (global average,
  1x1 conv, broadcast back), `aspp0` (1x1 conv), then `aspp1..3` (3x3 atrous
  convolutions, separable by default, one per rate). A 1x1 `concat_projection` and
  dropout follow.

  Args:
    filters: channels of each branch and of the projection (256 in the paper).
    atrous_rates: the atrous rates of the 3x3 branches; () for none.
    separable: atrous depthwise-separable convolutions instead of plain 3x3.
    image_pooling: include the image-level (global pooling) branch.
    dropout: dropout rate after the projection (active in training only).
    batch_norm: BatchNormalization keyword arguments.

  Input: backbone features [batch, h, w, c]. Output: [batch, h, w, filters].

  Example:
    >>> aspp = ASPP(32, atrous_rates=(6, 12, 18), batch_norm={'epsilon': 1e-5})
    >>> aspp(tf.zeros([2, 9, 9, 64])).shape
    TensorShape([2, 9, 9, 32])
  """

  def __init__(self,
               filters: int = 256,
               atrous_rates: Sequence[int] = (6, 12, 18),
               separable: bool = True,
               image_pooling: bool = True,
               dropout: float = 0.1,
               batch_norm: Optional[Dict[str, Any]] = None,
               **kwargs):
    super().__init__(**kwargs)
    batch_norm = dict(batch_norm or {})
    self.filters = filters
    self.atrous_rates = tuple(atrous_rates)
    self.separable = separable
    self.image_pooling = image_pooling
    self.dropout = dropout
    self.batch_norm = batch_norm
    self.image_pooling_conv = (ConvBN(filters, 1, batch_norm=batch_norm, name='image_pooling')
                               if image_pooling else None)
    self.aspp0 = ConvBN(filters, 1, batch_norm=batch_norm, name='aspp0')
    self.atrous_convs = [
        _conv_or_separable(filters, rate, separable, batch_norm, f'aspp{i}')
        for i, rate in enumerate(self.atrous_rates, 1)
    ]
    self.concat_projection = ConvBN(filters, 1, batch_norm=batch_norm,
                                    name='concat_projection')
    self.dropout_layer = tf_keras.layers.Dropout(dropout, name='concat_projection_dropout')

  def build(self, input_shape):
    channels = int(input_shape[-1])
    if self.image_pooling_conv is not None:
      self.image_pooling_conv.build([None, 1, 1, channels])
    self.aspp0.build(input_shape)
    for conv in self.atrous_convs:
      conv.build(input_shape)
    num_branches = 1 + len(self.atrous_convs) + int(self.image_pooling)
    self.concat_projection.build([None, None, None, num_branches * self.filters])
    super().build(input_shape)

  def end_points(self, features, training=None) -> Dict[str, tf.Tensor]:
    """Every branch's output and the projection, keyed by official scope name."""
    points = {}
    if self.image_pooling_conv is not None:
      pooled = tf.reduce_mean(features, axis=[1, 2], keepdims=True)
      points['image_pooling'] = self.image_pooling_conv(pooled, training=training)
    points['aspp0'] = self.aspp0(features, training=training)
    for conv in self.atrous_convs:
      points[conv.name] = conv(features, training=training)
    branches = list(points.values())
    if self.image_pooling_conv is not None:
      # A bilinear resize of a 1x1 map with corners aligned is a broadcast.
      branches[0] = tf.broadcast_to(branches[0], tf.shape(branches[1]))
    points['concat_projection'] = self.concat_projection(
        tf.concat(branches, axis=-1), training=training)
    return points

  def call(self, features, training=None):
    projected = self.end_points(features, training=training)['concat_projection']
    return self.dropout_layer(projected, training=training)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, atrous_rates=list(self.atrous_rates),
                  separable=self.separable, image_pooling=self.image_pooling,
                  dropout=self.dropout, batch_norm=self.batch_norm)
    return config


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class Decoder(tf_keras.layers.Layer):
  """The DeepLabV3+ decoder: fuses upsampled ASPP features with low-level features.

  The low-level features go through a 1x1 conv to `low_level_filters` (48: the
  paper's Table 1), the ASPP features are resized bilinearly to their size, both
  are concatenated [ASPP, low-level] and refined by two 3x3 convolutions (separable
  by default; the paper's Table 2).

  Args:
    filters: channels of the two 3x3 convolutions (256).
    low_level_filters: channels of the low-level projection (48).
    separable: separable 3x3 convolutions.
    batch_norm: BatchNormalization keyword arguments.

  Inputs: [ASPP features [batch, h, w, c], low-level features [batch, H, W, c']].
  Output: [batch, H, W, filters].

  Example:
    >>> decoder = Decoder(32, batch_norm={'epsilon': 1e-5})
    >>> decoder([tf.zeros([1, 9, 9, 16]), tf.zeros([1, 33, 33, 24])]).shape
    TensorShape([1, 33, 33, 32])
  """

  def __init__(self,
               filters: int = 256,
               low_level_filters: int = 48,
               separable: bool = True,
               batch_norm: Optional[Dict[str, Any]] = None,
               **kwargs):
    super().__init__(**kwargs)
    batch_norm = dict(batch_norm or {})
    self.filters = filters
    self.low_level_filters = low_level_filters
    self.separable = separable
    self.batch_norm = batch_norm
    self.feature_projection = ConvBN(low_level_filters, 1, batch_norm=batch_norm,
                                     name='decoder/feature_projection0')
    if separable:
      self.convs = [
          SeparableConvBN(filters, 3, batch_norm=batch_norm, name=f'decoder/decoder_conv{i}')
          for i in range(2)
      ]
    else:
      # The official plain decoder is `slim.repeat(..., 2, conv2d, scope='decoder_conv0')`.
      self.convs = [
          ConvBN(filters, 3, batch_norm=batch_norm, name=f'decoder/decoder_conv0/decoder_conv0_{i}')
          for i in (1, 2)
      ]

  def build(self, input_shape):
    aspp_shape, low_level_shape = input_shape
    self.feature_projection.build(low_level_shape)
    channels = int(aspp_shape[-1]) + self.low_level_filters
    self.convs[0].build([None, None, None, channels])
    self.convs[1].build([None, None, None, self.filters])
    super().build(input_shape)

  def end_points(self, inputs, training=None) -> Dict[str, tf.Tensor]:
    """The projection and each 3x3 convolution's output."""
    aspp_features, low_level_features = inputs
    projection = self.feature_projection(low_level_features, training=training)
    upsampled = resize_bilinear(aspp_features, tf.shape(projection)[1:3])
    points = {'feature_projection0': projection}
    features = tf.concat([upsampled, projection], axis=-1)
    for i, conv in enumerate(self.convs):
      features = conv(features, training=training)
      points[f'decoder_conv{i}'] = features
    return points

  def call(self, inputs, training=None):
    return self.end_points(inputs, training=training)['decoder_conv1']

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, low_level_filters=self.low_level_filters,
                  separable=self.separable, batch_norm=self.batch_norm)
    return config


def batch_norm_args(momentum: float, epsilon: float,
                    synchronized: bool = False) -> Dict[str, Any]:
  """BatchNormalization keyword arguments as the layers above take them."""
  args: Dict[str, Any] = {'momentum': momentum, 'epsilon': epsilon}
  if synchronized:
    args['synchronized'] = True
  return args

