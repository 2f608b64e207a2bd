"""Training measurements: one train step (forward, backward, update) and the
training input pipeline.

Example:
  >>> from deeplab.benchmark.inference import BenchmarkConfig
  >>> config = BenchmarkConfig(backbone='mobilenet_v2', size=(65, 65), batch_size=2,
  ...                          runs=1, warmup=1)
  >>> measure_input_pipeline(config, num_images=4)['measurement']
  'input_pipeline'
"""

import os
import tempfile
from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf

from deeplab.benchmark.inference import BenchmarkConfig, nominal_cost, speed
from deeplab.benchmark.timing import Timing, time_calls
from deeplab.config import DataConfig, ExperimentConfig, RuntimeConfig
from deeplab.data import build_dataset, measure_throughput
from deeplab.data.schema import make_example
from deeplab.data.synthetic import generate_example
from deeplab.training.loop import build_train_step

# A backward pass costs about twice the forward's multiply-adds.
TRAIN_MACS_PER_FORWARD_MAC = 3
# PASCAL VOC's typical image: 500x375 JPEG.
VOC_IMAGE_SIZE = (375, 500)


def train_experiment(config: BenchmarkConfig) -> ExperimentConfig:
  """The experiment whose train step is timed: the official defaults, at
  `config`'s model, batch, crop, precision and XLA setting."""
  return ExperimentConfig(
      model=config.model_config(),
      train_data=DataConfig(batch_size=config.batch_size, crop_size=tuple(config.size)),
      runtime=RuntimeConfig(mixed_precision_dtype=config.precision, enable_xla=config.xla))


def measure_train_step(config: BenchmarkConfig,
                       ceiling_gflops: Optional[float] = None) -> Dict[str, Any]:
  """Seconds per optimizer step on in-memory batches of `config.size` crops.

  Uses the train step training runs (`deeplab.training`), so loss, weight decay,
  gradient multipliers and metrics are all included. Multiply-adds count
  `TRAIN_MACS_PER_FORWARD_MAC` times the forward pass.
  """
  experiment = train_experiment(config)
  step = build_train_step(experiment)
  images = tf.cast(tf.random.stateless_uniform(
      [config.batch_size, *config.size, 3], [0, 1], 0, 256, tf.int32), tf.float32)
  labels = tf.random.stateless_uniform([config.batch_size, *config.size], [0, 2], 0,
                                       config.num_classes, tf.int32)
  iterator = iter(tf.data.Dataset.from_tensors({'images': images, 'labels': labels}).repeat())

  def one_step():
    step(iterator, 1)
    return step.optimizer.iterations.numpy()

  timing = time_calls(one_step, config.runs, config.warmup)
  gmacs = TRAIN_MACS_PER_FORWARD_MAC * nominal_cost(config).multiply_adds / 1e9
  return {'measurement': 'train_step', 'batch_size': config.batch_size,
          'seconds': timing.as_dict(),
          **speed(gmacs, config.batch_size, timing.median, ceiling_gflops)}


def write_voc_like_records(directory: str, num_images: int = 16, seed: int = 0) -> str:
  """Writes `num_images` JPEG images of 500x375 with label PNGs as one TFRecord shard
  in the DeepLab schema; returns its file pattern."""
  path = os.path.join(directory, 'train-00000-of-00001.tfrecord')
  rng = np.random.default_rng(seed)
  height, width = VOC_IMAGE_SIZE
  with tf.io.TFRecordWriter(path) as writer:
    for index in range(num_images):
      image, labels = generate_example(rng, height, width)
      jpeg = tf.io.encode_jpeg(image, quality=90).numpy()
      label_png = tf.io.encode_png(labels[..., np.newaxis]).numpy()
      writer.write(make_example(jpeg, 'jpeg', f'{index:06d}', height, width,
                                label_png).SerializeToString())
  return os.path.join(directory, 'train-*')


def measure_input_pipeline(config: BenchmarkConfig, num_images: int = 16,
                           batches_per_run: int = 5) -> Dict[str, Any]:
  """Images/s of the training input pipeline (decode, random scale, crop to
  `config.size`, flip, batch) on VOC-like JPEGs, with nothing else running.

  Each run times `batches_per_run` batches of `config.batch_size` with
  `deeplab.data.measure_throughput`.
  """
  with tempfile.TemporaryDirectory(prefix='deeplab-pipeline-') as directory:
    pattern = write_voc_like_records(directory, num_images)
    dataset = build_dataset(pattern, training=True, batch_size=config.batch_size,
                            crop_size=tuple(config.size), seed=0)
    results = [measure_throughput(dataset, batches_per_run,
                                  warmup_batches=max(config.warmup, 1))
               for _ in range(config.runs)]
  timing = Timing.from_seconds([r.seconds / r.num_batches for r in results])
  return {'measurement': 'input_pipeline', 'batch_size': config.batch_size,
          'image_size': list(VOC_IMAGE_SIZE), 'seconds': timing.as_dict(),
          'images_per_second': round(config.batch_size / timing.median, 2)}
