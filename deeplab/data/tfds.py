"""tensorflow-datasets interop: converted data in TFDS style, Cityscapes from TFDS.

- `load` reads a directory written by `deeplab-convert` the way `tfds.load` reads a
  TFDS dataset: examples as dicts of decoded features, optionally with the info.
- `load_cityscapes` prepares TFDS's `cityscapes/semantic_segmentation` from the zips
  in its manual_dir (TFDS never downloads here) and maps its labels, which are raw
  labelIds 0..33, to the 19 trainIds (255 = ignored) that models train on.

Example:
  >>> dataset, info = load('demo_output/data', 'val', with_info=True)  # doctest: +SKIP
  >>> example = next(iter(dataset))  # doctest: +SKIP
  >>> example['image'].dtype, example['segmentation_label'].shape[-1], info.num_classes  # doctest: +SKIP
  (tf.uint8, 1, 5)
"""

import os
from typing import Optional

import tensorflow as tf

from deeplab.data import info as info_lib
from deeplab.data import pipeline, schema

_CITYSCAPES_BUILDER = 'cityscapes/semantic_segmentation'


def load(dataset_dir: str, split: str, with_info: bool = False, shuffle_files: bool = False):
  """Decoded examples of a converted split, in TFDS feature names.

  Args:
    dataset_dir: directory written by `deeplab-convert`.
    split: split name, e.g. 'val'.
    with_info: also return the `DatasetInfo` of `dataset_info.json`.
    shuffle_files: read the shards in a random order.

  Returns:
    tf.data.Dataset of {'image': uint8 [H, W, 3], 'segmentation_label': uint8
    [H, W, 1], 'image/filename': string}, and the info if `with_info`. Label ids
    are checked against the info's classes when the info file is present.
  """
  has_info = os.path.exists(os.path.join(dataset_dir, info_lib.INFO_FILENAME))
  info = info_lib.read_dataset_info(dataset_dir) if has_info or with_info else None
  files = tf.data.Dataset.from_tensor_slices(
      pipeline.list_files(schema.split_file_pattern(dataset_dir, split)))
  if shuffle_files:
    files = files.shuffle(1000)

  # Graph-safe: AutoGraph would only cost tracing time.
  @tf.autograph.experimental.do_not_convert
  def decode(serialized):
    example = pipeline.decode_record(
        serialized, ignore_label=info.ignore_label if info else 255,
        num_classes=info.num_classes if info else None)
    return {'image': example['image'], 'segmentation_label': example['label'][..., None],
            'image/filename': example['filename']}

  dataset = files.flat_map(tf.data.TFRecordDataset).map(decode,
                                                        num_parallel_calls=tf.data.AUTOTUNE)
  return (dataset, info) if with_info else dataset


def cityscapes_train_ids(label_ids: tf.Tensor) -> tf.Tensor:
  """Maps Cityscapes labelIds (any integer dtype, any shape) to uint8 trainIds.

  Raises InvalidArgumentError (when run) for values above 33, which are not labelIds.
  """
  label_ids = tf.cast(label_ids, tf.int32)
  check = tf.debugging.assert_less(label_ids, len(info_lib.CITYSCAPES_TRAIN_IDS),
                                   message='Cityscapes labelIds must be in 0..33')
  with tf.control_dependencies([check]):
    return tf.gather(tf.constant(info_lib.CITYSCAPES_TRAIN_IDS, tf.uint8), label_ids)


def load_cityscapes(split: str, manual_dir: str, data_dir: Optional[str] = None):
  """Cityscapes fine from TFDS, labels as trainIds.

  Args:
    split: a TFDS split: 'train', 'validation' or 'test' (slicing allowed).
    manual_dir: folder holding leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip.
    data_dir: where TFDS keeps the prepared dataset (TFDS's default if None).

  Returns:
    tf.data.Dataset of {'image': uint8 [1024, 2048, 3], 'label': uint8 [1024, 2048]
    trainIds, 'image_id': string}.
  """
  import tensorflow_datasets as tfds  # Imported here: it is slow to import.

  builder = tfds.builder(_CITYSCAPES_BUILDER, data_dir=data_dir)
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, try_download_gcs=False))

  # Graph-safe: AutoGraph would only cost tracing time.
  @tf.autograph.experimental.do_not_convert
  def to_train_ids(example):
    return {'image': example['image_left'],
            'label': cityscapes_train_ids(example['segmentation_label'][..., 0]),
            'image_id': example['image_id']}

  return builder.as_dataset(split=split).map(to_train_ids,
                                             num_parallel_calls=tf.data.AUTOTUNE)

