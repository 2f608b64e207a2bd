"""Inference on images of any size: padding, tiling, multi-scale and flipped inputs.

This is the one inference path that evaluation, visualization and export share.

Example:
  >>> import numpy as np
  >>> from deeplab import ModelConfig, build_model
  >>> model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3))
  >>> probabilities = predict_probabilities(model, np.zeros([1, 50, 70, 3], np.uint8),
  ...                                       eval_scales=(0.75, 1.0), flip=True)
  >>> probabilities.shape
  TensorShape([1, 50, 70, 3])
"""

import os
from typing import Callable, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras

from deeplab.backbones import get_backbone_spec
from deeplab.config import TilingConfig
from deeplab.layers import resize_bilinear
from deeplab.model import DeepLabModel
from deeplab.tiling import blend_tiles, mean_over_tiles


def scale_dimension(size, scale: float):
  """The official `scale_dimension`: int((size - 1) * scale + 1), for ints or tensors."""
  if isinstance(size, tf.Tensor):
    return tf.cast((tf.cast(size, tf.float32) - 1.0) * scale + 1.0, tf.int32)
  return int((float(size) - 1.0) * scale + 1.0)


def valid_size(size, output_stride: int):
  """The smallest size >= `size` of the form k * output_stride + 1.

  At these sizes every feature map's corners line up with the image's corners,
  which the corner-aligned resizes of the model assume (513 = 32 * 16 + 1 is the
  official crop size for this reason).
  """
  return (size - 1 + output_stride - 1) // output_stride * output_stride + 1


def pad_value(backbone: str) -> Tuple[float, float, float]:
  """The pixel value that normalizes to zero for `backbone` (the official mean pixel)."""
  scale, offset = get_backbone_spec(backbone).normalization
  offsets = offset if isinstance(offset, (tuple, list)) else (offset,) * 3
  return tuple(-o / scale for o in offsets)


def _pad_images(images: tf.Tensor, height, width, value) -> tf.Tensor:
  """Pads [N, h, w, 3] at the bottom and right to [N, height, width, 3] with `value`."""
  shape = tf.shape(images)
  paddings = [[0, 0], [0, height - shape[1]], [0, width - shape[2]], [0, 0]]
  value = tf.constant(value, images.dtype)
  # tf.pad takes one scalar, so pad the zero-mean image with 0 and shift back.
  return tf.pad(images - value, paddings) + value


def _backbone_outputs(model: tf_keras.Model, images: tf.Tensor):
  return model.backbone(model.get_layer('normalize')(images), training=False)


def _tile_logits(model: tf_keras.Model, tile: tf.Tensor, image_features) -> tf.Tensor:
  """The model's logits of one tile, with the whole image's mean backbone features
  [N, 1, 1, C] in ASPP's image-pooling branch (None: the tile's own)."""
  outputs = _backbone_outputs(model, tile)
  features = model.get_layer('aspp')(outputs['features'], training=False,
                                     image_features=image_features)
  if model.config.decoder_output_stride is not None:
    features = model.get_layer('decoder')([features, outputs['low_level_features']],
                                          training=False)
  logits = model.get_layer('logits/semantic')(features, training=False)
  return model.get_layer('upsample_logits')([logits, tile])


_PADDED_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32)


