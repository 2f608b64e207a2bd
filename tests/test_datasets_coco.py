"""COCO 2017 -> VOC-class masks, on a mini COCO written here in the exact layout: JPEG
images of odd sizes, polygons (several per object), uncompressed and compressed RLE,
crowds and categories outside VOC. Masks are checked against pycocotools' own
rasterization, read back from the written records."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from pycocotools import mask as mask_api
from pycocotools.coco import COCO

from deeplab.data import tfds
from deeplab.data.info import PASCAL_VOC_CLASSES
from deeplab.datasets import coco
from deeplab.datasets.convert import convert
from deeplab.datasets.core import DatasetError

# The COCO 2017 categories the mini dataset uses: VOC ones and three others.
CATEGORIES = {1: 'person', 3: 'car', 17: 'cat', 18: 'dog', 62: 'chair', 8: 'truck',
              52: 'banana', 73: 'laptop'}
# What the converter must make of them, written out independently of its table.
VOC_IDS = {1: 15, 3: 7, 17: 8, 18: 12, 62: 9}


def _box(height, width, top, bottom, left, right):
  box = np.zeros([height, width], np.uint8)
  box[top:bottom, left:right] = 1
  return box


def _uncompressed_rle(mask):
  """COCO's crowd RLE: column-major run lengths, starting with a run of zeros."""
  pixels = np.concatenate([[0], mask.flatten(order='F'), [2]])
  changes = np.flatnonzero(pixels[1:] != pixels[:-1])
  return {'size': list(mask.shape), 'counts': np.diff(np.concatenate([[0], changes])).tolist()}


def _compressed_rle(mask):
  rle = mask_api.encode(np.asfortranarray(mask))
  return {'size': rle['size'], 'counts': rle['counts'].decode()}


def _annotation(annotation_id, image_id, category_id, segmentation, iscrowd=0):
  return {'id': annotation_id, 'image_id': image_id, 'category_id': category_id,
          'iscrowd': iscrowd, 'segmentation': segmentation, 'area': 0, 'bbox': [0, 0, 1, 1]}


def _val_annotations():
  return [
      # A small dog listed before the large person it lies on: it must stay on top.
      _annotation(11, 1, 18, [[10, 10, 20, 10, 20, 20, 10, 20]]),
      _annotation(12, 1, 1, [[5, 5, 30, 5, 30, 30, 5, 30], [35, 2, 50, 2, 42.5, 15.5]]),
      _annotation(13, 1, 73, [[12, 12, 18, 12, 18, 18]]),  # Laptop: not drawn.
      _annotation(14, 1, 1, _uncompressed_rle(_box(37, 53, 27, 37, 0, 16)), iscrowd=1),
      _annotation(15, 1, 3, _compressed_rle(_box(37, 53, 0, 9, 40, 53))),
      _annotation(16, 1, 52, _uncompressed_rle(_box(37, 53, 30, 37, 40, 53)), iscrowd=1),
      # Touching the right and bottom borders, a little beyond: within the tolerance.
      _annotation(17, 1, 62, [[45, 20, 53.6, 20, 53.6, 37.4, 45, 37.4]]),
      _annotation(21, 2, 73, [[1, 1, 10, 1, 10, 10]]),  # Only a laptop: empty for VOC.
      _annotation(31, 3, 1, _uncompressed_rle(_box(21, 19, 2, 12, 3, 9)), iscrowd=1),
  ]


# split folder -> [(image id, height, width)], and the annotations of each folder.
IMAGES = {'val2017': [(1, 37, 53), (2, 20, 24), (3, 21, 19)],
          'train2017': [(10, 30, 40), (11, 17, 23)]}


def _instances(folder, annotations):
  return {
      'info': {'year': 2017}, 'licenses': [],
      'images': [{'id': i, 'file_name': f'{i:012d}.jpg', 'height': h, 'width': w}
                 for i, h, w in IMAGES[folder]],
      'annotations': annotations,
      'categories': [{'id': i, 'name': n, 'supercategory': 'thing'}
                     for i, n in CATEGORIES.items()],
  }


def _write_coco(root, val_annotations=None):
  """The mini COCO under `root`; returns the path of each annotation file."""
  annotations = {'val2017': _val_annotations() if val_annotations is None else val_annotations,
                 'train2017': [_annotation(101, 10, 17, [[2, 3, 30, 3, 16, 25]])]}
  paths = {}
  for folder, images in IMAGES.items():
    (root / folder).mkdir(parents=True, exist_ok=True)
    for image_id, height, width in images:
      pixels = np.random.default_rng(image_id).integers(0, 255, [height, width, 3], np.uint8)
      (root / folder / f'{image_id:012d}.jpg').write_bytes(tf.io.encode_jpeg(pixels).numpy())
    paths[folder] = root / 'annotations' / f'instances_{folder}.json'
    paths[folder].parent.mkdir(exist_ok=True)
    paths[folder].write_text(json.dumps(_instances(folder, annotations[folder])))
  return paths


