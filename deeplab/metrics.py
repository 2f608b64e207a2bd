"""Segmentation metrics: confusion matrices, IoU, accuracies, and trimap bands.

The confusion matrix is the one exact state of every metric here: rows are
ground-truth classes, columns predicted classes, and each entry counts pixels.
Counting is done in the graph, per batch (`confusion_matrix`); summing and the
metrics themselves are done on the host in int64 / float64
(`segmentation_metrics`), so results are exact however many images are seen.

Mean IoU follows the official metric (TF1 `tf.metrics.mean_iou`): a class that
appears in neither the ground truth nor the predictions has no IoU and is left out
of the mean; pixels labelled `ignore_label` are never counted.

Example:
  >>> import numpy as np
  >>> labels = np.array([[[0, 0, 1, 255]]])
  >>> predictions = np.array([[[0, 1, 1, 1]]])
  >>> confusion = confusion_matrix(labels, predictions, num_classes=3,
  ...                              mask=labels != 255).numpy()
  >>> metrics = segmentation_metrics(confusion)
  >>> round(metrics.mean_iou, 4), metrics.per_class_iou
  (0.5, (0.5, 0.5, None))
"""

import dataclasses
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf


def confusion_matrix(labels, predictions, num_classes: int, mask=None) -> tf.Tensor:
  """Counts (ground truth, prediction) pixel pairs of one batch.

  Args:
    labels: int [N, H, W] ground-truth class ids.
    predictions: int [N, H, W] predicted class ids in [0, num_classes).
    num_classes: number of classes C.
    mask: bool [N, H, W], the pixels to count (e.g. not the ignore label, inside
      the image). Pixels whose label is outside [0, C) are never counted; check
      them with `count_invalid_labels` first.

  Returns:
    int64 [C, C]: entry [i, j] = pixels of class i predicted as class j.
  """
  labels = tf.cast(labels, tf.int32)
  predictions = tf.cast(predictions, tf.int32)
  counted = (labels >= 0) & (labels < num_classes)
  if mask is not None:
    counted &= tf.cast(mask, tf.bool)
  # Uncounted pixels go to one extra bin that is dropped, which keeps the shapes
  # static (no boolean_mask) so the count also compiles with XLA.
  pairs = tf.where(counted, labels * num_classes + predictions, num_classes * num_classes)
  # int32 counts are exact per batch (< 2**31 pixels); the caller sums in int64.
  counts = tf.math.bincount(tf.reshape(pairs, [-1]), minlength=num_classes**2 + 1,
                            maxlength=num_classes**2 + 1, dtype=tf.int32)
  return tf.cast(tf.reshape(counts[:-1], [num_classes, num_classes]), tf.int64)


def count_invalid_labels(labels, num_classes: int, ignore_label: int, mask=None) -> tf.Tensor:
  """Pixels per image whose label is neither a class id nor the ignore label.

  Args:
    labels: int [N, H, W] ground-truth class ids.
    num_classes: number of classes C; valid labels are 0..C-1 and `ignore_label`.
    ignore_label: the label value excluded from the metrics.
    mask: bool [N, H, W], the pixels to check (e.g. inside the image).

  Returns:
    int32 [N]; non-zero entries mean corrupt labels or the wrong `num_classes`.
  """
  labels = tf.cast(labels, tf.int32)
  invalid = ((labels < 0) | (labels >= num_classes)) & (labels != ignore_label)
  if mask is not None:
    invalid &= tf.cast(mask, tf.bool)
  return tf.reduce_sum(tf.cast(invalid, tf.int32), axis=[1, 2])


def trimap_mask(labels, width: int, region=None) -> tf.Tensor:
  """The band of pixels within `width` pixels of a ground-truth label boundary.

  A pixel is in the band when a pixel at Chebyshev distance <= `width` has a
  different label. Any label change counts, the ignore label included, so on
  PASCAL VOC the band follows the outlines of the 'void' borders, as the trimap
  of the DeepLab papers (Fig. 5 of DeepLabV3+). Evaluating only inside the band
  measures how well object boundaries are segmented.

  Args:
    labels: int [N, H, W] ground-truth labels.
    width: band half-width in pixels (>= 1).
    region: bool [N, H, W], the pixels that belong to the image (batch padding is
      False); changes into the padding are not boundaries.

  Returns:
    bool [N, H, W]: inside the band (and inside `region`).
  """
  if width < 1:
    raise ValueError(f'Trimap width must be a positive number of pixels; got {width}.')
  labels = tf.cast(labels, tf.float32)[..., tf.newaxis]
  if region is None:
    region = tf.ones_like(labels[..., 0], tf.bool)
  inside = tf.cast(region, tf.bool)[..., tf.newaxis]
  # Outside pixels never win the max or the min, so they create no boundary.
  highest = _window_max(tf.where(inside, labels, -1.0), width)
  lowest = -_window_max(tf.where(inside, -labels, -1e6), width)
  return (highest != lowest)[..., 0] & inside[..., 0]


