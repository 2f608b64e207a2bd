"""A user's own dataset: a folder of images and a folder of masks with matching names.

Layouts (masks are PNGs named like their image, e.g. `images/a/x.jpg` ->
`masks/a/x.png`; sub-folders are allowed):

- `<data_dir>/<split>/images/` + `<data_dir>/<split>/masks/`, one folder per split;
- `<data_dir>/images/` + `<data_dir>/masks/`, a single split (named by `splits`,
  default 'train').

A split without a `masks/` folder is unlabelled (a test split). Masks hold class ids:
8-bit grayscale, or palette PNGs whose index is the id (as VOC). Colour-coded RGB
masks are read through a colormap (a known name such as 'pascal', or a text file of
`R G B` lines, line i = class i): each colour becomes its class id, the colour of
the ignore label (if the table has that row) becomes the ignore label, and any
other colour is reported.

Example:
  >>> source = folder_source('/data/my_dataset', num_classes=3, colormap='pascal')
  >>> sorted(source.splits)
  ['train', 'val']
"""

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from deeplab.data import colormaps, png
from deeplab.data.info import DatasetInfo
from deeplab.datasets.core import DatasetSource, Example, Problem

NUM_SHARDS = 4
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')
DEFAULT_SPLIT = 'train'


def make_label_reader(colormap: Optional[np.ndarray], num_classes: int, ignore_label: int):
  """A `read_label(data, path)` for PNG masks of ids, or of colours if `colormap`."""

  def read_label(data: bytes, path: str) -> np.ndarray:
    del path  # Every mask is read the same way.
    if not png.is_png(data):
      raise png.LabelFormatError('not a PNG file; masks must be PNGs of class ids (lossy '
                                 'formats such as JPEG cannot keep exact ids)')
    header = png.png_header(data)
    if colormap is not None and header.color_type in (png.COLOR_RGB, png.COLOR_RGBA):
      rgb = tf.io.decode_png(data, channels=3).numpy()
      return colormaps.labels_from_colors(rgb, colormap, num_classes, ignore_label)
    try:
      return png.decode_label_png(data)
    except png.LabelFormatError as e:
      raise png.LabelFormatError(f'{e}; colour-coded masks need a colormap (colormap=, '
                                 f'--colormap=pascal or a colour file)') from e

  return read_label


def _files(directory: str, extensions: Sequence[str]) -> Dict[str, str]:
  """Relative path without extension -> path, for files with one of `extensions`."""
  files = {}
  for folder, _, names in os.walk(directory):
    for name in names:
      stem, extension = os.path.splitext(name)
      if extension.lower() in extensions:
        key = os.path.relpath(os.path.join(folder, stem), directory)
        files[key] = os.path.join(folder, name)
  return files


def _split_examples(split_dir: str) -> Tuple[List[Example], List[Problem]]:
  """Image/mask pairs of `<split_dir>/images` and `<split_dir>/masks`, sorted by name."""
  images = _files(os.path.join(split_dir, 'images'), IMAGE_EXTENSIONS)
  masks_dir = os.path.join(split_dir, 'masks')
  if not os.path.isdir(masks_dir):
    return [Example(name, images[name]) for name in sorted(images)], []
  masks = _files(masks_dir, IMAGE_EXTENSIONS)
  examples, problems = [], []
  for name in sorted(images):
    if name not in masks:
      problems.append(Problem(images[name], f'no mask {name}.png in {masks_dir}'))
      continue
    examples.append(Example(name, images[name], masks[name]))
  problems.extend(Problem(masks[name], 'mask without an image')
                  for name in sorted(set(masks) - set(images)))
  return examples, problems


def _split_dirs(data_dir: str, splits: Optional[Sequence[str]]) -> Dict[str, str]:
  if os.path.isdir(os.path.join(data_dir, 'images')):
    if splits and len(splits) != 1:
      raise ValueError(f'{data_dir} holds one split (images/ + masks/); got splits '
                       f'{", ".join(splits)}.')
    return {(splits or [DEFAULT_SPLIT])[0]: data_dir}
  if not os.path.isdir(data_dir):
    raise FileNotFoundError(f'{data_dir} does not exist.')
  available = sorted(d for d in os.listdir(data_dir)
                     if os.path.isdir(os.path.join(data_dir, d, 'images')))
  if not available:
    raise FileNotFoundError(f'{data_dir} holds neither images/ + masks/ nor '
                            f'<split>/images/ + <split>/masks/ folders.')
  for split in splits or ():
    if split not in available:
      raise ValueError(f'No split {split!r} in {data_dir}; available: '
                       f'{", ".join(available)}.')
  return {split: os.path.join(data_dir, split) for split in splits or available}


def folder_source(data_dir: str, splits: Optional[Sequence[str]] = None, *,
                  num_classes: int, ignore_label: int = 255, colormap: str = '',
                  class_names: Sequence[str] = (), name: str = '') -> DatasetSource:
  """The splits of a folder dataset.

  Args:
    data_dir: the dataset folder (see the module docstring for layouts).
    splits: which splits (default: all found).
    num_classes: number of class ids; larger ids other than `ignore_label` are errors.
    ignore_label: label of pixels left out of loss and metrics.
    colormap: '' (masks hold ids) or a colormap name / file to read RGB masks; also
      recorded in the dataset info for display ('pascal' when '').
    class_names: optional names, one per class.
    name: dataset name in the info (default: the folder's name).
  """
  table = colormaps.load_colormap(colormap) if colormap else None
  info = DatasetInfo(name or os.path.basename(os.path.abspath(data_dir)), num_classes,
                     ignore_label, tuple(class_names), colormap or 'pascal')
  all_splits, problems = {}, {}
  for split, split_dir in _split_dirs(data_dir, splits).items():
    all_splits[split], problems[split] = _split_examples(split_dir)
  return DatasetSource(info, all_splits, problems,
                       read_label=make_label_reader(table, num_classes, ignore_label),
                       num_shards=NUM_SHARDS)
