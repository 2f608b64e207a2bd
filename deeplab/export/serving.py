"""The serving module: the model with all pre- and post-processing inside the graph.

`ServingModule` wraps a `DeepLabModel` in a `tf.Module` whose `tf.function`s take
what clients send (encoded image bytes, uint8 pixels or serialized tf.Examples)
and return class ids, running the shared inference path (`deeplab.predict`:
padding to a valid size, multi-scale and flipped inputs) so served labels equal
evaluation's. Every function has a fixed input signature: it is traced once when
exported, and serving never retraces or runs Python.

Signatures (`SIGNATURES`), N images per request:

- `serving_default`: input `images` tf.string [N], encoded JPEG/PNG/BMP/GIF images
  of any sizes; outputs `labels` int32 [N, H, W], `heights` int32 [N] and `widths`
  int32 [N] (each image's own size).
- `image_tensor`: input `images` uint8 [N, H, W, 3], RGB; output `labels` int32
  [N, H, W].
- `tf_example`: input `serialized_examples` tf.string [N], serialized tf.Examples
  holding `image/encoded` (the DeepLab TFRecord schema); outputs as
  `serving_default`.

A bad request fails with an InvalidArgument error whose message names the input
(`images[3] is not a JPEG, PNG, BMP or GIF image ...`, `serialized_examples[0]
has 0 image/encoded values ...`) and is plain ASCII. Checks run in a fixed order:
the request, then each example's parsing, then each image's header, then each
image's decoding (`deeplab.export.image_decoding`), so a request with several
problems always reports the same one.

With `ExportConfig.include_probabilities` every signature also returns
`probabilities` float32 [N, H, W, num_classes]. In a batch of images of different
sizes, H and W are the largest height and width; each image's labels fill the
top-left heights[i] x widths[i] corner and the rest is `PADDED_LABEL` (-1)
(probabilities 0).

`deeplab.export.export_model` saves `module.signatures()` with the variables they
read (`module.model_variables`).

Example:
  >>> from deeplab import ModelConfig, build_model
  >>> from deeplab.config import ExportConfig
  >>> model = build_model(ModelConfig(backbone='mobilenet_v2', depth_multiplier=0.25))
  >>> module = ServingModule(model, ExportConfig())
  >>> module.predict(tf.zeros([2, 40, 60, 3], tf.uint8))['labels'].shape
  TensorShape([2, 40, 60])
"""

from typing import Callable, Dict

import tensorflow as tf
import tf_keras

from deeplab.config import ExportConfig
from deeplab.data.schema import IMAGE_ENCODED
from deeplab.export.image_decoding import (attempt, decode_rgb, declared_size, error_message,
                                           first_bytes, require)
from deeplab.predict import predict_labels, predict_labels_and_probabilities

SIGNATURES = ('serving_default', 'image_tensor', 'tf_example')
# Label value outside an image's own height x width in a batch of mixed sizes.
PADDED_LABEL = -1


