import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import pipeline, png, schema

NUM_CLASSES = 4


def _example(index: int, height: int, width: int, label=True, label_bytes=None):
  rng = np.random.default_rng(index)
  image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  labels = rng.integers(0, NUM_CLASSES, (height, width)).astype(np.uint8)
  labels[0, 0] = 255
  if label_bytes is None and label:
    label_bytes = png.encode_label_png(labels)
  encoded = tf.io.encode_png(image).numpy()
  return schema.make_example(encoded, 'png', f'image_{index}', height, width,
                             label_bytes).SerializeToString()


def _write(directory, split, examples_per_shard):
  """Shards `<split>-0000k-of-0000n.tfrecord` with examples numbered in order."""
  index = 0
  for shard, count in enumerate(examples_per_shard):
    path = directory / schema.shard_filename(split, shard, len(examples_per_shard))
    with tf.io.TFRecordWriter(str(path)) as writer:
      for _ in range(count):
        writer.write(_example(index, 20 + index % 5, 30 + 2 * (index % 3)))
        index += 1
  return str(directory / f'{split}-*')


@pytest.fixture
def train_pattern(tmp_path):
  return _write(tmp_path, 'train', [3, 3, 2, 2])


def _batches(dataset, count):
  iterator = iter(dataset)
  return [{k: v.numpy() for k, v in next(iterator).items()} for _ in range(count)]


def test_training_batches_are_fixed_size_crops_with_valid_ids(train_pattern):
  dataset = pipeline.build_dataset(train_pattern, training=True, batch_size=4,
                                   crop_size=(33, 41), num_classes=NUM_CLASSES)
  assert dataset.element_spec['images'].shape.as_list() == [4, 33, 41, 3]
  for batch in _batches(dataset, 4):  # More batches than examples: it repeats.
    assert batch['images'].dtype == np.float32 and batch['labels'].dtype == np.int32
    assert batch['labels'].shape == (4, 33, 41)
    assert 0 <= batch['images'].min() and batch['images'].max() <= 255
    assert set(np.unique(batch['labels'])) <= {0, 1, 2, 3, 255}


def test_a_seed_repeats_batches_and_cache_changes_nothing(train_pattern):
  def batches(seed, cache=False):
    return _batches(pipeline.build_dataset(train_pattern, training=True, batch_size=3,
                                           crop_size=(33, 33), seed=seed, cache=cache), 3)

  first, again, cached, other = batches(7), batches(7), batches(7, cache=True), batches(8)
  for a, b, c in zip(first, again, cached):
    np.testing.assert_array_equal(a['images'], b['images'])
    np.testing.assert_array_equal(a['labels'], c['labels'])
    np.testing.assert_array_equal(a['images'], c['images'])
  assert not np.array_equal(first[0]['images'], other[0]['images'])


def test_evaluation_keeps_order_and_pads_each_batch(train_pattern):
  batches = list(pipeline.build_dataset(train_pattern, training=False, batch_size=4,
                                        ignore_label=255))
  assert [len(b['filenames']) for b in batches] == [4, 4, 2]
  names = [n.decode() for b in batches for n in b['filenames'].numpy()]
  assert names == [f'image_{i}' for i in range(10)]
  batch = batches[0]
  heights, widths = batch['heights'].numpy(), batch['widths'].numpy()
  assert heights.tolist() == [20, 21, 22, 23] and widths.tolist() == [30, 32, 34, 30]
  assert batch['images'].shape == (4, 23, 34, 3) and batch['labels'].shape == (4, 23, 34)
  np.testing.assert_array_equal(batch['images'][0, 20:], 127.5)
  np.testing.assert_array_equal(batch['labels'][0, :, 30:], 255)
  rng = np.random.default_rng(0)
  expected_image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
  np.testing.assert_array_equal(batch['images'][0, :20, :30], expected_image)


def test_unlabelled_records_get_ignore_labels_but_cannot_train(tmp_path):
  with tf.io.TFRecordWriter(str(tmp_path / 'test-00000-of-00001.tfrecord')) as writer:
    writer.write(_example(0, 12, 14, label=False))
  pattern = str(tmp_path / 'test-*')
  batch = next(iter(pipeline.build_dataset(pattern, training=False, batch_size=1,
                                           ignore_label=0)))
  assert batch['labels'].shape == (1, 12, 14)
  assert np.all(batch['labels'].numpy() == 0)
  with pytest.raises(tf.errors.InvalidArgumentError, match='image_0.*has no label'):
    next(iter(pipeline.build_dataset(pattern, training=True, batch_size=1,
                                     crop_size=(33, 33))))


