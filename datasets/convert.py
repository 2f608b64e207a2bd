"""One entry point for every converter: dataset name -> checked, sharded TFRecords.

Example:
  >>> info = convert('voc2012', '/data/VOCdevkit/VOC2012', '/data/voc_tfrecords')
  >>> info.splits['val'].num_examples
  1449
  >>> convert('folder', '/data/mine', None, num_classes=3, colormap='pascal')  # check only
"""

import importlib
import inspect
import os
from typing import Optional, Sequence

from deeplab.data.info import DatasetInfo
from deeplab.datasets import DATASETS
from deeplab.datasets.core import convert_source


def _function(path: str):
  """The function `module.function` of this package."""
  module, name = path.split('.')
  return getattr(importlib.import_module(f'deeplab.datasets.{module}'), name)


SOURCES = {dataset: _function(path) for dataset, path in DATASETS.items()}


def dataset_options(dataset: str) -> Sequence[str]:
  """Names of the extra options a dataset's converter takes (e.g. 'sbd_dir')."""
  parameters = inspect.signature(_source(dataset)).parameters
  return [n for n in parameters if n not in ('data_dir', 'splits')]


def _source(dataset: str):
  if dataset not in SOURCES:
    raise ValueError(f'Unknown dataset {dataset!r}; expected one of {", ".join(SOURCES)}.')
  return SOURCES[dataset]


def convert(dataset: str, data_dir: str, output_dir: Optional[str], *,
            splits: Optional[Sequence[str]] = None,
            num_shards: Optional[int] = None,
            num_workers: Optional[int] = None,
            skip_bad: bool = False,
            **options) -> DatasetInfo:
  """Checks a dataset and writes its TFRecords and `dataset_info.json`.

  Args:
    dataset: one of `SOURCES`.
    data_dir: the dataset's root as downloaded (for 'synthetic': where the raw
      images are generated, default `<output_dir>/raw`).
    output_dir: where the shards go; None only checks every file (the doctor).
    splits: splits to convert (default: the dataset's usual ones).
    num_shards: shards per split (default: the official count of the dataset).
    num_workers: decoding threads (default: the number of CPUs).
    skip_bad: write the good examples and list the bad ones instead of failing.
    **options: dataset-specific options, see `dataset_options(dataset)`, e.g.
      sbd_dir for 'sbd'; num_classes, ignore_label, colormap for 'folder';
      skip_empty for 'coco'.

  Returns:
    The dataset info, with the converted (or checked) splits.

  Raises:
    deeplab.datasets.core.DatasetError: bad examples (each named) and not `skip_bad`.
    ValueError, FileNotFoundError: unknown dataset, option or split; missing folders.
  """
  make_source = _source(dataset)
  allowed = dataset_options(dataset)
  unknown = sorted(set(options) - set(allowed))
  if unknown:
    raise ValueError(f'Option(s) {", ".join(unknown)} do not apply to dataset {dataset}; '
                     f'it takes: {", ".join(allowed) or "none"}.')
  parameters = inspect.signature(make_source).parameters
  missing = [n for n in allowed if parameters[n].default is inspect.Parameter.empty and
             n not in options]
  if missing:
    raise ValueError(f'Dataset {dataset} needs {", ".join(missing)} '
                     f'({", ".join("--" + n for n in missing)}).')
  if dataset == 'synthetic' and not data_dir:
    if not output_dir:
      raise ValueError('The synthetic dataset needs data_dir or output_dir.')
    data_dir = os.path.join(output_dir, 'raw')
  if not data_dir:
    raise ValueError(f'Dataset {dataset} needs data_dir (--data_dir): its root folder.')
  source = make_source(data_dir, splits, **options)
  return convert_source(source, output_dir, splits, num_shards, num_workers, skip_bad)
