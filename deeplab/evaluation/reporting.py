"""Evaluation results for people and tools: a table, JSON, CSV, a picture, TensorBoard.

Example:
  >>> import numpy as np
  >>> from deeplab.config import EvalConfig
  >>> from deeplab.metrics import segmentation_metrics
  >>> confusion = np.array([[3, 1], [0, 4]])
  >>> result = EvalResult(segmentation_metrics(confusion, ['sky', 'road']), confusion,
  ...                     {}, {}, num_images=1, config=EvalConfig())
  >>> print(format_results(result))
  1 images (scales 1)
  class                         IoU         pixels
  sky                        75.00%              4
  road                       80.00%              4
  ------------------------------------------------
  mIoU                       77.50%
  pixel accuracy             87.50%
  mean class accuracy        87.50%
  frequency-weighted IoU     77.50%
"""

import io
import json
import os
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from deeplab.evaluation.evaluator import EvalResult
from deeplab.files import atomic_write
from deeplab.summaries import write_scalar
from deeplab.visualization import confusion_matrix_image, encode_png

RESULTS_FILE = 'metrics.json'
CONFUSION_CSV_FILE = 'confusion_matrix.csv'
CONFUSION_PNG_FILE = 'confusion_matrix.png'


def format_results(result: EvalResult) -> str:
  """A text table of per-class IoU and the summary metrics, for terminals and logs."""
  metrics = result.metrics
  name_width = max([len(n) for n in metrics.class_names] + [24])
  settings = ['scales ' + ','.join(f'{s:g}' for s in result.config.eval_scales)]
  if result.config.add_flipped_images:
    settings.append('flipped')
  if result.config.output_stride:
    settings.append(f'output stride {result.config.output_stride}')
  if result.checkpoint:
    settings.append(f'checkpoint {result.checkpoint}')
  if result.step is not None:
    settings.append(f'step {result.step}')
  lines = [f'{result.num_images} images ({", ".join(settings)})',
           f'{"class":<{name_width}} {"IoU":>8} {"pixels":>14}']
  for name, iou, pixels in zip(metrics.class_names, metrics.per_class_iou,
                               metrics.class_pixels):
    lines.append(f'{name:<{name_width}} {_percent(iou):>8} {pixels:>14,}')
  lines.append('-' * (name_width + 24))
  for label, value in (('mIoU', metrics.mean_iou),
                       ('pixel accuracy', metrics.pixel_accuracy),
                       ('mean class accuracy', metrics.mean_accuracy),
                       ('frequency-weighted IoU', metrics.frequency_weighted_iou)):
    lines.append(f'{label:<{name_width}} {_percent(value):>8}')
  for width, trimap in result.trimap_metrics.items():
    lines.append(f'{f"trimap mIoU ({width} px)":<{name_width}} {_percent(trimap.mean_iou):>8}')
  return '\n'.join(lines)


def _percent(value: Optional[float]) -> str:
  return '-' if value is None or np.isnan(value) else f'{100 * value:.2f}%'


def _json_ready(value):
  """NaN (no pixels) becomes null, since JSON has no NaN."""
  if isinstance(value, dict):
    return {key: _json_ready(item) for key, item in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_ready(item) for item in value]
  if isinstance(value, float) and np.isnan(value):
    return None
  return value


def _json_text(result: EvalResult) -> str:
  """`result.to_dict()` as indented JSON, with one line per confusion-matrix row."""
  values = _json_ready(result.to_dict())
  matrix = values.pop('confusion_matrix')
  rows = ',\n'.join(f'  {json.dumps(row)}' for row in matrix)
  # json.dumps ends the object with '\n}'; the matrix goes in before it.
  return f'{json.dumps(values, indent=1)[:-2]},\n "confusion_matrix": [\n{rows}\n ]\n}}\n'


def write_results(result: EvalResult, output_dir: str) -> Dict[str, str]:
  """Saves the metrics (JSON) and the confusion matrix (CSV and PNG), atomically.

  Files: `metrics.json` (everything in `EvalResult.to_dict`),
  `confusion_matrix.csv` (counts, with class names) and `confusion_matrix.png`
  (rows normalized; see `deeplab.visualization.confusion_matrix_image`).

  Returns:
    {'metrics': path, 'confusion_csv': path, 'confusion_png': path}.
  """
  paths = {'metrics': os.path.join(output_dir, RESULTS_FILE),
           'confusion_csv': os.path.join(output_dir, CONFUSION_CSV_FILE),
           'confusion_png': os.path.join(output_dir, CONFUSION_PNG_FILE)}
  atomic_write(paths['metrics'], _json_text(result))
  names = result.metrics.class_names
  table = io.StringIO()
  table.write(','.join(['ground_truth\\prediction'] + list(names)) + '\n')
  for name, row in zip(names, result.confusion_matrix):
    table.write(','.join([name] + [str(v) for v in row]) + '\n')
  atomic_write(paths['confusion_csv'], table.getvalue())
  atomic_write(paths['confusion_png'],
                    encode_png(confusion_matrix_image(result.confusion_matrix)))
  return paths


def write_summaries(result: EvalResult, writer: tf.summary.SummaryWriter, step: int) -> None:
  """TensorBoard scalars: mIoU, accuracies, per-class IoU and trimap mIoU at `step`."""
  metrics = result.metrics
  with writer.as_default(step=step):
    write_scalar('mIoU', metrics.mean_iou)
    write_scalar('pixel_accuracy', metrics.pixel_accuracy)
    write_scalar('mean_accuracy', metrics.mean_accuracy)
    write_scalar('frequency_weighted_IoU', metrics.frequency_weighted_iou)
    for name, iou in zip(metrics.class_names, metrics.per_class_iou):
      if iou is not None:
        write_scalar(f'IoU/{name}', iou)
    for width, trimap in result.trimap_metrics.items():
      write_scalar(f'trimap_mIoU/width_{width}', trimap.mean_iou)
  writer.flush()
