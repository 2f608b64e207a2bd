"""Cityscapes, fine and coarse, on mini datasets in the exact layouts: extracted folders,
the downloaded zips (TFDS's manual_dir) and a mix of both."""

import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import png, tfds
from deeplab.datasets import cityscapes
from deeplab.datasets.convert import convert
from deeplab.datasets.core import DatasetError

# (labelId, trainId) pairs covering classes, ignored ids and both ends of the table.
ID_PAIRS = [(0, 255), (7, 0), (8, 1), (11, 2), (17, 5), (24, 11), (26, 13), (33, 18), (4, 255)]
IMAGES = {'train': [('aachen', 0), ('aachen', 1), ('bochum', 0)], 'val': [('lindau', 0)],
          'test': [('berlin', 0)]}
EXTRA_IMAGES = [('augsburg', 0), ('bad-honnef', 3)]


def _files(suffix_for_labels='_gtFine_labelIds.png'):
  """{relative path: bytes} of a mini Cityscapes: 16x32 images, labels of ID_PAIRS ids."""
  files = {}
  for split, images in IMAGES.items():
    for number, (city, frame) in enumerate(images):
      base = f'{city}_{number:06d}_{frame:06d}'
      image = np.full([16, 32, 3], 10 * number, np.uint8)
      files[f'leftImg8bit/{split}/{city}/{base}_leftImg8bit.png'] = tf.io.encode_png(
          image).numpy()
      label_ids = np.array([p[0] for p in ID_PAIRS], np.uint8)[
          np.arange(16 * 32).reshape(16, 32) % len(ID_PAIRS)]
      if suffix_for_labels.endswith('TrainIds.png'):
        label_ids = cityscapes.label_ids_to_train_ids(label_ids)
      files[f'gtFine/{split}/{city}/{base}{suffix_for_labels}'] = png.encode_label_png(label_ids)
  return files


def _expected_train_ids():
  return np.array([p[1] for p in ID_PAIRS], np.uint8)[
      np.arange(16 * 32).reshape(16, 32) % len(ID_PAIRS)]


def _coarse_files():
  """{relative path: bytes} of train_extra images and gtCoarse labels of every labelled
  image; coarse labels are the fine pattern shifted by one column, to tell them apart."""
  files = {}
  coarse_ids = np.roll(np.array([p[0] for p in ID_PAIRS], np.uint8)[
      np.arange(16 * 32).reshape(16, 32) % len(ID_PAIRS)], 1, axis=1)
  for split, images in {**IMAGES, 'train_extra': EXTRA_IMAGES}.items():
    if split == 'test':
      continue
    for number, (city, frame) in enumerate(images):
      base = f'{city}_{number:06d}_{frame:06d}'
      if split == 'train_extra':
        files[f'leftImg8bit/{split}/{city}/{base}_leftImg8bit.png'] = tf.io.encode_png(
            np.full([16, 32, 3], 7, np.uint8)).numpy()
      files[f'gtCoarse/{split}/{city}/{base}_gtCoarse_labelIds.png'] = png.encode_label_png(
          coarse_ids)
  return files


def _expected_coarse_train_ids():
  return np.roll(_expected_train_ids(), 1, axis=1)


def _write_folders(root, files):
  for relative, data in files.items():
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _zip_of(relative):
  """The downloaded zip that holds a file of the dataset."""
  if relative.startswith('leftImg8bit/train_extra/'):
    return cityscapes.EXTRA_IMAGE_ZIP
  return {'leftImg8bit': cityscapes.IMAGE_ZIP, 'gtFine': cityscapes.LABEL_ZIP,
          'gtCoarse': cityscapes.COARSE_LABEL_ZIP}[relative.split('/')[0]]


def _write_zips(root, files):
  root.mkdir(parents=True, exist_ok=True)
  zips = {}
  for relative, data in files.items():
    name = _zip_of(relative)
    if name not in zips:
      zips[name] = zipfile.ZipFile(root / name, 'w')
      zips[name].writestr('README', 'not an image')
    zips[name].writestr(relative, data)
  for archive in zips.values():
    archive.close()


def _records(output_dir, split):
  return {e['image/filename'].numpy().decode(): e['segmentation_label'].numpy()[..., 0]
          for e in tfds.load(str(output_dir), split)}


@pytest.mark.parametrize('layout', ['folders', 'zips'])
def test_label_ids_become_train_ids(tmp_path, layout):
  source = tmp_path / 'cityscapes'
  (_write_folders if layout == 'folders' else _write_zips)(source, _files())
  info = convert('cityscapes', str(source), str(tmp_path / 'out'), num_workers=2)
  assert {s: i.num_examples for s, i in info.splits.items()} == {'train_fine': 3,
                                                                 'val_fine': 1}
  assert sorted(f for f in os.listdir(tmp_path / 'out') if f.startswith('train')) == [
      f'train_fine-0000{i}-of-00003.tfrecord' for i in range(3)]
  records = _records(tmp_path / 'out', 'train_fine')
  assert list(records) == ['aachen_000000_000000', 'aachen_000001_000001',
                           'bochum_000002_000000']
  for labels in records.values():
    np.testing.assert_array_equal(labels, _expected_train_ids())
  assert info.num_classes == 19 and info.splits['val_fine'].class_pixel_counts[13] > 0


def test_label_train_ids_files_are_used_as_they_are(tmp_path):
  _write_folders(tmp_path / 'cs', _files('_gtFine_labelTrainIds.png'))
  convert('cityscapes', str(tmp_path / 'cs'), str(tmp_path / 'out'), splits=['val_fine'])
  np.testing.assert_array_equal(_records(tmp_path / 'out', 'val_fine')['lindau_000000_000000'],
                                _expected_train_ids())


