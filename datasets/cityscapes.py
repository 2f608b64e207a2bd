"""Cityscapes (fine annotations) -> train_fine / val_fine, labels mapped to the 19 trainIds.

Reads either the extracted dataset (`leftImg8bit/` and `gtFine/` side by side) or,
without extracting, the two zips TFDS expects in its manual_dir
(`leftImg8bit_trainvaltest.zip`, `gtFine_trainvaltest.zip`). Labels are the
`*_gtFine_labelIds.png` files mapped here to trainIds (255 = ignored), so no
cityscapesScripts step is needed; `*_gtFine_labelTrainIds.png` files are used as they
are where no labelIds file exists. Record names are the image names without
`_leftImg8bit.png` (e.g. `aachen_000000_000019`); 10 shards per split, official
split names (test_fine has no labels).

Example:
  >>> source = cityscapes_source('/data/cityscapes')
  >>> sorted(source.splits)
  ['train_fine', 'val_fine']
"""

import os
import threading
import zipfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from deeplab.data import png
from deeplab.data.info import CITYSCAPES_TRAIN_IDS, get_dataset_info
from deeplab.datasets.core import DatasetSource, Example, Problem, read_file

NUM_SHARDS = 10
SPLITS = {'train_fine': 'train', 'val_fine': 'val', 'test_fine': 'test'}
DEFAULT_SPLITS = ('train_fine', 'val_fine')
IMAGE_ZIP, LABEL_ZIP = 'leftImg8bit_trainvaltest.zip', 'gtFine_trainvaltest.zip'
_IMAGE_SUFFIX = '_leftImg8bit.png'
_LABEL_IDS_SUFFIX = '_gtFine_labelIds.png'
_TRAIN_IDS_SUFFIX = '_gtFine_labelTrainIds.png'
_LABEL_ID_TO_TRAIN_ID = np.array(CITYSCAPES_TRAIN_IDS, np.uint8)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
  """Maps Cityscapes labelIds [H, W] to trainIds uint8 (255 = ignored).

  Raises:
    ValueError: values that are not labelIds (above 33).
  """
  label_ids = np.asarray(label_ids)
  if label_ids.size and label_ids.max() >= len(_LABEL_ID_TO_TRAIN_ID):
    unknown = np.unique(label_ids[label_ids >= len(_LABEL_ID_TO_TRAIN_ID)])[:8].tolist()
    raise ValueError(f'values {unknown} are not Cityscapes labelIds (0..33)')
  return _LABEL_ID_TO_TRAIN_ID[label_ids]


def read_cityscapes_label(data: bytes, path: str) -> np.ndarray:
  """trainIds of a `*_labelIds.png` (mapped) or `*_labelTrainIds.png` (as stored) file."""
  ids = png.decode_label_png(data)
  return label_ids_to_train_ids(ids) if path.endswith(_LABEL_IDS_SUFFIX) else ids


class ZipFiles:
  """Reads members of zips as if they were files under the zips' folder.

  A member `leftImg8bit/train/x.png` of `<dir>/leftImg8bit_trainvaltest.zip` is the
  path `<dir>/leftImg8bit_trainvaltest.zip/leftImg8bit/train/x.png`, which names the
  zip and the member in messages.
  """

  def __init__(self, zip_paths: Sequence[str]):
    self._members: Dict[str, Tuple[zipfile.ZipFile, str, threading.Lock]] = {}
    for zip_path in zip_paths:
      archive = zipfile.ZipFile(zip_path)
      lock = threading.Lock()
      for member in archive.namelist():
        self._members[f'{zip_path}/{member}'] = (archive, member, lock)

  def paths(self) -> List[str]:
    return sorted(self._members)

  def read(self, path: str) -> bytes:
    if path not in self._members:
      raise FileNotFoundError(path)
    archive, member, lock = self._members[path]
    with lock:
      return archive.read(member)


def _list_files(data_dir: str):
  """(all file paths, image root, label root, reader) of an extracted or zipped dataset."""
  zips = [os.path.join(data_dir, n) for n in (IMAGE_ZIP, LABEL_ZIP)]
  if all(os.path.isfile(p) for p in zips):
    files = ZipFiles(zips)
    return (files.paths(), f'{zips[0]}/leftImg8bit', f'{zips[1]}/gtFine', files.read)
  image_root, label_root = (os.path.join(data_dir, n) for n in ('leftImg8bit', 'gtFine'))
  if not os.path.isdir(image_root):
    raise FileNotFoundError(
        f'{data_dir} holds neither leftImg8bit/ and gtFine/ (the extracted dataset) nor '
        f'{IMAGE_ZIP} and {LABEL_ZIP} (the downloaded zips).')
  paths = [os.path.join(d, f) for root in (image_root, label_root) if os.path.isdir(root)
           for d, _, names in os.walk(root) for f in names]
  return sorted(paths), image_root, label_root, read_file


def _split_examples(paths: Sequence[str], image_root: str, label_root: str, folder: str,
                    labelled: bool) -> Tuple[List[Example], List[Problem]]:
  """The examples of one folder (train/val/test), sorted, with their missing labels."""
  existing = set(paths)
  prefix = f'{image_root}/{folder}/'
  examples, problems = [], []
  for path in paths:
    if not (path.startswith(prefix) and path.endswith(_IMAGE_SUFFIX)):
      continue
    city_and_name = path[len(prefix):-len(_IMAGE_SUFFIX)]
    name = os.path.basename(city_and_name)
    label = None
    if labelled:
      candidates = [f'{label_root}/{folder}/{city_and_name}{suffix}'
                    for suffix in (_LABEL_IDS_SUFFIX, _TRAIN_IDS_SUFFIX)]
      label = next((c for c in candidates if c in existing), None)
      if label is None:
        problems.append(Problem(path, f'no label {os.path.basename(candidates[0])} (or '
                                      f'{os.path.basename(candidates[1])}) for this image'))
        continue
    examples.append(Example(name, path, label))
  return examples, problems


def cityscapes_source(data_dir: str, splits: Optional[Sequence[str]] = None) -> DatasetSource:
  """The Cityscapes fine splits under `data_dir` (extracted folders or the two zips)."""
  paths, image_root, label_root, read_bytes = _list_files(data_dir)
  all_splits, problems = {}, {}
  for split in splits or DEFAULT_SPLITS:
    if split not in SPLITS:
      raise ValueError(f'Unknown Cityscapes split {split!r}; expected one of '
                       f'{", ".join(SPLITS)}.')
    all_splits[split], problems[split] = _split_examples(
        paths, image_root, label_root, SPLITS[split], labelled=split != 'test_fine')
  return DatasetSource(get_dataset_info('cityscapes'), all_splits, problems,
                       read_bytes=read_bytes, read_label=read_cityscapes_label,
                       num_shards=NUM_SHARDS)
