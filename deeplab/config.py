"""Typed configuration: frozen dataclasses with the official defaults, validated on
construction, serializable to dict and YAML, and overridable from strings.

`ModelConfig` describes the network. The helpers at the bottom (`to_dict`,
`from_dict`, `load_yaml`, `override`) work for any config dataclass, so the
experiment configs built on top of it share one strict parser: unknown keys and
wrong types are rejected with the key's full name.

Example:
  >>> config = ModelConfig(backbone='mobilenet_v2', num_classes=2)
  >>> config.resolved_atrous_rates
  (6, 12, 18)
  >>> override(config, 'output_stride=8').resolved_atrous_rates
  (12, 24, 36)
"""

import dataclasses
import json
import os
import tempfile
import types
import typing
from typing import Any, Dict, Optional, Tuple, Union

import yaml

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


class ConfigError(ValueError):
  """A configuration value is missing, unknown, of the wrong type or out of range."""


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
    num_classes: number of output classes, including background.
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
  num_classes: int = 21
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
    if self.num_classes < 2:
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


# ---------------------------------------------------------------------------
# Generic (de)serialization shared by every config dataclass.


def check_types(config, path: str = '') -> None:
  """Raises ConfigError if a field's value does not match its annotation."""
  hints = typing.get_type_hints(type(config))
  prefix = path or type(config).__name__
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    coerced = _coerce(value, hints[field.name], f'{prefix}.{field.name}')
    if coerced is not value:
      object.__setattr__(config, field.name, coerced)


def _coerce(value: Any, hint: Any, key: str) -> Any:
  """Converts `value` to the annotated type where that is lossless, else raises."""
  origin = typing.get_origin(hint)
  args = typing.get_args(hint)
  if origin in (Union, types.UnionType):
    if value is None and type(None) in args:
      return None
    errors = []
    for arg in args:
      if arg is type(None):
        continue
      try:
        return _coerce(value, arg, key)
      except ConfigError as e:
        errors.append(str(e))
    raise ConfigError(errors[0] if len(errors) == 1 else
                      f'{key}: {value!r} matches none of {_type_name(hint)}.')
  if origin in (tuple, list):
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
      raise ConfigError(f'{key} must be a list ({_type_name(hint)}); got {value!r}.')
    if origin is tuple and args and args[-1] is not Ellipsis:
      if len(value) != len(args):
        raise ConfigError(f'{key} must have {len(args)} items; got {value!r}.')
      return tuple(_coerce(v, a, f'{key}[{i}]') for i, (v, a) in
                   enumerate(zip(value, args)))
    item = args[0] if args else Any
    items = [_coerce(v, item, f'{key}[{i}]') for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items
  if origin is dict:
    if not isinstance(value, dict):
      raise ConfigError(f'{key} must be a mapping; got {value!r}.')
    key_type, value_type = args or (Any, Any)
    return {_coerce(k, key_type, key): _coerce(v, value_type, f'{key}.{k}')
            for k, v in value.items()}
  if dataclasses.is_dataclass(hint):
    if isinstance(value, hint):
      return value
    if isinstance(value, dict):
      return from_dict(hint, value, key)
    raise ConfigError(f'{key} must be a mapping of {hint.__name__} fields; got {value!r}.')
  if hint is Any:
    return value
  if hint is bool:
    if isinstance(value, bool):
      return value
    raise ConfigError(f'{key} must be true or false; got {value!r}.')
  if hint is int:
    if isinstance(value, int) and not isinstance(value, bool):
      return value
    if isinstance(value, float) and value.is_integer():
      return int(value)
    raise ConfigError(f'{key} must be an integer; got {value!r}.')
  if hint is float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return float(value) if not isinstance(value, float) else value
    raise ConfigError(f'{key} must be a number; got {value!r}.')
  if hint is str:
    if isinstance(value, str):
      return value
    raise ConfigError(f'{key} must be a string; got {value!r}.')
  raise TypeError(f'{key}: unsupported annotation {hint!r}.')


def _type_name(hint: Any) -> str:
  return getattr(hint, '__name__', None) or str(hint).replace('typing.', '')


def to_dict(config) -> Dict[str, Any]:
  """A config dataclass as plain nested dicts, lists and scalars (JSON/YAML-ready)."""

  def plain(value):
    if dataclasses.is_dataclass(value):
      return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
      return [plain(v) for v in value]
    if isinstance(value, dict):
      return {k: plain(v) for k, v in value.items()}
    return value

  return plain(config)


def from_dict(cls, values: Dict[str, Any], path: Optional[str] = None):
  """Builds config dataclass `cls` from a dict; unknown keys raise, naming the key."""
  path = path or cls.__name__
  if not isinstance(values, dict):
    raise ConfigError(f'{path} must be a mapping; got {values!r}.')
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - names)
  if unknown:
    raise ConfigError(f'Unknown key {path}.{unknown[0]}; {cls.__name__} has: '
                      f'{", ".join(sorted(names))}.')
  hints = typing.get_type_hints(cls)
  kwargs = {k: _coerce(v, hints[k], f'{path}.{k}') for k, v in values.items()}
  return cls(**kwargs)