def _expected_labels(annotation_file):
  """Masks from pycocotools' annToMask under the documented rule: VOC instances larger
  first, then VOC crowds as 255; other categories not drawn."""
  api = COCO(str(annotation_file))
  labels = {}
  for image_id, image in api.imgs.items():
    label = np.zeros([image['height'], image['width']], np.uint8)
    voc = [a for a in api.imgToAnns[image_id] if a['category_id'] in VOC_IDS]
    instances = sorted((a for a in voc if not a['iscrowd']),
                       key=lambda a: -int(api.annToMask(a).sum()))
    for annotation in instances:
      label[api.annToMask(annotation) == 1] = VOC_IDS[annotation['category_id']]
    for annotation in voc:
      if annotation['iscrowd']:
        label[api.annToMask(annotation) == 1] = 255
    labels[image['file_name'][:-4]] = label
  return labels


def _records(output_dir, split):
  return {e['image/filename'].numpy().decode(): (tuple(e['image'].shape),
                                                 e['segmentation_label'].numpy()[..., 0])
          for e in tfds.load(str(output_dir), split)}


def _shards(output_dir):
  return sorted(f for f in os.listdir(output_dir) if 'tfrecord' in f)


def test_the_mapping_is_coco_2017_to_voc_order():
  assert [voc for _, _, voc in coco.COCO_VOC_CATEGORIES] == list(PASCAL_VOC_CLASSES[1:])
  assert {coco_id: name for coco_id, name, _ in coco.COCO_VOC_CATEGORIES} == {
      5: 'airplane', 2: 'bicycle', 16: 'bird', 9: 'boat', 44: 'bottle', 6: 'bus', 3: 'car',
      17: 'cat', 62: 'chair', 21: 'cow', 67: 'dining table', 18: 'dog', 19: 'horse',
      4: 'motorcycle', 1: 'person', 64: 'potted plant', 20: 'sheep', 63: 'couch',
      7: 'train', 72: 'tv'}


def test_masks_equal_pycocotools_rasterization(tmp_path):
  paths = _write_coco(tmp_path / 'coco')
  info = convert('coco', str(tmp_path / 'coco'), str(tmp_path / 'out'), num_workers=2)
  assert (info.name, info.num_classes, info.class_names) == ('coco_voc', 21, PASCAL_VOC_CLASSES)
  assert {s: i.num_examples for s, i in info.splits.items()} == {'train': 2, 'val': 3}
  assert _shards(tmp_path / 'out')[0] == 'train-00000-of-00002.tfrecord'
  for split, folder in (('val', 'val2017'), ('train', 'train2017')):
    expected = _expected_labels(paths[folder])
    records = _records(tmp_path / 'out', split)
    assert list(records) == sorted(expected)
    for name, (image_shape, label) in records.items():
      assert image_shape == expected[name].shape + (3,)
      np.testing.assert_array_equal(label, expected[name], err_msg=name)
  # Every rule shows in the first image: dog over person, car, chair, crowd ignored.
  label = _records(tmp_path / 'out', 'val')['000000000001'][1]
  assert set(np.unique(label)) == {0, 7, 9, 12, 15, 255}
  assert label[15, 15] == 12 and label[35, 5] == 255 and label[33, 42] == 0


def test_polygons_of_fewer_than_three_points_are_dropped():
  line = {'id': 1, 'category_id': 1, 'iscrowd': 0, 'segmentation': [[0, 0, 4, 0]]}
  assert not coco.voc_label([line], 5, 6).any()


def test_skip_empty_leaves_out_images_without_a_voc_instance(tmp_path, caplog):
  _write_coco(tmp_path / 'coco')
  caplog.set_level('INFO', logger='absl')  # whatever verbosity absl was given
  info = convert('coco', str(tmp_path / 'coco'), str(tmp_path / 'out'), skip_empty=True)
  # val: image 2 has a laptop only, image 3 a crowd only; train: image 11 nothing.
  assert {s: i.num_examples for s, i in info.splits.items()} == {'train': 1, 'val': 1}
  assert 'val2017: left out 2 of 3 images without a VOC object' in caplog.text
  assert list(_records(tmp_path / 'out', 'val')) == ['000000000001']


def _bad(annotation):
  return _val_annotations() + [annotation]