def test_labels_outside_the_classes_stop_the_pipeline_naming_the_record(train_pattern):
  dataset = pipeline.build_dataset(train_pattern, training=False, batch_size=2, num_classes=3)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r'image_0.*outside \[0, 3\).*ignore label 255'):
    list(dataset)
  training = pipeline.build_dataset(train_pattern, training=True, batch_size=2,
                                    crop_size=(33, 33), num_classes=3)
  with pytest.raises(tf.errors.InvalidArgumentError, match='outside'):
    next(iter(training))


def test_colour_label_pngs_in_records_are_refused(tmp_path):
  rgb_label = tf.io.encode_png(np.zeros([12, 14, 3], np.uint8)).numpy()
  with tf.io.TFRecordWriter(str(tmp_path / 'val-00000-of-00001.tfrecord')) as writer:
    writer.write(_example(0, 12, 14, label_bytes=rgb_label))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='image_0.*not an 8-bit grayscale PNG'):
    list(pipeline.build_dataset(str(tmp_path / 'val-*'), training=False, batch_size=1))


def test_records_of_the_official_scripts_load(tmp_path):
  """The official writer's records: JPEG image, no channels/format fields needed."""
  image = np.full([17, 19, 3], 200, np.uint8)
  labels = np.ones([17, 19], np.uint8)
  features = {
      schema.IMAGE_ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[tf.io.encode_jpeg(image).numpy()])),
      schema.IMAGE_FILENAME: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'x'])),
      schema.IMAGE_HEIGHT: tf.train.Feature(int64_list=tf.train.Int64List(value=[17])),
      schema.IMAGE_WIDTH: tf.train.Feature(int64_list=tf.train.Int64List(value=[19])),
      schema.LABEL_ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[png.encode_label_png(labels)])),
  }
  record = tf.train.Example(features=tf.train.Features(feature=features))
  with tf.io.TFRecordWriter(str(tmp_path / 'val-00000-of-00001.tfrecord')) as writer:
    writer.write(record.SerializeToString())
  batch = next(iter(pipeline.build_dataset(str(tmp_path / 'val-*'), training=False,
                                           batch_size=1, num_classes=2)))
  assert batch['filenames'].numpy().tolist() == [b'x']
  assert np.all(batch['labels'].numpy() == 1)
  assert abs(float(batch['images'].numpy().mean()) - 200) < 2


def test_missing_files_name_the_pattern(tmp_path):
  pattern = str(tmp_path / 'train-*')
  with pytest.raises(FileNotFoundError, match=f'No files match {pattern}.*deeplab-convert'):
    pipeline.build_dataset(pattern, training=True, batch_size=2)


def _worker_filenames(pattern, num_workers, training):
  names = []
  for worker in range(num_workers):
    context = tf.distribute.InputContext(num_input_pipelines=num_workers,
                                         input_pipeline_id=worker,
                                         num_replicas_in_sync=num_workers)
    dataset = pipeline.build_dataset(pattern, training=training, batch_size=2 * num_workers,
                                     input_context=context)
    if training:
      assert dataset.element_spec['images'].shape[0] == 2  # The per-replica batch.
      continue
    names.append([n.decode() for b in dataset for n in b['filenames'].numpy()])
  return names


def test_workers_share_files_or_records(tmp_path, train_pattern):
  by_file = _worker_filenames(train_pattern, 2, training=False)
  assert by_file == [[f'image_{i}' for i in (0, 1, 2, 6, 7)],
                     [f'image_{i}' for i in (3, 4, 5, 8, 9)]]
  _worker_filenames(train_pattern, 2, training=True)
  one_file = _write(tmp_path, 'val', [5])
  by_record = _worker_filenames(one_file, 2, training=False)
  assert by_record == [['image_0', 'image_2', 'image_4'], ['image_1', 'image_3']]


def test_measure_throughput_counts_images(train_pattern):
  dataset = pipeline.build_dataset(train_pattern, training=True, batch_size=2,
                                   crop_size=(33, 33))
  result = pipeline.measure_throughput(dataset, num_batches=3, warmup_batches=1)
  assert result.num_images == 6 and result.num_batches == 3
  assert result.images_per_second > 0
  finite = pipeline.build_dataset(train_pattern, training=False, batch_size=4)
  assert pipeline.measure_throughput(finite, num_batches=10, warmup_batches=1).num_batches == 2
