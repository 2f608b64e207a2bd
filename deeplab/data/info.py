"""What a converted dataset holds: classes, ignore label, colours, splits and statistics.

`deeplab-convert` writes a `dataset_info.json` beside the TFRecords; training,
evaluation and visualization read it to know the classes. The known datasets have
descriptors here, so their facts are written in one place.

Example:
  >>> info = get_dataset_info('pascal_voc_seg')
  >>> info.num_classes, info.ignore_label, info.class_names[15]
  (21, 255, 'person')
"""

import dataclasses
import json
import os
from typing import Dict, Tuple

import numpy as np

from deeplab.data import colormaps
from deeplab.files import atomic_write
from deeplab.hyperparams import ConfigError, check_types, from_dict, to_dict

INFO_FILENAME = 'dataset_info.json'


@dataclasses.dataclass(frozen=True)
class SplitInfo:
  """One converted split.

  Attributes:
    num_examples: records written.
    class_pixel_counts: pixels of each class id 0..num_classes-1 over the split.
    ignored_pixels: pixels with the ignore label.
    skipped: source files left out as bad (`--skip_bad`).
  """
  num_examples: int
  class_pixel_counts: Tuple[int, ...] = ()
  ignored_pixels: int = 0
  skipped: Tuple[str, ...] = ()

  def __post_init__(self):
    check_types(self)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
  """A dataset's classes and, once converted, its splits.

  Attributes:
    name: dataset name, e.g. 'pascal_voc_seg'.
    num_classes: number of class ids (logits), the ignored class 0 of ADE20K included.
    ignore_label: label value excluded from loss and metrics.
    class_names: one name per class id, or empty.
    colormap: a name in `colormaps.COLORMAP_NAMES` or the path of a colormap file.
    splits: split name -> `SplitInfo`.
  """
  name: str
  num_classes: int
  ignore_label: int = 255
  class_names: Tuple[str, ...] = ()
  colormap: str = 'pascal'
  splits: Dict[str, SplitInfo] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    check_types(self)
    if not 2 <= self.num_classes <= 256:
      raise ConfigError(f'DatasetInfo.num_classes must be in [2, 256]; got {self.num_classes}.')
    if not 0 <= self.ignore_label <= 255:
      raise ConfigError(f'DatasetInfo.ignore_label must be in [0, 255]; got '
                        f'{self.ignore_label}.')
    if self.class_names and len(self.class_names) != self.num_classes:
      raise ConfigError(f'DatasetInfo.class_names has {len(self.class_names)} names for '
                        f'{self.num_classes} classes.')

  def colormap_table(self) -> np.ndarray:
    """The colours of the class ids, uint8 [N, 3]."""
    return colormaps.load_colormap(self.colormap)

  def with_split(self, split: str, split_info: SplitInfo) -> 'DatasetInfo':
    """A copy with `split` added or replaced."""
    return dataclasses.replace(self, splits={**self.splits, split: split_info})


def read_dataset_info(dataset_dir: str) -> DatasetInfo:
  """The `dataset_info.json` of a converted dataset directory."""
  path = os.path.join(dataset_dir, INFO_FILENAME)
  try:
    with open(path, encoding='utf-8') as f:
      values = json.load(f)
  except FileNotFoundError as e:
    raise FileNotFoundError(f'{path} does not exist; convert the dataset with '
                            f'deeplab-convert first.') from e
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON: {e}') from e
  return from_dict(DatasetInfo, values, path)


def write_dataset_info(info: DatasetInfo, dataset_dir: str) -> str:
  """Writes `<dataset_dir>/dataset_info.json` atomically; returns its path."""
  path = os.path.join(dataset_dir, INFO_FILENAME)
  atomic_write(path, json.dumps(to_dict(info), indent=1))
  return path


PASCAL_VOC_CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
    'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
    'sheep', 'sofa', 'train', 'tvmonitor')

CITYSCAPES_CLASSES = (
    'road', 'sidewalk', 'building', 'wall', 'fence', 'pole', 'traffic light',
    'traffic sign', 'vegetation', 'terrain', 'sky', 'person', 'rider', 'car', 'truck',
    'bus', 'train', 'motorcycle', 'bicycle')

# Cityscapes labelId (0..33) -> trainId, 255 = ignored (cityscapesScripts labels.py).
CITYSCAPES_TRAIN_IDS = (255, 255, 255, 255, 255, 255, 255, 0, 1, 255, 255, 2, 3, 4, 255, 255,
                        255, 5, 255, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 255, 255, 16, 17, 18)

# Index 0 is "other objects" (ignored); 1..150 follow objectInfo150.
ADE20K_CLASSES = (
    'other', 'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed',
    'windowpane', 'grass', 'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table',
    'mountain', 'plant', 'curtain', 'chair', 'car', 'water', 'painting', 'sofa', 'shelf',
    'house', 'sea', 'mirror', 'rug', 'field', 'armchair', 'seat', 'fence', 'desk', 'rock',
    'wardrobe', 'lamp', 'bathtub', 'railing', 'cushion', 'base', 'box', 'column',
    'signboard', 'chest of drawers', 'counter', 'sand', 'sink', 'skyscraper', 'fireplace',
    'refrigerator', 'grandstand', 'path', 'stairs', 'runway', 'case', 'pool table',
    'pillow', 'screen door', 'stairway', 'river', 'bridge', 'bookcase', 'blind',
    'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench', 'countertop', 'stove',
    'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar', 'arcade machine',
    'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier', 'awning',
    'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track', 'apparel',
    'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet', 'poster',
    'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer', 'plaything',
    'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag', 'minibike',
    'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade name', 'microwave', 'pot',
    'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture', 'hood',
    'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen',
    'plate', 'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag')

SYNTHETIC_CLASSES = ('background', 'disc', 'square', 'triangle', 'ring', 'cross', 'diamond')

KNOWN_DATASETS = {
    'pascal_voc_seg': DatasetInfo('pascal_voc_seg', 21, 255, PASCAL_VOC_CLASSES, 'pascal'),
    # COCO images with masks of VOC's classes only, to pre-train for VOC.
    'coco_voc': DatasetInfo('coco_voc', 21, 255, PASCAL_VOC_CLASSES, 'pascal'),
    'cityscapes': DatasetInfo('cityscapes', 19, 255, CITYSCAPES_CLASSES, 'cityscapes'),
    'ade20k': DatasetInfo('ade20k', 151, 0, ADE20K_CLASSES, 'ade20k'),
    'synthetic': DatasetInfo('synthetic', 5, 255, SYNTHETIC_CLASSES[:5], 'pascal'),
}


def get_dataset_info(name: str) -> DatasetInfo:
  """The descriptor of a known dataset (no splits)."""
  if name not in KNOWN_DATASETS:
    raise ValueError(f'Unknown dataset {name!r}; known: {", ".join(KNOWN_DATASETS)}.')
  return KNOWN_DATASETS[name]
