"""Keras layers of DeepLabV3+: (atrous, separable) convolutions with BatchNorm, ASPP,
the decoder, and the resizes that join them.

Every layer here stores its constructor arguments and returns them from
`get_config`, and is registered, so models save and load as `.keras` files or
SavedModels. Layers take plain arguments; `deeplab.model.build_model` maps a
`ModelConfig` to them.

The layer names used by the model builder are the official TF1 variable scopes
(e.g. `entry_flow/block1/unit_1/xception_module/separable_conv1`), which is how
`deeplab.checkpoints` finds each official variable's home.

At inference BatchNorm is folded into the depthwise kernels (and, in bfloat16 or
float16, into every kernel) in the graph, from the same variables, so checkpoints
are unchanged and Grappler/oneDNN fuse each convolution with its bias and
activation.
"""

import inspect
from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras

from deeplab import kernels

_PACKAGE = 'deeplab'
_ACTIVATIONS = {None: None, 'relu': tf.nn.relu, 'relu6': tf.nn.relu6}


def _plain_python(method):
  """Marks a layer method for AutoGraph to leave alone.

  The layers branch only on Python values (configuration, static shapes, the
  `training` flag), never on tensors, so AutoGraph has nothing to convert in them;
  Keras would still convert every `call` of a subclassed layer, and each function it
  calls, whenever a model is built or traced (about 2 s of every process that builds
  a model, and a third of a warm Xception-65 build).
  """
  wrapped = tf.autograph.experimental.do_not_convert(method)
  # Keras reads which arguments `call` takes (`training`, masks) from its signature.
  wrapped.__signature__ = inspect.signature(method)
  return wrapped


def _is_residual_sum(tensor) -> bool:
  """Whether a graph tensor is the output of an Add (False for eager tensors)."""
  op = getattr(tensor, 'op', None)
  return op is not None and op.type in ('Add', 'AddV2')


def _preactivation_relu(inputs):
  """The ReLU at the input of an Xception unit.

  A ReLU of a residual sum that also feeds other ops (the next unit's shortcut)
  makes Grappler's remapper fuse the Add into the ReLU and then fail on the sum's
  other consumers (TF 2.21: "Mutation::Apply error"), which drops every fusion of
  the graph. On a sum it is therefore written as Maximum, which the remapper leaves
  alone; elsewhere it stays a ReLU that fuses with the convolution before it.
  """
  if _is_residual_sum(inputs):
    return tf.maximum(inputs, tf.zeros([], inputs.dtype))
  return tf.nn.relu(inputs)


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
  return kernels.symmetric_padding(kernel_size, dilation_rate)


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class SyncBatchNormalization(tf_keras.layers.BatchNormalization):
  """Keras' synchronized BatchNormalization with one all-reduce each way, not three.

  Keras sums each replica's per-channel sums, sums of squares and counts across
  replicas in three all-reduces, and their gradients in three more: six
  collectives per layer and training step (about 300 per replica in a small
  MobileNetV2 step, each one a launch and, across workers, a network round trip).
  Here the three are stacked into one tensor and reduced together, and so are
  their gradients. The statistics are Keras' formulas, sum by sum; the weights,
  their names and checkpoints are Keras' layer's.
  """

  def __init__(self, **kwargs):
    kwargs['synchronized'] = True
    super().__init__(**kwargs)

  def _sync_calculate_mean_and_var(self, x, reduction_axes, keep_dims, mask=None):
    replica_context = tf.distribute.get_replica_context()
    if mask is not None or replica_context is None:
      return super()._sync_calculate_mean_and_var(x, reduction_axes, keep_dims, mask=mask)
    with tf.name_scope('moments'):
      # float16 sums overflow: Keras sums them in float32, and so does this.
      y = tf.cast(x, tf.float32) if x.dtype == tf.float16 else x
      local = tf.stack([tf.reduce_sum(y, axis=reduction_axes, keepdims=True),
                        tf.reduce_sum(tf.square(y), axis=reduction_axes, keepdims=True),
                        tf.reduce_sum(tf.ones_like(y), axis=reduction_axes, keepdims=True)])
      y_sum, y_squared_sum, count_sum = tf.unstack(
          replica_context.all_reduce(tf.distribute.ReduceOp.SUM, local))
      mean = tf.math.divide_no_nan(y_sum, count_sum)
      y_squared_mean = tf.math.divide_no_nan(y_squared_sum, count_sum)
      # E(x^2) - E(x)^2 can round below zero.
      variance = tf.maximum(y_squared_mean - tf.square(mean), 0.0)
      if not keep_dims:
        mean = tf.squeeze(mean, reduction_axes)
        variance = tf.squeeze(variance, reduction_axes)
      if x.dtype == tf.float16:
        return tf.cast(mean, tf.float16), tf.cast(variance, tf.float16)
      return mean, variance


