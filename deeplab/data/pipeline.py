"""The input pipeline: converted TFRecords -> batches for training or evaluation.

Training batches are augmented crops of a fixed size, shuffled and repeated forever;
evaluation batches are the whole images in file order, padded to the largest image
of the batch. Both work per worker under `tf.distribute` when given the
`tf.distribute.InputContext`.

Example:
  >>> dataset = build_dataset('/data/voc/train_aug-*', training=True, batch_size=16,  # doctest: +SKIP
  ...                         crop_size=(513, 513), num_classes=21)
  >>> batch = next(iter(dataset))  # doctest: +SKIP
  >>> batch['images'].shape, batch['labels'].shape  # doctest: +SKIP
  (TensorShape([16, 513, 513, 3]), TensorShape([16, 513, 513]))
"""

import dataclasses
import time
from typing import Dict, List, Optional, Sequence

import tensorflow as tf

from deeplab.data import augment, schema

# Files read at once in training; more spreads the shuffle over more of the data.
_TRAIN_CYCLE_LENGTH = 8


def list_files(file_pattern: str) -> List[str]:
  """The sorted files matching a pattern; a clear error when there are none."""
  files = sorted(tf.io.gfile.glob(file_pattern))
  if not files:
    raise FileNotFoundError(f'No files match {file_pattern}; did you run deeplab-convert '
                            f'(and is the dataset directory / split name right)?')
  return files


def decode_record(serialized: tf.Tensor, ignore_label: int = 255,
                  num_classes: Optional[int] = None,
                  require_label: bool = False) -> Dict[str, tf.Tensor]:
  """Decodes one serialized record (graph-safe).

  Args:
    serialized: string scalar, a `tf.train.Example` in the DeepLab schema.
    ignore_label: fills the label of records without one (test splits).
    num_classes: if given, label ids outside [0, num_classes) other than
      `ignore_label` raise InvalidArgumentError naming the record's filename.
    require_label: raise (naming the record) when the record has no label.

  Returns:
    {'image': uint8 [H, W, 3], 'label': uint8 [H, W], 'filename': string,
     'height': int32, 'width': int32}.
  """
  features = schema.parse_example(serialized)
  filename = features[schema.IMAGE_FILENAME]
  image = tf.io.decode_image(features[schema.IMAGE_ENCODED], channels=3,
                             expand_animations=False)
  shape = tf.shape(image)
  encoded_label = features[schema.LABEL_ENCODED]
  has_label = tf.strings.length(encoded_label) > 0
  checks = []
  if require_label:
    checks.append(tf.debugging.Assert(has_label, [
        'Record', filename, 'has no label (a test split?); training needs labelled records.']))
  # The label must be an 8-bit grayscale PNG (bytes 24-25 of the header): decoding
  # an RGB or palette PNG to one channel would silently turn colours into ids.
  header = tf.strings.substr(tf.strings.join([encoded_label, b'\0' * 26]), 24, 2)
  checks.append(tf.debugging.Assert(
      tf.logical_or(tf.logical_not(has_label), tf.equal(header, b'\x08\x00')),
      ['The label of record', filename, 'is not an 8-bit grayscale PNG of class ids; '
       'convert the dataset with deeplab-convert.']))
  with tf.control_dependencies(checks):
    label = tf.cond(
        has_label,
        lambda: tf.io.decode_png(encoded_label, channels=1)[..., 0],
        lambda: tf.fill(shape[:2], tf.constant(ignore_label, tf.uint8)))
  checks = [tf.debugging.Assert(tf.reduce_all(tf.equal(tf.shape(label), shape[:2])), [
      'Record', filename, 'has an image of size', shape[:2], 'but a label of size',
      tf.shape(label)])]
  if num_classes is not None:
    invalid = tf.logical_and(label >= num_classes, label != ignore_label)
    checks.append(tf.debugging.Assert(tf.logical_not(tf.reduce_any(invalid)), [
        'Record', filename, f'has label ids outside [0, {num_classes}) other than the '
        f'ignore label {ignore_label}, e.g.', tf.reduce_max(tf.boolean_mask(label, invalid))]))
  with tf.control_dependencies(checks):
    label = tf.identity(label)
  return {'image': image, 'label': label, 'filename': filename,
          'height': shape[0], 'width': shape[1]}


def _records(files: List[str], training: bool, seed: Optional[int],
             input_context: Optional[tf.distribute.InputContext]) -> tf.data.Dataset:
  """Serialized records of this worker's share: whole files if there are enough."""
  num_pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  files_dataset = tf.data.Dataset.from_tensor_slices(files)
  shard_files = num_pipelines > 1 and len(files) >= num_pipelines
  if shard_files:
    files_dataset = files_dataset.shard(num_pipelines, pipeline_id)
  if training:
    files_dataset = files_dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    records = files_dataset.interleave(
        tf.data.TFRecordDataset, cycle_length=min(len(files), _TRAIN_CYCLE_LENGTH),
        num_parallel_calls=tf.data.AUTOTUNE)
  else:
    records = files_dataset.flat_map(tf.data.TFRecordDataset)
  if num_pipelines > 1 and not shard_files:
    records = records.shard(num_pipelines, pipeline_id)
  return records


