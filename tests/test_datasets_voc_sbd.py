"""VOC 2012 and SBD (train_aug): converters and the MAT v5 reader, on the real VOC
samples and on mini datasets written here in the exact layouts and formats."""

import os
import shutil
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import png, tfds
from deeplab.data.colormaps import get_colormap
from deeplab.datasets import matlab
from deeplab.datasets.convert import convert
from deeplab.datasets.core import DatasetError

MI_INT8, MI_UINT8, MI_INT32, MI_UINT32, MI_DOUBLE, MI_MATRIX, MI_COMPRESSED = (
    1, 2, 5, 6, 9, 14, 15)
CELL, STRUCT, SPARSE, DOUBLE, UINT8 = 1, 2, 5, 6, 9


def _element(kind: int, payload: bytes) -> bytes:
  return struct.pack('<II', kind, len(payload)) + payload + b'\0' * (-len(payload) % 8)


def _matrix(array_class: int, dims, body: bytes, name: str = '') -> bytes:
  flags = _element(MI_UINT32, struct.pack('<II', array_class, 0))
  return _element(MI_MATRIX, flags + _element(MI_INT32, np.array(dims, '<i4').tobytes()) +
                  _element(MI_INT8, name.encode()) + body)


def _uint8_array(array: np.ndarray) -> bytes:
  return _matrix(UINT8, array.shape, _element(MI_UINT8, array.tobytes(order='F')))


def _double_stored_as_uint8(array: np.ndarray) -> bytes:
  """MATLAB stores a double array of small integers as miUINT8 data."""
  return _matrix(DOUBLE, array.shape, _element(MI_UINT8, array.astype(np.uint8).tobytes('F')))


def _sparse() -> bytes:
  body = (_element(MI_INT32, np.array([0, 2], '<i4').tobytes()) +
          _element(MI_INT32, np.array([0, 1, 2], '<i4').tobytes()) +
          _element(MI_DOUBLE, np.array([1.0, 1.0], '<f8').tobytes()))
  return _matrix(SPARSE, [3, 2], body)


def _struct(name: str, fields: dict) -> bytes:
  width = 32
  field_length = struct.pack('<I', (4 << 16) | MI_INT32) + struct.pack('<i', width)
  names = b''.join(n.encode().ljust(width, b'\0') for n in fields)
  return _matrix(STRUCT, [1, 1], field_length + _element(MI_INT8, names) +
                 b''.join(fields.values()), name)


def write_sbd_mat(segmentation: np.ndarray, compressed: bool = True) -> bytes:
  """An SBD `cls/*.mat` file: struct GTcls with Boundaries, Segmentation, CategoriesPresent."""
  boundaries = _matrix(CELL, [2, 1], _sparse() + _sparse())
  variable = _struct('GTcls', {
      'Boundaries': boundaries,
      'Segmentation': _uint8_array(segmentation),
      'CategoriesPresent': _double_stored_as_uint8(np.unique(segmentation)[:, None]),
  })
  header = b'MATLAB 5.0 MAT-file, Platform: GLNXA64'.ljust(116, b' ')
  header += b'\0' * 8 + struct.pack('<H', 0x0100) + b'IM'
  if compressed:
    payload = zlib.compress(variable)
    return header + struct.pack('<II', MI_COMPRESSED, len(payload)) + payload
  return header + variable


@pytest.mark.parametrize('compressed', [True, False])
def test_sbd_segmentation_is_read_in_row_major_order(compressed):
  segmentation = np.random.default_rng(0).integers(0, 21, (5, 7)).astype(np.uint8)
  labels = matlab.sbd_segmentation(write_sbd_mat(segmentation, compressed))
  assert labels.dtype == np.uint8
  np.testing.assert_array_equal(labels, segmentation)


def test_other_fields_are_read_too():
  segmentation = np.array([[0, 3], [3, 15]], np.uint8)
  variables = matlab.read_mat(write_sbd_mat(segmentation))
  gt = variables['GTcls']
  assert gt['Boundaries'] == [None, None]  # Sparse matrices are skipped.
  np.testing.assert_array_equal(gt['CategoriesPresent'], [[0.0], [3.0], [15.0]])
  assert gt['CategoriesPresent'].dtype == np.float64


