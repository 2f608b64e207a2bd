"""The parity gate: an export must predict what the Keras model predicts.

Sample images are the user's files or, when none are given, a few synthetic
scenes generated deterministically (`deeplab.data.synthetic`), encoded as PNG so
the encoded-image path is exercised losslessly. Agreement is the fraction of
pixels whose labels are equal, over all sample images together.

Example:
  >>> samples = sample_images()
  >>> [s.pixels.shape for s in samples[:2]], samples[0].encoded[:4]
  ([(65, 65, 3), (50, 77, 3)], b'\\x89PNG')
  >>> label_agreement([np.zeros([2, 2])], [np.array([[0, 0], [0, 1]])])
  0.75
"""

import dataclasses
import glob
import os
from typing import List, Sequence

import numpy as np
import tensorflow as tf

from deeplab.data.synthetic import generate_example
from deeplab.visualization import encode_png

# The serving graph runs the same ops as the Keras model; labels may differ only
# where two classes' scores tie to float rounding.
SAVED_MODEL_MIN_AGREEMENT = 0.999
# Sizes of the synthetic sample images: mixed and odd, so batches need padding
# and the model's own padding to a valid size is exercised.
_SYNTHETIC_SIZES = ((65, 65), (50, 77), (97, 41))


class ParityError(ValueError):
  """An export predicts different labels than the model it was made from."""


@dataclasses.dataclass(frozen=True)
class Agreement:
  """How well one exported artifact agrees with the Keras model.

  Attributes:
    name: what was compared, e.g. 'serving_default' or 'tflite float16'.
    agreement: fraction of pixels with equal labels, 0..1.
    min_agreement: the gate's threshold.
    pixels: pixels compared.
  """
  name: str
  agreement: float
  min_agreement: float
  pixels: int

  @property
  def passed(self) -> bool:
    return self.agreement >= self.min_agreement

  def __str__(self):
    return (f'{self.name}: labels agree with the Keras model on {self.agreement:.4%} of '
            f'{self.pixels} pixels (required: {self.min_agreement:.2%})')


@dataclasses.dataclass(frozen=True)
class SampleImage:
  """One image of the gate: its name, encoded bytes and RGB pixels uint8 [H, W, 3]."""
  name: str
  encoded: bytes
  pixels: np.ndarray


def sample_images(paths: Sequence[str] = (), seed: int = 0) -> List[SampleImage]:
  """The gate's images: the files at `paths` (globs allowed), or, when there are
  none, synthetic scenes of `_SYNTHETIC_SIZES` generated from `seed` as PNG.

  Raises:
    FileNotFoundError: a path or glob matches no file.
    ValueError: a file is not a JPEG, PNG, BMP or GIF image.
  """
  if not paths:
    rng = np.random.default_rng(seed)
    samples = []
    for index, (height, width) in enumerate(_SYNTHETIC_SIZES):
      pixels = generate_example(rng, height, width)[0]
      samples.append(SampleImage(f'synthetic_{index}', encode_png(pixels), pixels))
    return samples
  samples = []
  for path in _expand(paths):
    encoded = tf.io.read_file(path).numpy()
    try:
      pixels = tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(f'Sample image {path} is not a JPEG, PNG, BMP or GIF image '
                       f'({e.message}).') from e
    samples.append(SampleImage(path, encoded, pixels))
  return samples


def _expand(paths: Sequence[str]) -> List[str]:
  files = []
  for pattern in paths:
    matches = [m for m in sorted(glob.glob(pattern)) if not os.path.isdir(m)]
    if not matches:
      raise FileNotFoundError(f'Sample image {pattern!r} matches no file.')
    files.extend(matches)
  return files


def reference_labels(module, samples: Sequence[SampleImage]) -> List[np.ndarray]:
  """What every exported artifact of `module` must predict: the Keras model's labels
  int32 [H, W] of each sample, run alone at its own size (`module.predict`, eager).

  Args:
    module: a `deeplab.export.ServingModule`.
    samples: the gate's images.
  """
  return [module.predict(s.pixels[np.newaxis])['labels'][0].numpy() for s in samples]


def label_agreement(expected: Sequence[np.ndarray], actual: Sequence[np.ndarray]) -> float:
  """Fraction of pixels, over all pairs of label maps, where the labels are equal."""
  equal = total = 0
  for want, got in zip(expected, actual, strict=True):
    if np.shape(want) != np.shape(got):
      raise ParityError(f'Label maps differ in shape: {np.shape(want)} vs {np.shape(got)}.')
    equal += int(np.sum(np.asarray(want) == np.asarray(got)))
    total += int(np.size(want))
  return equal / max(total, 1)


def check(agreements: Sequence[Agreement]) -> None:
  """Raises ParityError listing every comparison below its threshold."""
  failed = [str(a) for a in agreements if not a.passed]
  if failed:
    raise ParityError('Parity gate failed; the export was not kept:\n  ' + '\n  '.join(failed))
