import numpy as np
import pytest

from deeplab.metrics import (confusion_matrix, count_invalid_labels, segmentation_metrics,
                             trimap_mask)

IGNORE = 255


def _reference_confusion(labels, predictions, num_classes):
  confusion = np.zeros([num_classes, num_classes], np.int64)
  for label, prediction in zip(labels.ravel(), predictions.ravel()):
    if label != IGNORE:
      confusion[label, prediction] += 1
  return confusion


def _reference_iou(labels, predictions, num_classes):
  """Per-class IoU from the label maps directly; None where the class is nowhere."""
  counted = labels != IGNORE
  ious = []
  for c in range(num_classes):
    intersection = np.sum((labels == c) & (predictions == c) & counted)
    union = np.sum(((labels == c) | (predictions == c)) & counted)
    ious.append(intersection / union if union else None)
  return ious


def _random_maps(seed, num_classes, absent=(), shape=(3, 37, 41)):
  rng = np.random.default_rng(seed)
  present = [c for c in range(num_classes) if c not in absent]
  labels = rng.choice(present, size=shape).astype(np.int32)
  labels[rng.random(shape) < 0.1] = IGNORE
  predictions = rng.choice(present, size=shape).astype(np.int32)
  # Mostly right, so IoUs are far from zero and differ per class.
  predictions = np.where(rng.random(shape) < 0.6, np.where(labels == IGNORE, 0, labels),
                         predictions)
  return labels, predictions


@pytest.mark.parametrize('seed', [0, 1])
def test_confusion_matrix_matches_numpy_count_and_skips_ignore_label(seed):
  labels, predictions = _random_maps(seed, num_classes=6)
  confusion = confusion_matrix(labels, predictions, 6, mask=labels != IGNORE).numpy()
  assert confusion.dtype == np.int64
  np.testing.assert_array_equal(confusion, _reference_confusion(labels, predictions, 6))
  assert confusion.sum() == np.sum(labels != IGNORE)


def test_miou_matches_reference_with_classes_absent_from_truth_and_predictions():
  num_classes = 8
  labels, predictions = _random_maps(3, num_classes, absent=(2, 5))
  # Class 7 is predicted somewhere but never in the ground truth: IoU 0, counted.
  predictions[0, 0, 0] = 7
  confusion = confusion_matrix(labels, predictions, num_classes, mask=labels != IGNORE)
  metrics = segmentation_metrics(confusion)
  expected = _reference_iou(labels, predictions, num_classes)
  if labels[0, 0, 0] == IGNORE:
    expected[7] = None
  assert expected[2] is None and expected[5] is None
  for got, want in zip(metrics.per_class_iou, expected):
    assert (got is None) == (want is None)
    if want is not None:
      assert got == pytest.approx(want, abs=1e-12)
  assert metrics.mean_iou == pytest.approx(np.mean([v for v in expected if v is not None]),
                                           abs=1e-12)


def test_accuracies_and_frequency_weighted_iou_of_a_known_matrix():
  # Rows: class 0 has 4 pixels (3 right), class 1 has 6 (4 right), class 2 none.
  confusion = np.array([[3, 1, 0], [2, 4, 0], [0, 0, 0]])
  metrics = segmentation_metrics(confusion, ['a', 'b', 'c'])
  iou_a, iou_b = 3 / (4 + 5 - 3), 4 / (6 + 5 - 4)
  assert metrics.per_class_iou == pytest.approx((iou_a, iou_b, None))
  assert metrics.mean_iou == pytest.approx((iou_a + iou_b) / 2)
  assert metrics.pixel_accuracy == pytest.approx(7 / 10)
  assert metrics.mean_accuracy == pytest.approx((3 / 4 + 4 / 6) / 2)
  assert metrics.frequency_weighted_iou == pytest.approx(0.4 * iou_a + 0.6 * iou_b)
  assert metrics.to_dict()['per_class_iou'] == {'a': pytest.approx(iou_a),
                                               'b': pytest.approx(iou_b), 'c': None}


def test_confusion_matrix_sums_exactly_beyond_float32_precision():
  # 2**24 + 1 is the first integer float32 cannot hold; int64 sums stay exact.
  big = np.array([[2**24 + 1, 3], [5, 2**31 + 7]], np.int64)
  metrics = segmentation_metrics(big + big)
  assert metrics.class_pixels == (2 * (2**24 + 4), 2 * (2**31 + 12))


def test_count_invalid_labels_flags_values_outside_classes_and_ignore():
  labels = np.zeros([2, 4, 4], np.int32)
  labels[0, 1, 1] = IGNORE
  labels[1, 2, 3] = 9
  labels[1, 3, 3] = 7  # outside the region below
  region = np.ones([2, 4, 4], bool)
  region[1, 3] = False
  counts = count_invalid_labels(labels, 5, IGNORE, region).numpy()
  assert counts.tolist() == [0, 1]


def _reference_trimap(labels, width, region):
  n, h, w = labels.shape
  band = np.zeros_like(region)
  for b in range(n):
    for y in range(h):
      for x in range(w):
        if not region[b, y, x]:
          continue
        window = (slice(max(0, y - width), y + width + 1), slice(max(0, x - width), x + width + 1))
        neighbours = labels[b][window][region[b][window]]
        band[b, y, x] = np.any(neighbours != labels[b, y, x])
  return band


@pytest.mark.parametrize('width', [1, 3])
def test_trimap_band_matches_brute_force_and_ignores_batch_padding(width):
  rng = np.random.default_rng(width)
  labels = np.zeros([2, 20, 23], np.int32)
  labels[:, 5:12, 6:15] = 1
  labels[:, 8:10, 2:20] = IGNORE
  labels[1] = rng.integers(0, 3, size=[20, 23]) * (rng.random([20, 23]) < 0.05)
  region = np.ones_like(labels, bool)
  region[1, 15:] = False  # the second image is 15 rows, padded with another label
  labels[1, 15:] = 7
  band = trimap_mask(labels, width, region).numpy()
  np.testing.assert_array_equal(band, _reference_trimap(labels, width, region))
  assert not band[1, 15:].any() and band[0].any()


def test_segmentation_metrics_rejects_wrong_class_names():
  with pytest.raises(ValueError, match='2 class names for 3 classes'):
    segmentation_metrics(np.eye(3, dtype=np.int64), ['a', 'b'])