def _make_batch_norm(batch_norm: Optional[Dict[str, Any]]):
  if batch_norm is None:
    return None
  batch_norm = dict(batch_norm)
  if batch_norm.pop('synchronized', False):
    return SyncBatchNormalization(name='BatchNorm', **batch_norm)
  return tf_keras.layers.BatchNormalization(name='BatchNorm', **batch_norm)


def _is_inference(training) -> bool:
  """Whether a layer called with `training` runs in inference mode, as Keras decides
  it (None means the global learning phase); a symbolic value counts as training."""
  if training is None:
    training = tf_keras.backend.learning_phase()
  return isinstance(training, (bool, int)) and not training


def _uses_moving_statistics(batch_norm: tf_keras.layers.BatchNormalization, training) -> bool:
  """Whether `batch_norm(x, training)` normalizes with its moving statistics: at
  inference, and always when frozen (Keras runs a non-trainable one in inference
  mode)."""
  return not batch_norm.trainable or _is_inference(training)


def _folded_batch_norm(batch_norm: tf_keras.layers.BatchNormalization):
  """Per-channel (scale, offset) with BatchNorm(x) = x * scale + offset at inference."""
  scale = tf.math.rsqrt(batch_norm.moving_variance + batch_norm.epsilon)
  if batch_norm.gamma is not None:
    scale *= batch_norm.gamma
  offset = -batch_norm.moving_mean * scale
  if batch_norm.beta is not None:
    offset += batch_norm.beta
  return scale, offset


class _ConvLayer(tf_keras.layers.Layer):
  """Shared config handling of the convolution layers below."""

  def get_config(self):
    config = super().get_config()
    config.update(self._layer_config)
    return config