def test_bad_mat_files_are_explained():
  data = write_sbd_mat(np.zeros([4, 4], np.uint8))
  with pytest.raises(matlab.MatFileError, match='truncated'):
    matlab.sbd_segmentation(data[:-9])
  with pytest.raises(matlab.MatFileError, match='v7.3'):
    matlab.read_mat(b'MATLAB 7.3 MAT-file, Platform: x'.ljust(200, b'\0'))
  with pytest.raises(matlab.MatFileError, match='bad header'):
    matlab.read_mat(b'\0' * 200)
  other = _struct('other', {'Segmentation': _uint8_array(np.zeros([2, 2], np.uint8))})
  with pytest.raises(matlab.MatFileError, match='no GTcls.Segmentation'):
    matlab.sbd_segmentation(data[:128] + other)


def _records(output_dir, split):
  """{name: (image, label)} of a converted split, decoded."""
  return {e['image/filename'].numpy().decode(): (e['image'].numpy(),
                                                 e['segmentation_label'].numpy()[..., 0])
          for e in tfds.load(str(output_dir), split)}


def test_real_voc_samples_round_trip(shared, tmp_path):
  root = shared('data', 'voc2012-samples-datum')
  info = convert('voc2012', str(root), str(tmp_path), num_workers=2)
  assert {s: i.num_examples for s, i in info.splits.items()} == {'train': 2, 'val': 1}
  assert sorted(os.listdir(tmp_path)) == [
      'dataset_info.json', 'train-00000-of-00002.tfrecord', 'train-00001-of-00002.tfrecord',
      'val-00000-of-00001.tfrecord']
  records = _records(tmp_path, 'train')
  assert list(records) == ['2007_000033', '2007_000032']  # The order of train.txt.
  for name, (image, labels) in records.items():
    source_image = tf.io.decode_jpeg((root / 'JPEGImages' / f'{name}.jpg').read_bytes())
    np.testing.assert_array_equal(image, source_image)
    source = (root / 'SegmentationClass' / f'{name}.png').read_bytes()
    np.testing.assert_array_equal(labels, png.decode_label_png(source))
  assert set(np.unique(records['2007_000032'][1])) == {0, 1, 15, 255}
  counts = info.splits['train'].class_pixel_counts
  assert counts[1] > 0 and counts[15] > 0 and counts[2] == 0
  assert info.splits['train'].ignored_pixels > 0


def _write_voc(root, splits, labelled=None):
  """A VOCdevkit/VOC2012 tree: JPEGs, palette label PNGs, ImageSets/Segmentation lists."""
  voc = root / 'VOCdevkit' / 'VOC2012'
  for folder in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
    (voc / folder).mkdir(parents=True, exist_ok=True)
  labels = {}
  for split, ids in splits.items():
    (voc / 'ImageSets' / 'Segmentation' / f'{split}.txt').write_text('\n'.join(ids) + '\n')
    for index, image_id in enumerate(ids):
      rng = np.random.default_rng(list(image_id.encode()))
      image = rng.integers(0, 256, (21 + index, 30, 3), dtype=np.uint8)
      tf.io.write_file(str(voc / 'JPEGImages' / f'{image_id}.jpg'), tf.io.encode_jpeg(image))
      if labelled is None or split in labelled:
        ids_map = rng.integers(0, 21, image.shape[:2]).astype(np.uint8)
        ids_map[0] = 255
        labels[image_id] = ids_map
        (voc / 'SegmentationClass' / f'{image_id}.png').write_bytes(
            png.encode_palette_png(ids_map, get_colormap('pascal')))
  return voc, labels


def test_every_split_list_converts_and_test_has_no_labels(tmp_path):
  _, labels = _write_voc(tmp_path, {'train': ['a', 'b', 'c'], 'val': ['d'],
                                    'test': ['e', 'f']}, labelled={'train', 'val'})
  info = convert('voc2012', str(tmp_path), str(tmp_path / 'out'), num_shards=2)
  assert {s: i.num_examples for s, i in info.splits.items()} == {'test': 2, 'train': 3,
                                                                 'val': 1}
  for name, (_, ids) in _records(tmp_path / 'out', 'train').items():
    np.testing.assert_array_equal(ids, labels[name])
  test_records = _records(tmp_path / 'out', 'test')
  assert np.all(test_records['e'][1] == 255)  # No label: filled with the ignore label.


