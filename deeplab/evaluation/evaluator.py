"""The evaluation loop: exact confusion matrices of a model over a dataset.

Batches stream through the model (multi-scale and flipped inputs, any output
stride, images of any size) and each step counts an int64 confusion matrix,
summed over replicas, plus one per trimap band around label boundaries.

Example:
  >>> import numpy as np, tensorflow as tf
  >>> from deeplab import ModelConfig, build_model
  >>> model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3))
  >>> dataset = tf.data.Dataset.from_tensor_slices({
  ...     'images': np.zeros([2, 65, 65, 3], np.float32),
  ...     'labels': np.zeros([2, 65, 65], np.int32),
  ...     'heights': [65, 40], 'widths': [65, 50]}).batch(2)
  >>> result = evaluate(model, dataset)
  >>> result.num_images, int(result.confusion_matrix.sum())  # 65 * 65 + 40 * 50
  (2, 6225)
"""

import dataclasses
from typing import Callable, Dict, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from deeplab.config import EvalConfig
from deeplab.metrics import (SegmentationMetrics, confusion_matrix, count_invalid_labels,
                             segmentation_metrics, trimap_mask)
from deeplab.model import with_output_stride
from deeplab.predict import predict_labels


@dataclasses.dataclass(frozen=True)
class EvalResult:
  """The outcome of one evaluation.

  Attributes:
    metrics: mean IoU, per-class IoU, accuracies over every counted pixel.
    confusion_matrix: int64 [C, C], rows ground truth, columns prediction.
    trimap_metrics: {band width in pixels: metrics within that band}.
    trimap_confusion_matrices: {band width: int64 [C, C]}.
    num_images: images evaluated.
    config: the evaluation settings (scales, flip, output stride).
    checkpoint: the evaluated checkpoint, when known.
    step: its training step, when known.
  """
  metrics: SegmentationMetrics
  confusion_matrix: np.ndarray
  trimap_metrics: Dict[int, SegmentationMetrics]
  trimap_confusion_matrices: Dict[int, np.ndarray]
  num_images: int
  config: EvalConfig
  checkpoint: str = ''
  step: Optional[int] = None

  def to_dict(self) -> Dict:
    """JSON-ready values (the confusion matrix as nested lists)."""
    return {
        'checkpoint': self.checkpoint,
        'step': self.step,
        'num_images': self.num_images,
        'eval_scales': list(self.config.eval_scales),
        'add_flipped_images': self.config.add_flipped_images,
        'output_stride': self.config.output_stride,
        **self.metrics.to_dict(),
        'trimap': {str(width): metrics.to_dict()
                   for width, metrics in self.trimap_metrics.items()},
        'confusion_matrix': self.confusion_matrix.tolist(),
    }