@pytest.mark.parametrize('annotations, message', [
    (_bad(_annotation(41, 99, 1, [[1, 1, 5, 1, 5, 5]])),
     'instances_val2017.json (image 99): annotation 41: image_id 99 is not in'),
    (_bad(_annotation(42, 2, 999, [[1, 1, 5, 1, 5, 5]])),
     'instances_val2017.json (image 2): annotation 42: category_id 999 is not in'),
    (_bad(_annotation(43, 2, 1, [[1, 1, 5, 1, 30, 5]])),
     'instances_val2017.json (image 2): label: annotation 43: polygon point (30, 5) lies '
     'outside the 24x20 image'),
    (_bad(_annotation(44, 2, 1, _uncompressed_rle(_box(21, 24, 0, 2, 0, 2)), iscrowd=1)),
     'annotation 44: RLE size [21, 24] is not the image size [20, 24]'),
    (_bad(_annotation(45, 2, 1, {'size': [20, 24], 'counts': [3, 4]}, iscrowd=1)),
     'annotation 45: RLE counts must be run lengths >= 0 adding up to 20x24'),
    (_bad(_annotation(46, 2, 3, {'size': [20, 24], 'counts': '3'})),
     'annotation 46: RLE counts are neither run lengths nor a compressed RLE'),
], ids=['unknown_image', 'unknown_category', 'polygon_outside', 'rle_size', 'rle_counts',
        'compressed_rle'])
def test_bad_annotations_fail_naming_file_and_annotation(tmp_path, annotations, message):
  _write_coco(tmp_path / 'coco', annotations)
  with pytest.raises(DatasetError, match='nothing was written') as error:
    convert('coco', str(tmp_path / 'coco'), str(tmp_path / 'out'), splits=['val'])
  assert message in str(error.value)
  assert _shards(tmp_path / 'out') == []


def test_skip_bad_writes_the_other_images_and_lists_the_bad_ones(tmp_path):
  _write_coco(tmp_path / 'coco', _bad(_annotation(43, 2, 1, [[1, 1, 5, 1, 30, 5]])))
  info = convert('coco', str(tmp_path / 'coco'), str(tmp_path / 'out'), splits=['val'],
                 skip_bad=True)
  split = info.splits['val']
  assert split.num_examples == 2
  assert [os.path.basename(p) for p in split.skipped] == ['instances_val2017.json (image 2)']
  assert list(_records(tmp_path / 'out', 'val')) == ['000000000001', '000000000003']


def test_missing_image_file_is_named(tmp_path):
  _write_coco(tmp_path / 'coco')
  os.remove(tmp_path / 'coco' / 'val2017' / '000000000003.jpg')
  with pytest.raises(DatasetError, match=r'val2017/000000000003.jpg: image file not found'):
    convert('coco', str(tmp_path / 'coco'), None, splits=['val'])


def test_truncated_json_names_the_file_and_position(tmp_path):
  paths = _write_coco(tmp_path / 'coco')
  text = paths['val2017'].read_text()
  paths['val2017'].write_text(text[:200])
  with pytest.raises(ValueError, match=r'instances_val2017.json is not valid JSON \(truncated '
                                       r'or corrupt\): .* at line 1, column \d+ \(character '
                                       r'\d+\)'):
    convert('coco', str(tmp_path / 'coco'), str(tmp_path / 'out'))
  assert not os.path.exists(tmp_path / 'out')


def test_wrong_category_ids_are_refused(tmp_path):
  paths = _write_coco(tmp_path / 'coco')
  instances = json.loads(paths['val2017'].read_text())
  instances['categories'][0]['name'] = 'bicycle'  # Id 1 is person in COCO 2017.
  paths['val2017'].write_text(json.dumps(instances))
  with pytest.raises(ValueError, match="category 1 is 'bicycle', not 'person'"):
    convert('coco', str(tmp_path / 'coco'), None, splits=['val'])


def test_missing_pycocotools_names_the_extra(tmp_path, monkeypatch):
  _write_coco(tmp_path / 'coco')
  monkeypatch.setitem(sys.modules, 'pycocotools', None)
  with pytest.raises(ImportError, match=r'pip install deeplab\[coco\]'):
    convert('coco', str(tmp_path / 'coco'), str(tmp_path / 'out'))


def test_command_line(tmp_path):
  _write_coco(tmp_path / 'coco')
  result = subprocess.run(
      [sys.executable, '-c', 'from deeplab.tools.convert import run; run()', '--dataset=coco',
       f'--data_dir={tmp_path / "coco"}', f'--output_dir={tmp_path / "out"}', '--skip_empty',
       '--num_shards=1'], capture_output=True, text=True, timeout=300,
      env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})
  assert result.returncode == 0, result.stderr
  assert 'coco_voc, 21 classes, ignore label 255' in result.stdout
  assert 'train: 1 examples' in result.stdout and 'val: 1 examples' in result.stdout
  assert _shards(tmp_path / 'out') == ['train-00000-of-00001.tfrecord',
                                       'val-00000-of-00001.tfrecord']
