"""Training losses of DeepLab: per-pixel softmax cross-entropy and L2 weight decay.

The cross-entropy follows the official `add_softmax_cross_entropy_loss_for_each_scale`
(logits upsampled to the label size, ignored pixels masked out, optional class
weights and top-k% hard pixel mining). It returns a *sum* and the number of pixels
it is normalized by rather than their ratio, so a distributed trainer can divide by
the count over the global batch: then the loss, and the gradient, do not depend on
how the batch is split over replicas.

The weight decay is the official slim `l2_regularizer` on convolution kernels:
`weight_decay * sum(w ** 2) / 2`; depthwise kernels, BatchNorm and biases are not
regularized.

Example:
  >>> import tensorflow as tf
  >>> labels = tf.constant([[[0, 1], [255, 1]]])
  >>> logits = tf.zeros([1, 2, 2, 3])
  >>> total, count = softmax_cross_entropy(labels, logits, ignore_label=255)
  >>> round(float(total / count), 4)  # ln(3): uniform logits, 3 valid pixels
  1.0986
"""

from typing import List, Sequence, Tuple

import tensorflow as tf
import tf_keras

from deeplab.layers import ConvBN


def valid_pixels(labels: tf.Tensor, num_classes: int, ignore_label: int) -> tf.Tensor:
  """bool mask of the pixels that take part in the loss and metrics.

  Args:
    labels: int [N, H, W] class ids.
    num_classes: number of classes; labels must lie in [0, num_classes).
    ignore_label: the label of pixels to leave out (255, or 0 for ADE20K).

  Returns:
    bool [N, H, W]: not the ignore label and a class id in range.
  """
  return tf.logical_and(tf.not_equal(labels, ignore_label),
                        tf.logical_and(labels >= 0, labels < num_classes))


def hard_pixel_fraction(step, top_k_percent_pixels: float,
                        hard_example_mining_step: int) -> tf.Tensor:
  """The fraction of pixels kept by hard pixel mining at `step` (float32 scalar).

  As the official code: it ramps linearly from 1.0 at step 0 to
  `top_k_percent_pixels` at `hard_example_mining_step`, then stays there; with
  `hard_example_mining_step` 0 it is `top_k_percent_pixels` from the start.

  Example:
    >>> float(hard_pixel_fraction(50, 0.25, 100))
    0.625
  """
  if hard_example_mining_step == 0:
    return tf.constant(top_k_percent_pixels, tf.float32)
  ratio = tf.minimum(1.0, tf.cast(step, tf.float32) / float(hard_example_mining_step))
  return ratio * top_k_percent_pixels + (1.0 - ratio)


def loss_normalizer(labels: tf.Tensor, num_classes: int, ignore_label: int,
                    top_k_fraction=1.0) -> tf.Tensor:
  """The number of pixels the summed loss of `labels` is divided by (float32 scalar).

  It depends on the labels only, so a trainer can sum it over replicas before the
  forward pass. Without mining it is the number of valid pixels (official
  `num_present`); with mining it is the number of kept pixels that are valid,
  min(k, valid). The official code counts kept pixels with a non-zero loss
  instead, which differs only when a kept pixel's loss is exactly 0.
  """
  labels = tf.reshape(labels, [-1])
  valid = tf.reduce_sum(tf.cast(valid_pixels(labels, num_classes, ignore_label), tf.float32))
  if isinstance(top_k_fraction, (int, float)) and top_k_fraction == 1.0:
    return valid
  return tf.minimum(tf.cast(_top_k_count(tf.size(labels), top_k_fraction), tf.float32), valid)


def _top_k_count(num_pixels, top_k_fraction) -> tf.Tensor:
  return tf.maximum(tf.cast(top_k_fraction * tf.cast(num_pixels, tf.float32), tf.int32), 1)


def softmax_cross_entropy(labels: tf.Tensor,
                          logits: tf.Tensor,
                          *,
                          ignore_label: int,
                          class_weights: Sequence[float] = (),
                          top_k_fraction=1.0) -> Tuple[tf.Tensor, tf.Tensor]:
  """Summed per-pixel softmax cross-entropy and the pixel count it is normalized by.

  Args:
    labels: int [N, H, W] class ids; `ignore_label` (and any id outside
      [0, num_classes)) contributes nothing.
    logits: float [N, h, w, C]; resized bilinearly (corners aligned) to H x W when
      their size differs, as the official `upsample_logits=True`.
    ignore_label: label of pixels to leave out.
    class_weights: () or one weight per class multiplying each pixel's loss.
    top_k_fraction: keep only this fraction of all pixels, those with the largest
      (weighted) losses (official top_k_percent_pixels, possibly ramped by
      `hard_pixel_fraction`); 1.0 keeps every pixel. A Python float or a scalar
      tensor.

  Returns:
    (total, count), float32 scalars: the loss is total / count, count being
    `loss_normalizer(labels, ...)`.
  """
  num_classes = logits.shape[-1]
  logits = tf.cast(logits, tf.float32)
  if logits.shape[1:3] != labels.shape[1:3] or not logits.shape[1:3].is_fully_defined():
    logits = tf.raw_ops.ResizeBilinear(images=logits, size=tf.shape(labels)[1:3],
                                       align_corners=True, half_pixel_centers=False)
  count = loss_normalizer(labels, num_classes, ignore_label, top_k_fraction)
  labels = tf.reshape(labels, [-1])
  logits = tf.reshape(logits, [-1, num_classes])
  valid = valid_pixels(labels, num_classes, ignore_label)
  weights = tf.cast(valid, tf.float32)
  if class_weights:
    if len(class_weights) != num_classes:
      raise ValueError(f'class_weights must have one weight per class ({num_classes}); '
                       f'got {len(class_weights)}.')
    weights *= tf.gather(tf.constant(class_weights, tf.float32), tf.where(valid, labels, 0))
  pixel_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.where(valid, labels, 0), logits=logits) * weights
  if isinstance(top_k_fraction, (int, float)) and top_k_fraction == 1.0:
    return tf.reduce_sum(pixel_losses), count
  # A full sort and a mask rather than tf.math.top_k: k changes during the mining
  # warm-up, and a static shape keeps the step XLA-compilable.
  hardest_first = tf.sort(pixel_losses, direction='DESCENDING')
  kept = tf.range(tf.size(pixel_losses)) < _top_k_count(tf.size(pixel_losses), top_k_fraction)
  return tf.reduce_sum(tf.where(kept, hardest_first, 0.0)), count


def regularized_kernels(model: tf_keras.Model) -> List[tf.Variable]:
  """The trainable convolution kernels that get L2 weight decay, as the official slim
  regularizers: every `ConvBN` kernel (regular and pointwise convolutions, logits
  included), but no depthwise kernel, BatchNorm parameter or bias."""
  kernels, seen = [], set()
  for layer in model.submodules:
    if isinstance(layer, ConvBN) and layer.trainable and layer.kernel.trainable:
      if id(layer.kernel) not in seen:
        seen.add(id(layer.kernel))
        kernels.append(layer.kernel)
  return kernels


def weight_decay_loss(kernels: Sequence[tf.Variable], weight_decay: float) -> tf.Tensor:
  """Official slim L2 regularization: weight_decay * sum over kernels of sum(w^2) / 2.

  Example:
    >>> float(weight_decay_loss([tf.Variable([[3.0, 4.0]])], 0.1))
    1.25
  """
  if not kernels or weight_decay == 0:
    return tf.constant(0.0, tf.float32)
  return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(k, tf.float32)) for k in kernels])
