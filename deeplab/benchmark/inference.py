"""Inference measurements: model cost, latency and throughput, multi-scale
evaluation, and an exported SavedModel against the model in process.

Every function takes a `BenchmarkConfig` and returns a JSON-ready dict.

Example:
  >>> config = BenchmarkConfig(backbone='mobilenet_v2', size=(65, 65), batch_size=2,
  ...                          runs=1, warmup=1)
  >>> result = measure_latency(config)
  >>> result['measurement'], result['seconds']['runs']
  ('latency', 1)
"""

import contextlib
import dataclasses
import functools
import tempfile
from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras

from deeplab.benchmark.timing import time_calls, time_interleaved
from deeplab.config import SUPPORTED_PRECISIONS, ExportConfig, ModelConfig, TilingConfig
from deeplab.export import export_model
from deeplab.model import DeepLabModel, ModelCost, build_model, model_cost
from deeplab.predict import label_predictor, load_label_predictor, predict_probabilities

# The paper's multi-scale evaluation.
EVAL_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
  """What to measure: one model configuration and how to run and time it.

  Attributes:
    backbone: backbone name.
    output_stride: the model's output stride.
    size: (height, width) of inference inputs and training crops.
    batch_size: images per batch for throughput, training and the input pipeline.
    num_classes: classes of the logits layer.
    precision: 'float32', 'mixed_bfloat16' or 'mixed_float16'.
    xla: compile the model (inference) or the train step with XLA.
    runs: timed runs; the median and spread are reported.
    warmup: untimed runs first.
  """
  backbone: str = 'xception_65'
  output_stride: int = 16
  size: Tuple[int, int] = (513, 513)
  batch_size: int = 4
  num_classes: int = 21
  precision: str = 'float32'
  xla: bool = False
  runs: int = 5
  warmup: int = 2

  def __post_init__(self):
    if self.precision not in SUPPORTED_PRECISIONS:
      raise ValueError(f'precision must be one of {", ".join(SUPPORTED_PRECISIONS)}; '
                       f'got {self.precision!r}.')
    if self.batch_size < 1 or self.runs < 1 or self.warmup < 0:
      raise ValueError(f'batch_size and runs must be >= 1 and warmup >= 0; got '
                       f'{self.batch_size}, {self.runs} and {self.warmup}.')
    # Validates the backbone and output stride with the config's own messages.
    self.model_config()

  def model_config(self) -> ModelConfig:
    """The default DeepLabV3+ of `backbone` at `output_stride`."""
    return ModelConfig(backbone=self.backbone, output_stride=self.output_stride,
                       num_classes=self.num_classes)

  def as_dict(self) -> Dict[str, Any]:
    values = dataclasses.asdict(self)
    values['size'] = list(self.size)
    return values


def build_benchmark_model(config: BenchmarkConfig,
                          weights_from: Optional[tf_keras.Model] = None) -> DeepLabModel:
  """The model of `config` at its precision, optionally with another model's weights."""
  model = build_model(config.model_config(), precision=config.precision)
  if weights_from is not None:
    model.set_weights(weights_from.get_weights())
  return model


def forward_function(model: tf_keras.Model, xla: bool = False):
  """The model's inference forward pass, compiled once for every input size.

  Input: float32 [N, H, W, 3] pixels 0..255; output: float32 logits [N, H, W, C].
  """
  # AutoGraph off: the model is graph-safe, and converting costs time.
  return tf.function(lambda images: model(images, training=False), jit_compile=xla,
                     input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
                     autograph=False)


def benchmark_images(batch_size: int, size: Sequence[int], dtype=tf.float32, seed: int = 0):
  """Random pixels 0..255 [batch_size, *size, 3] in `dtype`, repeatable by `seed`."""
  pixels = tf.random.stateless_uniform([batch_size, *size, 3], [seed, 1], 0, 256, tf.int32)
  return tf.cast(pixels, dtype)


def nominal_cost(config: BenchmarkConfig) -> ModelCost:
  """`deeplab.model_cost` of the model at `config.size`, computed once per model and
  size: it traces the model, which takes seconds."""
  return _cached_cost(config.model_config(), tuple(config.size))


@functools.lru_cache(maxsize=None)
def _cached_cost(model_config: ModelConfig, size: Tuple[int, int]) -> ModelCost:
  return model_cost(model_config, *size)


def _gmacs(config: BenchmarkConfig) -> float:
  return nominal_cost(config).multiply_adds / 1e9


def speed(gmacs_per_image: float, images: int, seconds: float,
          ceiling_gflops: Optional[float]) -> Dict[str, Any]:
  """Images/s, GMAC/s and the fraction of the ceiling (2 FLOPs per multiply-add)."""
  gmac_per_second = gmacs_per_image * images / seconds
  return {
      'images_per_second': round(images / seconds, 3),
      'gmac_per_second': round(gmac_per_second, 2),
      'fraction_of_ceiling': (round(2 * gmac_per_second / ceiling_gflops, 3)
                              if ceiling_gflops else None),
  }


