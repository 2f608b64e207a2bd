"""The TFRecord format of the official DeepLab conversion scripts: keys and shard names.

Records written by `deeplab-convert` and by the official `build_*_data.py` scripts
are interchangeable: one `tf.train.Example` per image with the encoded image, its
name, size, and a single-channel PNG of class ids (absent for test splits).

Example:
  >>> example = make_example(b'<jpeg bytes>', 'jpeg', '2007_000032', 281, 500, b'<png>')
  >>> shard_filename('train', 0, 4)
  'train-00000-of-00004.tfrecord'
"""

import re
from typing import Dict, Optional

import tensorflow as tf

IMAGE_ENCODED = 'image/encoded'
IMAGE_FILENAME = 'image/filename'
IMAGE_FORMAT = 'image/format'
IMAGE_HEIGHT = 'image/height'
IMAGE_WIDTH = 'image/width'
IMAGE_CHANNELS = 'image/channels'
LABEL_ENCODED = 'image/segmentation/class/encoded'
LABEL_FORMAT = 'image/segmentation/class/format'

# The reader's view: everything the official reader parses, with its defaults, so
# records from older scripts (no format fields) and test records (no label) load.
FEATURES = {
    IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=''),
    IMAGE_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=''),
    IMAGE_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value='jpeg'),
    IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    LABEL_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=''),
    LABEL_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value='png'),
}

_SHARD_RE = re.compile(r'^(?P<split>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$')


def _bytes(value: bytes) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value: int) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(image: bytes, image_format: str, filename: str, height: int, width: int,
                 label: Optional[bytes] = None) -> tf.train.Example:
  """One record: encoded image ('jpeg' or 'png') and, unless None, its label PNG."""
  features = {
      IMAGE_ENCODED: _bytes(image),
      IMAGE_FILENAME: _bytes(filename.encode('utf-8')),
      IMAGE_FORMAT: _bytes(image_format.encode('utf-8')),
      IMAGE_HEIGHT: _int64(height),
      IMAGE_WIDTH: _int64(width),
      IMAGE_CHANNELS: _int64(3),
  }
  if label is not None:
    features[LABEL_ENCODED] = _bytes(label)
    features[LABEL_FORMAT] = _bytes(b'png')
  return tf.train.Example(features=tf.train.Features(feature=features))


def parse_example(serialized: tf.Tensor) -> Dict[str, tf.Tensor]:
  """The features of one serialized record (graph-safe), keyed as in `FEATURES`."""
  return tf.io.parse_single_example(serialized, FEATURES)


def shard_filename(split: str, index: int, num_shards: int) -> str:
  """'<split>-<index:05d>-of-<num_shards:05d>.tfrecord', the official shard name."""
  return f'{split}-{index:05d}-of-{num_shards:05d}.tfrecord'


def is_shard_of(name: str, split: str) -> bool:
  """Whether a file name is a shard of `split` (any shard count)."""
  match = _SHARD_RE.match(name)
  return bool(match) and match.group('split') == split


def split_file_pattern(dataset_dir: str, split: str) -> str:
  """The glob the official reader uses for a split: '<dataset_dir>/<split>-*'."""
  return f'{dataset_dir.rstrip("/")}/{split}-*'
