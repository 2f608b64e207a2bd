"""ADE20K on the real validation samples placed in the ADEChallengeData2016 layout."""

import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import png, tfds
from deeplab.datasets.convert import convert
from deeplab.datasets.core import DatasetError

NAMES = ['ADE_val_00000001', 'ADE_val_00000002', 'ADE_val_00000003']


@pytest.fixture
def ade20k_root(shared, tmp_path):
  samples = shared('data', 'ade20k-samples-sceneparsing')
  root = tmp_path / 'ADEChallengeData2016'
  for folder in ('images', 'annotations'):
    (root / folder / 'validation').mkdir(parents=True)
    (root / folder / 'training').mkdir(parents=True)
  for name in NAMES:
    os.symlink(samples / f'{name}.jpg', root / 'images' / 'validation' / f'{name}.jpg')
    os.symlink(samples / f'{name}.png', root / 'annotations' / 'validation' / f'{name}.png')
  os.symlink(samples / f'{NAMES[0]}.jpg', root / 'images' / 'training' / 'ADE_train_1.jpg')
  os.symlink(samples / f'{NAMES[0]}.png', root / 'annotations' / 'training' /
             'ADE_train_1.png')
  return root, samples


def test_real_samples_round_trip_with_class_0_ignored(ade20k_root, tmp_path):
  root, samples = ade20k_root
  info = convert('ade20k', str(tmp_path), str(tmp_path / 'out'))
  assert (info.num_classes, info.ignore_label) == (151, 0)
  assert {s: i.num_examples for s, i in info.splits.items()} == {'train': 1, 'val': 3}
  records = list(tfds.load(str(tmp_path / 'out'), 'val'))
  assert [r['image/filename'].numpy().decode() for r in records] == NAMES
  for name, record in zip(NAMES, records):
    np.testing.assert_array_equal(record['image'],
                                  tf.io.decode_jpeg((samples / f'{name}.jpg').read_bytes()))
    expected = png.decode_label_png((samples / f'{name}.png').read_bytes())
    np.testing.assert_array_equal(record['segmentation_label'][..., 0], expected)
  counts = info.splits['val'].class_pixel_counts
  assert len(counts) == 151 and counts[0] == info.splits['val'].ignored_pixels > 0
  del root


def test_a_missing_annotation_is_reported(ade20k_root, tmp_path):
  root, _ = ade20k_root
  os.remove(root / 'annotations' / 'validation' / f'{NAMES[1]}.png')
  with pytest.raises(DatasetError, match=f'{NAMES[1]}.jpg: no label .*{NAMES[1]}.png'):
    convert('ade20k', str(root), str(tmp_path / 'out'), splits=['val'])
