"""MS-COCO 2017 -> semantic masks of the 20 PASCAL VOC classes, for pre-training on VOC.

Layout (as downloaded from cocodataset.org): `train2017/*.jpg`, `val2017/*.jpg` and
`annotations/instances_{train,val}2017.json`. Splits `train` (from train2017) and `val`
(from val2017), named as VOC's and ADE20K's; record names are the image file names
without extension (e.g. `000000000139`), in image id order, 32 shards per split. The
records carry VOC's 21 classes and colormap (dataset info `coco_voc`), so a model
pre-trained on them fine-tunes on VOC keeping its logits.

COCO categories of the VOC classes (every other category is background, 0):

| VOC id | VOC class   | COCO id | COCO name    |
|-------:|-------------|--------:|--------------|
|      1 | aeroplane   |       5 | airplane     |
|      2 | bicycle     |       2 | bicycle      |
|      3 | bird        |      16 | bird         |
|      4 | boat        |       9 | boat         |
|      5 | bottle      |      44 | bottle       |
|      6 | bus         |       6 | bus          |
|      7 | car         |       3 | car          |
|      8 | cat         |      17 | cat          |
|      9 | chair       |      62 | chair        |
|     10 | cow         |      21 | cow          |
|     11 | diningtable |      67 | dining table |
|     12 | dog         |      18 | dog          |
|     13 | horse       |      19 | horse        |
|     14 | motorbike   |       4 | motorcycle   |
|     15 | person      |       1 | person       |
|     16 | pottedplant |      64 | potted plant |
|     17 | sheep       |      20 | sheep        |
|     18 | sofa        |      63 | couch        |
|     19 | train       |       7 | train        |
|     20 | tvmonitor   |      72 | tv           |

How a mask is drawn: the instances (`iscrowd` 0) of VOC categories are painted in
decreasing order of their pixel area, so where two overlap the smaller one, usually
the one in front (a bottle on a table, a person on a sofa), keeps the pixels; equal
areas keep the file order, later over earlier. Crowd regions (`iscrowd` 1) of VOC
categories are painted last with the ignore label 255: they hold objects of a VOC
class whose outlines nobody drew. Annotations of other categories, crowds included,
are not painted: background is what they are for VOC. Polygons, uncompressed RLE
(list counts) and compressed RLE (string counts, as `pycocotools.mask.encode` writes)
are decoded with pycocotools, an optional dependency: `pip install deeplab[coco]`.

Bad input, reported with the annotation file and the image and annotation ids (and,
with `skip_bad`, left out and listed): an annotation of an image id missing from
`images`, an unknown `category_id`, a polygon point more than `POLYGON_TOLERANCE`
pixels outside the image (COCO outlines may touch the border at x = width, and a
point far outside means the annotation belongs to another image size, so it is
reported rather than clipped), an RLE whose size is not the image's or whose counts
do not cover it, an image whose file is missing or whose size differs from the
JSON's. Polygons of fewer than 3 points enclose nothing and are dropped, as COCO
holds a few. A truncated or corrupt JSON file fails with its JSON error position.
`skip_empty` leaves out the images without any VOC instance (crowd regions alone do
not count), and logs how many.

Example:
  >>> source = coco_source('/data/coco', skip_empty=True)
  >>> sorted(source.splits)
  ['train', 'val']
"""

import json
import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from absl import logging

from deeplab.data.info import get_dataset_info
from deeplab.datasets.core import DatasetSource, Example, Problem, read_file

NUM_SHARDS = 32
SPLITS = {'train': 'train2017', 'val': 'val2017'}
# Pixels a polygon point may lie beyond the image border.
POLYGON_TOLERANCE = 1.0

