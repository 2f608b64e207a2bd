"""TensorFlow Lite models of a DeepLab network at a fixed input size, with a parity gate.

Every quantization has the same interface, one signature ('serving_default'):
input `images` uint8 [1, H, W, 3], RGB pixels 0..255; output `labels` int32
[1, H, W], class ids. The graph holds the model's padding to a valid size and
the export's scales and flip (`ExportConfig`), as the SavedModel does; callers
resize their images to H x W.

Quantizations and the pixel agreement with the Keras model each must reach:

| quantization | weights | activations | min. agreement |
|---|---|---|---|
| float32 | float32 | float32 | 99.5% |
| float16 | float16 | float32 | 99.0% |
| dynamic_int8 | int8 | float32, int8 inside matrix products | 97.0% |
| int8 | int8 | int8 (calibrated) | 95.0% |

Only pixels where two classes score nearly the same can change label; the
thresholds grow with the rounding error each type adds. float16 weights carry a
relative error of about 5e-4, so only near-ties flip. dynamic_int8 rounds each
weight to one of 255 levels per channel, and int8 also rounds the activations of
each of dozens of layers, which mostly moves object boundaries by a pixel. A
trained model clears every threshold by a wide margin (a MobileNetV2 x0.5 trained
on the synthetic data, at 129x129: float16 99.996%, dynamic_int8 99.93%, int8
99.71%); an untrained one, whose class scores tie nearly everywhere, can fall below
the int8 thresholds (about 93% measured).

Example (a conversion takes tens of seconds, so this is not a doctest):
  config = TfliteConfig('float16', input_size=(129, 129))
  report = export_tflite(model, ExportConfig(), config, '/tmp/tflite', sample_images())
  print(report.size_bytes, report.agreement)
"""

import dataclasses
import os
import time
import warnings
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras
from absl import logging

from deeplab.config import QUANTIZATIONS, ExportConfig
from deeplab.data import build_dataset
from deeplab.data.synthetic import generate_example
from deeplab.export.parity import Agreement, SampleImage, label_agreement
from deeplab.hyperparams import ConfigError, check_types
from deeplab.predict import predict_labels

MIN_AGREEMENT = {'float32': 0.995, 'float16': 0.99, 'dynamic_int8': 0.97, 'int8': 0.95}


@dataclasses.dataclass(frozen=True)
class TfliteConfig:
  """One TFLite model to export.

  Attributes:
    quantization: one of `QUANTIZATIONS`.
    input_size: the model's fixed (height, width).
    calibration_file_pattern: TFRecords (the DeepLab schema) whose images calibrate
      int8 activations; '' calibrates on synthetic images.
    calibration_images: how many images calibrate int8 activations.
    min_agreement: the parity threshold; None takes `MIN_AGREEMENT[quantization]`.
  """
  quantization: str = 'float32'
  input_size: Tuple[int, int] = (513, 513)
  calibration_file_pattern: str = ''
  calibration_images: int = 100
  min_agreement: Optional[float] = None

  def __post_init__(self):
    check_types(self)
    if self.quantization not in QUANTIZATIONS:
      raise ConfigError(f'TfliteConfig.quantization must be one of {", ".join(QUANTIZATIONS)}; '
                        f'got {self.quantization!r}.')
    if len(self.input_size) != 2 or min(self.input_size) < 1:
      raise ConfigError(f'TfliteConfig.input_size must be two positive sizes (height, width); '
                        f'got {self.input_size}.')
    if self.calibration_images < 1:
      raise ConfigError(f'TfliteConfig.calibration_images must be at least 1; '
                        f'got {self.calibration_images}.')
    if self.min_agreement is not None and not 0 <= self.min_agreement <= 1:
      raise ConfigError(f'TfliteConfig.min_agreement must be in [0, 1] or None; '
                        f'got {self.min_agreement}.')

  @property
  def resolved_min_agreement(self) -> float:
    if self.min_agreement is not None:
      return self.min_agreement
    return MIN_AGREEMENT[self.quantization]


@dataclasses.dataclass(frozen=True)
class TfliteReport:
  """One written TFLite model: where, how big, how close to the Keras model, how fast.

  Attributes:
    path: the .tflite file.
    quantization: as `TfliteConfig.quantization`.
    input_size: (height, width).
    size_bytes: file size.
    agreement: the parity gate's result.
    seconds_per_image: mean `tf.lite.Interpreter` invoke time during the gate.
  """
  path: str
  quantization: str
  input_size: Tuple[int, int]
  size_bytes: int
  agreement: Agreement
  seconds_per_image: float


