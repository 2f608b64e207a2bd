"""Pictures of predictions, and predictions of image files written as pictures.

Pictures: colour overlays, side-by-side panels (image | prediction | ground
truth) and confusion matrices, from numpy uint8 images and integer label maps,
encoded with `tf.io.encode_png` (no plotting library). Colours come from
`deeplab.data.colormaps`.

`predict_files` runs a checkpoint or an exported SavedModel (`load_predictor`)
on image files and writes label PNGs (palette, grayscale ids, or Cityscapes
benchmark results), overlays and panels, each file atomically.

Example:
  >>> import numpy as np
  >>> image = np.full([4, 6, 3], 200, np.uint8)
  >>> labels = np.ones([4, 6], np.int32)
  >>> blended = overlay(image, labels, 'pascal', alpha=0.5)
  >>> blended[0, 0].tolist()  # halfway between (200, 200, 200) and (128, 0, 0)
  [164, 100, 100]
  >>> side_by_side([image, blended], gap=2).shape
  (4, 14, 3)
"""

import dataclasses
import os
import re
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import logging
import numpy as np
import tensorflow as tf

from deeplab.checkpoints import restore_weights
from deeplab.config import ExperimentConfig
from deeplab.data.colormaps import colorize, load_colormap
from deeplab.data.info import CITYSCAPES_TRAIN_IDS
from deeplab.data.png import decode_label_png, encode_label_png, encode_palette_png
from deeplab.data.settings import resolve_dataset_settings
from deeplab.files import atomic_write
from deeplab.model import build_model
from deeplab.predict import label_predictor, load_label_predictor

# Colours of the confusion-matrix picture: white (no pixels) to dark blue (a whole
# row), and grey rows for classes absent from the ground truth.
_EMPTY_COLOR = np.array([255, 255, 255], np.float64)
_FULL_COLOR = np.array([8, 48, 107], np.float64)
_ABSENT_COLOR = np.array([200, 200, 200], np.uint8)
_GRID_COLOR = np.array([160, 160, 160], np.uint8)
_MIN_GRID_CELL = 6
_WHITE = 255


def overlay(image: np.ndarray, labels: np.ndarray, colormap, alpha: float = 0.5) -> np.ndarray:
  """The image with its label colours blended in.

  Args:
    image: uint8 [H, W, 3].
    labels: int [H, W] class ids.
    colormap: a colormap name ('pascal', 'cityscapes', 'ade20k') or uint8 [N, 3].
    alpha: weight of the label colours (0 = image only, 1 = colours only).

  Returns:
    uint8 [H, W, 3].
  """
  image = np.asarray(image)
  labels = np.asarray(labels)
  if image.shape[:2] != labels.shape:
    raise ValueError(f'Image {list(image.shape)} and labels {list(labels.shape)} differ '
                     f'in size.')
  colors = colorize(labels, colormap).astype(np.float64)
  blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colors
  return np.round(blended).astype(np.uint8)


def side_by_side(panels: Sequence[np.ndarray], gap: int = 8) -> np.ndarray:
  """Panels uint8 [H_i, W_i, 3] placed left to right, top-aligned, on white.

  Returns:
    uint8 [max H_i, sum W_i + gap * (len(panels) - 1), 3].
  """
  if not panels:
    raise ValueError('side_by_side needs at least one panel.')
  height = max(panel.shape[0] for panel in panels)
  width = sum(panel.shape[1] for panel in panels) + gap * (len(panels) - 1)
  canvas = np.full([height, width, 3], _WHITE, np.uint8)
  left = 0
  for panel in panels:
    canvas[:panel.shape[0], left:left + panel.shape[1]] = panel
    left += panel.shape[1] + gap
  return canvas


