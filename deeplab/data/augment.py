"""Training augmentation of the paper: random scale, pad, random crop, left-right flip.

The steps and their order are the official `preprocess_image_and_label`: the image
and its label are scaled by a random factor (bilinear / nearest neighbour, corners
aligned), padded at the bottom and right up to the crop size (image with the mean
pixel 127.5, label with the ignore label), randomly cropped and randomly flipped.
Randomness is stateless: one seed [2] per example fixes every draw, so a seeded
pipeline repeats exactly.

Example:
  >>> import tensorflow as tf
  >>> image = tf.zeros([100, 80, 3], tf.uint8)
  >>> label = tf.zeros([100, 80], tf.uint8)
  >>> image, label = augment(image, label, seed=tf.constant([1, 2]), crop_size=(65, 65))
  >>> image.shape, label.shape
  (TensorShape([65, 65, 3]), TensorShape([65, 65]))
"""

from typing import Sequence, Tuple

import tensorflow as tf

MEAN_PIXEL = 127.5


def random_scale_factor(seed: tf.Tensor, min_scale_factor: float, max_scale_factor: float,
                        scale_factor_step_size: float) -> tf.Tensor:
  """A random scale in [min, max]: one of the evenly spaced steps, or continuous if step 0.

  Args:
    seed: int32/int64 [2] stateless seed.
    min_scale_factor, max_scale_factor: the range; equal values give that value.
    scale_factor_step_size: spacing of the allowed values (0.25 officially); 0 draws
      uniformly from [min, max).

  Returns:
    float32 scalar.
  """
  if not 0 < min_scale_factor <= max_scale_factor:
    raise ValueError(f'Need 0 < min_scale_factor <= max_scale_factor; got '
                     f'{min_scale_factor} and {max_scale_factor}.')
  if min_scale_factor == max_scale_factor:
    return tf.constant(min_scale_factor, tf.float32)
  if scale_factor_step_size == 0:
    return tf.random.stateless_uniform([], seed, min_scale_factor, max_scale_factor)
  num_steps = int((max_scale_factor - min_scale_factor) / scale_factor_step_size + 1)
  step = tf.random.stateless_uniform([], seed, 0, num_steps, dtype=tf.int32)
  spacing = (max_scale_factor - min_scale_factor) / max(num_steps - 1, 1)
  return min_scale_factor + tf.cast(step, tf.float32) * spacing


def scaled_size(height, width, factor: tf.Tensor) -> tf.Tensor:
  """int32 [2]: floor([height, width] * factor), the official scaled size."""
  size = tf.cast(tf.cast(tf.stack([height, width]), tf.float32) * factor, tf.int32)
  return tf.maximum(size, 1)


def _nearest_indices(start, count, in_size, out_size) -> tf.Tensor:
  """Source indices of output rows start..start+count-1 of a corner-aligned nearest resize.

  The same arithmetic as TF's ResizeNearestNeighbor with align_corners (float32 scale,
  rounding half away from zero), so gathering these rows equals resizing the whole
  label and slicing it, at the cost of the crop only.
  """
  scale = tf.cast(in_size - 1, tf.float32) / tf.cast(tf.maximum(out_size - 1, 1), tf.float32)
  positions = tf.cast(tf.range(start, start + count), tf.float32) * scale
  return tf.minimum(tf.cast(tf.floor(positions + 0.5), tf.int32), in_size - 1)


