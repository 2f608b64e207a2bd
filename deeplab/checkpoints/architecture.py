"""The `ModelConfig` of an official checkpoint, read from its variable names and shapes.

The weights fix the network: the backbone (its variable scope, and the ResNet-beta
stem), the MobileNetV2 depth multiplier (its channel counts), which ASPP branches
exist (image pooling, atrous) and whether they are separable, the ASPP and decoder
widths, the decoder and the stride of its low-level features, and the number of
classes.

Two settings leave no trace in the weights and take the model zoo's values:

- `output_stride` 8: the official export_model.py default, at which the model
  zoo's frozen graphs were exported (the checkpoints were trained at 16; weights
  are the same at every stride, so `config.with_output_stride(16)` is the training
  network). A decoder on stride-8 features needs a coarser output: 16 then.
- `multi_grid` (1, 2, 4) for `resnet_v1_*_beta`, as the official common.py
  prescribes for its ResNet-beta checkpoints; none for Xception (the paper found
  no gain from it there) and the plain ResNets.

Training settings (weight decay, BatchNorm momentum, dropout) keep the
`ModelConfig` defaults.

Example:
  >>> config = config_from_checkpoint('deeplabv3_mnv2_pascal_train_aug')  # doctest: +SKIP
  >>> config.backbone, config.atrous_rates, config.decoder_output_stride  # doctest: +SKIP
  ('mobilenet_v2', (), None)
"""

from typing import Mapping, Optional, Sequence

from deeplab.backbones import BACKBONES, get_backbone_spec
from deeplab.backbones.mobilenet_v2 import MOBILENET_V2_UNITS
from deeplab.checkpoints.names import (backbones_in_checkpoint, is_training_state,
                                       output_channels)
from deeplab.checkpoints.sources import official_variable_shapes
from deeplab.config import SUPPORTED_DECODER_OUTPUT_STRIDES, ModelConfig
from deeplab.model import LOW_LEVEL_FILTERS

# Variables whose presence or shape gives a setting (official names).
IMAGE_POOLING = 'image_pooling/weights'
ASPP_1X1 = 'aspp0/weights'
ASPP_SEPARABLE = 'aspp1_depthwise/depthwise_weights'
ASPP_PLAIN = 'aspp1/weights'
DECODER_PROJECTION = 'decoder/feature_projection0/weights'
DECODER_SEPARABLE = 'decoder/decoder_conv0_depthwise/depthwise_weights'
DECODER_PLAIN = 'decoder/decoder_conv0/decoder_conv0_1/weights'
LOGITS = 'logits/semantic/weights'
# MobileNetV2's last projection: its width is 320 times the depth multiplier, the
# most precise trace of the multiplier (the 32-channel stem rounds more).
_MOBILENET_LAST_UNIT = len(MOBILENET_V2_UNITS) - 1
MOBILENET_LAST_PROJECTION = f'MobilenetV2/expanded_conv_{_MOBILENET_LAST_UNIT}/project/weights'
_MOBILENET_LAST_CHANNELS = MOBILENET_V2_UNITS[-1][1]

# The settings the weights cannot tell (module docstring).
EXPORT_OUTPUT_STRIDE = 8
RESNET_BETA_MULTI_GRID = (1, 2, 4)

Shapes = Mapping[str, Sequence[int]]


def config_from_checkpoint(path: str) -> ModelConfig:
  """The `ModelConfig` whose model an official TF1 checkpoint fits exactly.

  Args:
    path: an official checkpoint: a prefix ('.../model.ckpt'), one of its files,
      or the folder holding it (an unpacked model-zoo tarball).

  Returns:
    The config (see the module docstring for the output stride and multi-grid,
    which the weights cannot tell).

  Raises:
    FileNotFoundError: nothing at `path`.
    ValueError: `path` is no official checkpoint, or one of a backbone only
      (ImageNet) or of a network this package does not build.

  Example:
    >>> config_from_checkpoint('deeplabv3_pascal_train_aug').backbone  # doctest: +SKIP
    'xception_65'
  """
  return config_from_variables(official_variable_shapes(path), source=path)