# (COCO 2017 category id, COCO name, VOC class name) in VOC order: VOC id = position + 1.
COCO_VOC_CATEGORIES = (
    (5, 'airplane', 'aeroplane'),
    (2, 'bicycle', 'bicycle'),
    (16, 'bird', 'bird'),
    (9, 'boat', 'boat'),
    (44, 'bottle', 'bottle'),
    (6, 'bus', 'bus'),
    (3, 'car', 'car'),
    (17, 'cat', 'cat'),
    (62, 'chair', 'chair'),
    (21, 'cow', 'cow'),
    (67, 'dining table', 'diningtable'),
    (18, 'dog', 'dog'),
    (19, 'horse', 'horse'),
    (4, 'motorcycle', 'motorbike'),
    (1, 'person', 'person'),
    (64, 'potted plant', 'pottedplant'),
    (20, 'sheep', 'sheep'),
    (63, 'couch', 'sofa'),
    (7, 'train', 'train'),
    (72, 'tv', 'tvmonitor'),
)
VOC_ID_OF_COCO_ID = {coco_id: voc_id
                     for voc_id, (coco_id, _, _) in enumerate(COCO_VOC_CATEGORIES, 1)}
_INFO = get_dataset_info('coco_voc')


def mask_api():
  """pycocotools' `mask` module, an optional dependency (the `coco` extra)."""
  try:
    from pycocotools import mask  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError('Converting COCO needs pycocotools: pip install deeplab[coco] '
                      f'(or pip install pycocotools); the import failed: {e}') from e
  return mask


def _polygon(values, height: int, width: int, where: str) -> List[float]:
  """A polygon's flat [x1, y1, x2, y2, ...] coordinates, checked against the image."""
  try:
    points = np.asarray(values, np.float64)
  except (TypeError, ValueError) as e:
    raise ValueError(f'{where}: a polygon holds values that are not numbers') from e
  if points.ndim != 1 or points.size % 2 or not np.all(np.isfinite(points)):
    raise ValueError(f'{where}: a polygon must be a flat list of finite x, y pairs; got '
                     f'{str(values)[:80]}')
  xy = points.reshape(-1, 2)
  outside = np.any((xy < -POLYGON_TOLERANCE) |
                   (xy > np.array([width, height]) + POLYGON_TOLERANCE), axis=1)
  if outside.any():
    x, y = xy[outside][0]
    raise ValueError(f'{where}: polygon point ({x:g}, {y:g}) lies outside the '
                     f'{width}x{height} image (by more than {POLYGON_TOLERANCE:g} pixel)')
  return points.tolist()


def _rle(segmentation, height: int, width: int, where: str, masks):
  """One annotation's segmentation as a pycocotools RLE, or None if it has no area."""
  if isinstance(segmentation, list):
    polygons = [_polygon(p, height, width, where) for p in segmentation]
    polygons = [p for p in polygons if len(p) >= 6]  # Fewer than 3 points: no area.
    return masks.merge(masks.frPyObjects(polygons, height, width)) if polygons else None
  if not (isinstance(segmentation, dict) and {'size', 'counts'} <= set(segmentation)):
    raise ValueError(f'{where}: segmentation is neither a list of polygons nor an RLE '
                     f'{{"size": [h, w], "counts": ...}}')
  if list(segmentation['size']) != [height, width]:
    raise ValueError(f'{where}: RLE size {segmentation["size"]} is not the image size '
                     f'[{height}, {width}]')
  counts = segmentation['counts']
  if isinstance(counts, list):
    if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != height * width:
      raise ValueError(f'{where}: RLE counts must be run lengths >= 0 adding up to '
                       f'{height}x{width} = {height * width} pixels')
    return masks.frPyObjects(segmentation, height, width)
  # pycocotools decodes malformed strings without complaint; a canonical string is the
  # one that re-encoding its own decoding gives back.
  try:
    canonical = isinstance(counts, str) and masks.encode(masks.decode(segmentation))[
        'counts'].decode() == counts
  except ValueError:
    canonical = False
  if not canonical:
    raise ValueError(f'{where}: RLE counts are neither run lengths nor a compressed RLE '
                     f'string of a {height}x{width} mask')
  return segmentation


