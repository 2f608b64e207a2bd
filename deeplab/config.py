"""Typed configuration: frozen dataclasses with the official defaults, validated on
construction, serializable to dict and YAML (`deeplab.hyperparams`), and
overridable from strings.

`ModelConfig` describes the network; `ExperimentConfig` bundles it with the data,
trainer, evaluation, export and runtime settings of one experiment. Registered
experiments are the YAML files in `experiments/`.

This module does not import TensorFlow, so it also holds the choices the
command-line tools' flags list (backbones, strategies, precisions, TFLite
quantizations, benchmark measurements): defining those flags stays fast.

Example:
  >>> config = ModelConfig(backbone='mobilenet_v2', num_classes=2)
  >>> config.resolved_atrous_rates
  (6, 12, 18)
  >>> override(config, 'output_stride=8').resolved_atrous_rates
  (12, 24, 36)
"""

import dataclasses
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from deeplab.hyperparams import ConfigError, check_types, load_yaml, override

# The backbone families the model builder knows (`deeplab.backbones` holds their
# definitions; a test checks both lists agree).
SUPPORTED_BACKBONES = (
    'xception_41',
    'xception_65',
    'xception_71',
    'resnet_v1_50',
    'resnet_v1_50_beta',
    'resnet_v1_101',
    'resnet_v1_101_beta',
    'mobilenet_v2',
)
SUPPORTED_OUTPUT_STRIDES = (8, 16, 32)
SUPPORTED_DECODER_OUTPUT_STRIDES = (4, 8)

