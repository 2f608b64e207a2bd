"""Cityscapes, fine and coarse annotations -> DeepLab's splits, labels as the 19 trainIds.

Reads the extracted dataset (`leftImg8bit/`, `gtFine/`, `gtCoarse/` side by side) or,
without extracting, the zips as downloaded (`leftImg8bit_trainvaltest.zip`,
`gtFine_trainvaltest.zip`, `leftImg8bit_trainextra.zip`, `gtCoarse.zip`: the names TFDS
expects in its manual_dir), or a mix of both. Labels are the
`*_gtFine_labelIds.png` / `*_gtCoarse_labelIds.png` files mapped here to trainIds
(255 = ignored), so no cityscapesScripts step is needed; `*_labelTrainIds.png` files
are used as they are where no labelIds file exists. Record names are the image names
without `_leftImg8bit.png` (e.g. `aachen_000000_000019`); 10 shards per split.

Splits (images of `leftImg8bit/<folder>/` with the labels of `<annotation>/<folder>/`):

| split             | images                                    | labels          | size   |
|-------------------|-------------------------------------------|-----------------|-------:|
| train_fine        | train                                     | gtFine          |  2,975 |
| val_fine          | val                                       | gtFine          |    500 |
| test_fine         | test                                      | none            |  1,525 |
| trainval_fine     | train + val                               | gtFine          |  3,475 |
| train_extra       | train_extra                               | gtCoarse        | 19,998 |
| train_coarse      | train + train_extra                       | gtCoarse        | 22,973 |
| trainval_coarse   | train + val + train_extra                 | gtCoarse        | 23,473 |
| train_fine_coarse | train (gtFine) + train_extra (gtCoarse)   | fine + coarse   | 22,973 |

All but train_extra and train_fine_coarse are the names and sizes of the official
DeepLab data. train_fine_coarse trains on every fine label plus the coarse labels of
the extra images (the paper's test-set results use the coarse data too); train and val
images have coarse labels as well, but their fine ones are better, so those appear only
in the *_coarse splits. The default splits are train_fine and val_fine, plus
train_fine_coarse when the coarse data (train_extra images and gtCoarse) is there; the
others are converted when asked for.

Example:
  >>> source = cityscapes_source('/data/cityscapes')  # With the coarse data there.
  >>> sorted(source.splits)
  ['train_fine', 'train_fine_coarse', 'val_fine']
"""

import os
import threading
import zipfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from deeplab.data import png
from deeplab.data.info import CITYSCAPES_TRAIN_IDS, get_dataset_info
from deeplab.datasets.core import DatasetSource, Example, Problem, read_file