def voc_label(annotations: Sequence[dict], height: int, width: int) -> np.ndarray:
  """The VOC class ids of one COCO image, drawn from its instance annotations.

  Instances of VOC categories are painted larger first (a smaller instance keeps the
  pixels it shares with a larger one), then their crowd regions as the ignore label;
  other categories stay background (see the module docstring).

  Args:
    annotations: the image's COCO annotations (`id`, `category_id`, `iscrowd`,
      `segmentation`); categories outside `COCO_VOC_CATEGORIES` are passed over.
    height, width: the image size.

  Returns:
    uint8 [height, width]: VOC ids 0..20, 255 on crowd regions.

  Raises:
    ValueError: a segmentation that is malformed or does not fit the image, naming
      the annotation id.

  Example:
    >>> square = [[1, 1, 3, 1, 3, 3, 1, 3]]
    >>> voc_label([{'id': 7, 'category_id': 1, 'iscrowd': 0, 'segmentation': square}],
    ...           4, 5)[1:3, 1:3]
    array([[15, 15],
           [15, 15]], dtype=uint8)
  """
  masks = mask_api()
  instances, crowds = [], []
  for annotation in annotations:
    voc_id = VOC_ID_OF_COCO_ID.get(annotation['category_id'])
    if voc_id is None:
      continue
    rle = _rle(annotation['segmentation'], height, width, f'annotation {annotation["id"]}',
               masks)
    if rle is not None:
      (crowds if annotation['iscrowd'] else instances).append((rle, voc_id))
  instances.sort(key=lambda instance: -int(masks.area(instance[0])))  # Stable sort.
  label = np.zeros([height, width], np.uint8)
  for rle, value in instances + [(rle, _INFO.ignore_label) for rle, _ in crowds]:
    label[masks.decode(rle).astype(bool)] = value
  return label


def read_coco_label(data: bytes, path: str) -> np.ndarray:
  """VOC class ids from an image's annotations as `_AnnotationFiles.read` gives them."""
  del path  # The annotations name themselves in errors.
  image = json.loads(data)
  return voc_label(image['annotations'], image['height'], image['width'])


class _AnnotationFiles:
  """Reads files from disk, and each image's annotations by its label path.

  An image's label path is `<annotation JSON> (image <id>)`; reading it gives the
  JSON of {height, width, annotations of VOC categories}, which `read_coco_label`
  turns into a mask. Errors so name the annotation file and the image.
  """

  def __init__(self):
    self.images: Dict[str, dict] = {}

  def read(self, path: str) -> bytes:
    if path in self.images:
      return json.dumps(self.images[path]).encode()
    return read_file(path)


def _label_path(json_path: str, image_id: int) -> str:
  return f'{json_path} (image {image_id})'


def _read_json(path: str):
  logging.info('Reading %s.', path)
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except FileNotFoundError as e:
    raise FileNotFoundError(
        f'{path} does not exist; expected the COCO 2017 layout: train2017/, val2017/ and '
        f'annotations/instances_{{train,val}}2017.json under the data directory.') from e
  except json.JSONDecodeError as e:
    raise ValueError(f'{path} is not valid JSON (truncated or corrupt): {e.msg} at line '
                     f'{e.lineno}, column {e.colno} (character {e.pos}).') from e
  except UnicodeDecodeError as e:
    raise ValueError(f'{path} is not UTF-8 JSON text: {e}') from e


def _records(coco, key: str, path: str) -> list:
  records = coco.get(key) if isinstance(coco, dict) else None
  if not isinstance(records, list):
    raise ValueError(f'{path} has no "{key}" list; expected a COCO instances file.')
  return records


def _field(record, key: str, kind: type, where: str):
  """`record[key]`, checked to be a `kind` (never a bool)."""
  value = record.get(key) if isinstance(record, dict) else None
  if not isinstance(value, kind) or isinstance(value, bool):
    raise ValueError(f'{where}: "{key}" is missing or not a {kind.__name__} '
                     f'(got {value!r:.40})')
  return value


def _categories(coco, path: str) -> Dict[int, str]:
  """Category id -> name, with the VOC categories checked against COCO 2017's ids."""
  categories = {}
  for index, category in enumerate(_records(coco, 'categories', path)):
    where = f'{path}: categories[{index}]'
    categories[_field(category, 'id', int, where)] = _field(category, 'name', str, where)
  for coco_id, name, _ in COCO_VOC_CATEGORIES:
    if categories.get(coco_id, name) != name:
      raise ValueError(f'{path}: category {coco_id} is {categories[coco_id]!r}, not '
                       f'{name!r}; the VOC mapping expects the COCO 2017 category ids.')
  return categories


