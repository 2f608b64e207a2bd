import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import info as info_lib
from deeplab.data import png, schema, tfds


def _write_split(directory, labels_list):
  with tf.io.TFRecordWriter(str(directory / 'val-00000-of-00001.tfrecord')) as writer:
    for index, labels in enumerate(labels_list):
      image = tf.io.encode_png(np.full(labels.shape + (3,), index, np.uint8)).numpy()
      writer.write(schema.make_example(image, 'png', f'x{index}', *labels.shape,
                                       png.encode_label_png(labels)).SerializeToString())


def test_load_gives_tfds_style_features_and_the_info(tmp_path):
  labels = np.array([[0, 1, 255]], np.uint8)
  _write_split(tmp_path, [labels, labels])
  with pytest.raises(FileNotFoundError, match='dataset_info.json'):
    tfds.load(str(tmp_path), 'val', with_info=True)
  assert len(list(tfds.load(str(tmp_path), 'val'))) == 2
  info_lib.write_dataset_info(info_lib.DatasetInfo('tiny', 2), str(tmp_path))
  dataset, info = tfds.load(str(tmp_path), 'val', with_info=True)
  example = next(iter(dataset))
  assert info.name == 'tiny'
  assert example['image'].shape == (1, 3, 3) and example['image'].dtype == tf.uint8
  np.testing.assert_array_equal(example['segmentation_label'][..., 0], labels)
  assert example['image/filename'].numpy() == b'x0'


def test_load_checks_ids_against_the_info(tmp_path):
  _write_split(tmp_path, [np.array([[0, 5]], np.uint8)])
  info_lib.write_dataset_info(info_lib.DatasetInfo('tiny', 2), str(tmp_path))
  with pytest.raises(tf.errors.InvalidArgumentError, match=r'x0.*outside \[0, 2\)'):
    list(tfds.load(str(tmp_path), 'val'))


def test_cityscapes_train_ids():
  label_ids = tf.constant([[0, 7, 26], [33, 24, 15]], tf.uint8)
  np.testing.assert_array_equal(tfds.cityscapes_train_ids(label_ids),
                                [[255, 0, 13], [18, 11, 255]])
  with pytest.raises(tf.errors.InvalidArgumentError, match='0..33'):
    tfds.cityscapes_train_ids(tf.constant([34]))