NUM_SHARDS = 10
FINE, COARSE = 'gtFine', 'gtCoarse'
# Split -> its parts: (folder of leftImg8bit/, annotation folder or None if unlabelled).
SPLITS = {
    'train_fine': (('train', FINE),),
    'val_fine': (('val', FINE),),
    'test_fine': (('test', None),),
    'trainval_fine': (('train', FINE), ('val', FINE)),
    'train_extra': (('train_extra', COARSE),),
    'train_coarse': (('train', COARSE), ('train_extra', COARSE)),
    'trainval_coarse': (('train', COARSE), ('val', COARSE), ('train_extra', COARSE)),
    'train_fine_coarse': (('train', FINE), ('train_extra', COARSE)),
}
DEFAULT_SPLITS = ('train_fine', 'val_fine')
DEFAULT_SPLITS_WITH_COARSE = ('train_fine', 'val_fine', 'train_fine_coarse')
IMAGE_ZIP, LABEL_ZIP = 'leftImg8bit_trainvaltest.zip', 'gtFine_trainvaltest.zip'
EXTRA_IMAGE_ZIP, COARSE_LABEL_ZIP = 'leftImg8bit_trainextra.zip', 'gtCoarse.zip'
ZIPS = (IMAGE_ZIP, LABEL_ZIP, EXTRA_IMAGE_ZIP, COARSE_LABEL_ZIP)
_IMAGE_SUFFIX = '_leftImg8bit.png'
_LABEL_IDS_SUFFIX = '_labelIds.png'
_TRAIN_IDS_SUFFIX = '_labelTrainIds.png'
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
  zip and the member in messages. Other paths are read from disk.
  """

  def __init__(self, zip_paths: Sequence[str]):
    self._members: Dict[str, Tuple[zipfile.ZipFile, str, threading.Lock]] = {}
    for zip_path in zip_paths:
      archive = zipfile.ZipFile(zip_path)
      lock = threading.Lock()
      for member in archive.namelist():
        self._members[f'{zip_path}/{member}'] = (archive, member, lock)

  def members(self) -> Dict[str, str]:
    """{member name: path} over all the zips."""
    return {member: path for path, (_, member, _) in self._members.items()}

  def read(self, path: str) -> bytes:
    if path not in self._members:
      return read_file(path)
    archive, member, lock = self._members[path]
    with lock:
      return archive.read(member)


def _list_files(data_dir: str) -> Tuple[Dict[str, str], Callable[[str], bytes]]:
  """({path in the dataset, e.g. 'gtFine/val/x.png': file path}, reader) of zips and folders."""
  zips = ZipFiles([p for p in (os.path.join(data_dir, n) for n in ZIPS) if os.path.isfile(p)])
  files = zips.members()
  for folder in ('leftImg8bit', FINE, COARSE):
    for directory, _, names in os.walk(os.path.join(data_dir, folder)):
      for name in names:
        path = os.path.join(directory, name)
        files[os.path.relpath(path, data_dir).replace(os.sep, '/')] = path
  if not any(f.startswith('leftImg8bit/') for f in files):
    raise FileNotFoundError(
        f'{data_dir} holds neither leftImg8bit/ and gtFine/ (the extracted dataset) nor '
        f'{IMAGE_ZIP} and {LABEL_ZIP} (the downloaded zips).')
  return files, zips.read


def _missing(data_dir: str, folder: str, zip_name: str) -> FileNotFoundError:
  return FileNotFoundError(f'{data_dir} has no files in {folder}/: extract {zip_name} there '
                           f'or put the zip itself in {data_dir}.')


def _part_examples(files: Dict[str, str], data_dir: str, folder: str,
                   annotation: Optional[str]) -> Tuple[List[Example], List[Problem]]:
  """The examples of `leftImg8bit/<folder>/` labelled from `<annotation>/<folder>/`."""
  prefix = f'leftImg8bit/{folder}/'
  images = sorted(f for f in files if f.startswith(prefix) and f.endswith(_IMAGE_SUFFIX))
  if not images:
    raise _missing(data_dir, prefix[:-1], EXTRA_IMAGE_ZIP if folder == 'train_extra' else
                   IMAGE_ZIP)
  if annotation and not any(f.startswith(f'{annotation}/{folder}/') for f in files):
    raise _missing(data_dir, f'{annotation}/{folder}',
                   LABEL_ZIP if annotation == FINE else COARSE_LABEL_ZIP)
  examples, problems = [], []
  for image in images:
    city_and_name = image[len(prefix):-len(_IMAGE_SUFFIX)]
    label = None
    if annotation:
      candidates = [f'{annotation}/{folder}/{city_and_name}_{annotation}{suffix}'
                    for suffix in (_LABEL_IDS_SUFFIX, _TRAIN_IDS_SUFFIX)]
      label = next((files[c] for c in candidates if c in files), None)
      if label is None:
        problems.append(Problem(files[image], f'no label {os.path.basename(candidates[0])} '
                                              f'(or {os.path.basename(candidates[1])}) for '
                                              f'this image'))
        continue
    examples.append(Example(os.path.basename(city_and_name), files[image], label))
  return examples, problems


def cityscapes_source(data_dir: str, splits: Optional[Sequence[str]] = None) -> DatasetSource:
  """The Cityscapes splits under `data_dir` (extracted folders and/or the zips).

  Args:
    data_dir: the folder of leftImg8bit/, gtFine/, gtCoarse/ or of their zips.
    splits: names in `SPLITS` (default: train_fine and val_fine, and train_fine_coarse
      when the train_extra images and gtCoarse are there).
  """
  files, read_bytes = _list_files(data_dir)
  has_coarse = all(any(f.startswith(prefix) for f in files)
                   for prefix in ('leftImg8bit/train_extra/', f'{COARSE}/train_extra/'))
  all_splits, problems = {}, {}
  for split in splits or (DEFAULT_SPLITS_WITH_COARSE if has_coarse else DEFAULT_SPLITS):
    if split not in SPLITS:
      raise ValueError(f'Unknown Cityscapes split {split!r}; expected one of '
                       f'{", ".join(SPLITS)}.')
    all_splits[split], problems[split] = [], []
    for folder, annotation in SPLITS[split]:
      examples, part_problems = _part_examples(files, data_dir, folder, annotation)
      all_splits[split] += examples
      problems[split] += part_problems
  return DatasetSource(get_dataset_info('cityscapes'), all_splits, problems,
                       read_bytes=read_bytes, read_label=read_cityscapes_label,
                       num_shards=NUM_SHARDS)
