"""Warnings about a training setup before it runs, and about its model after it ran.

The official defaults are known traps on small data and small batches; these
checks say so once, with the setting that addresses each, rather than let a run
end in a model that predicts one class everywhere:

- `setup_warnings`: BatchNorm trained on small batches, moving averages that
  cannot converge within the run, crops mostly made of padding, and classes
  that are under 1% of the training pixels (from `dataset_info.json`).
- `collapse_warning`: an evaluation that predicts one class for almost every
  pixel, or whose mIoU is far below the training mIoU, with the likely cause.

Example:
  >>> for warning in setup_warnings(config, info, num_replicas=1):  # doctest: +SKIP
  ...   logging.warning('%s', warning)
"""

from typing import List, Optional, Sequence

import numpy as np

from deeplab.config import DataConfig, ExperimentConfig
from deeplab.data.info import DatasetInfo
from deeplab.metrics import segmentation_metrics
from deeplab.training.batch_norm import STALE_SHARE

# The official advice: fine-tune BatchNorm with at least 12 images per batch.
MIN_BATCH_NORM_BATCH = 12
# Crops whose expected share of padding is above this are mostly ignored pixels.
MAX_PADDING_SHARE = 0.5
# Classes below this share of the labelled training pixels are called rare.
RARE_CLASS_SHARE = 0.01
# Suggested class weights are capped, so a nearly absent class does not dominate.
MAX_SUGGESTED_CLASS_WEIGHT = 10.0
# An evaluation predicting one class for this share of pixels, where the labels'
# most frequent class has less than `COLLAPSE_LABEL_SHARE`, has collapsed.
COLLAPSE_PREDICTED_SHARE = 0.95
COLLAPSE_LABEL_SHARE = 0.8
# Evaluation mIoU below this fraction of the training mIoU is a warning.
EVAL_TO_TRAIN_MIOU = 0.5


def setup_warnings(config: ExperimentConfig, info: Optional[DatasetInfo],
                   num_replicas: int, moving_average_momentum: float) -> List[str]:
  """The warnings about `config` before training, one sentence group each.

  Args:
    config: the resolved experiment.
    info: the training dataset's `dataset_info.json`, or None.
    num_replicas: replicas the global batch is split over.
    moving_average_momentum: the slowest trained BatchNorm momentum (0 if none).
  """
  trainer = config.trainer
  warnings = []
  if trainer.fine_tune_batch_norm and moving_average_momentum:
    synchronized = config.model.sync_batch_norm and num_replicas > 1
    batch = config.train_data.batch_size // (1 if synchronized else num_replicas)
    if batch < MIN_BATCH_NORM_BATCH:
      warnings.append(
          f'BatchNorm is trained on batches of {batch} images (under '
          f'{MIN_BATCH_NORM_BATCH}, the official limit): noisy statistics. Its moving '
          f'statistics are recomputed from training batches before checkpoints and '
          f'evaluations (trainer.precise_batch_norm_batches); if training is unstable, '
          f'freeze BatchNorm with trainer.fine_tune_batch_norm=false or use a larger '
          f'train_data.batch_size.')
    share = moving_average_momentum ** trainer.train_steps
    if share > STALE_SHARE and not trainer.precise_batch_norm_batches:
      warnings.append(
          f'BatchNorm moving averages (momentum {moving_average_momentum}) will still hold '
          f'{share:.0%} of their initial values after {trainer.train_steps} steps, and '
          f'trainer.precise_batch_norm_batches is 0: evaluation and export will normalize '
          f'with statistics that do not fit the trained weights (the model may predict one '
          f'class everywhere). Set trainer.precise_batch_norm_batches=100 or '
          f'trainer.fine_tune_batch_norm=false.')
  split = info.splits.get(config.train_data.split) if info else None
  if split and split.num_examples and split.class_pixel_counts:
    padding = _padding_warning(config.train_data, split.class_pixel_counts,
                               split.ignored_pixels, split.num_examples)
    if padding:
      warnings.append(padding)
    rare = _rare_classes_warning(split.class_pixel_counts, info.class_names,
                                 trainer.class_weights)
    if rare:
      warnings.append(rare)
  return warnings


def _scale_factors(data: DataConfig) -> np.ndarray:
  if data.min_scale_factor == data.max_scale_factor:
    return np.array([data.min_scale_factor])
  if data.scale_factor_step_size == 0:
    return np.linspace(data.min_scale_factor, data.max_scale_factor, 9)
  count = int((data.max_scale_factor - data.min_scale_factor) / data.scale_factor_step_size + 1)
  return np.linspace(data.min_scale_factor, data.max_scale_factor, max(count, 2))


def _padding_warning(data: DataConfig, class_pixel_counts: Sequence[int], ignored_pixels: int,
                     num_examples: int) -> Optional[str]:
  """The crop is mostly padding when the average scaled image is smaller than it."""
  mean_area = (sum(class_pixel_counts) + ignored_pixels) / num_examples
  crop_area = data.crop_size[0] * data.crop_size[1]
  scales = _scale_factors(data)
  padding = float(np.mean(np.maximum(0.0, 1.0 - mean_area * scales**2 / crop_area)))
  if padding <= MAX_PADDING_SHARE:
    return None
  side = int(np.sqrt(mean_area))
  return (f'train_data.crop_size {data.crop_size[0]}x{data.crop_size[1]} is larger than the '
          f'images (on average {mean_area:,.0f} pixels, about {side}x{side}): at the random '
          f'scales {scales.min():g}-{scales.max():g}, {padding:.0%} of each crop is padding '
          f'with the ignore label, computed for nothing. Use a smaller crop, e.g. '
          f'train_data.crop_size=[{_crop_side(side)}, {_crop_side(side)}].')


