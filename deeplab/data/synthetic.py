"""A procedural segmentation dataset: coloured, textured shapes on a textured background.

Each class is a shape with its own colour and texture (disc, square, triangle, ring,
cross, diamond), drawn at random positions, sizes, rotations and colour jitter, with
overlaps; a thin band of ignore-label pixels runs along every object boundary, as in
VOC. A small DeepLab learns it to a high mIoU in minutes, which makes it the dataset
of the demo and of the tests. Everything follows from the seed.

On disk it uses the layout the `folder` converter reads:
`<dir>/<split>/images/<name>.jpg` and `<dir>/<split>/masks/<name>.png` (8-bit class
ids), plus `synthetic.json` with the generation parameters.

Example:
  >>> image, labels = generate_example(np.random.default_rng(0), 129, 129)
  >>> image.shape, image.dtype, labels.shape
  ((129, 129, 3), dtype('uint8'), (129, 129))
  >>> root = write_synthetic_dataset('/tmp/synthetic', {'train': 200, 'val': 50})
"""

import json
import os
import shutil
import tempfile
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab.data import png
from deeplab.data.info import SYNTHETIC_CLASSES

IGNORE_LABEL = 255
PARAMETERS_FILENAME = 'synthetic.json'
DEFAULT_SPLITS = {'train': 200, 'val': 50}
# Base colours of the object classes 1..6; each object jitters its class's colour.
_CLASS_COLORS = np.array([(200, 40, 40), (40, 170, 60), (50, 70, 210), (225, 200, 40),
                          (190, 50, 190), (40, 190, 200)], np.float32)
_COLOR_JITTER = 30
_NOISE_STDDEV = 8.0
_MAX_OBJECTS = 4


def _shape_mask(class_id: int, u: np.ndarray, v: np.ndarray, size: float) -> np.ndarray:
  """Pixels inside the class's shape; u, v are rotated coordinates around its centre."""
  radius = np.hypot(u, v)
  if class_id == 1:
    return radius <= size
  if class_id == 2:
    return (np.abs(u) <= 0.8 * size) & (np.abs(v) <= 0.8 * size)
  if class_id == 3:
    # Equilateral triangle: inside the three edges at distance size/2 from the centre.
    angles = np.deg2rad([90.0, 210.0, 330.0])
    return np.all([u * np.cos(a) + v * np.sin(a) <= size / 2 for a in angles], axis=0)
  if class_id == 4:
    return (radius <= size) & (radius >= 0.55 * size)
  if class_id == 5:
    arm = size / 3
    return (((np.abs(u) <= size) & (np.abs(v) <= arm)) |
            ((np.abs(v) <= size) & (np.abs(u) <= arm)))
  return np.abs(u) / size + np.abs(v) / (0.55 * size) <= 1


