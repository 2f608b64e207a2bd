"""Progress of a training run: log lines, a progress bar, TensorBoard summaries.

Only the chief writes summaries; every worker logs. Summaries go to
`<model_dir>/train` (scalars: loss, total loss, weight decay, learning rate, train
mIoU, gradient norm, images/s; images: sample crops beside their coloured labels and predictions).
They are written with `tf.summary.write` and the metadata TensorBoard's scalar and
image plugins read, so writing them needs no `tensorboard` package.

Example:
  >>> reporter = ProgressReporter('/tmp/run', train_steps=100, write_summaries=False)
  >>> reporter.report(10, {'loss': 0.9, 'total_loss': 1.0, 'weight_decay': 0.1,
  ...                      'gradient_norm': 2.0, 'train_miou': 0.4},
  ...                 learning_rate=0.007, images_per_second=20.0)
"""

import os
from typing import Dict

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from deeplab.data import colorize
from deeplab.summaries import write_images, write_scalar
from deeplab.visualization import side_by_side

SUMMARY_SUBDIR = 'train'
# The ignore label is painted white in sample images, whatever the colormap.
_IGNORED_COLOR = 255


class ProgressReporter:
  """Logs training progress and writes its TensorBoard summaries.

  Args:
    model_dir: summaries go to `<model_dir>/train`.
    train_steps: the last step (for the progress bar and log lines).
    write_summaries: this worker writes summaries (the chief).
    progress_bar: also show a `tf_keras.utils.Progbar` (interactive terminals).
    colormap: name or uint8 [N, 3] table colouring labels in sample images.
    ignore_label: label drawn white in sample images.
  """

  def __init__(self, model_dir: str, train_steps: int, write_summaries: bool = True,
               progress_bar: bool = False, colormap='pascal', ignore_label: int = 255):
    self.train_steps = train_steps
    self.colormap = colormap
    self.ignore_label = ignore_label
    self._writer = (tf.summary.create_file_writer(os.path.join(model_dir, SUMMARY_SUBDIR))
                    if write_summaries else tf.summary.create_noop_writer())
    self._bar = (tf_keras.utils.Progbar(train_steps, unit_name='step',
                                        stateful_metrics=['loss', 'lr', 'mIoU', 'img/s',
                                                          'eval mIoU'])
                 if progress_bar else None)

  def report(self, step: int, metrics: Dict[str, float], learning_rate: float,
             images_per_second: float) -> None:
    """Logs one line and writes the scalar summaries of `step`."""
    logging.info('step %d/%d: loss %.4f (total %.4f), lr %.6g, train mIoU %.4f, '
                 '%.1f images/s', step, self.train_steps, metrics['loss'],
                 metrics['total_loss'], learning_rate, metrics['train_miou'],
                 images_per_second)
    with self._writer.as_default(step=step):
      for name in ('loss', 'total_loss', 'weight_decay', 'gradient_norm', 'train_miou'):
        if not np.isnan(metrics[name]):
          write_scalar(name, metrics[name])
      write_scalar('learning_rate', learning_rate)
      write_scalar('images_per_second', images_per_second)
    if self._bar is not None:
      self._bar.update(step, [('loss', metrics['loss']), ('lr', learning_rate),
                              ('mIoU', metrics['train_miou']), ('img/s', images_per_second)])

  def report_evaluation(self, step: int, mean_iou: float) -> None:
    """Shows an evaluation's mIoU in the progress bar (the evaluator logs and writes it)."""
    if self._bar is not None:
      self._bar.update(step, [('eval mIoU', mean_iou)])

  def sample_images(self, step: int, images, labels, predictions) -> None:
    """Writes each image beside its coloured labels and predictions.

    Args:
      images: float or uint8 [N, H, W, 3], 0..255.
      labels, predictions: int [N, H, W].
    """
    panels = [side_by_side([np.clip(np.nan_to_num(image), 0, 255).astype(np.uint8),
                            self._colored(label), self._colored(prediction)])
              for image, label, prediction in zip(images, labels, predictions)]
    with self._writer.as_default(step=step):
      write_images('samples/image_labels_predictions', panels)

  def _colored(self, labels) -> np.ndarray:
    labels = np.asarray(labels)
    ignored = labels == self.ignore_label
    colored = colorize(np.where(ignored, 0, labels), self.colormap)
    colored[ignored] = _IGNORED_COLOR
    return colored

  def flush(self) -> None:
    self._writer.flush()
