"""PASCAL VOC 2012 segmentation: `VOCdevkit/VOC2012` -> one record set per split list.

Every `ImageSets/Segmentation/<split>.txt` is a split (train 1464, val 1449,
trainval 2913; test 1456 from the test tarball, without labels). Images are
`JPEGImages/<id>.jpg`, labels the palette PNGs `SegmentationClass/<id>.png` whose
palette index is the class id (255 = boundary, ignored); a `SegmentationClassRaw/`
folder made by the official `remove_gt_colormap.py` is used when
`SegmentationClass/` is absent. Record names are the image ids, 4 shards per split.

Example:
  >>> source = voc2012_source('/data/VOCdevkit/VOC2012')
  >>> sorted(source.splits)
  ['train', 'trainval', 'val']
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

from absl import logging

from deeplab.data.info import get_dataset_info
from deeplab.datasets.core import DatasetSource, Example, Problem

NUM_SHARDS = 4
LABEL_DIRS = ('SegmentationClass', 'SegmentationClassRaw')


def find_voc_root(data_dir: str) -> str:
  """The VOC2012 directory (holding ImageSets/) at or under `data_dir`."""
  for candidate in (data_dir, os.path.join(data_dir, 'VOC2012'),
                    os.path.join(data_dir, 'VOCdevkit', 'VOC2012')):
    if os.path.isdir(os.path.join(candidate, 'ImageSets', 'Segmentation')):
      return candidate
  raise FileNotFoundError(f'{data_dir} is not a VOC 2012 directory: expected '
                          f'ImageSets/Segmentation/ in it, in VOC2012/ or in '
                          f'VOCdevkit/VOC2012/ (the layout of VOCtrainval_11-May-2012.tar).')


def read_split_list(path: str) -> List[str]:
  """Image ids of a split file, one per line, in file order."""
  with open(path, encoding='utf-8') as f:
    return [line.strip() for line in f if line.strip()]


def voc_label_dir(root: str) -> Optional[str]:
  """`SegmentationClass/` (or `SegmentationClassRaw/`) of a VOC root, if any."""
  for name in LABEL_DIRS:
    if os.path.isdir(os.path.join(root, name)):
      return os.path.join(root, name)
  return None


def split_examples(root: str, split: str, ids: Sequence[str],
                   label_dir: Optional[str]) -> Tuple[List[Example], List[Problem]]:
  """The examples of a list of VOC ids; a split with no label at all is unlabelled."""
  labels = {i: os.path.join(label_dir, i + '.png') for i in ids} if label_dir else {}
  labelled = any(os.path.exists(p) for p in labels.values())
  if not labelled:
    logging.info('No labels for split %s: writing its %d images without labels.', split,
                 len(ids))
  examples, problems = [], []
  for image_id in ids:
    image = os.path.join(root, 'JPEGImages', image_id + '.jpg')
    label = labels.get(image_id) if labelled else None
    missing = [p for p in (image, label) if p is not None and not os.path.exists(p)]
    if missing:
      problems.extend(Problem(p, f'missing file of {split} example {image_id}')
                      for p in missing)
      continue
    examples.append(Example(image_id, image, label))
  return examples, problems


def voc2012_source(data_dir: str, splits: Optional[Sequence[str]] = None) -> DatasetSource:
  """The VOC 2012 splits under `data_dir` (VOCdevkit/VOC2012 or a folder above it)."""
  root = find_voc_root(data_dir)
  lists_dir = os.path.join(root, 'ImageSets', 'Segmentation')
  available = sorted(f[:-4] for f in os.listdir(lists_dir) if f.endswith('.txt'))
  label_dir = voc_label_dir(root)
  all_splits: Dict[str, List[Example]] = {}
  problems: Dict[str, List[Problem]] = {}
  for split in splits or available:
    if split not in available:
      raise ValueError(f'No split {split!r} in {lists_dir}; available: '
                       f'{", ".join(available)}.')
    ids = read_split_list(os.path.join(lists_dir, split + '.txt'))
    all_splits[split], problems[split] = split_examples(root, split, ids, label_dir)
  return DatasetSource(get_dataset_info('pascal_voc_seg'), all_splits, problems,
                       num_shards=NUM_SHARDS)
