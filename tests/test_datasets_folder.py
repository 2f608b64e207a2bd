"""The folder converter and the shared checks and writer every converter uses."""

import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import png, tfds
from deeplab.data.colormaps import get_colormap
from deeplab.datasets import core
from deeplab.datasets.convert import convert
from deeplab.datasets.core import DatasetError


def _write_pair(root, name, labels, image=None, mask_bytes=None):
  (root / 'images' / name).parent.mkdir(parents=True, exist_ok=True)
  (root / 'masks' / name).parent.mkdir(parents=True, exist_ok=True)
  if image is None:
    image = np.full(labels.shape + (3,), 40, np.uint8)
  tf.io.write_file(str(root / 'images' / f'{name}.jpg'), tf.io.encode_jpeg(image))
  (root / 'masks' / f'{name}.png').write_bytes(
      png.encode_label_png(labels) if mask_bytes is None else mask_bytes)


def _labels(value=1, shape=(12, 16)):
  labels = np.zeros(shape, np.uint8)
  labels[2:6, 3:9] = value
  labels[0, 0] = 255
  return labels


def _good_dataset(root, count=4):
  for index in range(count):
    _write_pair(root, f'good_{index}', _labels(index % 3))
  return root


def _records(output_dir, split):
  return {e['image/filename'].numpy().decode(): e['segmentation_label'].numpy()[..., 0]
          for e in tfds.load(str(output_dir), split)}


def test_real_colour_coded_targets_convert_through_the_colormap(shared, tmp_path):
  source = shared('data', 'voc-samples-vainf')
  for sub in ('images', 'masks'):
    (tmp_path / 'data' / sub).mkdir(parents=True)
  for name in ('1', '23', '114'):
    os.symlink(source / f'{name}_image.png', tmp_path / 'data' / 'images' / f'{name}.png')
    os.symlink(source / f'{name}_target.png', tmp_path / 'data' / 'masks' / f'{name}.png')
  info = convert('folder', str(tmp_path / 'data'), str(tmp_path / 'out'), num_classes=21,
                 colormap='pascal')
  assert info.splits['train'].num_examples == 3 and info.colormap == 'pascal'
  records = _records(tmp_path / 'out', 'train')
  assert set(np.unique(records['23'])) == {0, 17, 255}
  rgb = tf.io.decode_png((source / '23_target.png').read_bytes(), channels=3).numpy()
  np.testing.assert_array_equal(get_colormap('pascal')[records['23']], rgb)


def test_split_folders_palette_masks_and_an_unlabelled_split(tmp_path):
  labels = _labels(7)
  palette_mask = png.encode_palette_png(labels, get_colormap('pascal'))
  _write_pair(tmp_path / 'data' / 'train', 'a', labels, mask_bytes=palette_mask)
  _write_pair(tmp_path / 'data' / 'val', 'sub/b', _labels(2))
  (tmp_path / 'data' / 'test' / 'images').mkdir(parents=True)
  tf.io.write_file(str(tmp_path / 'data' / 'test' / 'images' / 'c.jpg'),
                   tf.io.encode_jpeg(np.zeros([5, 6, 3], np.uint8)))
  info = convert('folder', str(tmp_path / 'data'), str(tmp_path / 'out'), num_classes=8,
                 class_names=[str(i) for i in range(8)], name='mine')
  assert (info.name, sorted(info.splits)) == ('mine', ['test', 'train', 'val'])
  np.testing.assert_array_equal(_records(tmp_path / 'out', 'train')['a'], labels)
  assert list(_records(tmp_path / 'out', 'val')) == ['sub/b']
  assert np.all(_records(tmp_path / 'out', 'test')['c'] == 255)