def _texture(class_id: int, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
  """Brightness changes (-1..1) that mark the class: flat, checks, stripes, rings, dots."""
  if class_id == 2:
    return np.where((np.floor(u / period) + np.floor(v / period)) % 2 == 0, 1.0, -1.0)
  if class_id == 3:
    return np.sin(2 * np.pi * u / period)
  if class_id == 4:
    return np.sin(2 * np.pi * np.hypot(u, v) / period)
  if class_id == 5:
    return np.sign(np.sin(2 * np.pi * (u + v) / period))
  if class_id == 6:
    return np.cos(2 * np.pi * u / period) * np.cos(2 * np.pi * v / period)
  return -np.hypot(u, v) / (4 * period)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
  """A dull textured background: a grey-ish colour, a gradient and soft blobs."""
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  base = rng.uniform(70, 170) + rng.uniform(-20, 20, size=3)
  gradient = (rng.uniform(-0.3, 0.3) * (y - height / 2) +
              rng.uniform(-0.3, 0.3) * (x - width / 2))
  blobs = 15 * np.sin(x / rng.uniform(6, 20) + rng.uniform(0, 6)) * np.sin(
      y / rng.uniform(6, 20) + rng.uniform(0, 6))
  return base + (gradient + blobs)[..., None]


def _boundaries(labels: np.ndarray) -> np.ndarray:
  """Pixels next to a pixel of another class (a band about 2 pixels wide)."""
  edges = np.zeros(labels.shape, bool)
  vertical = labels[1:] != labels[:-1]
  horizontal = labels[:, 1:] != labels[:, :-1]
  edges[1:] |= vertical
  edges[:-1] |= vertical
  edges[:, 1:] |= horizontal
  edges[:, :-1] |= horizontal
  return edges


def generate_example(rng: np.random.Generator, height: int, width: int,
                     num_classes: int = 5) -> Tuple[np.ndarray, np.ndarray]:
  """One synthetic image and its labels.

  Args:
    rng: the random generator; the same state gives the same example.
    height, width: image size.
    num_classes: background + up to 6 shape classes (2..7).

  Returns:
    image uint8 [H, W, 3] and labels uint8 [H, W] (0 = background, 1..num_classes-1
    the shapes, 255 = boundary band).
  """
  if not 2 <= num_classes <= len(SYNTHETIC_CLASSES):
    raise ValueError(f'Synthetic num_classes must be in [2, {len(SYNTHETIC_CLASSES)}]; '
                     f'got {num_classes}.')
  image = _background(rng, height, width)
  labels = np.zeros([height, width], np.uint8)
  y, x = np.mgrid[0:height, 0:width].astype(np.float32)
  for _ in range(rng.integers(1, _MAX_OBJECTS + 1)):
    class_id = int(rng.integers(1, num_classes))
    size = rng.uniform(0.12, 0.3) * min(height, width)
    center_y, center_x = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
    angle = rng.uniform(0, np.pi)
    u = (x - center_x) * np.cos(angle) + (y - center_y) * np.sin(angle)
    v = (y - center_y) * np.cos(angle) - (x - center_x) * np.sin(angle)
    inside = _shape_mask(class_id, u, v, size)
    color = _CLASS_COLORS[class_id - 1] + rng.uniform(-_COLOR_JITTER, _COLOR_JITTER, size=3)
    shading = 25 * _texture(class_id, u, v, rng.uniform(3, 7))
    image[inside] = color + shading[inside][..., None]
    labels[inside] = class_id
  image += rng.normal(0, _NOISE_STDDEV, image.shape)
  labels[_boundaries(labels)] = IGNORE_LABEL
  return np.clip(image, 0, 255).astype(np.uint8), labels


def _parameters(splits: Dict[str, int], num_classes: int, seed: int, min_size: int,
                max_size: int) -> dict:
  return {'splits': dict(sorted(splits.items())), 'num_classes': num_classes, 'seed': seed,
          'min_size': min_size, 'max_size': max_size}


def read_parameters(root: str) -> Optional[dict]:
  """The parameters a synthetic dataset directory was generated with, or None."""
  path = os.path.join(root, PARAMETERS_FILENAME)
  if not os.path.isfile(path):
    return None
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def write_synthetic_dataset(root: str,
                            splits: Optional[Dict[str, int]] = None,
                            num_classes: int = 5,
                            seed: int = 0,
                            min_size: int = 129,
                            max_size: int = 160) -> str:
  """Generates the dataset under `root` unless it is already there with these parameters.

  The dataset is written to a temporary sibling directory and renamed when complete,
  so an interrupted run never leaves a partial dataset behind.

  Args:
    root: output directory; `<root>/<split>/{images,masks}/`.
    splits: split name -> number of examples (default 200 train, 50 val).
    num_classes: background + shapes, 2..7.
    seed: the seed of every example.
    min_size, max_size: image heights and widths are drawn from [min_size, max_size].

  Returns:
    `root`.

  Raises:
    ValueError: `root` exists but is not a synthetic dataset directory.
  """
  splits = dict(DEFAULT_SPLITS if splits is None else splits)
  parameters = _parameters(splits, num_classes, seed, min_size, max_size)
  if os.path.exists(root):
    existing = read_parameters(root)
    if existing == parameters:
      logging.info('Synthetic dataset already at %s.', root)
      return root
    if existing is None:
      raise ValueError(f'{root} exists and is not a generated synthetic dataset '
                       f'(no {PARAMETERS_FILENAME}); choose another directory.')
  parent = os.path.dirname(os.path.abspath(root))
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix='.tmp-synthetic-')
  try:
    for split_index, (split, count) in enumerate(sorted(splits.items())):
      _write_split(staging, split, count, num_classes, (seed, split_index), min_size,
                   max_size)
    with open(os.path.join(staging, PARAMETERS_FILENAME), 'w', encoding='utf-8') as f:
      json.dump(parameters, f, indent=1)
    os.chmod(staging, 0o755)  # mkdtemp makes the directory private.
    if os.path.exists(root):
      shutil.rmtree(root)
    os.replace(staging, root)
  finally:
    if os.path.exists(staging):
      shutil.rmtree(staging)
  logging.info('Generated the synthetic dataset at %s: %s.', root, splits)
  return root


def _write_split(root: str, split: str, count: int, num_classes: int, seed: Tuple[int, int],
                 min_size: int, max_size: int) -> None:
  images_dir = os.path.join(root, split, 'images')
  masks_dir = os.path.join(root, split, 'masks')
  os.makedirs(images_dir)
  os.makedirs(masks_dir)
  for index in range(count):
    rng = np.random.default_rng([*seed, index])
    height, width = rng.integers(min_size, max_size + 1, size=2)
    image, labels = generate_example(rng, int(height), int(width), num_classes)
    name = f'{split}_{index:05d}'
    tf.io.write_file(os.path.join(images_dir, name + '.jpg'),
                     tf.io.encode_jpeg(image, quality=95))
    with open(os.path.join(masks_dir, name + '.png'), 'wb') as f:
      f.write(png.encode_label_png(labels))
