"""The synthetic dataset: generated (if absent) in the folder layout, then converted.

The raw images and masks go to `data_dir` (default `<output_dir>/raw`); see
`deeplab.data.synthetic` for what the images show.

Example:
  >>> source = synthetic_source('/tmp/synthetic_raw', num_classes=5, seed=0)
  >>> sorted(source.splits)
  ['train', 'val']
"""

import dataclasses
from typing import Optional, Sequence

from deeplab.data import synthetic
from deeplab.data.info import SYNTHETIC_CLASSES
from deeplab.datasets.core import DatasetSource
from deeplab.datasets.folder import folder_source

NUM_SHARDS = 2


def synthetic_source(data_dir: str, splits: Optional[Sequence[str]] = None, *,
                     num_classes: int = 5, seed: int = 0,
                     num_examples: Optional[dict] = None) -> DatasetSource:
  """Generates the synthetic dataset under `data_dir` unless it is there already.

  Args:
    data_dir: where the raw images and masks are (or get) generated.
    splits: which splits to convert (default: all generated).
    num_classes: background + shapes, 2..7.
    seed: the generation seed.
    num_examples: split -> number of images (default 200 train, 50 val).
  """
  synthetic.write_synthetic_dataset(data_dir, num_examples, num_classes=num_classes,
                                    seed=seed)
  source = folder_source(data_dir, splits, num_classes=num_classes,
                         ignore_label=synthetic.IGNORE_LABEL,
                         class_names=SYNTHETIC_CLASSES[:num_classes], name='synthetic')
  return dataclasses.replace(source, num_shards=NUM_SHARDS)