def _label_function(model: tf_keras.Model, export_config: ExportConfig,
                    input_size: Sequence[int]):
  # AutoGraph off: graph-safe Python, and converting it costs startup time.
  @tf.function(input_signature=[tf.TensorSpec([1, *input_size, 3], tf.uint8, name='images')],
               autograph=False)
  def labels(images):
    # Whole images: the input size is fixed and chosen for the device.
    return {'labels': predict_labels(model, images, export_config.eval_scales,
                                     export_config.add_flipped_images, tiling=None)}

  return labels.get_concrete_function()


def _resized(images: tf.Tensor, size: Sequence[int]) -> np.ndarray:
  """Images [N, h, w, 3] resized to size, as uint8 pixels."""
  resized = tf.image.resize(tf.cast(images, tf.float32), size)
  return tf.cast(tf.round(tf.clip_by_value(resized, 0, 255)), tf.uint8).numpy()


def calibration_images(config: TfliteConfig) -> Iterator[np.ndarray]:
  """uint8 [1, H, W, 3] images at the input size that calibrate int8 activations:
  the first `calibration_images` of `calibration_file_pattern`, or synthetic ones."""
  if not config.calibration_file_pattern:
    rng = np.random.default_rng(0)
    for _ in range(config.calibration_images):
      yield generate_example(rng, *config.input_size)[0][np.newaxis]
    return
  dataset = build_dataset(config.calibration_file_pattern, training=False, batch_size=1)
  count = 0
  for batch in dataset.take(config.calibration_images):
    count += 1
    yield _resized(batch['images'], config.input_size)
  if count < config.calibration_images:
    logging.warning('Calibrated int8 on %d images: %s holds no more (asked for %d).', count,
                    config.calibration_file_pattern, config.calibration_images)


def convert(model: tf_keras.Model, export_config: ExportConfig, config: TfliteConfig) -> bytes:
  """The TFLite flatbuffer of `model` with `config`'s quantization."""
  logging.info('Converting to TFLite (%s, %dx%d).', config.quantization, *config.input_size)
  # The converter saves its input first; a module holding only the variables keeps
  # it from tracing and saving every Keras layer as well.
  variables = tf.Module()
  variables.model_variables = list(model.variables)
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [_label_function(model, export_config, config.input_size)], variables)
  if config.quantization != 'float32':
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if config.quantization == 'float16':
    converter.target_spec.supported_types = [tf.float16]
  if config.quantization == 'int8':
    converter.representative_dataset = lambda: ([image] for image in calibration_images(config))
  return converter.convert()


def interpreter(tflite_model: bytes) -> tf.lite.Interpreter:
  """A `tf.lite.Interpreter` of `tflite_model`, tensors allocated."""
  with warnings.catch_warnings():
    # TF announces a move to the separate ai_edge_litert package; the bundled
    # interpreter still runs every model here, without another dependency.
    warnings.simplefilter('ignore', UserWarning)
    result = tf.lite.Interpreter(model_content=tflite_model)
  result.allocate_tensors()
  return result


def tflite_labels(tflite_model: bytes, images: Sequence[np.ndarray]) -> Tuple[List[np.ndarray],
                                                                             float]:
  """Labels int32 [H, W] of each uint8 image [1, H, W, 3], and seconds per image."""
  runner = interpreter(tflite_model).get_signature_runner()
  labels = []
  start = time.perf_counter()
  for image in images:
    labels.append(runner(images=image)['labels'][0])
  return labels, (time.perf_counter() - start) / max(len(images), 1)


def export_tflite(model: tf_keras.Model, export_config: ExportConfig, config: TfliteConfig,
                  directory: str, samples: Sequence[SampleImage]) -> TfliteReport:
  """Converts `model`, checks it against the Keras model on `samples`, writes it.

  The file is `<directory>/<quantization>_<H>x<W>.tflite`. Samples are resized to
  the input size; the reference is `deeplab.predict.predict_labels` on the same
  pixels. The caller raises if `report.agreement` did not pass.
  """
  tflite_model = convert(model, export_config, config)
  images = [_resized(s.pixels[np.newaxis], config.input_size) for s in samples]
  expected = [predict_labels(model, image, export_config.eval_scales,
                             export_config.add_flipped_images, tiling=None)[0].numpy()
              for image in images]
  labels, seconds = tflite_labels(tflite_model, images)
  agreement = Agreement(f'tflite {config.quantization}', label_agreement(expected, labels),
                        config.resolved_min_agreement, sum(e.size for e in expected))
  os.makedirs(directory, exist_ok=True)
  height, width = config.input_size
  path = os.path.join(directory, f'{config.quantization}_{height}x{width}.tflite')
  with open(path, 'wb') as f:
    f.write(tflite_model)
  logging.info('%s; %s, %.1f MB, %.1f ms per image.', agreement, path,
               len(tflite_model) / 2**20, 1000 * seconds)
  return TfliteReport(path, config.quantization, tuple(config.input_size), len(tflite_model),
                      agreement, seconds)