def confusion_matrix_image(confusion, max_size: int = 512) -> np.ndarray:
  """The row-normalized confusion matrix as a picture, one square cell per entry.

  Row i (ground-truth class i) shows where its pixels went: a cell's darkness is
  the fraction of the row, from white (0) to dark blue (1). Rows of classes absent
  from the ground truth are light grey, so they do not read as "all wrong"; cells
  of 6 pixels or more are outlined by a darker grey grid line on their top and left.

  Args:
    confusion: int [C, C], rows ground truth, columns prediction.
    max_size: the picture's largest side in pixels (cells are at least 1 pixel).

  Returns:
    uint8 [C * cell, C * cell, 3].
  """
  confusion = np.asarray(confusion, np.float64)
  num_classes = confusion.shape[0]
  totals = confusion.sum(axis=1, keepdims=True)
  fractions = confusion / np.maximum(totals, 1)
  pixels = np.round(_EMPTY_COLOR + fractions[..., None] * (_FULL_COLOR - _EMPTY_COLOR))
  pixels = pixels.astype(np.uint8)
  pixels[totals[:, 0] == 0] = _ABSENT_COLOR
  cell = max(1, max_size // num_classes)
  picture = np.repeat(np.repeat(pixels, cell, axis=0), cell, axis=1)
  if cell >= _MIN_GRID_CELL:
    # Thin lines between cells, so neighbouring cells of one shade stay countable.
    picture[::cell] = _GRID_COLOR
    picture[:, ::cell] = _GRID_COLOR
  return picture


def encode_png(image: np.ndarray) -> bytes:
  """PNG bytes of a uint8 [H, W, 3] or [H, W] image."""
  image = np.asarray(image, np.uint8)
  return tf.io.encode_png(image if image.ndim == 3 else image[..., None]).numpy()


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif')
# Cityscapes images are '<city>_<seq>_<frame>_leftImg8bit.png'; the benchmark pairs a
# result with its ground truth by the '<city>_<seq>_<frame>' prefix.
_CITYSCAPES_IMAGE = re.compile(r'^(?P<frame>.+_\d{6}_\d{6})_leftImg8bit$')
CITYSCAPES_RESULT_SUFFIX = '_gtFine_labelIds'


def list_images(inputs: Sequence[str]) -> List[Tuple[str, str]]:
  """The image files of files, directories (searched recursively) and glob patterns.

  Returns:
    (path, name) pairs in a stable order; `name` is the output name without
    extension: the path relative to a given directory, else the file's stem.

  Raises:
    FileNotFoundError: an input matches nothing, naming it.
    ValueError: two images would get the same output name.
  """
  found = []
  for item in inputs:
    if tf.io.gfile.isdir(item):
      matches = [(os.path.join(root, f), os.path.relpath(os.path.join(root, f), item))
                 for root, _, files in tf.io.gfile.walk(item) for f in files
                 if f.lower().endswith(IMAGE_EXTENSIONS)]
    elif tf.io.gfile.exists(item):
      matches = [(item, os.path.basename(item))]
    else:
      matches = [(path, os.path.basename(path)) for path in tf.io.gfile.glob(item)]
    if not matches:
      raise FileNotFoundError(f'{item} is not an image file, a directory of images or a '
                              f'pattern matching any file.')
    found += sorted((path, os.path.splitext(name)[0]) for path, name in matches)
  first = {}
  for path, name in found:
    if first.setdefault(name, path) != path:
      raise ValueError(f'{first[name]} and {path} would both be written as {name}.png; pass '
                       f'their directory instead, so names keep the sub-directories.')
  return found


def read_image(path: str) -> np.ndarray:
  """RGB pixels uint8 [H, W, 3] of a JPEG, PNG, BMP or GIF file (first frame).

  Raises:
    ValueError: the file cannot be read or decoded, naming it.
  """
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      data = f.read()
    return tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
  except (tf.errors.OpError, OSError) as e:
    message = getattr(e, 'message', str(e))
    raise ValueError(f'{path}: not a readable JPEG, PNG, BMP or GIF image ({message}).') from e


def cityscapes_result_name(name: str) -> str:
  """The benchmark's name for the result of image `name` (no extension).

  Example:
    >>> cityscapes_result_name('berlin/berlin_000000_000019_leftImg8bit')
    'berlin/berlin_000000_000019_gtFine_labelIds'
  """
  directory, base = os.path.split(name)
  match = _CITYSCAPES_IMAGE.match(base)
  if not match:
    raise ValueError(f'{name} is not named like a Cityscapes image '
                     f'(<city>_<seq>_<frame>_leftImg8bit), so its result cannot be named '
                     f'for the benchmark.')
  return os.path.join(directory, match.group('frame') + CITYSCAPES_RESULT_SUFFIX)


def cityscapes_label_ids(train_ids: np.ndarray) -> np.ndarray:
  """Cityscapes labelIds of trainIds, the ids the benchmark evaluates.

  Example:
    >>> cityscapes_label_ids(np.array([0, 1, 13, 18])).tolist()  # road, sidewalk, car, bicycle
    [7, 8, 26, 33]
  """
  table = np.zeros(256, np.uint8)
  # Each trainId 0..18 has exactly one labelId.
  for label_id, train_id in enumerate(CITYSCAPES_TRAIN_IDS):
    if train_id != 255:
      table[train_id] = label_id
  return table[np.asarray(train_ids)]


@dataclasses.dataclass(frozen=True)
class PredictionOutputs:
  """What `predict_files` writes for each image, under `output_dir`.

  Attributes:
    labels: `labels/<name>.png`: a palette PNG (pixel values are class ids,
      viewers show the dataset colours; PASCAL's submission format).
    raw_labels: write the label PNGs as grayscale class ids instead.
    overlays: `overlays/<name>.png`: the prediction's colours blended on the image.
    panels: `panels/<name>.png`: image | prediction | ground truth (when found).
    alpha: weight of the colours in overlays.
    cityscapes_label_ids: write the label PNGs as Cityscapes benchmark results:
      trainIds mapped to grayscale labelIds, named
      `labels/<city>_<seq>_<frame>_gtFine_labelIds.png`.
  """
  labels: bool = True
  raw_labels: bool = False
  overlays: bool = True
  panels: bool = True
  alpha: float = 0.5
  cityscapes_label_ids: bool = False


def predict_files(predict: Callable, inputs: Sequence[str], output_dir: str, *,
                  colormap, outputs: PredictionOutputs = PredictionOutputs(),
                  ground_truth_dir: str = '',
                  progress: Optional[Callable[[int, int], None]] = None) -> List[str]:
  """Predicts image files and writes label PNGs, overlays and side-by-side panels.

  Args:
    predict: RGB uint8 [1, H, W, 3] -> class ids [1, H, W] (e.g.
      `deeplab.predict.label_predictor(model)` or `load_label_predictor(export_dir)`).
    inputs: image files, directories (searched recursively) or glob patterns.
    output_dir: files go to `labels/`, `overlays/` and `panels/` under it, named
      after the images (directory inputs keep their sub-directories).
    colormap: a colormap name ('pascal', 'cityscapes', 'ade20k'), colormap file or
      uint8 [N, 3] table.
    outputs: which files to write.
    ground_truth_dir: label PNGs (palette or grayscale ids) named like the images
      (`<dir>/<name>.png` or `<dir>/<stem>.png`); each found one joins the panel.
    progress: called with (images done, images in total) after every image.

  Returns:
    The paths written.

  Raises:
    ValueError: an unreadable image or ground truth, naming the file.

  Example:
    >>> predict = lambda images: np.zeros(images.shape[:3], np.int32)
    >>> paths = predict_files(predict, ['photos/'], '/tmp/out', colormap='pascal')  # doctest: +SKIP
  """
  table = load_colormap(colormap) if isinstance(colormap, str) else np.asarray(colormap)
  images = list_images(inputs)
  written = []
  for done, (path, name) in enumerate(images, 1):
    image = read_image(path)
    labels = np.asarray(predict(image[np.newaxis]))[0]
    if labels.shape != image.shape[:2]:
      raise ValueError(f'{path}: the prediction is {list(labels.shape)} for an image of '
                       f'{list(image.shape[:2])} pixels.')
    files = {}
    if outputs.labels:
      files.update(_label_file(name, labels, table, outputs))
    if outputs.overlays:
      files[f'overlays/{name}.png'] = encode_png(overlay(image, labels, table, outputs.alpha))
    if outputs.panels:
      panels = [image, colorize(labels, table)]
      truth = _ground_truth(ground_truth_dir, name, path, image.shape[:2])
      if truth is not None:
        panels.append(colorize(truth, table))
      files[f'panels/{name}.png'] = encode_png(side_by_side(panels))
    for relative, data in files.items():
      written.append(os.path.join(output_dir, relative))
      atomic_write(written[-1], data)
    if progress:
      progress(done, len(images))
  logging.info('Predicted %d images; outputs in %s.', len(images), output_dir)
  return written


def _label_file(name: str, labels: np.ndarray, colormap: np.ndarray,
                outputs: PredictionOutputs) -> Dict[str, bytes]:
  ids = labels.astype(np.uint8)
  if outputs.cityscapes_label_ids:
    return {f'labels/{cityscapes_result_name(name)}.png':
            encode_label_png(cityscapes_label_ids(ids))}
  if outputs.raw_labels:
    return {f'labels/{name}.png': encode_label_png(ids)}
  return {f'labels/{name}.png': encode_palette_png(ids, colormap[:256])}


def _ground_truth(ground_truth_dir: str, name: str, image_path: str,
                  size: Tuple[int, int]) -> Optional[np.ndarray]:
  """The ground-truth ids of image `name`, or None (logged) when there is no file."""
  if not ground_truth_dir:
    return None
  candidates = [os.path.join(ground_truth_dir, f'{name}.png'),
                os.path.join(ground_truth_dir, f'{os.path.basename(name)}.png')]
  path = next((p for p in candidates if tf.io.gfile.exists(p)), None)
  if path is None:
    logging.warning('No ground truth for %s (looked for %s).', image_path,
                    ' and '.join(candidates))
    return None
  try:
    with tf.io.gfile.GFile(path, 'rb') as f:
      truth = decode_label_png(f.read())
  except (ValueError, tf.errors.OpError) as e:
    raise ValueError(f'{path}: not a label PNG of class ids ({e}).') from e
  if truth.shape != tuple(size):
    raise ValueError(f'{path}: ground truth of {list(truth.shape)} pixels for the image '
                     f'{image_path} of {list(size)}.')
  return truth


def load_predictor(experiment: ExperimentConfig, checkpoint: str = '',
                   saved_model: str = '') -> Callable:
  """The prediction function of a checkpoint or of an exported SavedModel.

  A checkpoint (native or official TF1, prefix or model directory) is restored
  into the experiment's model at `experiment.evaluation.output_stride`, and
  predicts with its `eval_scales`, `add_flipped_images` and `tiling`; a
  SavedModel predicts as it was exported.

  Returns:
    RGB uint8 [N, H, W, 3] -> class ids int32 [N, H, W].

  Example:
    >>> predict = load_predictor(load_experiment('synthetic'), 'runs/synthetic')  # doctest: +SKIP
  """
  if bool(checkpoint) == bool(saved_model):
    raise ValueError('Predict from either a checkpoint or a SavedModel (exactly one).')
  if saved_model:
    return load_label_predictor(saved_model)
  experiment = resolve_dataset_settings(experiment)
  evaluation = experiment.evaluation
  config = experiment.model
  if evaluation.output_stride:
    config = config.with_output_stride(evaluation.output_stride)
  model = build_model(config, precision=experiment.runtime.mixed_precision_dtype)
  restore_weights(model, checkpoint, strict=True)
  return label_predictor(model, evaluation.eval_scales, evaluation.add_flipped_images,
                         evaluation.tiling)
