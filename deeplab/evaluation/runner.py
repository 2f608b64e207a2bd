"""Evaluating the checkpoints of an experiment: one, or each new one as training runs.

`run_evaluation` is what `deeplab-eval` calls: it builds the model at the
evaluation output stride, the evaluation dataset and its class names from the
experiment config, restores a native or official checkpoint, evaluates it and
saves the results (JSON, confusion matrix CSV and PNG, TensorBoard summaries).
In continuous mode it waits for the checkpoints a training run writes and
evaluates each, until the last training step, `max_evaluations` or a timeout.

Example:
  >>> from deeplab.config import load_experiment
  >>> results = run_evaluation(load_experiment('synthetic'), 'runs/synthetic')  # doctest: +SKIP
  >>> results[-1].metrics.mean_iou  # doctest: +SKIP
  0.8731
"""

import os
import re
from typing import Callable, List, Optional

from absl import logging
import tensorflow as tf

from deeplab.checkpoints import restore_weights
from deeplab.config import ExperimentConfig
from deeplab.data import DatasetInfo, build_dataset, resolve_dataset_settings
from deeplab.data.settings import dataset_info_or_none
from deeplab.distribute import build_strategy
from deeplab.evaluation.evaluator import EvalResult, Evaluator
from deeplab.evaluation.reporting import write_results, write_summaries
from deeplab.model import build_model

EVAL_SUBDIR = 'eval'


def default_output_dir(checkpoint: str) -> str:
  """`<model_dir>/eval` for a directory, else `eval` beside the checkpoint files."""
  directory = checkpoint if tf.io.gfile.isdir(checkpoint) else os.path.dirname(checkpoint)
  return os.path.join(directory, EVAL_SUBDIR)


def checkpoint_step(path: str) -> Optional[int]:
  """The training step a checkpoint was saved at, or None if it does not say.

  Read from the step variable (native `step`, TF1 `global_step`), else from the
  number ending the prefix (`ckpt-1200`, `model.ckpt-30000`).
  """
  try:
    reader = tf.train.load_checkpoint(path)
  except (tf.errors.OpError, ValueError):
    reader = None  # Not a TF checkpoint (a .keras or .weights.h5 file).
  for key in ('step/.ATTRIBUTES/VARIABLE_VALUE', 'global_step/.ATTRIBUTES/VARIABLE_VALUE',
              'global_step'):
    if reader is not None and reader.has_tensor(key):
      return int(reader.get_tensor(key))
  match = re.search(r'-(\d+)$', path)
  return int(match.group(1)) if match else None


def evaluate_checkpoint(evaluator: Evaluator, dataset: tf.data.Dataset, checkpoint: str,
                        output_dir: str,
                        summary_writer: Optional[tf.summary.SummaryWriter] = None,
                        progress: Optional[Callable[[int], None]] = None) -> EvalResult:
  """Restores one checkpoint into the evaluator's model, evaluates and saves the results.

  Args:
    evaluator: holds the model the weights are restored into.
    dataset: evaluation batches (see `Evaluator.evaluate`).
    checkpoint: a native or official TF1 checkpoint prefix, or a directory (its
      latest checkpoint).
    output_dir: where `write_results` writes.
    summary_writer: a `tf.summary` writer; summaries are written when the
      checkpoint's step is known.
    progress: called with the number of images done.
  """
  # Strict: a weight missing from the checkpoint would be evaluated at its
  # initial value without anyone noticing.
  checkpoint = restore_weights(evaluator.model, checkpoint, strict=True).checkpoint
  step = checkpoint_step(checkpoint)
  logging.info('Evaluating %s (step %s).', checkpoint, step)
  result = evaluator.evaluate(dataset, progress, checkpoint=checkpoint, step=step)
  write_results(result, output_dir)
  if summary_writer is not None and step is not None:
    write_summaries(result, summary_writer, step)
  return result


