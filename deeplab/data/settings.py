"""The converted dataset is the source of truth for the classes and the ignore label.

`deeplab-convert` writes `num_classes` and `ignore_label` into `dataset_info.json`.
An experiment that leaves `model.num_classes` or a split's `ignore_label` unset
(None) takes the dataset's; one that sets a different value is refused before any
work starts, naming both values and the setting that fixes it.

Example:
  >>> from deeplab.config import load_experiment
  >>> config = load_experiment('finetune_mobilenet_v2', (),  # doctest: +SKIP
  ...                          'train_data.dataset_dir=data/mine,eval_data.dataset_dir=data/mine')
  >>> resolve_dataset_settings(config).model.num_classes  # doctest: +SKIP
  11
"""

import dataclasses
from typing import Optional

from absl import logging

from deeplab.config import DataConfig, ExperimentConfig
from deeplab.data.info import INFO_FILENAME, DatasetInfo, read_dataset_info
from deeplab.hyperparams import ConfigError

# The official converters' ignore label, for records without a dataset_info.json.
DEFAULT_IGNORE_LABEL = 255


def dataset_info_or_none(dataset_dir: str) -> Optional[DatasetInfo]:
  """The `dataset_info.json` of `dataset_dir`; None when there is none (records from the
  official conversion scripts, or no directory set). A malformed file raises."""
  if not dataset_dir:
    return None
  try:
    return read_dataset_info(dataset_dir)
  except FileNotFoundError:
    return None


def resolve_dataset_settings(config: ExperimentConfig) -> ExperimentConfig:
  """`config` with the unset classes and ignore labels taken from its datasets.

  Training, evaluation and export call it first; it only reads the datasets'
  `dataset_info.json` files, so a contradiction is found before any graph is built.

  Raises:
    ConfigError: an experiment value contradicts a dataset's (both are named), or
      `model.num_classes` is unset and no dataset says it.
  """
  num_classes = config.model.num_classes
  from_experiment = num_classes is not None
  splits = {}
  for field in ('train_data', 'eval_data'):
    data: DataConfig = getattr(config, field)
    info = dataset_info_or_none(data.dataset_dir)
    if info is not None:
      if num_classes is None:
        num_classes = info.num_classes
        logging.info('model.num_classes: %d, from %s/%s.', num_classes, data.dataset_dir,
                     INFO_FILENAME)
      elif info.num_classes != num_classes and from_experiment:
        raise ConfigError(
            f'model.num_classes is {num_classes} but the dataset in {data.dataset_dir} has '
            f'{info.num_classes} classes (its {INFO_FILENAME}). Leave model.num_classes unset '
            f'to take the dataset\'s, or set --params_override=model.num_classes='
            f'{info.num_classes}.')
      elif info.num_classes != num_classes:
        raise ConfigError(
            f'The training data has {num_classes} classes but the dataset in '
            f'{data.dataset_dir} ({field}) has {info.num_classes} (their {INFO_FILENAME} '
            f'files); both splits must hold the same classes.')
    splits[field] = _resolve_ignore_label(data, field, info)
  if num_classes is None:
    raise ConfigError(
        f'model.num_classes is not set and no dataset says it (no {INFO_FILENAME} in '
        f'train_data.dataset_dir {config.train_data.dataset_dir!r}); set it, e.g. '
        f'--params_override=model.num_classes=21.')
  return dataclasses.replace(
      config, model=dataclasses.replace(config.model, num_classes=num_classes), **splits)


def _resolve_ignore_label(data: DataConfig, field: str,
                          info: Optional[DatasetInfo]) -> DataConfig:
  if info is None:
    if data.ignore_label is not None:
      return data
    return dataclasses.replace(data, ignore_label=DEFAULT_IGNORE_LABEL)
  if data.ignore_label is None:
    return dataclasses.replace(data, ignore_label=info.ignore_label)
  if data.ignore_label != info.ignore_label:
    raise ConfigError(
        f'{field}.ignore_label is {data.ignore_label} but the dataset in {data.dataset_dir} '
        f'uses {info.ignore_label} (its {INFO_FILENAME}). Leave {field}.ignore_label unset '
        f'to take the dataset\'s, or set --params_override={field}.ignore_label='
        f'{info.ignore_label}.')
  return data
