import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import augment

RED, GRAY = (230, 20, 20), (90, 90, 90)


def _scene(height=60, width=80):
  """A gray image with a red rectangle (class 1) in its top-left quarter."""
  image = np.full([height, width, 3], GRAY, np.uint8)
  label = np.zeros([height, width], np.uint8)
  image[8:30, 10:34] = RED
  label[8:30, 10:34] = 1
  return tf.constant(image), tf.constant(label)


def _interior(mask: np.ndarray) -> np.ndarray:
  """Pixels of `mask` whose 8 neighbours are in `mask` too (never on the border)."""
  padded = np.pad(mask, 1)
  inner = np.ones_like(mask)
  for dy in (0, 1, 2):
    for dx in (0, 1, 2):
      inner &= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]]
  return inner


@pytest.mark.parametrize('seed', range(6))
def test_crop_shape_ids_and_alignment(seed):
  image, label = _scene()
  out_image, out_label = augment.augment(image, label, tf.constant([seed, 7]),
                                         crop_size=(65, 49), ignore_label=255)
  out_image, out_label = out_image.numpy(), out_label.numpy()
  assert out_image.shape == (65, 49, 3) and out_image.dtype == np.float32
  assert out_label.shape == (65, 49) and out_label.dtype == np.uint8
  assert set(np.unique(out_label)) <= {0, 1, 255}
  # The rectangle stays under its label; background and padding keep theirs.
  for class_id, color in ((1, RED), (0, GRAY), (255, (127.5,) * 3)):
    pixels = out_image[_interior(out_label == class_id)]
    assert np.all(np.abs(pixels - color) < 1e-3), class_id


def test_the_shape_moves_with_the_image_under_scale_crop_and_flip():
  image, label = _scene()
  centers = set()
  flipped = 0
  for seed in range(20):
    out_image, out_label = augment.augment(image, label, tf.constant([seed, 1]),
                                           crop_size=(41, 41))
    rows, columns = np.nonzero(out_label.numpy() == 1)
    red = np.all(np.abs(out_image.numpy() - RED) < 1, axis=-1)
    red_rows, red_columns = np.nonzero(red)
    if rows.size:
      assert abs(rows.mean() - red_rows.mean()) < 1.0
      assert abs(columns.mean() - red_columns.mean()) < 1.0
      centers.add((round(rows.mean()), round(columns.mean())))
      # The rectangle starts in the left half of the scene: right of centre means flipped.
      flipped += columns.mean() > 20
  assert len(centers) > 5 and flipped > 0


def test_same_seed_same_result_and_other_seed_differs():
  image, label = _scene()
  first = augment.augment(image, label, tf.constant([3, 4]), crop_size=(33, 33))
  again = augment.augment(image, label, tf.constant([3, 4]), crop_size=(33, 33))
  other = augment.augment(image, label, tf.constant([5, 4]), crop_size=(33, 33))
  np.testing.assert_array_equal(first[0], again[0])
  np.testing.assert_array_equal(first[1], again[1])
  assert not np.array_equal(first[0], other[0])


def test_discrete_scales_are_the_official_steps():
  factors = {round(float(augment.random_scale_factor(tf.constant([s, 0]), 0.5, 2.0, 0.25)), 6)
             for s in range(200)}
  assert factors == {0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}
  continuous = [float(augment.random_scale_factor(tf.constant([s, 0]), 0.5, 2.0, 0.0))
                for s in range(50)]
  assert all(0.5 <= f < 2.0 for f in continuous) and len(set(continuous)) == 50
  assert float(augment.random_scale_factor(tf.constant([1, 0]), 1.0, 1.0, 0.25)) == 1.0
  with pytest.raises(ValueError, match='min_scale_factor'):
    augment.random_scale_factor(tf.constant([1, 0]), 2.0, 1.0, 0.25)


@pytest.mark.parametrize('in_size,out_size', [(60, 30), (60, 119), (375, 750), (281, 491),
                                              (7, 3), (500, 1000)])
def test_label_crop_equals_the_official_nearest_resize(in_size, out_size):
  label = tf.constant(np.random.default_rng(0).integers(0, 21, (in_size, 5, 1)), tf.uint8)
  official = tf.compat.v1.image.resize_nearest_neighbor(label[None], [out_size, 5],
                                                        align_corners=True)[0, :, 0, 0]
  ours = tf.gather(label[:, 0, 0], augment._nearest_indices(0, out_size, in_size, out_size))
  np.testing.assert_array_equal(ours, official)


def test_scale_and_crop_equals_resize_pad_and_crop():
  image, label = _scene(37, 45)
  factor = tf.constant(1.5)
  out_image, out_label = augment.scale_and_crop(image, label, factor, 65, 65, 255,
                                                tf.constant([1, 2]))
  size = augment.scaled_size(37, 45, factor).numpy()
  full_image = tf.compat.v1.image.resize_bilinear(tf.cast(image, tf.float32)[None], size,
                                                  align_corners=True)[0].numpy()
  full_label = tf.compat.v1.image.resize_nearest_neighbor(label[None, ..., None], size,
                                                          align_corners=True)[0, ..., 0]
  padded_image = np.full([max(65, size[0]), max(65, size[1]), 3], 127.5, np.float32)
  padded_image[:size[0], :size[1]] = full_image
  padded_label = np.full(padded_image.shape[:2], 255, np.uint8)
  padded_label[:size[0], :size[1]] = full_label
  matches = [(t, l) for t in range(padded_label.shape[0] - 64)
             for l in range(padded_label.shape[1] - 64)
             if np.array_equal(padded_label[t:t + 65, l:l + 65], out_label.numpy()) and
             np.allclose(padded_image[t:t + 65, l:l + 65], out_image.numpy(), atol=1e-4)]
  assert matches