def evaluate_checkpoints(evaluator: Evaluator, dataset: tf.data.Dataset, model_dir: str, *,
                         output_dir: str, timeout: Optional[float] = None,
                         max_evaluations: int = 0, last_step: Optional[int] = None,
                         on_result: Optional[Callable[[EvalResult], None]] = None,
                         progress: Optional[Callable[[int], None]] = None
                        ) -> List[EvalResult]:
  """Evaluates the latest checkpoint of `model_dir`, then each new one as it appears.

  Stops after the checkpoint of `last_step` (or a later one), after
  `max_evaluations` evaluations (0 = no limit), or when no new checkpoint appears
  for `timeout` seconds (None = wait forever).

  Args:
    evaluator, dataset: as `evaluate_checkpoint`.
    model_dir: the directory a training run writes its checkpoints to.
    output_dir: results and TensorBoard summaries go here.
    timeout, max_evaluations, last_step: when to stop, see above.
    on_result: called with each result as soon as it is ready.
    progress: called with the number of images done.

  Returns:
    The results, oldest first.
  """
  writer = tf.summary.create_file_writer(output_dir)
  results = []
  for checkpoint in tf.train.checkpoints_iterator(model_dir, timeout=timeout):
    result = evaluate_checkpoint(evaluator, dataset, checkpoint, output_dir, writer, progress)
    results.append(result)
    if on_result:
      on_result(result)
    if max_evaluations and len(results) >= max_evaluations:
      break
    if last_step is not None and result.step is not None and result.step >= last_step:
      logging.info('Reached the last training step %d; stopping.', last_step)
      break
  if not results:
    logging.warning('No checkpoint appeared in %s within %s seconds.', model_dir, timeout)
  return results


def run_evaluation(experiment: ExperimentConfig, checkpoint: str, *, output_dir: str = '',
                   continuous: bool = False, max_evaluations: int = 0,
                   timeout: Optional[float] = None,
                   on_result: Optional[Callable[[EvalResult], None]] = None,
                   progress: Optional[Callable[[int, Optional[int]], None]] = None
                  ) -> List[EvalResult]:
  """Evaluates an experiment's checkpoint(s) on its `eval_data`, as `deeplab-eval` does.

  Args:
    experiment: model, evaluation data, evaluation settings and runtime.
    checkpoint: a checkpoint prefix (native or official TF1) or a model directory
      (its latest checkpoint; in continuous mode, each new one).
    output_dir: results directory; default `default_output_dir(checkpoint)`.
    continuous: follow the model directory until `trainer.train_steps` is reached.
    max_evaluations, timeout: see `evaluate_checkpoints` (continuous mode).
    on_result: called with each result.
    progress: called with the number of images done and the number in the split
      (None when `dataset_info.json` does not say).

  Returns:
    The results, oldest first.

  Raises:
    ConfigError: the dataset's `dataset_info.json` disagrees with the experiment.
    FileNotFoundError: no checkpoint or no evaluation data.
  """
  if continuous and not tf.io.gfile.isdir(checkpoint):
    raise ValueError(f'Continuous evaluation follows a model directory; {checkpoint} is not '
                     f'a directory.')
  experiment = resolve_dataset_settings(experiment)
  data = experiment.eval_data
  info = eval_dataset_info(experiment)
  class_names = info.class_names if info and info.class_names else None
  split = info.splits.get(data.split) if info else None
  total = split.num_examples if split else None
  strategy = build_strategy(experiment.runtime)
  config = experiment.evaluation
  # The weights are the same at every output stride, so the checkpoint is restored
  # directly into the model built at the evaluation stride.
  model_config = experiment.model
  if config.output_stride:
    model_config = model_config.with_output_stride(config.output_stride)
  with strategy.scope():
    model = build_model(model_config, precision=experiment.runtime.mixed_precision_dtype)
  evaluator = Evaluator(model, ignore_label=data.ignore_label, class_names=class_names,
                        config=config, strategy=strategy)
  dataset = build_dataset(data.file_pattern, training=False, batch_size=data.batch_size,
                          ignore_label=data.ignore_label,
                          num_classes=model_config.num_classes)
  output_dir = output_dir or default_output_dir(checkpoint)

  def images_done(done: int) -> None:
    if progress:
      progress(done, total)

  if continuous:
    return evaluate_checkpoints(evaluator, dataset, checkpoint, output_dir=output_dir,
                                timeout=timeout, max_evaluations=max_evaluations,
                                last_step=experiment.trainer.train_steps,
                                on_result=on_result, progress=images_done)
  result = evaluate_checkpoint(evaluator, dataset, checkpoint, output_dir,
                               tf.summary.create_file_writer(output_dir), images_done)
  if on_result:
    on_result(result)
  return [result]


def eval_dataset_info(experiment: ExperimentConfig) -> Optional[DatasetInfo]:
  """The eval set's `dataset_info.json` (checked against the experiment by
  `resolve_dataset_settings`); None if absent."""
  data = experiment.eval_data
  info = dataset_info_or_none(data.dataset_dir)
  if info is None:
    # Records from the official conversion scripts come without it.
    logging.warning('No dataset_info.json in %s; classes are named by their ids.',
                    data.dataset_dir)
  return info