# ASPP atrous rates the paper uses at output stride 16; they scale inversely with
# the output stride (8 -> 12, 24, 36).
_ATROUS_RATES_AT_OUTPUT_STRIDE_16 = (6, 12, 18)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """The DeepLab network: backbone, ASPP, decoder and logits.

  Field names follow the official DeepLab flags where one exists. The defaults are
  the paper's DeepLabV3+ (Xception-65, output stride 16, ASPP rates 6/12/18 with
  separable convolutions and image pooling, decoder at stride 4), which is the
  configuration the official code documents for PASCAL VOC; every other default is
  the official flag's default.

  Attributes:
    backbone: one of `SUPPORTED_BACKBONES`.
    num_classes: number of output classes, including background; None (in an
      experiment) takes it from the training data's `dataset_info.json`.
    output_stride: input size / backbone feature size: 8, 16 or 32.
    atrous_rates: the three ASPP atrous rates; None derives them from the output
      stride (16 -> 6, 12, 18; 8 -> 12, 24, 36); () leaves out the atrous branches
      (ASPP = image pooling + 1x1, as the official MobileNetV2 models).
    decoder_output_stride: stride of the low-level features the decoder fuses
      (4 in the paper); None builds DeepLabV3 (no decoder).
    aspp_with_separable_conv: atrous depthwise-separable 3x3 convolutions in ASPP
      (True) or plain 3x3 convolutions.
    decoder_use_separable_conv: separable 3x3 convolutions in the decoder.
    add_image_level_feature: the ASPP image-pooling branch.
    multi_grid: unit rates of the last block (ResNet block4, Xception
      exit_flow/block2), e.g. (1, 2, 4); None means (1, 1, 1).
    depth_multiplier: MobileNetV2 width multiplier (e.g. 0.5).
    aspp_convs_filters: channels of every ASPP branch and of its projection.
    decoder_filters: channels of the decoder's 3x3 convolutions.
    batch_norm_momentum: BatchNorm moving-average momentum (TF1 "decay"); None uses
      each part's official value (0.9997 Xception and head, 0.95 ResNet, 0.997
      MobileNetV2).
    batch_norm_epsilon: BatchNorm epsilon; None uses each part's official value
      (1e-3 Xception and MobileNetV2, 1e-5 ResNet and head).
    sync_batch_norm: synchronize BatchNorm statistics across replicas; None lets the
      trainer decide (on when there is more than one replica).
    weight_decay: L2 regularization strength of convolution kernels (the official
      slim regularizer's; the official code uses 1e-4 for ResNet).
    dropout: dropout rate after the ASPP projection (official keep_prob 0.9).
  """

  backbone: str = 'xception_65'
  num_classes: Optional[int] = 21
  output_stride: int = 16
  atrous_rates: Optional[Tuple[int, ...]] = None
  decoder_output_stride: Optional[int] = 4
  aspp_with_separable_conv: bool = True
  decoder_use_separable_conv: bool = True
  add_image_level_feature: bool = True
  multi_grid: Optional[Tuple[int, ...]] = None
  depth_multiplier: float = 1.0
  aspp_convs_filters: int = 256
  decoder_filters: int = 256
  batch_norm_momentum: Optional[float] = None
  batch_norm_epsilon: Optional[float] = None
  sync_batch_norm: Optional[bool] = None
  weight_decay: float = 4e-5
  dropout: float = 0.1

  def __post_init__(self):
    check_types(self)
    _check_choice('backbone', self.backbone, SUPPORTED_BACKBONES)
    _check_choice('output_stride', self.output_stride, SUPPORTED_OUTPUT_STRIDES)
    if self.num_classes is not None and self.num_classes < 2:
      raise ConfigError(f'ModelConfig.num_classes must be at least 2 (background and '
                        f'one class); got {self.num_classes}.')
    if self.atrous_rates is not None:
      if len(self.atrous_rates) not in (0, 3) or min(self.atrous_rates, default=1) < 1:
        raise ConfigError(
            f'ModelConfig.atrous_rates must be three positive rates (e.g. 6, 12, 18), '
            f'() for no atrous branches, or None to derive them from output_stride; '
            f'got {self.atrous_rates}.')
    if self.decoder_output_stride is not None:
      allowed = [s for s in SUPPORTED_DECODER_OUTPUT_STRIDES if s < self.output_stride]
      _check_choice('decoder_output_stride', self.decoder_output_stride, allowed + [None])
    if self.multi_grid is not None and (len(self.multi_grid) != 3 or
                                        min(self.multi_grid) < 1):
      raise ConfigError(f'ModelConfig.multi_grid must be three positive unit rates '
                        f'(e.g. 1, 2, 4) or None; got {self.multi_grid}.')
    if self.multi_grid is not None and self.backbone == 'mobilenet_v2':
      raise ConfigError('ModelConfig.multi_grid applies to ResNet and Xception backbones; '
                        'set it to None for mobilenet_v2.')
    if self.depth_multiplier <= 0:
      raise ConfigError(f'ModelConfig.depth_multiplier must be positive; '
                        f'got {self.depth_multiplier}.')
    if self.depth_multiplier != 1.0 and self.backbone != 'mobilenet_v2':
      raise ConfigError(f'ModelConfig.depth_multiplier applies to mobilenet_v2 only; '
                        f'got {self.depth_multiplier} with backbone {self.backbone!r}.')
    for name in ('aspp_convs_filters', 'decoder_filters'):
      if getattr(self, name) < 1:
        raise ConfigError(f'ModelConfig.{name} must be positive; got {getattr(self, name)}.')
    if self.batch_norm_momentum is not None and not 0 < self.batch_norm_momentum < 1:
      raise ConfigError(f'ModelConfig.batch_norm_momentum must be in (0, 1) or None; '
                        f'got {self.batch_norm_momentum}.')
    if self.batch_norm_epsilon is not None and self.batch_norm_epsilon <= 0:
      raise ConfigError(f'ModelConfig.batch_norm_epsilon must be positive or None; '
                        f'got {self.batch_norm_epsilon}.')
    if self.weight_decay < 0:
      raise ConfigError(f'ModelConfig.weight_decay must be >= 0; got {self.weight_decay}.')
    if not 0 <= self.dropout < 1:
      raise ConfigError(f'ModelConfig.dropout must be in [0, 1); got {self.dropout}.')

  @property
  def resolved_atrous_rates(self) -> Tuple[int, ...]:
    """The ASPP atrous rates in use: the given ones, or those of the output stride."""
    if self.atrous_rates is not None:
      return tuple(self.atrous_rates)
    return tuple(r * 16 // self.output_stride for r in _ATROUS_RATES_AT_OUTPUT_STRIDE_16)

  @property
  def resolved_multi_grid(self) -> Tuple[int, ...]:
    return tuple(self.multi_grid) if self.multi_grid is not None else (1, 1, 1)

  def with_output_stride(self, output_stride: int) -> 'ModelConfig':
    """The same network at another output stride (e.g. train at 16, evaluate at 8).

    Explicit atrous rates scale with the stride, so the receptive field stays the
    same: (6, 12, 18) at 16 becomes (12, 24, 36) at 8.
    """
    rates = self.atrous_rates
    if rates:
      rates = tuple(r * self.output_stride // output_stride for r in rates)
    return dataclasses.replace(self, output_stride=output_stride, atrous_rates=rates)


def _check_choice(field: str, value: Any, allowed) -> None:
  if value not in allowed:
    raise ConfigError(f'ModelConfig.{field} must be one of '
                      f'{", ".join(repr(a) for a in allowed)}; got {value!r}.')




SUPPORTED_STRATEGIES = ('default', 'mirrored', 'multi_worker', 'tpu')
SUPPORTED_PRECISIONS = ('float32', 'mixed_bfloat16', 'mixed_float16', 'float64')
# The TFLite models an export can add (`deeplab.export.TfliteConfig.quantization`).
QUANTIZATIONS = ('float32', 'float16', 'dynamic_int8', 'int8')
# What `deeplab.benchmark.run_benchmarks` measures, and what deeplab-benchmark
# measures unless told otherwise.
MEASUREMENTS = ('ceiling', 'cost', 'latency', 'throughput', 'train_step', 'input_pipeline',
                'saved_model', 'runtimes', 'multiscale', 'agreement')
DEFAULT_MEASUREMENTS = ('ceiling', 'cost', 'latency', 'throughput', 'train_step',
                        'input_pipeline', 'saved_model', 'multiscale')
# The smallest crop the model can be trained on (its coarsest feature map must
# have at least 3x3 cells at output stride 16).
MIN_CROP_SIZE = 33


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """One split of a converted dataset and how to read it.

  Attributes:
    dataset_dir: directory of the TFRecords written by `deeplab-convert` (or by the
      official conversion scripts) and of their `dataset_info.json`.
    split: split name; its files are `<dataset_dir>/<split>-*.tfrecord`.
    batch_size: global batch size (split across replicas).
    crop_size: (height, width) of training crops.
    min_scale_factor, max_scale_factor, scale_factor_step_size: random scaling of
      training images (official: 0.5 to 2.0 in steps of 0.25).
    random_flip: random left-right flips in training.
    ignore_label: label value excluded from loss and metrics (255; 0 for ADE20K);
      None takes the dataset's (`dataset_info.json`), else the official 255.
    cache: cache decoded examples in memory (small datasets).
    shuffle_buffer_size: examples in the training shuffle buffer.
  """
  dataset_dir: str = ''
  split: str = 'train'
  batch_size: int = 16
  crop_size: Tuple[int, int] = (513, 513)
  min_scale_factor: float = 0.5
  max_scale_factor: float = 2.0
  scale_factor_step_size: float = 0.25
  random_flip: bool = True
  ignore_label: Optional[int] = None
  cache: bool = False
  shuffle_buffer_size: int = 1000

  def __post_init__(self):
    check_types(self)
    name = type(self).__name__
    if self.batch_size < 1:
      raise ConfigError(f'{name}.batch_size must be at least 1; got {self.batch_size}.')
    if min(self.crop_size) < MIN_CROP_SIZE:
      raise ConfigError(f'{name}.crop_size must be at least {MIN_CROP_SIZE}x{MIN_CROP_SIZE}; '
                        f'got {self.crop_size}.')
    if not 0 < self.min_scale_factor <= self.max_scale_factor:
      raise ConfigError(f'{name}: need 0 < min_scale_factor <= max_scale_factor; got '
                        f'{self.min_scale_factor} and {self.max_scale_factor}.')
    if self.scale_factor_step_size < 0:
      raise ConfigError(f'{name}.scale_factor_step_size must be >= 0 (0: continuous); '
                        f'got {self.scale_factor_step_size}.')
    if self.ignore_label is not None and not 0 <= self.ignore_label <= 255:
      raise ConfigError(f'{name}.ignore_label must be in [0, 255]; got {self.ignore_label}.')

  @property
  def file_pattern(self) -> str:
    return f'{self.dataset_dir.rstrip("/")}/{self.split}-*'


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  """The optimization schedule and training-loop settings (official train.py flags).

  Attributes:
    train_steps: optimizer steps (official training_number_of_steps).
    base_learning_rate: initial learning rate of the poly schedule.
    learning_power: power of the poly decay.
    end_learning_rate: learning rate at the last step.
    warmup_steps: linear warm-up steps from 0 to base_learning_rate; the poly
      decay then runs over the remaining steps (as the official slow start).
    momentum: SGD momentum.
    last_layer_gradient_multiplier: gradient multiplier of the last layers (the
      official flag; as there, the logits bias gradient is also doubled).
    last_layers_contain_logits_only: the last layers are the logits layer only;
      otherwise also ASPP and the decoder (official default).
    fine_tune_batch_norm: update BatchNorm statistics and parameters; False freezes
      every BatchNorm layer.
    precise_batch_norm_batches: when the BatchNorm moving averages cannot have
      converged (their momentum ** step above 1%: short runs, fine-tuning), they are
      replaced before each checkpoint and evaluation by the mean batch statistics
      of this many training batches (`deeplab.training.batch_norm`); 0 keeps the
      official moving averages.
    freeze_backbone: train the ASPP, decoder and logits only.
    top_k_percent_pixels: hard pixel mining: the loss keeps the hardest fraction
      of pixels (1.0 keeps all).
    hard_example_mining_step: steps over which top_k_percent_pixels ramps down
      from 1.0 to its value.
    class_weights: per-class loss weights; () weighs every class 1.
    gradient_clip_norm: clip the global gradient norm to this value; 0 disables.
    initial_checkpoint: native or official checkpoint to start from.
    initialize_last_layer: also load the logits layer from initial_checkpoint.
    checkpoint_every_n_steps: steps between checkpoints.
    max_checkpoints_to_keep: checkpoints kept in the model directory.
    log_every_n_steps: steps between progress logs and summaries.
    eval_every_n_steps: steps between evaluations on eval_data; 0 disables; None
      evaluates at every checkpoint when eval_data's files exist.
  """
  train_steps: int = 30000
  base_learning_rate: float = 0.007
  learning_power: float = 0.9
  end_learning_rate: float = 0.0
  warmup_steps: int = 0
  momentum: float = 0.9
  last_layer_gradient_multiplier: float = 1.0
  last_layers_contain_logits_only: bool = False
  fine_tune_batch_norm: bool = True
  precise_batch_norm_batches: int = 100
  freeze_backbone: bool = False
  top_k_percent_pixels: float = 1.0
  hard_example_mining_step: int = 0
  class_weights: Tuple[float, ...] = ()
  gradient_clip_norm: float = 0.0
  initial_checkpoint: str = ''
  initialize_last_layer: bool = True
  checkpoint_every_n_steps: int = 1000
  max_checkpoints_to_keep: int = 5
  log_every_n_steps: int = 10
  eval_every_n_steps: Optional[int] = None

  def __post_init__(self):
    check_types(self)
    name = type(self).__name__
    for field in ('train_steps', 'checkpoint_every_n_steps', 'max_checkpoints_to_keep',
                  'log_every_n_steps'):
      if getattr(self, field) < 1:
        raise ConfigError(f'{name}.{field} must be at least 1; got {getattr(self, field)}.')
    for field in ('warmup_steps', 'hard_example_mining_step', 'precise_batch_norm_batches',
                  'base_learning_rate', 'end_learning_rate', 'gradient_clip_norm'):
      if getattr(self, field) < 0:
        raise ConfigError(f'{name}.{field} must be >= 0; got {getattr(self, field)}.')
    if self.eval_every_n_steps is not None and self.eval_every_n_steps < 0:
      raise ConfigError(f'{name}.eval_every_n_steps must be >= 0 or None; '
                        f'got {self.eval_every_n_steps}.')
    if not 0 < self.top_k_percent_pixels <= 1:
      raise ConfigError(f'{name}.top_k_percent_pixels must be in (0, 1]; '
                        f'got {self.top_k_percent_pixels}.')
    if self.warmup_steps >= self.train_steps:
      raise ConfigError(f'{name}.warmup_steps ({self.warmup_steps}) must be smaller than '
                        f'train_steps ({self.train_steps}).')
    if self.momentum < 0 or self.last_layer_gradient_multiplier < 0:
      raise ConfigError(f'{name}.momentum and last_layer_gradient_multiplier must be >= 0; '
                        f'got {self.momentum} and {self.last_layer_gradient_multiplier}.')
    if any(w < 0 for w in self.class_weights):
      raise ConfigError(f'{name}.class_weights must be >= 0; got {self.class_weights}.')


@dataclasses.dataclass(frozen=True)
class TilingConfig:
  """When and how inference runs an image in overlapping tiles, so memory is bounded.

  An image (each scaled copy, at multi-scale) with more pixels than
  `max_whole_image_pixels` runs tile by tile and the tiles' logits are blended
  (`deeplab.tiling`): the network's activations, which take over a kilobyte per
  pixel for Xception-65, then never exceed one tile's.

  The default overlap follows from the receptive field. A tile's edge changes the
  logits as far in as the network looks across it; the widest reach is the ASPP's
  largest atrous rate, whose taps sit rate x output stride = 18 x 16 = 288 pixels
  (36 x 8 at output stride 8) from the pixel, while the backbone's and decoder's
  3x3 stacks contribute mostly within about a hundred pixels (their effective
  receptive field is far smaller than their theoretical one). The blend gives a
  pixel in the overlap most of its weight from the tile it lies deeper in, at
  least overlap / 2 from that tile's edge, so 256 puts the edges just outside the
  backbone's and decoder's effective reach and under half of the atrous taps' one;
  the agreement this buys is measured in the README. The image-pooling branch
  averages the whole image: a first pass over the tiles computes the mean of the
  backbone features, which the second gives every tile, so tiled inference runs
  the backbone twice. XLA (`jit_compile`) cannot compile tiled inference, whose
  tile sizes are not compile-time constants: under XLA, pass no tiling.

  Attributes:
    max_whole_image_pixels: images with more pixels (height x width) run in
      tiles; 0 never tiles. The default keeps a Cityscapes frame (2048x1024)
      whole, as the official evaluation runs it.
    tile_size: tile height and width in pixels, rounded up to the model's next
      valid size k * output_stride + 1 (1025 suits strides 8, 16 and 32).
    tile_overlap: pixels that adjacent tiles share, at least.
  """
  max_whole_image_pixels: int = 2049 * 1025
  tile_size: int = 1025
  tile_overlap: int = 256

  def __post_init__(self):
    check_types(self)
    if self.max_whole_image_pixels < 0:
      raise ConfigError(f'TilingConfig.max_whole_image_pixels must be >= 0 (0: never tile); '
                        f'got {self.max_whole_image_pixels}.')
    if not 0 <= self.tile_overlap < self.tile_size:
      raise ConfigError(f'TilingConfig.tile_overlap must be >= 0 and smaller than tile_size '
                        f'({self.tile_size}); got {self.tile_overlap}.')


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """How predictions are made for evaluation (official eval.py flags).

  Attributes:
    eval_scales: input scales whose probabilities are averaged.
    add_flipped_images: also average the left-right flipped inputs.
    output_stride: output stride at evaluation; None keeps the model's.
    trimap_widths: also report mIoU within bands of these widths (pixels) around
      label boundaries (the paper's Fig. 5).
    tiling: when large images run in overlapping tiles.
  """
  eval_scales: Tuple[float, ...] = (1.0,)
  add_flipped_images: bool = False
  output_stride: Optional[int] = None
  trimap_widths: Tuple[int, ...] = ()
  tiling: TilingConfig = TilingConfig()

  def __post_init__(self):
    check_types(self)
    if not self.eval_scales or min(self.eval_scales) <= 0:
      raise ConfigError(f'EvalConfig.eval_scales must be positive numbers; '
                        f'got {self.eval_scales}.')
    if self.output_stride is not None and self.output_stride not in SUPPORTED_OUTPUT_STRIDES:
      raise ConfigError(f'EvalConfig.output_stride must be one of '
                        f'{SUPPORTED_OUTPUT_STRIDES} or None; got {self.output_stride}.')


@dataclasses.dataclass(frozen=True)
class ExportConfig:
  """What an exported SavedModel computes (official export_model.py flags).

  Attributes:
    eval_scales: input scales baked into the serving graph.
    add_flipped_images: also average flipped inputs in the serving graph.
    output_stride: output stride of the exported model; None keeps the model's.
    include_probabilities: also return class probabilities.
    max_image_pixels: requests with larger images are rejected (decompression
      bombs); for an animated GIF, the pixels of all its frames count.
    tiling: when large images run in overlapping tiles inside the serving graph.
  """
  eval_scales: Tuple[float, ...] = (1.0,)
  add_flipped_images: bool = False
  output_stride: Optional[int] = None
  include_probabilities: bool = False
  max_image_pixels: int = 4096 * 4096
  tiling: TilingConfig = TilingConfig()

  def __post_init__(self):
    check_types(self)
    if not self.eval_scales or min(self.eval_scales) <= 0:
      raise ConfigError(f'ExportConfig.eval_scales must be positive numbers; '
                        f'got {self.eval_scales}.')
    if self.max_image_pixels < 1:
      raise ConfigError(f'ExportConfig.max_image_pixels must be positive; '
                        f'got {self.max_image_pixels}.')


@dataclasses.dataclass(frozen=True)
class RuntimeConfig:
  """Where and how the computation runs.

  Attributes:
    distribution_strategy: 'default' (one device), 'mirrored' (all local GPUs, or
      all logical CPU devices without a GPU), 'multi_worker' (cluster from the
      TF_CONFIG environment variable) or 'tpu'.
    tpu: TPU name or address for the 'tpu' strategy.
    mixed_precision_dtype: precision policy of training, evaluation and export:
      'float32', 'mixed_bfloat16' (CPUs with AVX-512 BF16 or AMX, TPUs),
      'mixed_float16' (GPU, with loss scaling), or 'float64' (slow; for numerical
      checks, e.g. that strategies agree to rounding error).
    enable_xla: compile the train step with XLA (slower than TensorFlow's own
      kernels on CPU; try it on GPUs and TPUs).
    seed: one seed for data order, augmentation, initialization and dropout.
    deterministic: use deterministic ops (reproducible, slower).
  """
  distribution_strategy: str = 'default'
  tpu: str = ''
  mixed_precision_dtype: str = 'float32'
  enable_xla: bool = False
  seed: int = 0
  deterministic: bool = False

  def __post_init__(self):
    check_types(self)
    if self.distribution_strategy not in SUPPORTED_STRATEGIES:
      raise ConfigError(f'RuntimeConfig.distribution_strategy must be one of '
                        f'{", ".join(SUPPORTED_STRATEGIES)}; got '
                        f'{self.distribution_strategy!r}.')
    if self.mixed_precision_dtype not in SUPPORTED_PRECISIONS:
      raise ConfigError(f'RuntimeConfig.mixed_precision_dtype must be one of '
                        f'{", ".join(SUPPORTED_PRECISIONS)}; got '
                        f'{self.mixed_precision_dtype!r}.')


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything one experiment needs: model, data, schedule, evaluation, export.

  `model.num_classes` and the splits' `ignore_label` left None come from the
  converted dataset (`deeplab.data.resolve_dataset_settings`, which training,
  evaluation and export apply first); a value set here that contradicts the
  dataset is refused there.
  """
  model: ModelConfig = ModelConfig(num_classes=None)
  train_data: DataConfig = DataConfig()
  eval_data: DataConfig = DataConfig(split='val', batch_size=1)
  trainer: TrainerConfig = TrainerConfig()
  evaluation: EvalConfig = EvalConfig()
  export: ExportConfig = ExportConfig()
  runtime: RuntimeConfig = RuntimeConfig()

  def __post_init__(self):
    check_types(self)
    weights = self.trainer.class_weights
    if weights and self.model.num_classes and len(weights) != self.model.num_classes:
      raise ConfigError(f'ExperimentConfig.trainer.class_weights must have one weight per '
                        f'class (model.num_classes = {self.model.num_classes}); got '
                        f'{len(weights)}.')


# The key of an experiment YAML file naming the file it extends.
BASE_KEY = 'base'


def experiments_dir() -> str:
  """The directory of the registered experiment YAML files."""
  from deeplab import experiments  # pylint: disable=import-outside-toplevel
  return os.path.dirname(os.path.abspath(experiments.__file__))


def registered_experiments() -> Tuple[str, ...]:
  """Names of the registered experiments (the YAML files in `experiments/`).

  Files whose name starts with '_' are shared bases that experiments extend, not
  experiments themselves.
  """
  return tuple(sorted(os.path.splitext(name)[0] for name in os.listdir(experiments_dir())
                      if name.endswith('.yaml') and not name.startswith('_')))


def load_experiment_yaml(path: str) -> Dict[str, Any]:
  """Reads an experiment YAML file, merged over the file its `base:` key names.

  `base` is a path relative to the file's directory (or absolute), or the name of a
  registered experiment (`pascal_voc_mobilenet_v2`); bases may have bases of their
  own. Mappings merge key by key, the file's values winning; any
  other value (lists included) replaces the base's.

  Raises:
    ConfigError: naming the file whose base is missing or forms a cycle.
  """
  return _load_with_bases(os.path.abspath(path), ())


def _load_with_bases(path: str, chain: Tuple[str, ...]) -> Dict[str, Any]:
  if path in chain:
    raise ConfigError(f'Config file {chain[-1]} has a cycle of {BASE_KEY!r} files: '
                      f'{" -> ".join(chain + (path,))}.')
  values = load_yaml(path)
  base = values.pop(BASE_KEY, None)
  if base is None:
    return values
  if not isinstance(base, str) or not base:
    raise ConfigError(f'Config file {path}: {BASE_KEY!r} must be the path of a YAML file or '
                      f'a registered experiment name; got {base!r}.')
  base_path = os.path.join(os.path.dirname(path), base)
  if not os.path.isfile(base_path):
    registered = os.path.join(experiments_dir(), f'{base}.yaml')
    if os.path.sep in base or not os.path.isfile(registered):
      raise ConfigError(f'Config file {path}: its {BASE_KEY} {base!r} is neither a file (looked '
                        f'for {base_path}) nor a registered experiment: '
                        f'{", ".join(registered_experiments())}.')
    base_path = registered
  return _deep_merge(_load_with_bases(os.path.abspath(base_path), chain + (path,)), values)


def _deep_merge(base: Dict[str, Any], values: Dict[str, Any]) -> Dict[str, Any]:
  merged = dict(base)
  for key, value in values.items():
    if isinstance(value, dict) and isinstance(merged.get(key), dict):
      merged[key] = _deep_merge(merged[key], value)
    else:
      merged[key] = value
  return merged


def load_experiment(experiment: str = '',
                    config_files: Sequence[str] = (),
                    params_override: str = '',
                    model: Optional[ModelConfig] = None) -> ExperimentConfig:
  """Builds an experiment config from a registered name or YAML file, then overrides.

  Layers, each over the last: the defaults, the experiment (a registered name or a
  YAML path), `model` if given (replacing the experiment's, e.g.
  `deeplab.config_from_checkpoint(path)`), each of `config_files`, then
  `params_override` ('trainer.train_steps=100,model.output_stride=8'). Any YAML
  file may extend another through a `base:` key (`load_experiment_yaml`).

  Raises:
    ConfigError: naming the unknown experiment, file, key or ill-typed value.

  Example:
    >>> config = load_experiment('pascal_voc_xception_65', (), 'trainer.train_steps=10')
    >>> config.model.backbone, config.trainer.train_steps
    ('xception_65', 10)
  """
  config = ExperimentConfig()
  if experiment:
    path = experiment
    # Only a file is taken for a path: a folder named like an experiment (say, its
    # data) must not hide the registered experiment.
    if not os.path.isfile(path):
      path = os.path.join(experiments_dir(), f'{experiment}.yaml')
      if not os.path.exists(path):
        raise ConfigError(f'Unknown experiment {experiment!r}: not a file, and not one of '
                          f'the registered experiments: '
                          f'{", ".join(registered_experiments())}.')
    config = override(config, load_experiment_yaml(path))
  if model is not None:
    config = dataclasses.replace(config, model=model)
  for path in config_files:
    config = override(config, load_experiment_yaml(path))
  if params_override:
    config = override(config, params_override)
  return config