class _ConvNormActivation(_ConvLayer):
  """A convolution (the subclass's `_convolve`), then BatchNorm (or a bias), then
  an activation; at inference BatchNorm folds into the kernel where the subclass's
  `_folds` says so."""

  def __init__(self, layer_config: Dict[str, Any], kernel_size: int, strides: int,
               dilation_rate: int, activation: Optional[str],
               batch_norm: Optional[Dict[str, Any]], explicit_padding: bool,
               kernel_initializer: Any, **kwargs):
    super().__init__(**kwargs)
    self._layer_config = dict(
        layer_config, kernel_size=kernel_size, strides=strides,
        dilation_rate=dilation_rate, activation=activation,
        batch_norm=None if batch_norm is None else dict(batch_norm),
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

  def _add_kernel(self, name: str, shape, output_shape):
    """Adds the kernel and, without BatchNorm, a bias (builds BatchNorm otherwise).

    Both stay float32 under mixed precision (cast in `call`), so BatchNorm folds
    into them at full precision.
    """
    kernel = self.add_weight(name, shape, initializer=self.kernel_initializer,
                             experimental_autocast=False)
    self.bias = None
    if self.batch_norm is None:
      self.bias = self.add_weight('bias', [output_shape[-1]], initializer='zeros',
                                  experimental_autocast=False)
    else:
      self.batch_norm.build(output_shape)
    return kernel

  def _folds(self, inputs, training) -> bool:
    """Whether BatchNorm folds into the kernel in this call."""
    raise NotImplementedError

  def _convolve(self, inputs, scale, training):
    """The convolution of `inputs` by the kernel, whose output channels are
    multiplied by `scale` first (None: the kernel as it is)."""
    raise NotImplementedError

  @_plain_python
  def call(self, inputs, training=None):
    scale, bias = None, self.bias
    fold = self.batch_norm is not None and self._folds(inputs, training)
    if fold:
      scale, bias = _folded_batch_norm(self.batch_norm)
    outputs = self._convolve(inputs, scale, training)
    if self.batch_norm is not None and not fold:
      outputs = self.batch_norm(outputs, training=training)
    else:
      outputs = tf.nn.bias_add(outputs, tf.cast(bias, outputs.dtype))
    if self._activation_fn is not None:
      outputs = self._activation_fn(outputs)
    return outputs


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class ConvBN(_ConvNormActivation):
  """A (possibly atrous) convolution, then BatchNorm, then an activation.

  This is the official code's `slim.conv2d` unit. Without BatchNorm the convolution
  has a bias instead (the logits layer).

  Args:
    filters: output channels.
    kernel_size: square kernel size.
    strides: square stride.
    dilation_rate: atrous rate; see `deeplab.kernels` for how it runs on each device.
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
    super().__init__({'filters': filters}, kernel_size, strides, dilation_rate, activation,
                     batch_norm, explicit_padding, kernel_initializer, **kwargs)
    self.filters = filters

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.kernel = self._add_kernel(
        'kernel', [self.kernel_size, self.kernel_size, channels, self.filters],
        list(input_shape[:-1]) + [self.filters])
    super().build(input_shape)

  def _folds(self, inputs, training) -> bool:
    # In float32 Grappler fuses the convolution with an inference BatchNorm itself;
    # in (b)float16 it does not, and the BatchNorm costs as much as the
    # convolution, so there it folds into the kernel (which is cast per call anyway).
    return inputs.dtype != tf.float32 and _uses_moving_statistics(self.batch_norm, training)

  def _convolve(self, inputs, scale, training):
    kernel = self.kernel if scale is None else self.kernel * scale
    if (self.kernel_size == 1 and self.strides == 1 and inputs.dtype != tf.float32 and
        not _is_inference(training)):
      # In 16-bit training a 1x1 convolution runs as a matrix product: oneDNN's
      # matmul gradients are 1.5-3x faster in bfloat16 than the convolution's filter
      # gradient. Inference keeps the convolution, which fuses with its bias and
      # activation.
      channels = inputs.shape[-1]
      outputs = tf.matmul(tf.reshape(inputs, [-1, channels]),
                          tf.cast(tf.reshape(kernel, [channels, self.filters]), inputs.dtype))
      outputs = tf.reshape(outputs, tf.concat([tf.shape(inputs)[:-1], [self.filters]], 0))
      outputs.set_shape(inputs.shape[:-1].concatenate([self.filters]))
      return outputs
    return kernels.conv2d(inputs, tf.cast(kernel, inputs.dtype), self.strides, self._padding,
                          self.dilation_rate, gradients=not _is_inference(training))


@tf_keras.utils.register_keras_serializable(package=_PACKAGE)
class DepthwiseConvBN(_ConvNormActivation):
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
    super().__init__({}, kernel_size, strides, dilation_rate, activation, batch_norm,
                     explicit_padding, kernel_initializer, **kwargs)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    self.depthwise_kernel = self._add_kernel(
        'depthwise_kernel', [self.kernel_size, self.kernel_size, channels, 1], input_shape)
    super().build(input_shape)

  def _folds(self, inputs, training) -> bool:
    # At inference BatchNorm folds into the kernel and a bias, which oneDNN fuses
    # with the convolution and activation; as a separate op it costs about as much
    # as the depthwise convolution itself.
    del inputs
    return _uses_moving_statistics(self.batch_norm, training)

  def _convolve(self, inputs, scale, training):
    kernel = self.depthwise_kernel
    if scale is not None:
      kernel = kernel * scale[:, tf.newaxis]
    return kernels.depthwise_conv2d(inputs, tf.cast(kernel, inputs.dtype), self.strides,
                                    self._padding, self.dilation_rate,
                                    gradients=not _is_inference(training))


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
    self._input_activation_fn = None
    if preactivation:
      self._input_activation_fn = (_preactivation_relu if activation == 'relu'
                                   else _activation(activation))
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

  @_plain_python
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
  # The op tf.compat.v1.image.resize_bilinear wraps, without its deprecation warning.
  resized = tf.raw_ops.ResizeBilinear(images=images, size=size, align_corners=True,
                                      half_pixel_centers=False)
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

  @_plain_python
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

  @_plain_python
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

  @_plain_python
  def end_points(self, features, training=None,
                 image_features=None) -> Dict[str, tf.Tensor]:
    """Every branch's output and the projection, keyed by official scope name.

    `image_features` [batch, 1, 1, c] replaces the mean of `features` in the
    image-pooling branch: inference in tiles passes the whole image's mean.
    """
    points = {}
    if self.image_pooling_conv is not None:
      pooled = (tf.reduce_mean(features, axis=[1, 2], keepdims=True)
                if image_features is None else tf.cast(image_features, features.dtype))
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

  @_plain_python
  def call(self, features, training=None, image_features=None):
    projected = self.end_points(features, training=training,
                                image_features=image_features)['concat_projection']
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

  @_plain_python
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

  @_plain_python
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