def test_test_split_has_no_labels(tmp_path):
  _write_folders(tmp_path / 'cs', _files())
  info = convert('cityscapes', str(tmp_path / 'cs'), str(tmp_path / 'out'),
                 splits=['test_fine'])
  assert info.splits['test_fine'].num_examples == 1
  assert np.all(_records(tmp_path / 'out', 'test_fine')['berlin_000000_000000'] == 255)


def test_missing_and_unknown_labels_are_reported(tmp_path):
  files = _files()
  del files['gtFine/train/aachen/aachen_000001_000001_gtFine_labelIds.png']
  files['gtFine/train/bochum/bochum_000002_000000_gtFine_labelIds.png'] = png.encode_label_png(
      np.full([16, 32], 40, np.uint8))
  _write_folders(tmp_path / 'cs', files)
  with pytest.raises(DatasetError) as error:
    convert('cityscapes', str(tmp_path / 'cs'), str(tmp_path / 'out'), splits=['train_fine'])
  message = str(error.value)
  assert 'aachen_000001_000001_leftImg8bit.png: no label' in message
  assert 'bochum_000002_000000_gtFine_labelIds.png: label: values [40] are not' in message
  assert not [f for f in os.listdir(tmp_path / 'out') if 'train_fine' in f]


def test_tfds_cityscapes_from_manual_dir_zips(tmp_path):
  """TFDS prepares from the zips (never downloading); its labelIds become trainIds."""
  files = {}
  label_ids = np.zeros([1024, 2048], np.uint8)
  label_ids[:, 1024:] = 26
  label_ids[:10] = 33
  for split, city in (('train', 'aachen'), ('val', 'lindau'), ('test', 'berlin')):
    base = f'{city}_000000_000019'
    files[f'leftImg8bit/{split}/{city}/{base}_leftImg8bit.png'] = tf.io.encode_png(
        np.zeros([1024, 2048, 3], np.uint8)).numpy()
    files[f'gtFine/{split}/{city}/{base}_gtFine_labelIds.png'] = png.encode_label_png(label_ids)
  _write_zips(tmp_path / 'manual', files)
  dataset = tfds.load_cityscapes('validation', manual_dir=str(tmp_path / 'manual'),
                                 data_dir=str(tmp_path / 'tfds'))
  example = next(iter(dataset))
  assert example['image_id'].numpy() == b'lindau_000000_000019'
  assert example['image'].shape == (1024, 2048, 3)
  np.testing.assert_array_equal(example['label'].numpy(),
                                cityscapes.label_ids_to_train_ids(label_ids))


@pytest.mark.parametrize('layout', ['folders', 'zips'])
def test_coarse_data_adds_the_fine_plus_coarse_split(tmp_path, layout):
  source = tmp_path / 'cityscapes'
  (_write_folders if layout == 'folders' else _write_zips)(source, {**_files(),
                                                                   **_coarse_files()})
  info = convert('cityscapes', str(source), str(tmp_path / 'out'), num_workers=2)
  assert {s: i.num_examples for s, i in info.splits.items()} == {
      'train_fine': 3, 'val_fine': 1, 'train_fine_coarse': 5}
  records = _records(tmp_path / 'out', 'train_fine_coarse')
  assert list(records) == ['aachen_000000_000000', 'aachen_000001_000001',
                           'bochum_000002_000000', 'augsburg_000000_000000',
                           'bad-honnef_000001_000003']
  for name, labels in records.items():
    expected = (_expected_coarse_train_ids() if name.startswith(('augsburg', 'bad-honnef'))
                else _expected_train_ids())
    np.testing.assert_array_equal(labels, expected, err_msg=name)


def test_coarse_splits_from_zipped_fine_and_extracted_coarse_data(tmp_path):
  _write_zips(tmp_path / 'cs', _files())
  _write_folders(tmp_path / 'cs', _coarse_files())
  info = convert('cityscapes', str(tmp_path / 'cs'), str(tmp_path / 'out'),
                 splits=['train_extra', 'train_coarse', 'trainval_coarse', 'trainval_fine'],
                 num_shards=2)
  assert {s: i.num_examples for s, i in info.splits.items()} == {
      'train_extra': 2, 'train_coarse': 5, 'trainval_coarse': 6, 'trainval_fine': 4}
  records = _records(tmp_path / 'out', 'trainval_coarse')
  assert sorted(records) == sorted(
      ['aachen_000000_000000', 'aachen_000001_000001', 'bochum_000002_000000',
       'lindau_000000_000000', 'augsburg_000000_000000', 'bad-honnef_000001_000003'])
  for name, labels in records.items():  # Coarse labels even where fine ones exist.
    np.testing.assert_array_equal(labels, _expected_coarse_train_ids(), err_msg=name)
  for name, labels in _records(tmp_path / 'out', 'trainval_fine').items():
    np.testing.assert_array_equal(labels, _expected_train_ids(), err_msg=name)


def test_a_coarse_split_without_coarse_labels_names_the_missing_zip(tmp_path):
  files = {**_files(), **_coarse_files()}
  _write_folders(tmp_path / 'cs', {k: v for k, v in files.items()
                                   if not k.startswith('gtCoarse/train_extra/')})
  info = convert('cityscapes', str(tmp_path / 'cs'), None)  # No coarse default split.
  assert sorted(info.splits) == ['train_fine', 'val_fine']
  with pytest.raises(FileNotFoundError, match='no files in gtCoarse/train_extra/: extract '
                     'gtCoarse.zip'):
    convert('cityscapes', str(tmp_path / 'cs'), str(tmp_path / 'out'),
            splits=['train_fine_coarse'])
  assert not os.path.exists(tmp_path / 'out')