class _PaddedLogits:
  """Logits float32 [N, h, w, C] of images already padded to a valid size: the whole
  image, or tiles when it has more pixels than the tiling's budget.

  Where the size is known (eager calls, static shapes) the choice is made in
  Python. Where it is not (a graph for any size), the choice is a `tf.cond`. The
  tiled branch is a function of its own that callers do not inline, made ready to
  run when an image first takes it, so loading a model and serving images under
  the budget never prepare it. When several copies of the images run (`shared`:
  the scales and flips of multi-scale inference), the `tf.cond` is in one graph
  function that every copy calls and none inlines, so the network is traced,
  stored and made ready to run once, not once per copy (which made a two-scale,
  flipped export three times slower to build and to load); for one copy that
  function would only add a second graph to prepare in each function that calls
  it (a one-scale export's parity check took a fifth to a third longer).
  """

  def __init__(self, model: tf_keras.Model, stride: int, tiling: Optional[TilingConfig],
               shared: bool = False):
    self.model, self.stride, self.tiling, self.shared = model, stride, tiling, shared
    self._tiled_function = None
    self._shared_function = None

  def __call__(self, padded: tf.Tensor, height: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Logits of `padded`, whose images are `height` x `width` pixels before padding."""
    tiling = self.tiling
    if tiling is None or not tiling.max_whole_image_pixels:
      return self._whole(padded)
    too_large = (tf.cast(height, tf.int64) * tf.cast(width, tf.int64) >
                 tiling.max_whole_image_pixels)
    known = tf.get_static_value(too_large)
    if known is not None:
      return self._tiled(padded) if known else self._whole(padded)
    if self._tiled_function is None:
      # AutoGraph off: graph-safe Python, and converting it costs startup time.
      self._tiled_function = tf.function(self._tiled, input_signature=[_PADDED_SPEC],
                                         autograph=False,
                                         experimental_attributes={'_noinline': True})
    if not self.shared:
      return self._whole_or_tiled(padded, too_large)
    if self._shared_function is None:
      self._shared_function = tf.function(
          self._whole_or_tiled, input_signature=[_PADDED_SPEC, tf.TensorSpec([], tf.bool)],
          autograph=False, experimental_attributes={'_noinline': True})
    return self._shared_function(padded, too_large)

  def _whole_or_tiled(self, padded: tf.Tensor, too_large: tf.Tensor) -> tf.Tensor:
    return tf.cond(too_large, lambda: self._tiled_function(padded),
                   lambda: self._whole(padded))

  def _whole(self, padded: tf.Tensor) -> tf.Tensor:
    return tf.cast(self.model(padded, training=False), tf.float32)

  def _tiled(self, padded: tf.Tensor) -> tf.Tensor:
    model, stride, tiling = self.model, self.stride, self.tiling
    tile_size = valid_size(tiling.tile_size, stride)
    if not isinstance(model, DeepLabModel):
      # Any other Keras model runs as it is on each tile.
      return blend_tiles(lambda tile: model(tile, training=False), padded, tile_size,
                         tiling.tile_overlap, stride, model.config.num_classes)
    image_features = None
    if model.config.add_image_level_feature:
      channels = model.backbone.output['features'].shape[-1]
      image_features = mean_over_tiles(
          lambda tile: _backbone_outputs(model, tile)['features'], padded, tile_size,
          tiling.tile_overlap, stride, channels)[:, tf.newaxis, tf.newaxis, :]
    return blend_tiles(lambda tile: _tile_logits(model, tile, image_features), padded,
                       tile_size, tiling.tile_overlap, stride, model.config.num_classes)


def predict_logits(model: tf_keras.Model, images, output_stride: Optional[int] = None,
                   tiling: Optional[TilingConfig] = TilingConfig()):
  """Logits [N, H, W, C] for images of any size, padded to a valid size and cropped back.

  Images with more pixels than `tiling.max_whole_image_pixels` run in
  overlapping tiles whose logits are blended (`deeplab.tiling`), so memory is
  bounded by the tile; in a graph with unknown sizes the choice is made at run
  time.

  Args:
    model: a `deeplab.DeepLabModel`.
    images: RGB pixels 0..255, uint8 or float32 [N, H, W, 3].
    output_stride: the stride the padded size and the tiles are aligned to;
      defaults to the model's output stride (its coarsest feature map).
    tiling: when and how to tile; None runs every image whole.

  Returns:
    float32 logits at the input size.
  """
  stride = output_stride or model.config.output_stride
  return _predict_logits(images, _PaddedLogits(model, stride, tiling))


def _predict_logits(images, padded_logits: _PaddedLogits) -> tf.Tensor:
  """`predict_logits` of `padded_logits`' model, stride and tiling."""
  images = tf.cast(images, tf.float32)
  stride = padded_logits.stride
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  padded = _pad_images(images, valid_size(height, stride), valid_size(width, stride),
                       pad_value(padded_logits.model.config.backbone))
  return padded_logits(padded, height, width)[:, :height, :width, :]


def predict_probabilities(model: tf_keras.Model,
                          images,
                          eval_scales: Sequence[float] = (1.0,),
                          flip: bool = False,
                          tiling: Optional[TilingConfig] = TilingConfig()) -> tf.Tensor:
  """Class probabilities [N, H, W, C], averaged over scales and left-right flips.

  Each scaled (and flipped) copy of the images runs through the model; its
  softmax probabilities are resized back to the input size and averaged, as the
  paper's multi-scale + flip evaluation. Each copy larger than the tiling's
  budget runs in tiles (`predict_logits`), so scales above 1 stay bounded too.

  Args:
    model: a `deeplab.DeepLabModel`.
    images: RGB pixels 0..255, uint8 or float32 [N, H, W, 3], any H and W.
    eval_scales: input scales, e.g. (0.5, 0.75, 1.0, 1.25, 1.5, 1.75).
    flip: also run the left-right flipped images.
    tiling: when and how to tile; None runs every image whole.

  Returns:
    float32 probabilities [N, H, W, num_classes].
  """
  if not eval_scales or min(eval_scales) <= 0:
    raise ValueError(f'eval_scales must be positive numbers; got {list(eval_scales)}.')
  images = tf.cast(images, tf.float32)
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  probabilities = []
  # Several copies (scales, flips) share one function (see `_PaddedLogits`).
  copies = len(eval_scales) * (2 if flip else 1)
  padded_logits = _PaddedLogits(model, model.config.output_stride, tiling, shared=copies > 1)
  for scale in eval_scales:
    scaled = images
    if scale != 1.0:
      scaled = resize_bilinear(images, [scale_dimension(height, scale),
                                        scale_dimension(width, scale)])
    for flipped in ((False, True) if flip else (False,)):
      inputs = tf.reverse(scaled, axis=[2]) if flipped else scaled
      scaled_probabilities = tf.nn.softmax(_predict_logits(inputs, padded_logits))
      if flipped:
        scaled_probabilities = tf.reverse(scaled_probabilities, axis=[2])
      if scale != 1.0:
        scaled_probabilities = resize_bilinear(scaled_probabilities, [height, width])
      probabilities.append(scaled_probabilities)
  return tf.add_n(probabilities) / len(probabilities)


def predict_labels_and_probabilities(model: tf_keras.Model,
                                     images,
                                     eval_scales: Sequence[float] = (1.0,),
                                     flip: bool = False,
                                     tiling: Optional[TilingConfig] = TilingConfig()
                                     ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Class ids int32 [N, H, W] and probabilities float32 [N, H, W, C].

  At one scale without flip the ids are the argmax of the logits (float32
  probabilities can tie where the logits do not), otherwise of the averaged
  probabilities of `predict_probabilities`.
  """
  if tuple(eval_scales) == (1.0,) and not flip:
    logits = predict_logits(model, images, tiling=tiling)
    return tf.argmax(logits, axis=-1, output_type=tf.int32), tf.nn.softmax(logits)
  probabilities = predict_probabilities(model, images, eval_scales, flip, tiling)
  return tf.argmax(probabilities, axis=-1, output_type=tf.int32), probabilities


def predict_labels(model: tf_keras.Model,
                   images,
                   eval_scales: Sequence[float] = (1.0,),
                   flip: bool = False,
                   tiling: Optional[TilingConfig] = TilingConfig()) -> tf.Tensor:
  """Class ids int32 [N, H, W] (see `predict_labels_and_probabilities`)."""
  return predict_labels_and_probabilities(model, images, eval_scales, flip, tiling)[0]


def label_predictor(model: tf_keras.Model,
                    eval_scales: Sequence[float] = (1.0,),
                    flip: bool = False,
                    tiling: Optional[TilingConfig] = TilingConfig()
                    ) -> Callable[[tf.Tensor], tf.Tensor]:
  """`predict_labels` of `model` as a compiled function, traced once for all sizes.

  Args:
    model: a `deeplab.DeepLabModel`.
    eval_scales, flip, tiling: as `predict_probabilities`.

  Returns:
    A function from RGB pixels uint8 [N, H, W, 3] to class ids int32 [N, H, W].

  Example:
    >>> from deeplab import ModelConfig, build_model
    >>> predict = label_predictor(build_model(ModelConfig(backbone='mobilenet_v2')))
    >>> predict(tf.zeros([1, 40, 60, 3], tf.uint8)).shape
    TensorShape([1, 40, 60])
  """
  # AutoGraph off: graph-safe Python, and converting it costs startup time.
  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)],
               autograph=False)
  def predict(images):
    return predict_labels(model, images, eval_scales, flip, tiling)

  return predict


def load_label_predictor(export_dir: str) -> Callable[[tf.Tensor], tf.Tensor]:
  """The prediction function of an exported SavedModel (its 'image_tensor' signature).

  Args:
    export_dir: a SavedModel written by `deeplab-export`, or its TF Serving base
      directory (the highest numbered version inside is used).

  Returns:
    A function from RGB pixels uint8 [N, H, W, 3] to class ids int32 [N, H, W];
    the scales, flip and output stride are those baked in at export.

  Raises:
    ValueError: `export_dir` holds no SavedModel or it lacks the signature.

  Example:
    >>> predict = load_label_predictor('/tmp/serving/deeplab')  # doctest: +SKIP
    >>> predict(tf.zeros([1, 40, 60, 3], tf.uint8)).shape  # doctest: +SKIP
    TensorShape([1, 40, 60])
  """
  if not tf.saved_model.contains_saved_model(export_dir) and tf.io.gfile.isdir(export_dir):
    versions = [name.rstrip('/') for name in tf.io.gfile.listdir(export_dir)
                if name.rstrip('/').isdigit()]
    if versions:
      export_dir = os.path.join(export_dir, max(versions, key=int))
  if not tf.saved_model.contains_saved_model(export_dir):
    raise ValueError(f'{export_dir} holds no SavedModel (no saved_model.pb, and no numbered '
                     f'version directory holding one).')
  loaded = tf.saved_model.load(export_dir)
  if 'image_tensor' not in loaded.signatures:
    raise ValueError(f'The SavedModel {export_dir} has no "image_tensor" signature; it has '
                     f'{", ".join(sorted(loaded.signatures)) or "none"}.')
  signature = loaded.signatures['image_tensor']
  (input_name,) = signature.structured_input_signature[1]

  def predict(images):
    shape = tf.shape(images)
    labels = signature(**{input_name: tf.cast(images, tf.uint8)})['labels']
    return tf.cast(labels[:, :shape[1], :shape[2]], tf.int32)

  # The signature's variables live as long as the loaded object does.
  predict.saved_model = loaded
  return predict