def _images(coco, path: str) -> Dict[int, Tuple[str, int, int]]:
  """Image id -> (file name, height, width)."""
  images = {}
  for index, image in enumerate(_records(coco, 'images', path)):
    where = f'{path}: images[{index}]'
    image_id = _field(image, 'id', int, where)
    if image_id in images:
      raise ValueError(f'{where}: image id {image_id} is listed twice')
    size = [_field(image, key, int, where) for key in ('height', 'width')]
    if min(size) < 1:
      raise ValueError(f'{where}: image size {size} is empty')
    images[image_id] = (_field(image, 'file_name', str, where), *size)
  return images


def _split(data_dir: str, folder: str, skip_empty: bool, files: _AnnotationFiles
           ) -> Tuple[List[Example], List[Problem]]:
  """The examples of one annotation file, in image id order, and their problems."""
  path = os.path.join(data_dir, 'annotations', f'instances_{folder}.json')
  coco = _read_json(path)
  categories = _categories(coco, path)
  images = _images(coco, path)
  annotations = {image_id: [] for image_id in images}
  bad_images: Dict[int, List[Problem]] = {}
  problems = []
  for index, annotation in enumerate(_records(coco, 'annotations', path)):
    annotation_id = _field(annotation, 'id', int, f'{path}: annotations[{index}]')
    where = f'{path}: annotation {annotation_id}'
    image_id = _field(annotation, 'image_id', int, where)
    category_id = _field(annotation, 'category_id', int, where)
    iscrowd = _field(annotation, 'iscrowd', int, where)
    if 'segmentation' not in annotation:
      raise ValueError(f'{where}: no "segmentation"')
    if image_id not in images:
      problems.append(Problem(_label_path(path, image_id), f'annotation {annotation_id}: '
                              f'image_id {image_id} is not in the file\'s "images"'))
    elif category_id not in categories:
      bad_images.setdefault(image_id, []).append(Problem(
          _label_path(path, image_id), f'annotation {annotation_id}: category_id '
                                       f'{category_id} is not in the file\'s "categories"'))
    elif category_id in VOC_ID_OF_COCO_ID:
      annotations[image_id].append({'id': annotation_id, 'category_id': category_id,
                                    'iscrowd': iscrowd,
                                    'segmentation': annotation['segmentation']})
  examples, empty = [], 0
  for image_id in sorted(images):
    if image_id in bad_images:
      problems.extend(bad_images[image_id])
      continue
    if skip_empty and all(a['iscrowd'] for a in annotations[image_id]):
      empty += 1
      continue
    file_name, height, width = images[image_id]
    label_path = _label_path(path, image_id)
    files.images[label_path] = {'height': height, 'width': width,
                                'annotations': annotations[image_id]}
    examples.append(Example(os.path.splitext(file_name)[0],
                            os.path.join(data_dir, folder, file_name), label_path))
  if skip_empty:
    logging.info('%s: left out %d of %d images without a VOC object (skip_empty).', folder,
                 empty, len(images))
  return examples, problems


def coco_source(data_dir: str, splits: Optional[Sequence[str]] = None, *,
                skip_empty: bool = False) -> DatasetSource:
  """The COCO 2017 splits under `data_dir` with VOC-class masks.

  Args:
    data_dir: the folder of train2017/, val2017/ and annotations/.
    splits: 'train' and/or 'val' (default both).
    skip_empty: leave out images without any instance of a VOC category.

  Raises:
    ImportError: pycocotools is not installed (`pip install deeplab[coco]`).
    FileNotFoundError, ValueError: a missing, corrupt or malformed annotation file.
  """
  mask_api()
  files = _AnnotationFiles()
  all_splits, problems = {}, {}
  for split in splits or SPLITS:
    if split not in SPLITS:
      raise ValueError(f'Unknown COCO split {split!r}; expected one of '
                       f'{", ".join(SPLITS)}.')
    all_splits[split], problems[split] = _split(data_dir, SPLITS[split], skip_empty, files)
  return DatasetSource(_INFO, all_splits, problems, read_bytes=files.read,
                       read_label=read_coco_label, num_shards=NUM_SHARDS)