def build_dataset(file_pattern: str, *,
                  training: bool,
                  batch_size: int,
                  crop_size: Sequence[int] = (513, 513),
                  ignore_label: int = 255,
                  min_scale_factor: float = 0.5,
                  max_scale_factor: float = 2.0,
                  scale_factor_step_size: float = 0.25,
                  random_flip: bool = True,
                  seed: Optional[int] = None,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  cache: bool = False,
                  shuffle_buffer_size: int = 1000,
                  num_classes: Optional[int] = None) -> tf.data.Dataset:
  """Batches of images and labels from TFRecords in the DeepLab schema.

  Args:
    file_pattern: glob of the split's shards, e.g. '<dataset_dir>/train-*'.
    training: augmented, shuffled, endlessly repeated crops if True; whole images in
      file order, one pass, if False.
    batch_size: the global batch size; with `input_context` each worker gets its
      per-replica share of it.
    crop_size: (height, width) of training crops.
    ignore_label: label of padded and unlabelled pixels.
    min_scale_factor, max_scale_factor, scale_factor_step_size: random scaling in
      training (official 0.5..2.0 in steps of 0.25; step 0 = continuous).
    random_flip: random left-right flips in training.
    seed: makes training order and augmentation repeat exactly; None = random.
    input_context: a `tf.distribute.InputContext`; shards by file when each worker
      gets at least one, else by record.
    cache: keep decoded examples in memory after the first pass (small datasets).
    shuffle_buffer_size: examples in the training shuffle buffer.
    num_classes: if given, label ids outside [0, num_classes) other than
      `ignore_label` stop the pipeline with an error naming the record.

  Returns:
    training: {'images': float32 [B, crop_h, crop_w, 3] 0..255,
               'labels': int32 [B, crop_h, crop_w]} with B = batch size (per replica).
    evaluation: {'images': float32 [B, H, W, 3] padded with 127.5,
                 'labels': int32 [B, H, W] padded with ignore_label,
                 'heights': int32 [B], 'widths': int32 [B], 'filenames': string [B]},
                 H, W the largest of the batch; the last batch may be smaller.

  Raises:
    FileNotFoundError: no file matches `file_pattern`.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be at least 1; got {batch_size}.')
  files = list_files(file_pattern)
  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(batch_size)
  records = _records(files, training, seed, input_context)
  options = tf.data.Options()
  options.deterministic = seed is not None or not training

  # The map functions are graph-safe: AutoGraph would only cost tracing time.
  @tf.autograph.experimental.do_not_convert
  def decode(serialized):
    return decode_record(serialized, ignore_label, num_classes, require_label=training)

  if not training:
    examples = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    if cache:
      examples = examples.cache()
    batches = examples.map(_evaluation_example).padded_batch(
        batch_size, padding_values={'images': augment.MEAN_PIXEL, 'labels': ignore_label,
                                    'heights': 0, 'widths': 0, 'filenames': ''})
    return batches.prefetch(tf.data.AUTOTUNE).with_options(options)

  @tf.autograph.experimental.do_not_convert
  def augmented(example, example_seed):
    if not cache:
      example = decode(example)
    image, label = augment.augment(
        example['image'], example['label'], example_seed, crop_size=crop_size,
        min_scale_factor=min_scale_factor, max_scale_factor=max_scale_factor,
        scale_factor_step_size=scale_factor_step_size, random_flip=random_flip,
        ignore_label=ignore_label)
    return {'images': image, 'labels': tf.cast(label, tf.int32)}

  # With `cache`, decoded examples are kept (decoding is spared, shuffling moves
  # pixels); without, the shuffle buffer holds the small serialized records.
  examples = records
  if cache:
    examples = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).cache()
  examples = examples.shuffle(shuffle_buffer_size, seed=seed,
                              reshuffle_each_iteration=True).repeat()
  # One stateless seed per example, drawn in order: the same `seed` gives the same
  # crops whatever the parallelism.
  seeds = tf.data.Dataset.random(seed=seed).batch(2)
  batches = (tf.data.Dataset.zip((examples, seeds))
             .map(augmented, num_parallel_calls=tf.data.AUTOTUNE)
             .batch(batch_size, drop_remainder=True))
  return batches.prefetch(tf.data.AUTOTUNE).with_options(options)


# Graph-safe: AutoGraph would only cost tracing time.
@tf.autograph.experimental.do_not_convert
def _evaluation_example(example):
  return {'images': tf.cast(example['image'], tf.float32),
          'labels': tf.cast(example['label'], tf.int32),
          'heights': example['height'], 'widths': example['width'],
          'filenames': example['filename']}


@dataclasses.dataclass(frozen=True)
class Throughput:
  """Images per second of a pipeline, measured over `num_batches` batches."""
  images_per_second: float
  num_images: int
  num_batches: int
  seconds: float


def measure_throughput(dataset: tf.data.Dataset, num_batches: int = 50,
                       warmup_batches: int = 5) -> Throughput:
  """Times iterating a pipeline of {'images': [B, ...], ...} batches.

  The first `warmup_batches` fill the buffers and are not timed.

  Example:
    >>> result = measure_throughput(build_dataset(pattern, training=True, batch_size=16),  # doctest: +SKIP
    ...                             num_batches=20)
    >>> result.images_per_second  # doctest: +SKIP
    171.3
  """
  iterator = iter(dataset)
  for _ in range(warmup_batches):
    next(iterator)
  num_images = 0
  start = time.perf_counter()
  for count in range(num_batches):
    try:
      batch = next(iterator)
    except StopIteration:
      num_batches = count
      break
    num_images += int(batch['images'].shape[0])
  seconds = time.perf_counter() - start
  return Throughput(num_images / seconds if seconds > 0 else 0.0, num_images, num_batches,
                    seconds)
