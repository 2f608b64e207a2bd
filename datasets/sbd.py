"""VOC 2012 + SBD -> the 10582-image `train_aug` split of DeepLab.

train_aug = (VOC train ∪ SBD train ∪ SBD val) − VOC val. Each id keeps VOC's own
label where VOC has one (with its 255 boundaries); the others come from SBD: the
`cls/<id>.mat` files of `benchmark_RELEASE/dataset` (read without scipy), or the
grayscale PNGs of a `SegmentationClassAug/` folder. Images come from VOC's
`JPEGImages/`, else SBD's `img/`. The records go beside VOC's splits (same dataset
info, `pascal_voc_seg`).

Example:
  >>> source = sbd_source('/data/VOCdevkit/VOC2012', sbd_dir='/data/benchmark_RELEASE')
  >>> len(source.splits['train_aug'])
  10582
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from deeplab.data.info import get_dataset_info
from deeplab.datasets import matlab, voc2012
from deeplab.datasets.core import DatasetSource, Example, Problem, read_label_png

SPLIT = 'train_aug'


def _find_sbd(sbd_dir: str) -> Tuple[str, str]:
  """('mat', dataset dir with cls/) or ('png', SegmentationClassAug dir)."""
  for candidate in (sbd_dir, os.path.join(sbd_dir, 'dataset'),
                    os.path.join(sbd_dir, 'benchmark_RELEASE', 'dataset')):
    if os.path.isdir(os.path.join(candidate, 'cls')):
      return 'mat', candidate
  for candidate in (sbd_dir, os.path.join(sbd_dir, 'SegmentationClassAug')):
    if os.path.isdir(candidate) and any(f.endswith('.png') for f in os.listdir(candidate)):
      return 'png', candidate
  raise FileNotFoundError(
      f'{sbd_dir} holds neither SBD (benchmark_RELEASE/dataset with cls/*.mat) nor a '
      f'SegmentationClassAug folder of PNG labels.')


def _sbd_ids(kind: str, directory: str) -> Dict[str, str]:
  """SBD id -> label path: train.txt ∪ val.txt (or every file) of the SBD folder."""
  if kind == 'png':
    return {f[:-4]: os.path.join(directory, f) for f in os.listdir(directory)
            if f.endswith('.png')}
  lists = [os.path.join(directory, n) for n in ('train.txt', 'val.txt')]
  if all(os.path.exists(p) for p in lists):
    ids = {i for p in lists for i in voc2012.read_split_list(p)}
  else:
    ids = {f[:-4] for f in os.listdir(os.path.join(directory, 'cls')) if f.endswith('.mat')}
  return {i: os.path.join(directory, 'cls', i + '.mat') for i in ids}


def read_sbd_label(data: bytes, path: str) -> np.ndarray:
  """Ids of an SBD `.mat` label or of a PNG label (VOC or SegmentationClassAug)."""
  if path.endswith('.mat'):
    return matlab.sbd_segmentation(data)
  return read_label_png(data, path)


def train_aug_examples(voc_root: str, sbd_dir: str) -> Tuple[List[Example], List[Problem]]:
  """The train_aug examples, sorted by id, and the files missing for them."""
  kind, directory = _find_sbd(sbd_dir)
  lists_dir = os.path.join(voc_root, 'ImageSets', 'Segmentation')
  voc_train = voc2012.read_split_list(os.path.join(lists_dir, 'train.txt'))
  voc_val = set(voc2012.read_split_list(os.path.join(lists_dir, 'val.txt')))
  sbd_labels = _sbd_ids(kind, directory)
  voc_labels = voc2012.voc_label_dir(voc_root)
  examples, problems = [], []
  for image_id in sorted((set(voc_train) | set(sbd_labels)) - voc_val):
    label = os.path.join(voc_labels, image_id + '.png') if voc_labels else ''
    if not os.path.exists(label):
      label = sbd_labels.get(image_id, label)
    image = os.path.join(voc_root, 'JPEGImages', image_id + '.jpg')
    if not os.path.exists(image) and kind == 'mat':
      image = os.path.join(directory, 'img', image_id + '.jpg')
    missing = [p for p in (image, label) if not p or not os.path.exists(p)]
    if missing:
      problems.extend(Problem(p or image_id, f'missing file of {SPLIT} example {image_id}')
                      for p in missing)
      continue
    examples.append(Example(image_id, image, label))
  return examples, problems


def sbd_source(data_dir: str, splits: Optional[Sequence[str]] = None,
               sbd_dir: str = '') -> DatasetSource:
  """The train_aug split from VOC 2012 (`data_dir`) and SBD (`sbd_dir`)."""
  if not sbd_dir:
    raise ValueError('The train_aug split needs sbd_dir (--sbd_dir): benchmark_RELEASE '
                     'of SBD or a SegmentationClassAug folder.')
  if splits and list(splits) != [SPLIT]:
    raise ValueError(f'SBD converts the {SPLIT} split only; got {", ".join(splits)} '
                     f'(convert VOC\'s own splits with the voc2012 dataset).')
  examples, problems = train_aug_examples(voc2012.find_voc_root(data_dir), sbd_dir)
  return DatasetSource(get_dataset_info('pascal_voc_seg'), {SPLIT: examples},
                       {SPLIT: problems}, read_label=read_sbd_label,
                       num_shards=voc2012.NUM_SHARDS)