def scale_and_crop(image: tf.Tensor, label: tf.Tensor, factor: tf.Tensor, crop_height: int,
                   crop_width: int, ignore_label: int,
                   seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Scales, pads to the crop size and randomly crops image and label, as the paper.

  Equals: resize image (bilinear) and label (nearest) to floor(size * factor) with
  corners aligned, pad at the bottom and right with the mean pixel / ignore label up
  to the crop size, take a random crop. Only the crop of the label is computed, and
  the image is padded after cropping, which gives the same pixels for less work.

  Args:
    image: [H, W, 3] pixels, uint8 or float32.
    label: [H, W] integer class ids.
    factor: float32 scalar scale.
    crop_height, crop_width: output size.
    ignore_label: label of padded pixels.
    seed: int32/int64 [2] stateless seed of the crop position.

  Returns:
    float32 image [crop_height, crop_width, 3] and label [crop_height, crop_width]
    (label's dtype).
  """
  shape = tf.shape(label)
  size = scaled_size(shape[0], shape[1], factor)
  # Aligned corners as the official TF1 resizes, so pixel (0, 0) and the last pixel
  # of image and label stay on top of each other at every scale.
  image = tf.raw_ops.ResizeBilinear(images=tf.cast(image, tf.float32)[None], size=size,
                                    align_corners=True, half_pixel_centers=False)[0]
  seeds = tf.random.experimental.stateless_split(seed, 2)
  top = tf.random.stateless_uniform(
      [], seeds[0], 0, tf.maximum(size[0], crop_height) - crop_height + 1, dtype=tf.int32)
  left = tf.random.stateless_uniform(
      [], seeds[1], 0, tf.maximum(size[1], crop_width) - crop_width + 1, dtype=tf.int32)
  rows = tf.minimum(crop_height, size[0] - top)
  columns = tf.minimum(crop_width, size[1] - left)
  image = image[top:top + rows, left:left + columns]
  label = tf.gather(label, _nearest_indices(top, rows, shape[0], size[0]))
  label = tf.gather(label, _nearest_indices(left, columns, shape[1], size[1]), axis=1)
  paddings = [[0, crop_height - rows], [0, crop_width - columns]]
  image = tf.pad(image, paddings + [[0, 0]], constant_values=MEAN_PIXEL)
  label = tf.pad(label, paddings, constant_values=tf.cast(ignore_label, label.dtype))
  return image, label


def random_flip_left_right(image: tf.Tensor, label: tf.Tensor,
                           seed: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Flips image and label together with probability 0.5."""
  flip = tf.random.stateless_uniform([], seed) < 0.5
  image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
  label = tf.cond(flip, lambda: tf.reverse(label, [1]), lambda: label)
  return image, label


def augment(image: tf.Tensor,
            label: tf.Tensor,
            seed: tf.Tensor,
            crop_size: Sequence[int] = (513, 513),
            min_scale_factor: float = 0.5,
            max_scale_factor: float = 2.0,
            scale_factor_step_size: float = 0.25,
            random_flip: bool = True,
            ignore_label: int = 255) -> Tuple[tf.Tensor, tf.Tensor]:
  """One training example, augmented as the paper: scale, pad, crop, flip.

  Args:
    image: uint8 or float32 [H, W, 3], pixels 0..255.
    label: integer [H, W] class ids.
    seed: int32/int64 [2] stateless seed; the same seed gives the same result.
    crop_size: (height, width) of the output.
    min_scale_factor, max_scale_factor, scale_factor_step_size: see
      `random_scale_factor`.
    random_flip: flip left-right with probability 0.5.
    ignore_label: label of padded pixels.

  Returns:
    float32 image [crop_h, crop_w, 3] and label [crop_h, crop_w] (label's dtype).
  """
  crop_height, crop_width = crop_size
  scale_seed, crop_seed, flip_seed = tf.unstack(
      tf.random.experimental.stateless_split(seed, 3))
  factor = random_scale_factor(scale_seed, min_scale_factor, max_scale_factor,
                               scale_factor_step_size)
  image, label = scale_and_crop(image, label, factor, crop_height, crop_width, ignore_label,
                                crop_seed)
  if random_flip:
    image, label = random_flip_left_right(image, label, flip_seed)
  return (tf.ensure_shape(image, [crop_height, crop_width, 3]),
          tf.ensure_shape(label, [crop_height, crop_width]))
