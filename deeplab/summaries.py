"""TensorBoard summaries written without the `tensorboard` package.

`tf.summary.scalar` and `tf.summary.image` import `tensorboard`, which is not a
dependency; `tf.summary.write` with the metadata TensorBoard's plugins read gives
the same event records.

Example:
  >>> import tempfile
  >>> with tf.summary.create_file_writer(tempfile.mkdtemp()).as_default(step=1):
  ...   write_scalar('loss', 0.5)
"""

from typing import Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2


def _metadata(plugin_name: str) -> summary_pb2.SummaryMetadata:
  return summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name=plugin_name))


def write_scalar(name: str, value: float) -> None:
  """A TensorBoard scalar in the default summary writer, at its default step."""
  tf.summary.write(name, tf.constant(value, tf.float32), metadata=_metadata('scalars'))


def write_images(name: str, images: Sequence[np.ndarray]) -> None:
  """TensorBoard images (uint8 [H, W, 3] each, of one size) at the default step."""
  height, width = images[0].shape[:2]
  encoded = [tf.io.encode_png(image) for image in images]
  tf.summary.write(name, tf.stack([tf.constant(str(width)), tf.constant(str(height))] + encoded),
                   metadata=_metadata('images'))