def override(config, overrides: Union[str, Dict[str, Any]]):
  """Returns `config` with dotted-key overrides applied.

  Args:
    config: a config dataclass.
    overrides: 'a.b=1,c=[6, 12, 18]' (values parsed as YAML) or a nested dict such as
      one loaded from a YAML file.

  Raises:
    ConfigError: naming the first unknown key or ill-typed value.
  """
  if isinstance(overrides, str):
    nested: Dict[str, Any] = {}
    for key, value in _split_overrides(overrides):
      node = nested
      parts = key.split('.')
      for part in parts[:-1]:
        node = node.setdefault(part, {})
      node[parts[-1]] = value
    overrides = nested
  return _merge(config, overrides, type(config).__name__)


def _merge(config, overrides: Dict[str, Any], path: str):
  if not isinstance(overrides, dict):
    raise ConfigError(f'{path} must be a mapping; got {overrides!r}.')
  values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
  unknown = sorted(set(overrides) - set(values))
  if unknown:
    raise ConfigError(f'Unknown key {path}.{unknown[0]}; {type(config).__name__} has: '
                      f'{", ".join(sorted(values))}.')
  for key, value in overrides.items():
    if dataclasses.is_dataclass(values[key]) and isinstance(value, dict):
      values[key] = _merge(values[key], value, f'{path}.{key}')
    else:
      values[key] = value
  return from_dict(type(config), values, path)


def _split_overrides(text: str):
  """Splits 'a=1,b=[1, 2],c=x' at top-level commas into (key, parsed value) pairs."""
  items, depth, current = [], 0, ''
  for char in text:
    if char in '[{':
      depth += 1
    elif char in ']}':
      depth -= 1
    if char == ',' and depth == 0:
      items.append(current)
      current = ''
    else:
      current += char
  items.append(current)
  for item in items:
    if not item.strip():
      continue
    if '=' not in item:
      raise ConfigError(f'Override {item.strip()!r} is not of the form key=value.')
    key, value = item.split('=', 1)
    yield key.strip(), yaml.safe_load(value) if value.strip() else None


def load_yaml(path: str) -> Dict[str, Any]:
  """Reads a YAML mapping from `path`, with the file named in any error."""
  try:
    with open(path, encoding='utf-8') as f:
      values = yaml.safe_load(f)
  except OSError as e:
    raise ConfigError(f'Cannot read config file {path}: {e.strerror}.') from e
  except yaml.YAMLError as e:
    raise ConfigError(f'Config file {path} is not valid YAML: {e}') from e
  if values is None:
    return {}
  if not isinstance(values, dict):
    raise ConfigError(f'Config file {path} must hold a mapping at the top level.')
  return values


def save_yaml(config, path: str) -> None:
  """Writes `config` as YAML atomically (temp file + rename)."""
  text = yaml.safe_dump(to_dict(config), sort_keys=False)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=directory, prefix='.tmp-', suffix='.yaml')
  try:
    with os.fdopen(fd, 'w', encoding='utf-8') as f:
      f.write(text)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def to_json(config) -> str:
  return json.dumps(to_dict(config), sort_keys=False)