def _window_max(values: tf.Tensor, width: int) -> tf.Tensor:
  """Max over the (2 * width + 1)^2 window around each pixel, as two 1-D passes."""
  size = 2 * width + 1
  rows = tf.nn.max_pool2d(values, ksize=[size, 1], strides=1, padding='SAME')
  return tf.nn.max_pool2d(rows, ksize=[1, size], strides=1, padding='SAME')


@dataclasses.dataclass(frozen=True)
class SegmentationMetrics:
  """Metrics of one confusion matrix.

  Attributes:
    mean_iou: mean IoU over the classes present in ground truth or predictions.
    per_class_iou: IoU of each class; None for a class absent from both.
    pixel_accuracy: correctly labelled pixels / counted pixels.
    mean_accuracy: mean over the ground-truth classes of their pixel accuracy.
    frequency_weighted_iou: per-class IoU weighted by ground-truth pixel share.
    class_pixels: ground-truth pixels of each class.
    class_names: a name for each class.
  """
  mean_iou: float
  per_class_iou: Tuple[Optional[float], ...]
  pixel_accuracy: float
  mean_accuracy: float
  frequency_weighted_iou: float
  class_pixels: Tuple[int, ...]
  class_names: Tuple[str, ...]

  def to_dict(self) -> Dict[str, Any]:
    """JSON-ready values; per-class IoU keyed by class name (null when absent)."""
    return {
        'mean_iou': self.mean_iou,
        'pixel_accuracy': self.pixel_accuracy,
        'mean_accuracy': self.mean_accuracy,
        'frequency_weighted_iou': self.frequency_weighted_iou,
        'per_class_iou': dict(zip(self.class_names, self.per_class_iou)),
        'class_pixels': dict(zip(self.class_names, self.class_pixels)),
    }


def segmentation_metrics(confusion, class_names: Optional[Sequence[str]] = None
                        ) -> SegmentationMetrics:
  """Mean IoU, per-class IoU, accuracies and frequency-weighted IoU.

  Args:
    confusion: int [C, C] confusion matrix (rows ground truth, columns prediction).
    class_names: C names; defaults to 'class_0', 'class_1', ...

  Returns:
    A `SegmentationMetrics`. With no counted pixel at all, the means are NaN.

  Example:
    >>> segmentation_metrics(np.array([[3, 1], [0, 4]])).pixel_accuracy
    0.875
  """
  confusion = np.asarray(confusion, np.int64)
  if confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1]:
    raise ValueError(f'A confusion matrix must be square [C, C]; got shape {confusion.shape}.')
  num_classes = confusion.shape[0]
  if class_names is None:
    class_names = [f'class_{i}' for i in range(num_classes)]
  if len(class_names) != num_classes:
    raise ValueError(f'Got {len(class_names)} class names for {num_classes} classes.')
  true_positives = np.diag(confusion).astype(np.float64)
  ground_truth = confusion.sum(axis=1)
  predicted = confusion.sum(axis=0)
  union = ground_truth + predicted - true_positives
  present = union > 0
  iou = np.where(present, true_positives / np.maximum(union, 1), np.nan)
  total = ground_truth.sum()
  in_truth = ground_truth > 0
  with np.errstate(invalid='ignore', divide='ignore'):
    return SegmentationMetrics(
        mean_iou=float(np.mean(iou[present])) if present.any() else float('nan'),
        per_class_iou=tuple(float(v) if p else None for v, p in zip(iou, present)),
        pixel_accuracy=float(true_positives.sum() / total),
        mean_accuracy=(float(np.mean(true_positives[in_truth] / ground_truth[in_truth]))
                       if in_truth.any() else float('nan')),
        frequency_weighted_iou=float(np.sum(ground_truth[in_truth] * iou[in_truth]) / total),
        class_pixels=tuple(int(v) for v in ground_truth),
        class_names=tuple(class_names))
