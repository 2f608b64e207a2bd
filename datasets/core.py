"""The shared converter: check every example, then write sharded TFRecords atomically.

A dataset module only lists its examples (image path, label path, record name) and
says how its labels are read; everything else happens here, the same for every
dataset:

- the dataset doctor: each image and label is read and decoded; unreadable or
  truncated files, missing pairs, image/label size mismatches, colour masks where
  class ids were expected and ids outside [0, num_classes) other than the ignore
  label are all reported with the file name, then the conversion fails (or, with
  `skip_bad`, leaves those examples out and lists them);
- shards in the official format and names, written as hidden `.tmp-*` files and
  renamed only when the whole split is good, so an interrupted or failed
  conversion never leaves a shard that looks complete;
- a thread pool for the decoding and encoding (TensorFlow ops release the GIL) and
  progress with counts and rates.
"""

import collections
import concurrent.futures
import dataclasses
import math
import os
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab.data import info as info_lib
from deeplab.data import png, schema

# Seconds between progress lines.
_PROGRESS_INTERVAL = 5.0


@dataclasses.dataclass(frozen=True)
class Example:
  """One source example: where its image and label are, and its record name.

  Attributes:
    name: the record's `image/filename` (e.g. the VOC image id).
    image_path: path of the image (JPEG or PNG; other formats are stored as PNG).
    label_path: path of the label, or None for unlabelled (test) examples.
  """
  name: str
  image_path: str
  label_path: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class Problem:
  """What is wrong with one source file."""
  path: str
  message: str

  def __str__(self):
    return f'{self.path}: {self.message}'


class DatasetError(ValueError):
  """A split has bad examples; `problems` lists every one."""

  def __init__(self, split: str, problems: Sequence[Problem], num_examples: int):
    self.problems = list(problems)
    lines = '\n'.join(f'  {p}' for p in self.problems)
    super().__init__(
        f'{len(self.problems)} problem(s) in split {split!r} ({num_examples} examples); '
        f'nothing was written for it:\n{lines}\nFix these files, or skip them '
        f'(skip_bad / --skip_bad) to write the others.')


