"""Overlapping tiles over an image, and their predictions blended into one.

Inference on an image larger than a pixel budget runs tile by tile
(`deeplab.predict.predict_logits` with a `TilingConfig`), so the network's
activations never exceed one tile's; what stays image-sized is the padded image
and the blended logits (num_classes floats per pixel).

Tiles are placed so the network sees on each what it sees on the whole image:
they have a valid size (k * output_stride + 1) and start at multiples of the
output stride, so a tile's feature grid is the whole image's grid, and away from
tile edges the tiled features equal the whole image's. The image-pooling branch
of ASPP averages the backbone features over the whole image: a first pass over
the tiles computes that mean (`mean_over_tiles`, each feature cell taken from the
tile it lies deepest in), and the second pass gives it to every tile. In the
overlaps each tile's logits are weighted by their distance from its edges,
ramping up over `overlap` pixels, so a pixel's logits come mostly from the tile it
lies deepest in and change smoothly from one tile to the next.

Example:
  >>> images = tf.random.uniform([1, 97, 161, 3])
  >>> blended = blend_tiles(lambda tile: tile * 2.0, images, tile_size=65, overlap=16,
  ...                       alignment=16, channels=3)
  >>> float(tf.reduce_max(tf.abs(blended - images * 2.0))) < 1e-5
  True
"""

from typing import Callable

import tensorflow as tf