def test_a_missing_label_fails_the_split_naming_the_file(tmp_path):
  voc, _ = _write_voc(tmp_path, {'train': ['a', 'b'], 'val': ['c']})
  os.remove(voc / 'SegmentationClass' / 'b.png')
  with pytest.raises(DatasetError, match=r'SegmentationClass/b.png: missing file of train'):
    convert('voc2012', str(voc), str(tmp_path / 'out'), splits=['train'])
  assert not os.path.exists(tmp_path / 'out' / 'train-00000-of-00001.tfrecord')


def _write_sbd(root, labels):
  """benchmark_RELEASE/dataset: cls/*.mat, img/*.jpg, train.txt, val.txt."""
  dataset = root / 'benchmark_RELEASE' / 'dataset'
  (dataset / 'cls').mkdir(parents=True)
  (dataset / 'img').mkdir()
  for image_id, ids_map in labels.items():
    (dataset / 'cls' / f'{image_id}.mat').write_bytes(write_sbd_mat(ids_map))
    image = np.zeros(ids_map.shape + (3,), np.uint8)
    tf.io.write_file(str(dataset / 'img' / f'{image_id}.jpg'), tf.io.encode_jpeg(image))
  return dataset


def _sbd_labels(ids, height=21, width=30):
  return {i: np.random.default_rng(n).integers(0, 21, (height, width)).astype(np.uint8)
          for n, i in enumerate(ids)}


def test_train_aug_is_voc_train_and_sbd_minus_voc_val(tmp_path):
  voc, voc_labels = _write_voc(tmp_path, {'train': ['a', 'b'], 'val': ['c']})
  sbd_labels = _sbd_labels(['b', 'c', 'd', 'e'])
  dataset = _write_sbd(tmp_path, sbd_labels)
  (dataset / 'train.txt').write_text('b\nd\n')
  (dataset / 'val.txt').write_text('c\ne\n')
  info = convert('sbd', str(voc), str(tmp_path / 'out'),
                 sbd_dir=str(tmp_path / 'benchmark_RELEASE'))
  assert info.name == 'pascal_voc_seg' and info.splits['train_aug'].num_examples == 4
  records = _records(tmp_path / 'out', 'train_aug')
  assert sorted(records) == ['a', 'b', 'd', 'e']
  np.testing.assert_array_equal(records['b'][1], voc_labels['b'])  # VOC's own label wins.
  np.testing.assert_array_equal(records['d'][1], sbd_labels['d'])  # From the .mat file.
  assert records['e'][0].shape == (21, 30, 3)  # Image from SBD's img/.


def test_train_aug_from_segmentation_class_aug_pngs(tmp_path):
  voc, voc_labels = _write_voc(tmp_path, {'train': ['a'], 'val': ['b']})
  aug = tmp_path / 'SegmentationClassAug'
  aug.mkdir()
  aug_labels = _sbd_labels(['a', 'b', 'c'], height=21)
  for image_id, ids_map in aug_labels.items():
    (aug / f'{image_id}.png').write_bytes(png.encode_label_png(ids_map))
  shutil.copy(voc / 'JPEGImages' / 'a.jpg', voc / 'JPEGImages' / 'c.jpg')
  convert('train_aug', str(tmp_path), str(tmp_path / 'out'), sbd_dir=str(aug))
  records = _records(tmp_path / 'out', 'train_aug')
  assert sorted(records) == ['a', 'c']
  np.testing.assert_array_equal(records['c'][1], aug_labels['c'])
  np.testing.assert_array_equal(records['a'][1], voc_labels['a'])


def test_voc_and_train_aug_share_one_dataset_info(tmp_path):
  voc, _ = _write_voc(tmp_path, {'train': ['a'], 'val': ['b']})
  dataset = _write_sbd(tmp_path, _sbd_labels(['c']))
  convert('voc2012', str(voc), str(tmp_path / 'out'))
  info = convert('sbd', str(voc), str(tmp_path / 'out'), sbd_dir=str(dataset))
  assert sorted(info.splits) == ['train', 'train_aug', 'val']
  with pytest.raises(ValueError, match='needs sbd_dir'):
    convert('sbd', str(voc), str(tmp_path / 'out'))
