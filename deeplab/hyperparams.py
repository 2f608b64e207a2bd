"""Strict (de)serialization of config dataclasses: dicts, YAML files and overrides.

Every config in `deeplab.config` goes through these helpers, so they all share one
parser: unknown keys and wrong types are rejected with the key's full name, and
lists become tuples where the annotation says so.

Example:
  >>> import dataclasses
  >>> @dataclasses.dataclass(frozen=True)
  ... class Schedule:
  ...   steps: int = 10
  ...   learning_rate: float = 0.007
  >>> override(Schedule(), 'steps=20,learning_rate=1e-3')
  Schedule(steps=20, learning_rate=0.001)
"""

import dataclasses
import json
import types
import typing
from typing import Any, Dict, Optional, Union

import yaml

from deeplab.files import atomic_write


class ConfigError(ValueError):
  """A configuration value is missing, unknown, of the wrong type or out of range."""


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
    yield key.strip(), _parse_value(value)


def _parse_value(text: str) -> Any:
  """Parses an override value as YAML, reading '1e-3' as a number too (YAML 1.1 would not)."""
  if not text.strip():
    return None
  value = yaml.safe_load(text)
  if isinstance(value, str):
    try:
      return float(value)
    except ValueError:
      return value
  return value


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
  atomic_write(path, yaml.safe_dump(to_dict(config), sort_keys=False))


def to_json(config) -> str:
  return json.dumps(to_dict(config), sort_keys=False)