class ServingModule(tf.Module):
  """A `DeepLabModel` with decoding, checks, inference and padding in the graph.

  Attributes:
    model: the wrapped `DeepLabModel` (at the export's output stride).
    export_config: the `ExportConfig` baked into the functions.
  """

  def __init__(self, model: tf_keras.Model, export_config: ExportConfig):
    super().__init__(name='deeplab_serving')
    # Only the variables are tracked: saving the Keras model as an object would
    # also trace and save every layer's call, which triples export and load time
    # and gives servers nothing they use.
    object.__setattr__(self, 'model', model)
    self.model_variables = list(model.variables)
    self.export_config = export_config

  def predict(self, images: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Outputs for same-sized images: RGB 0..255, uint8 or float32 [N, H, W, 3].

    Labels are exactly `predict_labels`' (at one scale without flip, the argmax
    of the logits, which probabilities rounded to float32 can tie).
    """
    config = self.export_config
    scales, flip = config.eval_scales, config.add_flipped_images
    if not config.include_probabilities:
      return {'labels': predict_labels(self.model, images, scales, flip, config.tiling)}
    labels, probabilities = predict_labels_and_probabilities(self.model, images, scales, flip,
                                                             config.tiling)
    return {'labels': labels, 'probabilities': probabilities}

  # The serving functions run without AutoGraph: they are graph-safe Python, and
  # converting them costs export (and first-call) time.
  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)],
               autograph=False)
  def predict_pixels(self, images):
    """`predict` as one graph function that every signature calls: the model is
    traced and stored once, not once per signature."""
    return self.predict(images)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='images')],
               autograph=False)
  def serve_encoded_images(self, images):
    """`serving_default`: encoded images of any sizes -> labels, heights, widths."""
    indices = _checked_indices(images, 'images', 'encoded image')
    return self._predict_encoded(images, indices, lambda i: error_message('images[', i, ']'))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                              name='images')], autograph=False)
  def serve_image_tensor(self, images):
    """`image_tensor`: uint8 RGB [N, H, W, 3] -> labels [N, H, W]."""
    shape = tf.shape(images, out_type=tf.int64)
    max_pixels = self.export_config.max_image_pixels
    images = require(images, tf.reduce_all(shape[:3] > 0),
                     'images is empty (shape ', tf.strings.reduce_join(
                         tf.strings.as_string(shape), separator='x'),
                     '): expected at least one image of at least 1x1 pixels.')
    images = require(images, shape[1] <= max_pixels // tf.maximum(shape[2], 1),
                     'images are ', shape[1], 'x', shape[2], ' pixels; accepted are at most ',
                     str(max_pixels), ' pixels (height x width) per image.')
    return self.predict_pixels(images)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name='serialized_examples')], autograph=False)
  def serve_tf_example(self, serialized_examples):
    """`tf_example`: serialized tf.Examples with `image/encoded` -> as serving_default."""
    indices = _checked_indices(serialized_examples, 'serialized_examples',
                               'serialized tf.Example')

    def encoded_image(index):
      example = serialized_examples[index]
      name = error_message('serialized_examples[', index, ']')
      values, parsed = attempt(
          lambda e: tf.io.parse_single_example(
              e, {IMAGE_ENCODED: tf.io.RaggedFeature(tf.string)})[IMAGE_ENCODED],
          example, tf.constant([], tf.string))
      values = require(values, parsed,
                       name, ' is not a serialized tf.Example with ' + IMAGE_ENCODED +
                       ' as a bytes feature (', tf.strings.length(example),
                       ' bytes; its first bytes are ', first_bytes(example), ').')
      values = require(values, tf.size(values) == 1,
                       name, ' has ', tf.size(values), ' ' + IMAGE_ENCODED +
                       ' values: expected one encoded image.')
      return values[0]

    images = tf.map_fn(encoded_image, indices, fn_output_signature=tf.string,
                       parallel_iterations=1)
    return self._predict_encoded(
        images, indices,
        lambda i: error_message(IMAGE_ENCODED + ' of serialized_examples[', i, ']'))

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    """The concrete functions to export, keyed by signature name (`SIGNATURES`)."""
    return {
        'serving_default': self.serve_encoded_images.get_concrete_function(),
        'image_tensor': self.serve_image_tensor.get_concrete_function(),
        'tf_example': self.serve_tf_example.get_concrete_function(),
    }

  def _predict_encoded(self, images: tf.Tensor, indices: tf.Tensor,
                       image_name: Callable[[tf.Tensor], tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Checks every image's header, then decodes and predicts one image at a time.

    Args:
      images: tf.string [N], encoded images.
      indices: int32 [N], 0 to N - 1 (from `_checked_indices`).
      image_name: index -> the image's name in error messages.
    """
    max_pixels = self.export_config.max_image_pixels
    # One image after another, here and below: of several bad images, the first
    # is reported, whatever the machine's scheduling.
    sizes = tf.map_fn(lambda i: declared_size(images[i], max_pixels, image_name(i)),
                      indices, fn_output_signature=tf.int64, parallel_iterations=1)
    max_height, max_width = tf.unstack(tf.reduce_max(sizes, axis=0))
    # Decoding waits for every header check (decode_rgb waits for its own), so
    # a bad header is reported before any image is decoded.
    with tf.control_dependencies([sizes]):
      images = tf.identity(images)

    def predict_one(index):
      image = decode_rgb(images[index], sizes[index], image_name(index))
      outputs = self.predict_pixels(image[tf.newaxis])
      padded = {}
      for key, value in outputs.items():
        shape = tf.shape(value, out_type=tf.int64)
        paddings = [[0, max_height - shape[1]], [0, max_width - shape[2]]]
        padded[key] = tf.pad(value[0], paddings + [[0, 0]] * (value.shape.rank - 3),
                             constant_values=PADDED_LABEL if key == 'labels' else 0)
      return padded

    output_signature = {'labels': tf.TensorSpec([None, None], tf.int32)}
    if self.export_config.include_probabilities:
      output_signature['probabilities'] = tf.TensorSpec([None, None, None], tf.float32)
    # One image at a time: peak memory is that of the largest image, whatever the
    # batch size; each image's convolutions already use every core.
    outputs = tf.map_fn(predict_one, indices, fn_output_signature=output_signature,
                        parallel_iterations=1)
    outputs['heights'] = tf.cast(sizes[:, 0], tf.int32)
    outputs['widths'] = tf.cast(sizes[:, 1], tf.int32)
    return outputs


def _checked_indices(inputs: tf.Tensor, input_name: str, expected: str) -> tf.Tensor:
  """0 to N - 1 for `inputs` [N], once N > 0 is checked.

  All per-input work iterates over these indices, so it runs after the check,
  and an empty request always fails with this message.
  """
  count = tf.size(inputs)
  count = require(count, count > 0,
                  input_name, ' is empty: expected at least one ' + expected + '.')
  return tf.range(count)