def read_file(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def read_label_png(data: bytes, path: str) -> np.ndarray:
  """Class ids of a grayscale or palette label PNG (palette index = id, as VOC)."""
  del path  # Every label of such a dataset is read the same way.
  return png.decode_label_png(data)


@dataclasses.dataclass
class DatasetSource:
  """A dataset ready to convert: its descriptor, examples and how to read them.

  Attributes:
    info: classes, ignore label and colormap (splits are filled in by conversion).
    splits: split name -> examples in record order.
    problems: split name -> problems found while listing (e.g. missing pairs).
    read_bytes: path -> file bytes (a zip member reader for zipped sources).
    read_label: (label bytes, label path) -> integer [H, W] class ids.
    num_shards: the official shard count of this dataset.
  """
  info: info_lib.DatasetInfo
  splits: Dict[str, List[Example]]
  problems: Dict[str, List[Problem]] = dataclasses.field(default_factory=dict)
  read_bytes: Callable[[str], bytes] = read_file
  read_label: Callable[[bytes, str], np.ndarray] = read_label_png
  num_shards: int = 4


@dataclasses.dataclass
class _Result:
  example: Example
  record: Optional[bytes] = None
  class_counts: Optional[np.ndarray] = None
  problem: Optional[Problem] = None


class _FileProblem(Exception):
  """Carries a Problem out of the per-example checks."""

  def __init__(self, problem: Problem):
    super().__init__(str(problem))
    self.problem = problem


def _unreadable(path: str, error: Exception, what: str) -> _FileProblem:
  """The problem of a file that could not be read or decoded."""
  if isinstance(error, FileNotFoundError):
    return _FileProblem(Problem(path, f'{what} file not found'))
  if isinstance(error, tf.errors.OpError) or not isinstance(error, ValueError):
    text = error.message if isinstance(error, tf.errors.OpError) else str(error)
    text = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return _FileProblem(Problem(path, f'unreadable or truncated {what} ({text})'))
  return _FileProblem(Problem(path, f'{what}: {error}'))


def _read_image(path: str, source: DatasetSource):
  """(stored bytes, format, height, width): JPEG/PNG kept as they are, others as PNG."""
  try:
    data = source.read_bytes(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
  except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
    raise _unreadable(path, e, 'image') from e
  height, width = int(image.shape[0]), int(image.shape[1])
  if data[:3] == b'\xff\xd8\xff':
    return data, 'jpeg', height, width
  if png.is_png(data):
    return data, 'png', height, width
  return tf.io.encode_png(image).numpy(), 'png', height, width


def _read_label(path: str, source: DatasetSource) -> np.ndarray:
  try:
    return source.read_label(source.read_bytes(path), path)
  except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
    raise _unreadable(path, e, 'label') from e


def _check_label(ids: np.ndarray, path: str, height: int, width: int,
                 info: info_lib.DatasetInfo) -> np.ndarray:
  """The per-id pixel counts of a valid label; raises _FileProblem otherwise."""
  if ids.ndim != 2 or ids.shape != (height, width):
    raise _FileProblem(Problem(path, f'label size {list(ids.shape)} differs from the image '
                                     f'size {[height, width]}'))
  if ids.dtype.kind not in 'ui' or (ids.size and ids.min() < 0):
    raise _FileProblem(Problem(path, f'label holds {ids.dtype} values; expected class ids '
                                     f'0..255'))
  counts = np.bincount(ids.ravel(), minlength=256)
  valid = np.zeros(len(counts), bool)
  valid[:info.num_classes] = True
  valid[info.ignore_label] = True
  bad_ids = np.flatnonzero((counts > 0) & ~valid)
  if bad_ids.size:
    shown = ', '.join(str(i) for i in bad_ids[:8]) + (', ...' if bad_ids.size > 8 else '')
    raise _FileProblem(Problem(
        path, f'label ids {shown} are outside [0, {info.num_classes}) and are not the '
              f'ignore label {info.ignore_label} ({int(counts[bad_ids].sum())} pixels)'))
  return counts[:256]


def _process(example: Example, source: DatasetSource) -> _Result:
  """Reads, checks and encodes one example into a serialized record."""
  try:
    image, image_format, height, width = _read_image(example.image_path, source)
    label, counts = None, None
    if example.label_path is not None:
      ids = _read_label(example.label_path, source)
      counts = _check_label(ids, example.label_path, height, width, source.info)
      label = png.encode_label_png(ids.astype(np.uint8))
  except _FileProblem as e:
    return _Result(example, problem=e.problem)
  record = schema.make_example(image, image_format, example.name, height, width, label)
  return _Result(example, record.SerializeToString(), counts)


def _ordered_map(function, items: Iterable, num_workers: int) -> Iterator:
  """`map(function, items)` on a thread pool, in order, with a bounded backlog."""
  with concurrent.futures.ThreadPoolExecutor(num_workers) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(function, item))
      if len(pending) >= 4 * num_workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


class _Progress:
  """Logs 'done/total (rate/s, ETA)' every few seconds and at the end."""

  def __init__(self, total: int, description: str):
    self.total, self.description = total, description
    self.done = 0
    self.start = self.last = time.monotonic()

  def update(self) -> None:
    self.done += 1
    now = time.monotonic()
    if now - self.last >= _PROGRESS_INTERVAL or self.done == self.total:
      self.last = now
      rate = self.done / max(now - self.start, 1e-9)
      eta = (self.total - self.done) / rate if rate else 0.0
      logging.info('%s: %d/%d examples (%.1f/s, %.0f s left)', self.description, self.done,
                   self.total, rate, eta)


class _ShardWriter:
  """Writes records to hidden temporary shards; `commit` renames them all at once."""

  def __init__(self, output_dir: str, split: str, num_examples: int, num_shards: int):
    self.output_dir, self.split = output_dir, split
    self.num_shards = max(1, min(num_shards, num_examples))
    self.per_shard = max(1, math.ceil(num_examples / self.num_shards))
    self.names = [schema.shard_filename(split, i, self.num_shards)
                  for i in range(self.num_shards)]
    self.writer, self.shard = None, -1
    _remove_temporaries(output_dir, split)

  def _temporary(self, index: int) -> str:
    return os.path.join(self.output_dir, '.tmp-' + self.names[index])

  def write(self, position: int, record: bytes) -> None:
    """Writes the record of the example at `position` of the split's list."""
    shard = min(position // self.per_shard, self.num_shards - 1)
    while self.shard < shard:
      self._close()
      self.shard += 1
      self.writer = tf.io.TFRecordWriter(self._temporary(self.shard))
    self.writer.write(record)

  def _close(self) -> None:
    if self.writer is not None:
      self.writer.close()
      self.writer = None

  def commit(self) -> List[str]:
    """Renames the finished shards into place and removes the split's older shards."""
    while self.shard < self.num_shards - 1:  # Shards whose examples were all skipped.
      self._close()
      self.shard += 1
      self.writer = tf.io.TFRecordWriter(self._temporary(self.shard))
    self._close()
    paths = []
    for index, name in enumerate(self.names):
      path = os.path.join(self.output_dir, name)
      os.replace(self._temporary(index), path)
      paths.append(path)
    for name in os.listdir(self.output_dir):
      if schema.is_shard_of(name, self.split) and name not in self.names:
        os.remove(os.path.join(self.output_dir, name))
    return paths

  def abort(self) -> None:
    self._close()
    _remove_temporaries(self.output_dir, self.split)


def _remove_temporaries(output_dir: str, split: str) -> None:
  for name in os.listdir(output_dir):
    if name.startswith('.tmp-') and schema.is_shard_of(name[len('.tmp-'):], split):
      os.remove(os.path.join(output_dir, name))


def convert_split(source: DatasetSource, split: str, output_dir: Optional[str],
                  num_shards: int, num_workers: int = 2,
                  skip_bad: bool = False) -> info_lib.SplitInfo:
  """Checks one split and, unless `output_dir` is None, writes its shards.

  Args:
    source: the dataset.
    split: a key of `source.splits`.
    output_dir: where the shards go; None only checks (the dataset doctor).
    num_shards: number of shards (fewer if the split has fewer examples).
    num_workers: threads decoding and encoding examples.
    skip_bad: write the good examples and list the bad ones instead of failing.

  Returns:
    The split's `SplitInfo` (sizes, class pixel counts, skipped files).

  Raises:
    DatasetError: bad examples and not `skip_bad`; no shard of the split is
      written or replaced then.
  """
  examples = source.splits[split]
  problems = list(source.problems.get(split, []))
  writer = _ShardWriter(output_dir, split, len(examples), num_shards) if output_dir else None
  counts = np.zeros(256, np.int64)
  progress = _Progress(len(examples), f'{source.info.name} {split}')
  written = 0
  try:
    results = _ordered_map(lambda e: _process(e, source), examples, num_workers)
    for position, result in enumerate(results):
      progress.update()
      if result.problem is not None:
        problems.append(result.problem)
        logging.warning('%s', result.problem)
        continue
      if result.class_counts is not None:
        counts += result.class_counts
      if writer is not None and (skip_bad or not problems):
        writer.write(position, result.record)
      written += 1
    if problems and not skip_bad:
      raise DatasetError(split, problems, len(examples))
    if not examples or written == 0:
      raise DatasetError(split, problems or [Problem(split, 'the split has no examples')],
                         len(examples))
    if writer is not None:
      paths = writer.commit()
      logging.info('Wrote %d examples of %s to %d shards in %s.', written, split, len(paths),
                   output_dir)
  except BaseException:
    if writer is not None:
      writer.abort()
    raise
  if problems:
    logging.warning('Skipped %d bad file(s) of %s:\n%s', len(problems), split,
                    '\n'.join(f'  {p}' for p in problems))
  ignore = source.info.ignore_label
  return info_lib.SplitInfo(
      num_examples=written,
      class_pixel_counts=tuple(int(c) for c in counts[:source.info.num_classes]),
      ignored_pixels=int(counts[ignore]),
      skipped=tuple(sorted({p.path for p in problems})))


def convert_source(source: DatasetSource, output_dir: Optional[str],
                   splits: Optional[Sequence[str]] = None, num_shards: Optional[int] = None,
                   num_workers: Optional[int] = None,
                   skip_bad: bool = False) -> info_lib.DatasetInfo:
  """Checks and converts splits of a dataset; writes `dataset_info.json` when done.

  Args:
    source: the dataset.
    output_dir: where shards and `dataset_info.json` go; None only checks.
    splits: which of `source.splits` (default: all).
    num_shards: shards per split (default: the dataset's official count).
    num_workers: decoding threads (default: the number of CPUs).
    skip_bad: leave bad examples out (and list them) instead of failing.

  Returns:
    The dataset's info with the converted splits. With an existing
    `dataset_info.json` of the same dataset in `output_dir`, its other splits are
    kept, so VOC's splits and train_aug can share one directory.
  """
  splits = list(splits or source.splits)
  unknown = [s for s in splits if s not in source.splits]
  if unknown:
    raise ValueError(f'Unknown split(s) {", ".join(unknown)} for {source.info.name}; '
                     f'available: {", ".join(source.splits)}.')
  num_workers = num_workers or os.cpu_count() or 1
  dataset_info = source.info
  if output_dir:
    os.makedirs(output_dir, exist_ok=True)
    dataset_info = _existing_info(output_dir, source.info)
  for split in splits:
    split_info = convert_split(source, split, output_dir, num_shards or source.num_shards,
                               num_workers, skip_bad)
    dataset_info = dataset_info.with_split(split, split_info)
    if output_dir:
      info_lib.write_dataset_info(dataset_info, output_dir)
  return dataset_info


def _existing_info(output_dir: str, info: info_lib.DatasetInfo) -> info_lib.DatasetInfo:
  """`info` with the splits of an existing info file of the same dataset."""
  if not os.path.exists(os.path.join(output_dir, info_lib.INFO_FILENAME)):
    return info
  existing = info_lib.read_dataset_info(output_dir)
  same = (existing.name, existing.num_classes, existing.ignore_label) == (
      info.name, info.num_classes, info.ignore_label)
  if not same:
    logging.warning('Replacing %s (dataset %s, %d classes) in %s.', info_lib.INFO_FILENAME,
                    existing.name, existing.num_classes, output_dir)
    return info
  return dataclasses.replace(info, splits=dict(existing.splits))