def config_from_variables(shapes: Shapes, source: str = 'the checkpoint') -> ModelConfig:
  """The `ModelConfig` of the official variables `shapes` ({name: shape}).

  Args:
    shapes: every model variable of an official checkpoint, by name (training
      state such as `global_step` or `*/Momentum` may be left in or out).
    source: what the shapes come from, for error messages.

  Raises:
    ValueError: naming what is missing or not supported.

  Example:
    >>> from deeplab import build_model
    >>> from deeplab.checkpoints import official_weight_names
    >>> model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3,
    ...                                 depth_multiplier=0.5, atrous_rates=()))
    >>> shapes = {name: v.shape for name, v in official_weight_names(model).items()}
    >>> config = config_from_variables(shapes)
    >>> config.num_classes, config.depth_multiplier, config.atrous_rates, config.output_stride
    (3, 0.5, (), 8)
  """
  shapes = {name: tuple(shape) for name, shape in shapes.items()
            if not is_training_state(name)}
  backbone = _backbone(shapes, source)
  scope = get_backbone_spec(backbone).scope + '/'
  head = sorted(name for name in shapes if not name.startswith(scope))
  if not head:
    raise ValueError(
        f'{source} holds a {backbone} backbone only (like the ImageNet checkpoints): no '
        f'ASPP or logits to read the network from. Build the ModelConfig yourself (e.g. an '
        f'experiment) and load the checkpoint with backbone_only.')
  if ASPP_1X1 not in shapes or LOGITS not in shapes:
    raise ValueError(f'{source} holds a head this package does not build (no {ASPP_1X1} or '
                     f'{LOGITS}; it has {", ".join(head[:5])}, ...).')
  aspp = separable_or_plain(shapes, ASPP_SEPARABLE, ASPP_PLAIN)
  decoder = separable_or_plain(shapes, DECODER_SEPARABLE, DECODER_PLAIN)
  decoder_output_stride = (_decoder_output_stride(shapes, backbone, source)
                           if decoder else None)
  logits = shapes[LOGITS]
  return ModelConfig(
      backbone=backbone,
      num_classes=logits[-1],
      # The decoder's features must be finer than the output.
      output_stride=max(EXPORT_OUTPUT_STRIDE, 2 * (decoder_output_stride or 0)),
      atrous_rates=None if aspp else (),
      decoder_output_stride=decoder_output_stride,
      aspp_with_separable_conv=aspp != 'plain',
      decoder_use_separable_conv=decoder != 'plain',
      add_image_level_feature=IMAGE_POOLING in shapes,
      multi_grid=RESNET_BETA_MULTI_GRID if backbone.endswith('_beta') else None,
      depth_multiplier=depth_multiplier(shapes) if backbone == 'mobilenet_v2' else 1.0,
      aspp_convs_filters=shapes[ASPP_1X1][-1],
      # The logits read the decoder's output when there is one.
      decoder_filters=logits[2] if decoder else ModelConfig.decoder_filters)


def separable_or_plain(shapes: Shapes, separable_marker: str,
                       plain_marker: str) -> Optional[str]:
  """'separable', 'plain' or None (absent): the kind of the part the markers name.

  Example:
    >>> separable_or_plain({ASPP_PLAIN: (3, 3, 320, 256)}, ASPP_SEPARABLE, ASPP_PLAIN)
    'plain'
  """
  if separable_marker in shapes:
    return 'separable'
  return 'plain' if plain_marker in shapes else None


def depth_multiplier(shapes: Shapes) -> float:
  """The MobileNetV2 depth multiplier of the official variables `shapes`.

  Example:
    >>> depth_multiplier({MOBILENET_LAST_PROJECTION: (1, 1, 480, 160)})
    0.5
  """
  return shapes[MOBILENET_LAST_PROJECTION][-1] / _MOBILENET_LAST_CHANNELS


def _backbone(shapes: Shapes, source: str) -> str:
  found = backbones_in_checkpoint(shapes)
  if len(found) != 1:
    scopes = sorted({name.split('/', 1)[0] for name in shapes})
    supported = sorted({spec.scope for spec in BACKBONES.values()})
    raise ValueError(f'{source} must hold the variables of one supported backbone (scopes '
                     f'{", ".join(supported)}); it holds the top-level scopes '
                     f'{", ".join(scopes[:8])}.')
  return found[0]


def _decoder_output_stride(shapes: Shapes, backbone: str, source: str) -> int:
  """The stride whose backbone end point has as many channels as the decoder reads."""
  projection = shapes[DECODER_PROJECTION]
  if projection[-1] != LOW_LEVEL_FILTERS:
    raise ValueError(f'{source}: {DECODER_PROJECTION} is {list(projection)}; this package '
                     f'projects the low-level features to {LOW_LEVEL_FILTERS} channels, as '
                     f'the paper and the official code do.')
  spec = get_backbone_spec(backbone)
  widths = {stride: output_channels(shapes, f'{spec.scope}/{spec.end_points[stride]}')
            for stride in SUPPORTED_DECODER_OUTPUT_STRIDES}
  for stride, width in widths.items():
    if width == projection[2]:
      return stride
  raise ValueError(f'{source}: the decoder reads {projection[2]}-channel low-level features, '
                   f'but the {backbone} end points have '
                   f'{", ".join(f"{w} (stride {s})" for s, w in widths.items())}.')