class Evaluator:
  """Computes confusion matrices of a model over datasets, with one compiled step.

  Keep one `Evaluator` to evaluate several checkpoints of the same model: the
  prediction step is traced once (for batches of any image size) and reused.

  Args:
    model: a `deeplab.DeepLabModel`; rebuilt at `config.output_stride` (same
      weights) when that differs from the model's.
    ignore_label: label value never counted.
    class_names: a name per class for the results; defaults to 'class_<i>'.
    config: scales, flip, output stride, trimap widths, tiling.
    strategy: a `tf.distribute.Strategy` the model was built under; confusion
      matrices are summed over its replicas. None uses the current strategy.
  """

  def __init__(self, model: tf_keras.Model, *, ignore_label: int = 255,
               class_names: Optional[Sequence[str]] = None,
               config: EvalConfig = EvalConfig(),
               strategy: Optional[tf.distribute.Strategy] = None):
    self.strategy = strategy or tf.distribute.get_strategy()
    if config.output_stride and config.output_stride != model.config.output_stride:
      with self.strategy.scope():
        model = with_output_stride(model, config.output_stride)
    self.model = model
    self.num_classes = model.config.num_classes
    self.ignore_label = ignore_label
    self.class_names = tuple(class_names) if class_names else None
    # Recorded with the results: the stride actually used.
    self.config = dataclasses.replace(config, output_stride=model.config.output_stride)
    # AutoGraph off: graph-safe Python, and converting it costs startup time.
    self._step = tf.function(self._distributed_step, reduce_retracing=True, autograph=False)

  def _replica_step(self, batch):
    labels = tf.cast(batch['labels'], tf.int32)
    predictions = predict_labels(self.model, batch['images'], self.config.eval_scales,
                                 self.config.add_flipped_images, self.config.tiling)
    shape = tf.shape(labels)
    # The batch is padded to its largest image; only each image's own pixels count.
    region = ((tf.range(shape[1])[tf.newaxis, :, tf.newaxis] <
               tf.reshape(batch['heights'], [-1, 1, 1])) &
              (tf.range(shape[2])[tf.newaxis, tf.newaxis, :] <
               tf.reshape(batch['widths'], [-1, 1, 1])))
    counted = region & (labels != self.ignore_label)
    trimaps = [confusion_matrix(labels, predictions, self.num_classes,
                                counted & trimap_mask(labels, width, region))
               for width in self.config.trimap_widths]
    return {
        'confusion': confusion_matrix(labels, predictions, self.num_classes, counted),
        'trimap_confusions': (tf.stack(trimaps) if trimaps else
                              tf.zeros([0, self.num_classes, self.num_classes], tf.int64)),
        'num_images': tf.shape(labels)[0],
        'invalid_pixels': count_invalid_labels(labels, self.num_classes,
                                               self.ignore_label, region),
    }

  def _distributed_step(self, batch):
    outputs = self.strategy.run(self._replica_step, args=(batch,))
    summed = {key: self.strategy.reduce(tf.distribute.ReduceOp.SUM, outputs[key], axis=None)
              for key in ('confusion', 'trimap_confusions', 'num_images')}
    return summed, outputs['invalid_pixels']

  def evaluate(self, dataset: tf.data.Dataset,
               progress: Optional[Callable[[int], None]] = None,
               checkpoint: str = '', step: Optional[int] = None) -> EvalResult:
    """Evaluates the model's current weights on `dataset`.

    Args:
      dataset: batches of {'images': float32 or uint8 [B, H, W, 3] (0..255),
        'labels': int [B, H, W], 'heights': int [B], 'widths': int [B], and
        optionally 'filenames': string [B]}; images of a batch are padded to its
        largest one, and `heights`/`widths` give each image's own size. This is
        what `deeplab.data.pipeline.build_dataset(..., training=False)` yields.
      progress: called with the number of images done after every batch.
      checkpoint, step: recorded in the result.

    Returns:
      An `EvalResult`.

    Raises:
      ValueError: a label outside [0, num_classes) other than the ignore label,
        naming the image.
    """
    missing = {'images', 'labels', 'heights', 'widths'} - set(dataset.element_spec)
    if missing:
      raise ValueError(f'Evaluation batches need the keys images, labels, heights and '
                       f'widths; missing {", ".join(sorted(missing))}.')
    num_classes = self.num_classes
    confusion = np.zeros([num_classes, num_classes], np.int64)
    trimaps = np.zeros([len(self.config.trimap_widths), num_classes, num_classes], np.int64)
    num_images = 0
    batches = self.strategy.experimental_distribute_dataset(dataset)
    # Tracing for the dataset's own spec (sizes unknown) covers every batch, so
    # images of a new size never trigger another trace.
    self._step.get_concrete_function(batches.element_spec)
    for batch in batches:
      summed, invalid_pixels = self._step(batch)
      self._check_labels(batch, invalid_pixels, num_images)
      confusion += summed['confusion'].numpy()
      trimaps += summed['trimap_confusions'].numpy()
      num_images += int(summed['num_images'])
      if progress:
        progress(num_images)
      logging.log_every_n_seconds(logging.INFO, 'Evaluated %d images.', 30, num_images)
    if not num_images:
      raise ValueError('The evaluation dataset is empty.')
    logging.info('Evaluated %d images.', num_images)
    widths = self.config.trimap_widths
    return EvalResult(
        metrics=segmentation_metrics(confusion, self.class_names),
        confusion_matrix=confusion,
        trimap_metrics={w: segmentation_metrics(m, self.class_names)
                        for w, m in zip(widths, trimaps)},
        trimap_confusion_matrices=dict(zip(widths, trimaps)),
        num_images=num_images, config=self.config, checkpoint=checkpoint, step=step)

  def _check_labels(self, batch, invalid_pixels, images_before: int) -> None:
    local = self.strategy.experimental_local_results
    counts = np.concatenate([np.atleast_1d(c.numpy()) for c in local(invalid_pixels)])
    if not counts.any():
      return
    index = int(np.flatnonzero(counts)[0])
    if 'filenames' in batch:
      names = np.concatenate([np.atleast_1d(n.numpy()) for n in local(batch['filenames'])])
      image = repr(names[index].decode('utf-8', 'replace'))
    else:
      image = f'number {images_before + index}'
    raise ValueError(
        f'Image {image} has {counts[index]} pixels labelled outside 0..{self.num_classes - 1} '
        f'and not the ignore label {self.ignore_label}: corrupt labels, or num_classes / '
        f'ignore_label do not match the dataset.')


def evaluate(model: tf_keras.Model, dataset: tf.data.Dataset, *, ignore_label: int = 255,
             class_names: Optional[Sequence[str]] = None, config: EvalConfig = EvalConfig(),
             strategy: Optional[tf.distribute.Strategy] = None,
             progress: Optional[Callable[[int], None]] = None) -> EvalResult:
  """Mean IoU and the other metrics of `model` on `dataset` (see `Evaluator`).

  Example: see the module docstring.
  """
  evaluator = Evaluator(model, ignore_label=ignore_label, class_names=class_names,
                        config=config, strategy=strategy)
  return evaluator.evaluate(dataset, progress)