def measure_cost(config: BenchmarkConfig) -> Dict[str, Any]:
  """Trainable parameters and nominal multiply-adds per image at `config.size`."""
  cost = nominal_cost(config)
  return {'measurement': 'cost', 'trainable_params': cost.trainable_params,
          'multiply_adds': cost.multiply_adds, 'gmacs': round(cost.multiply_adds / 1e9, 3)}


def measure_latency(config: BenchmarkConfig, ceiling_gflops: Optional[float] = None,
                    batch_size: int = 1, model: Optional[tf_keras.Model] = None
                    ) -> Dict[str, Any]:
  """Seconds per forward pass of `batch_size` images (1: latency; more: throughput).

  Args:
    config: the model and timing settings.
    ceiling_gflops: the machine's convolution GFLOP/s in the model's compute dtype,
      for `fraction_of_ceiling`.
    batch_size: images per call.
    model: a built model to time; None builds the one of `config`.
  """
  model = model or build_benchmark_model(config)
  forward = forward_function(model, config.xla)
  images = benchmark_images(batch_size, config.size)
  timing = time_calls(lambda: forward(images).numpy(), config.runs, config.warmup)
  return {'measurement': 'latency' if batch_size == 1 else 'throughput',
          'batch_size': batch_size, 'seconds': timing.as_dict(),
          **speed(_gmacs(config), batch_size, timing.median, ceiling_gflops)}


def measure_multiscale(config: BenchmarkConfig, scales: Sequence[float] = EVAL_SCALES,
                       flip: bool = True, model: Optional[tf_keras.Model] = None
                       ) -> Dict[str, Any]:
  """Multi-scale (+ flip) evaluation of one image against the sum of its passes.

  Times `predict_probabilities` over `scales` (and flips), then each scale's
  single pass alone; `overhead` is the ratio of the first to the sum of the second
  (times two with flips), 1.0 meaning the combination costs nothing extra.
  """
  model = model or build_benchmark_model(config)
  spec = [tf.TensorSpec([None, None, None, 3], tf.float32)]
  # XLA cannot compile tiled inference (tile sizes are not compile-time constants),
  # so with XLA every image runs whole.
  tiling = None if config.xla else TilingConfig()
  # AutoGraph off: inference is graph-safe, and converting it costs time.
  combined = tf.function(
      lambda images: predict_probabilities(model, images, scales, flip, tiling),
      input_signature=spec, jit_compile=config.xla, autograph=False)
  single = {scale: tf.function(
      lambda images, s=scale: predict_probabilities(model, images, (s,), tiling=tiling),
      input_signature=spec, jit_compile=config.xla, autograph=False) for scale in scales}
  images = benchmark_images(1, config.size)
  timing = time_calls(lambda: combined(images).numpy(), config.runs, config.warmup)
  passes = {scale: time_calls(lambda f=function: f(images).numpy(), config.runs,
                              config.warmup).median
            for scale, function in single.items()}
  sum_of_passes = sum(passes.values()) * (2 if flip else 1)
  return {'measurement': 'multiscale', 'scales': list(scales), 'flip': flip,
          'seconds': timing.as_dict(),
          'pass_seconds': {str(s): round(t, 6) for s, t in passes.items()},
          'sum_of_passes_seconds': round(sum_of_passes, 6),
          'overhead': round(timing.median / sum_of_passes, 3)}


def measure_saved_model(config: BenchmarkConfig, model: Optional[tf_keras.Model] = None,
                        export_dir: Optional[str] = None) -> Dict[str, Any]:
  """Latency of an exported SavedModel's 'image_tensor' signature vs the same
  computation in process (`deeplab.predict.label_predictor`), batch 1, uint8 input.

  The export goes through `deeplab.export.export_model` (with its parity gate) into
  `export_dir`, or a temporary directory removed afterwards.
  """
  model = model or build_benchmark_model(config)
  images = benchmark_images(1, config.size, tf.uint8)
  in_process = label_predictor(model)
  with contextlib.ExitStack() as stack:
    if export_dir is None:
      export_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix='deeplab-export-'))
    report = export_model(model, export_dir, ExportConfig())
    exported = load_label_predictor(report.path)
    # Interleaved, so both see the same machine load.
    timings = time_interleaved({'in_process': lambda: in_process(images).numpy(),
                                'saved_model': lambda: exported(images).numpy()},
                               config.runs, config.warmup)
  return {'measurement': 'saved_model', 'batch_size': 1,
          'seconds': timings['saved_model'].as_dict(),
          'in_process_seconds': timings['in_process'].as_dict(),
          'ratio_to_in_process': round(timings['saved_model'].median /
                                       timings['in_process'].median, 3)}


