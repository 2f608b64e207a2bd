"""ADE20K SceneParsing (ADEChallengeData2016) -> train / val.

`images/{training,validation}/ADE_*.jpg` with grayscale label PNGs of the same name
in `annotations/`; ids 0..150 where 0 is "other objects", kept as a class but
ignored (num_classes 151, ignore_label 0). Record names are the image names without
extension, 4 shards per split.

Example:
  >>> source = ade20k_source('/data/ADEChallengeData2016')
  >>> sorted(source.splits)
  ['train', 'val']
"""

import os
from typing import List, Optional, Sequence, Tuple

from deeplab.data.info import get_dataset_info
from deeplab.datasets.core import DatasetSource, Example, Problem

NUM_SHARDS = 4
SPLITS = {'train': 'training', 'val': 'validation'}


def find_ade20k_root(data_dir: str) -> str:
  """The ADEChallengeData2016 directory at or under `data_dir`."""
  for candidate in (data_dir, os.path.join(data_dir, 'ADEChallengeData2016')):
    if os.path.isdir(os.path.join(candidate, 'images')):
      return candidate
  raise FileNotFoundError(f'{data_dir} is not ADEChallengeData2016: expected images/ and '
                          f'annotations/ in it or in ADEChallengeData2016/.')


def _split_examples(root: str, folder: str) -> Tuple[List[Example], List[Problem]]:
  image_dir = os.path.join(root, 'images', folder)
  label_dir = os.path.join(root, 'annotations', folder)
  if not os.path.isdir(image_dir):
    raise FileNotFoundError(f'Missing {image_dir}.')
  names = sorted(f[:-4] for f in os.listdir(image_dir) if f.endswith('.jpg'))
  labels = set(os.listdir(label_dir)) if os.path.isdir(label_dir) else set()
  examples, problems = [], []
  for name in names:
    if name + '.png' not in labels:
      problems.append(Problem(os.path.join(image_dir, name + '.jpg'),
                              f'no label {os.path.join(label_dir, name + ".png")}'))
      continue
    examples.append(Example(name, os.path.join(image_dir, name + '.jpg'),
                            os.path.join(label_dir, name + '.png')))
  images = set(names)
  problems.extend(Problem(os.path.join(label_dir, f), 'label without an image')
                  for f in sorted(labels) if f.endswith('.png') and f[:-4] not in images)
  return examples, problems


def ade20k_source(data_dir: str, splits: Optional[Sequence[str]] = None) -> DatasetSource:
  """The ADE20K splits under `data_dir`."""
  root = find_ade20k_root(data_dir)
  all_splits, problems = {}, {}
  for split in splits or SPLITS:
    if split not in SPLITS:
      raise ValueError(f'Unknown ADE20K split {split!r}; expected one of '
                       f'{", ".join(SPLITS)}.')
    all_splits[split], problems[split] = _split_examples(root, SPLITS[split])
  return DatasetSource(get_dataset_info('ade20k'), all_splits, problems,
                       num_shards=NUM_SHARDS)