def tile_starts(length: tf.Tensor, tile_size: int, overlap: int, alignment: int) -> tf.Tensor:
  """Where tiles of `tile_size` start along a side of `length`: int32 [num_tiles].

  The first starts at 0 and the last ends at `length`; the starts are multiples of
  `alignment` spread evenly, so adjacent tiles share at least `overlap` pixels.
  A side no longer than one tile gets one tile, `length` long.

  Args:
    length: scalar int32, with (length - 1) a multiple of `alignment`.
    tile_size, overlap, alignment: ints, (tile_size - 1) a multiple of `alignment`.
  """
  span = tf.maximum(length - tile_size, 0) // alignment
  # The largest step (in units of the alignment) that keeps the overlap.
  step = max((tile_size - overlap) // alignment, 1)
  intervals = tf.maximum(-(-span // step), 1)
  return tf.range(intervals + tf.cast(span > 0, tf.int32)) * span // intervals * alignment


def edge_weights(size: tf.Tensor, overlap: int) -> tf.Tensor:
  """Blending weights float32 [size] along a tile's side: 1 inside, ramping to its edges.

  A pixel d pixels from the nearer edge weighs (d + 1) / (overlap + 1), at most 1;
  every weight is positive, so a pixel that only one tile covers keeps its logits.
  """
  positions = tf.range(size)
  distance = tf.minimum(positions, size - 1 - positions)
  return tf.minimum(tf.cast(distance + 1, tf.float32) / float(overlap + 1), 1.0)


def _add_to_window(total: tf.Tensor, top: tf.Tensor, left: tf.Tensor,
                   values: tf.Tensor) -> tf.Tensor:
  """`total` [N, H, W, C] with `values` [N, h, w, C] added at (top, left), in place
  where TensorFlow can reuse `total`'s buffer (no image-sized temporary; a
  scatter-add, which ONNX has, copies `total` at every tile)."""
  shape = tf.shape(values)
  begin = tf.stack([0, top, left, 0])
  window = total[:, top:top + shape[1], left:left + shape[2], :]
  return tf.raw_ops.TensorStridedSliceUpdate(
      input=total, begin=begin, end=begin + shape, strides=[1, 1, 1, 1],
      value=window + values)


def _owned_cells(starts: tf.Tensor, index: tf.Tensor, cells: tf.Tensor, grid_cells: tf.Tensor,
                 alignment: int) -> tf.Tensor:
  """bool [cells]: which of tile `index`'s feature cells it owns along one side.

  Adjacent tiles split their overlap at its middle, so each cell of the whole
  grid (`grid_cells` long) is owned by exactly one tile, the one it lies deepest in.
  """
  first = starts // alignment
  # Boundary j lies between tile j-1 and tile j; the outer ones are the grid's edges.
  middles = (first[1:] + first[:-1] + cells) // 2
  bounds = tf.concat([[0], middles, [grid_cells]], axis=0)
  positions = first[index] + tf.range(cells)
  return (positions >= bounds[index]) & (positions < bounds[index + 1])


def mean_over_tiles(features_of_tile: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor,
                    tile_size: int, overlap: int, alignment: int, channels: int) -> tf.Tensor:
  """The mean over the whole image of features computed tile by tile: float32 [N, C].

  Args:
    features_of_tile: float32 [N, h, w, 3] -> [N, (h - 1) / alignment + 1,
      (w - 1) / alignment + 1, channels], e.g. the backbone's output.
    images, tile_size, overlap, alignment: as `blend_tiles` (the same tiles).
    channels: C.
  """
  shape = tf.shape(images)
  height, width = shape[1], shape[2]
  tops = tile_starts(height, tile_size, overlap, alignment)
  lefts = tile_starts(width, tile_size, overlap, alignment)
  tile_height, tile_width = tf.minimum(height, tile_size), tf.minimum(width, tile_size)
  rows, columns = (height - 1) // alignment + 1, (width - 1) // alignment + 1
  num_columns = tf.size(lefts)

  def add_one(index, total):
    row, column = index // num_columns, index % num_columns
    top, left = tops[row], lefts[column]
    features = tf.cast(features_of_tile(images[:, top:top + tile_height,
                                               left:left + tile_width, :]), tf.float32)
    cells = tf.shape(features)
    owned = (tf.cast(_owned_cells(tops, row, cells[1], rows, alignment), tf.float32)[:, None] *
             tf.cast(_owned_cells(lefts, column, cells[2], columns, alignment),
                     tf.float32)[None, :])
    return index + 1, total + tf.einsum('nhwc,hw->nc', features, owned)

  _, total = tf.while_loop(
      lambda index, _: index < tf.size(tops) * num_columns, add_one,
      (tf.constant(0), tf.zeros(tf.stack([shape[0], channels]))), parallel_iterations=1)
  return total / tf.cast(rows * columns, tf.float32)


def blend_tiles(predict_tile: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor,
                tile_size: int, overlap: int, alignment: int, channels: int) -> tf.Tensor:
  """`predict_tile` run on overlapping tiles of `images`, blended: float32 [N, H, W, C].

  The tiles run one after another in a `tf.while_loop` (one graph op, whatever
  the image size), so at most one tile's activations are alive at a time.

  Args:
    predict_tile: float32 [N, h, w, 3] -> [N, h, w, channels], for tiles of at
      most `tile_size` x `tile_size` pixels.
    images: float32 [N, H, W, 3], (H - 1) and (W - 1) multiples of `alignment`.
    tile_size: pixels per tile side, (tile_size - 1) a multiple of `alignment`.
    overlap: pixels adjacent tiles share, at least.
    alignment: the output stride; tiles start at its multiples.
    channels: C, the channels `predict_tile` returns.
  """
  shape = tf.shape(images)
  batch, height, width = shape[0], shape[1], shape[2]
  tops = tile_starts(height, tile_size, overlap, alignment)
  lefts = tile_starts(width, tile_size, overlap, alignment)
  tile_height, tile_width = tf.minimum(height, tile_size), tf.minimum(width, tile_size)
  weights = (edge_weights(tile_height, overlap)[:, tf.newaxis] *
             edge_weights(tile_width, overlap)[tf.newaxis, :])[tf.newaxis, :, :, tf.newaxis]
  num_columns = tf.size(lefts)

  def predict_one(index, logits_sum, weight_sum):
    top, left = tops[index // num_columns], lefts[index % num_columns]
    tile = images[:, top:top + tile_height, left:left + tile_width, :]
    logits = tf.cast(predict_tile(tile), tf.float32)
    return (index + 1, _add_to_window(logits_sum, top, left, logits * weights),
            _add_to_window(weight_sum, top, left, weights))

  # parallel_iterations=1: a second tile starts once the first is added, so peak
  # memory is one tile's, not several.
  _, logits_sum, weight_sum = tf.while_loop(
      lambda index, *_: index < tf.size(tops) * num_columns, predict_one,
      (tf.constant(0), tf.zeros(tf.stack([batch, height, width, channels])),
       tf.zeros(tf.stack([1, height, width, 1]))),
      parallel_iterations=1)
  logits_sum.set_shape([None, None, None, channels])
  return logits_sum / weight_sum