def _bad_dataset(root):
  """Good pairs plus one of each bad input; returns {file name: expected message}."""
  _good_dataset(root)
  _write_pair(root, 'size', np.zeros([10, 16], np.uint8), image=np.zeros([12, 16, 3],
                                                                         np.uint8))
  _write_pair(root, 'rgb', _labels(), mask_bytes=tf.io.encode_png(
      np.zeros([12, 16, 3], np.uint8)).numpy())
  _write_pair(root, 'range', _labels(9))
  _write_pair(root, 'jpeg_mask', _labels(), mask_bytes=tf.io.encode_jpeg(
      np.zeros([12, 16, 3], np.uint8)).numpy())
  _write_pair(root, 'truncated', _labels())
  image = (root / 'images' / 'truncated.jpg').read_bytes()
  (root / 'images' / 'truncated.jpg').write_bytes(image[:len(image) // 2])
  _write_pair(root, 'cut_mask', _labels(), mask_bytes=png.encode_label_png(_labels())[:-30])
  _write_pair(root, 'no_mask', _labels())
  os.remove(root / 'masks' / 'no_mask.png')
  (root / 'masks' / 'no_image.png').write_bytes(png.encode_label_png(_labels()))
  return {
      'masks/size.png': r'label size \[10, 16\] differs from the image size \[12, 16\]',
      'masks/rgb.png': 'RGB PNG where a single-channel PNG of class ids was expected; '
                       'colour-coded masks need a colormap',
      'masks/range.png': r'label ids 9 are outside \[0, 3\) and are not the ignore label 255',
      'masks/jpeg_mask.png': 'not a PNG file',
      'images/truncated.jpg': 'unreadable or truncated image',
      'masks/cut_mask.png': 'truncated PNG',
      'images/no_mask.jpg': 'no mask no_mask.png',
      'masks/no_image.png': 'mask without an image',
  }


def test_every_bad_file_is_reported_by_name_and_nothing_is_written(tmp_path):
  expected = _bad_dataset(tmp_path / 'data')
  with pytest.raises(DatasetError) as error:
    convert('folder', str(tmp_path / 'data'), str(tmp_path / 'out'), num_classes=3)
  assert len(error.value.problems) == len(expected)
  for name, message in expected.items():
    problem = next(p for p in error.value.problems if p.path.endswith(name))
    assert tf.strings.regex_full_match(problem.message, f'.*{message}.*'), (name, problem)
  assert 'skip_bad' in str(error.value)
  assert os.listdir(tmp_path / 'out') == []


def test_check_only_reports_the_same_and_writes_nothing(tmp_path):
  expected = _bad_dataset(tmp_path / 'data')
  with pytest.raises(DatasetError) as error:
    convert('folder', str(tmp_path / 'data'), None, num_classes=3)
  assert len(error.value.problems) == len(expected)
  info = convert('folder', str(_good_dataset(tmp_path / 'good')), None, num_classes=3)
  assert info.splits['train'].num_examples == 4
  assert sorted(os.listdir(tmp_path)) == ['data', 'good']


def test_skip_bad_writes_the_good_examples_and_lists_the_rest(tmp_path):
  expected = _bad_dataset(tmp_path / 'data')
  info = convert('folder', str(tmp_path / 'data'), str(tmp_path / 'out'), num_classes=3,
                 skip_bad=True, num_shards=3)
  split = info.splits['train']
  assert split.num_examples == 4
  assert sorted(os.path.relpath(p, tmp_path / 'data') for p in split.skipped) == sorted(
      expected)
  assert sorted(_records(tmp_path / 'out', 'train')) == [f'good_{i}' for i in range(4)]
  assert sorted(os.listdir(tmp_path / 'out')) == ['dataset_info.json'] + [
      f'train-0000{i}-of-00003.tfrecord' for i in range(3)]


def test_an_interrupted_conversion_leaves_the_previous_shards(tmp_path, monkeypatch):
  data = _good_dataset(tmp_path / 'data', count=6)
  convert('folder', str(data), str(tmp_path / 'out'), num_classes=3, num_shards=2)
  before = {f: (tmp_path / 'out' / f).read_bytes() for f in os.listdir(tmp_path / 'out')}
  _write_pair(data, 'good_6', _labels(1))
  calls = []
  process = core._process

  def interrupted(example, source):
    calls.append(example)
    if len(calls) == 5:
      raise KeyboardInterrupt
    return process(example, source)

  monkeypatch.setattr(core, '_process', interrupted)
  with pytest.raises(KeyboardInterrupt):
    convert('folder', str(data), str(tmp_path / 'out'), num_classes=3, num_shards=2,
            num_workers=1)
  after = {f: (tmp_path / 'out' / f).read_bytes() for f in os.listdir(tmp_path / 'out')}
  assert after == before


def test_reconverting_replaces_old_shards_and_stale_temporaries(tmp_path):
  data = _good_dataset(tmp_path / 'data', count=5)
  out = tmp_path / 'out'
  convert('folder', str(data), str(out), num_classes=3, num_shards=4)
  (out / '.tmp-train-00000-of-00002.tfrecord').write_bytes(b'left by a killed run')
  info = convert('folder', str(data), str(out), num_classes=3, num_shards=2)
  assert sorted(os.listdir(out)) == ['dataset_info.json', 'train-00000-of-00002.tfrecord',
                                     'train-00001-of-00002.tfrecord']
  assert info.splits['train'].num_examples == 5
  assert len(_records(out, 'train')) == 5


def test_options_are_checked_against_the_dataset(tmp_path):
  data = str(_good_dataset(tmp_path / 'data'))
  with pytest.raises(ValueError, match=r'folder needs num_classes \(--num_classes\)'):
    convert('folder', data, None)
  with pytest.raises(ValueError, match='sbd_dir do not apply to dataset folder'):
    convert('folder', data, None, num_classes=3, sbd_dir='x')
  with pytest.raises(ValueError, match='Unknown dataset'):
    convert('imagenet', data, None)
  with pytest.raises(ValueError, match="No split 'val'"):
    convert('folder', str(tmp_path), None, num_classes=3, splits=['val'])