def _crop_side(side: int) -> int:
  """The largest size of the form 16k + 1 (the official crop sizes) not above `side`."""
  return max(33, (side - 1) // 16 * 16 + 1)


def _rare_classes_warning(class_pixel_counts: Sequence[int], class_names: Sequence[str],
                          class_weights: Sequence[float]) -> Optional[str]:
  counts = np.asarray(class_pixel_counts, np.float64)
  shares = counts / max(counts.sum(), 1.0)
  rare = [c for c in range(len(counts)) if 0 < shares[c] < RARE_CLASS_SHARE]
  absent = [c for c in range(len(counts)) if counts[c] == 0]
  if not (rare or absent) or class_weights:
    return None
  names = class_names or [f'class {c}' for c in range(len(counts))]
  text = ''
  if rare:
    listed = ', '.join(f'{names[c]} ({shares[c]:.1%})' for c in rare)
    text = (f'{len(rare)} class(es) are under {RARE_CLASS_SHARE:.0%} of the labelled training '
            f'pixels: {listed}. The loss barely sees them and the model may never predict '
            f'them. Weigh them up with trainer.class_weights, e.g. the square roots of '
            f'median-frequency weights: --params_override="'
            f'trainer.class_weights={suggested_class_weights(class_pixel_counts)}", or mine '
            f'hard pixels with trainer.top_k_percent_pixels. ')
  if absent:
    text += (f'{len(absent)} class(es) have no pixel in the training split: '
             f'{", ".join(names[c] for c in absent)}; the model cannot learn them.')
  return text.strip()


def suggested_class_weights(class_pixel_counts: Sequence[int]) -> List[float]:
  """Square roots of the median-frequency weights (median share / class share),
  capped at `MAX_SUGGESTED_CLASS_WEIGHT`; an absent class gets 1.

  The square root keeps the dominant class (often background) from being weighed
  down to almost nothing: on five real VOC images, 150 steps from a checkpoint,
  plain median-frequency weights (background 0.07) took mIoU from 0.42 to 0.11.
  """
  counts = np.asarray(class_pixel_counts, np.float64)
  shares = counts / max(counts.sum(), 1.0)
  median = float(np.median(shares[shares > 0])) if np.any(shares > 0) else 1.0
  weights = np.where(shares > 0, np.sqrt(median / np.maximum(shares, 1e-12)), 1.0)
  return [round(float(w), 2) for w in np.minimum(weights, MAX_SUGGESTED_CLASS_WEIGHT)]


def collapse_warning(confusion, train_miou: Optional[float], config: ExperimentConfig,
                     what: str, class_names: Sequence[str] = ()) -> Optional[str]:
  """A warning when the predictions counted in `confusion` have collapsed, else None.

  Args:
    confusion: int [C, C] (rows labels, columns predictions) of an evaluation.
    train_miou: the training mIoU of the last logged steps, or None.
    config: the experiment (its BatchNorm settings name the likely cause).
    what: what was evaluated, e.g. 'The evaluation at step 1000'.
    class_names: C names, or empty.
  """
  confusion = np.asarray(confusion, np.int64)
  total = confusion.sum()
  if not total:
    return None
  predicted = confusion.sum(axis=0) / total
  labelled = confusion.sum(axis=1) / total
  miou = segmentation_metrics(confusion).mean_iou
  names = class_names or [f'class {c}' for c in range(len(confusion))]
  problems = []
  top = int(np.argmax(predicted))
  if predicted[top] >= COLLAPSE_PREDICTED_SHARE and labelled.max() < COLLAPSE_LABEL_SHARE:
    problems.append(f'labels {predicted[top]:.0%} of the pixels "{names[top]}" (which is '
                    f'{labelled[top]:.0%} of the labels)')
  if train_miou and np.isfinite(miou) and miou < EVAL_TO_TRAIN_MIOU * train_miou:
    problems.append(f'has mIoU {miou:.3f}, under half the training mIoU {train_miou:.3f}')
  if not problems:
    return None
  trainer = config.trainer
  if trainer.fine_tune_batch_norm and not trainer.precise_batch_norm_batches:
    cause = ('Likely cause: BatchNorm moving statistics that do not fit the trained weights '
             '(BatchNorm trained, trainer.precise_batch_norm_batches=0). Set '
             'trainer.precise_batch_norm_batches=100, or trainer.fine_tune_batch_norm=false.')
  else:
    cause = ('BatchNorm statistics fit the weights here, so likely causes are too few steps, '
             'too high a trainer.base_learning_rate, or a training set too small or unlike '
             'the evaluation set; compare the train and eval mIoU in TensorBoard.')
  return f'{what} {" and ".join(problems)}. {cause}'
