"""Loading checkpoint weights into a DeepLab model: plan, check everything, then assign.

Whatever the format, loading (1) pairs every checkpoint variable with a model
weight by official name, (2) checks the pairing against the caller's options and
raises `CheckpointMismatchError` with concrete advice if the checkpoint does not
fit the model, and only then (3) reads every value and assigns them, so a failed
load leaves the model untouched.
"""

import dataclasses
from typing import Dict, List, Tuple, Union

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab.checkpoints.hints import fix_hints
from deeplab.checkpoints.names import LOGITS_SCOPE, official_weight_names
from deeplab.checkpoints.sources import CheckpointSource, open_source
from deeplab.config import ModelConfig
from deeplab.model import DeepLabModel

InitializeLastLayer = Union[bool, str]
_LAST_LAYER_CHOICES = (True, False, 'auto')


@dataclasses.dataclass(frozen=True)
class ImportReport:
  """What loading a checkpoint did, by official variable name.

  Attributes:
    checkpoint: the checkpoint path that was read.
    format: 'official TF1 checkpoint', 'TF2 checkpoint', '.keras model file' or
      '.weights.h5 weights file'.
    matched: model weights assigned from the checkpoint.
    skipped: checkpoint variables deliberately not loaded: training state (step,
      `*/Momentum` slots, moving averages) and variables of excluded parts.
    missing: model weights the checkpoint does not hold (left as they were).
    unexpected: checkpoint variables with no home in the model.
    shape_mismatches: (name, checkpoint shape, model shape) of paired variables
      whose shapes differ.
    excluded: model weights left as they were by request (the logits when
      `initialize_last_layer` is off, everything but the backbone when
      `backbone_only`).
  """
  checkpoint: str
  format: str
  matched: Tuple[str, ...] = ()
  skipped: Tuple[str, ...] = ()
  missing: Tuple[str, ...] = ()
  unexpected: Tuple[str, ...] = ()
  shape_mismatches: Tuple[Tuple[str, Tuple[int, ...], Tuple[int, ...]], ...] = ()
  excluded: Tuple[str, ...] = ()

  def summary(self, max_names: int = 3) -> str:
    """A few lines: the count of each kind and its first `max_names` names."""
    lines = [f'{self.checkpoint} ({self.format}): {len(self.matched)} weights loaded.']
    for kind in ('matched', 'skipped', 'missing', 'unexpected', 'excluded'):
      names = getattr(self, kind)
      lines.append(f'  {kind}: {len(names)}{_examples(names, max_names)}')
    mismatches = [f'{name} {list(theirs)} vs {list(ours)}'
                  for name, theirs, ours in self.shape_mismatches]
    lines.append(f'  shape_mismatches: {len(mismatches)}{_examples(mismatches, max_names)}')
    return '\n'.join(lines)


class CheckpointMismatchError(ValueError):
  """The checkpoint does not fit the model; nothing was assigned.

  Attributes:
    report: the `ImportReport` of the refused load (nothing in it was assigned).
  """

  def __init__(self, message: str, report: ImportReport):
    super().__init__(message)
    self.report = report


def load_official_checkpoint(model: DeepLabModel,
                             path: str,
                             *,
                             initialize_last_layer: InitializeLastLayer = True,
                             backbone_only: bool = False,
                             strict: bool = False) -> ImportReport:
  """Assigns an official TF1 DeepLab checkpoint (e.g. from the model zoo) to `model`.

  Every checkpoint variable goes to the model weight of the same official name.
  The checkpoint must fit the model: variables with no home in the model, or of
  another shape, are an error that says which `ModelConfig` field to change.
  Weights are the same at every output stride, so a checkpoint trained at output
  stride 16 loads into a model built at 8 (see `deeplab.model.with_output_stride`).

  Args:
    model: a `DeepLabModel`.
    path: a checkpoint prefix ('.../model.ckpt'), one of its files, or the
      directory holding it (an unpacked model-zoo tarball).
    initialize_last_layer: True loads the logits too (the class counts must
      agree); False leaves the logits as they are (fine-tuning to another
      dataset, the official flag of that name); 'auto' loads them only if their
      shapes agree.
    backbone_only: load the backbone only and ignore everything else in the
      checkpoint (ImageNet-pretrained checkpoints, whose classification heads are
      reported as unexpected); every backbone weight must be found.
    strict: fail if any model weight (other than excluded ones) is not found;
      otherwise such weights keep their values and are reported as missing (e.g.
      a decoder trained from scratch on a checkpoint without one).

  Returns:
    An `ImportReport`.

  Raises:
    FileNotFoundError: if `path` does not exist.
    CheckpointMismatchError: if the checkpoint does not fit; the model is unchanged.
    ValueError: if `path` is not an official checkpoint, or cannot be read.

  Example:
    >>> model = build_model(ModelConfig(backbone='mobilenet_v2', atrous_rates=(),  # doctest: +SKIP
    ...                                 decoder_output_stride=None))
    >>> report = load_official_checkpoint(model, 'deeplabv3_mnv2_pascal_train_aug')  # doctest: +SKIP
    >>> len(report.matched), report.missing  # doctest: +SKIP
    (272, ())
  """
  return _load(model, path, initialize_last_layer, backbone_only, strict, official_only=True)


def restore_weights(model: DeepLabModel,
                    path: str,
                    *,
                    initialize_last_layer: InitializeLastLayer = True,
                    backbone_only: bool = False,
                    strict: bool = False) -> ImportReport:
  """Loads `model`'s weights from any checkpoint a user may pass to a tool.

  Detects the format: an official TF1 checkpoint (as `load_official_checkpoint`),
  a TF2 checkpoint written with `tf.train.Checkpoint(model=model, ...)` (a prefix
  like 'model_dir/ckpt-1000', or a directory: its latest checkpoint; only the
  model is read, the optimizer and step are ignored), a `.keras` model file or a
  `.weights.h5` weights file. The options and checks are those of
  `load_official_checkpoint`, for every format.

  Raises:
    FileNotFoundError: if `path` does not exist.
    CheckpointMismatchError: if the checkpoint does not fit; the model is unchanged.
    ValueError: if `path` is none of the formats above, or cannot be read.

  Example:
    >>> model = build_model(experiment.model)  # doctest: +SKIP
    >>> restore_weights(model, 'train_dir').matched[:1]  # its latest checkpoint  # doctest: +SKIP
    ('MobilenetV2/Conv/weights',)
  """
  return _load(model, path, initialize_last_layer, backbone_only, strict, official_only=False)


def _load(model, path, initialize_last_layer, backbone_only, strict, official_only):
  if not isinstance(model, DeepLabModel):
    raise TypeError(f'Checkpoints load into a deeplab DeepLabModel (build_model); '
                    f'got {type(model).__name__}.')
  if initialize_last_layer not in _LAST_LAYER_CHOICES:
    raise ValueError(f'initialize_last_layer must be True, False or "auto"; '
                     f'got {initialize_last_layer!r}.')
  source = open_source(path, model, official_only=official_only)
  logging.info('Reading %s (%s).', source.path, source.format)
  report, variables = _plan(model, source, initialize_last_layer, backbone_only)
  problems = _problems(report, source, backbone_only, strict)
  if problems:
    hints = fix_hints(model.config, source, report, backbone_only, strict)
    raise CheckpointMismatchError(_mismatch_message(model.config, source, problems, hints),
                                  report)
  if report.missing:
    logging.warning('%d model weights are not in %s and keep their values, e.g. %s.',
                    len(report.missing), source.path, ', '.join(report.missing[:3]))
  # Every value is read before the first assignment: a read error cannot leave
  # the model half loaded.
  values = {name: source.read(name) for name in report.matched}
  for name, value in values.items():
    variables[name].assign(np.asarray(value, variables[name].dtype.as_numpy_dtype))
  logging.info('Loaded %d weights from %s (%d skipped, %d missing, %d excluded, %d unexpected).',
               len(report.matched), source.path, len(report.skipped), len(report.missing),
               len(report.excluded), len(report.unexpected))
  return report


def _plan(model: DeepLabModel, source: CheckpointSource,
          initialize_last_layer: InitializeLastLayer,
          backbone_only: bool) -> Tuple[ImportReport, Dict[str, tf.Variable]]:
  """Pairs the checkpoint's variables with the model's weights; assigns nothing."""
  weights = official_weight_names(model)
  backbone_scope = model.backbone.name + '/'

  def wanted(name):
    if backbone_only and not name.startswith(backbone_scope):
      return False
    return initialize_last_layer is not False or not name.startswith(LOGITS_SCOPE)

  requested = {name: variable for name, variable in weights.items() if wanted(name)}
  if initialize_last_layer == 'auto':
    logits = [name for name in requested if name.startswith(LOGITS_SCOPE)]
    if any(name in source.shapes and source.shapes[name] != tuple(requested[name].shape)
           for name in logits):
      logging.info('The checkpoint\'s logits have another shape; they are not loaded.')
      for name in logits:
        del requested[name]

  matched, missing, mismatches = [], [], []
  for name, variable in requested.items():
    if name not in source.shapes:
      missing.append(name)
    elif source.shapes[name] != tuple(variable.shape):
      mismatches.append((name, source.shapes[name], tuple(variable.shape)))
    else:
      matched.append(name)
  report = ImportReport(
      checkpoint=source.path,
      format=source.format,
      matched=tuple(matched),
      skipped=source.training_state + tuple(
          name for name in source.shapes if name in weights and name not in requested),
      missing=tuple(missing),
      unexpected=tuple(name for name in source.shapes if name not in weights),
      shape_mismatches=tuple(mismatches),
      excluded=tuple(name for name in weights if name not in requested))
  return report, {name: requested[name] for name in matched}


def _problems(report: ImportReport, source: CheckpointSource, backbone_only: bool,
              strict: bool) -> List[str]:
  """Why the planned load must not happen; empty when it may."""
  problems = []
  if report.shape_mismatches:
    problems.append(f'variables of another shape: {len(report.shape_mismatches)}, e.g. ' +
                    '; '.join(f'{name}: checkpoint {list(theirs)}, model {list(ours)}'
                              for name, theirs, ours in report.shape_mismatches[:3]))
  # A backbone-only load ignores the rest of a checkpoint paired by name (e.g. an
  # ImageNet classifier's head), but a TF2 checkpoint's leftovers mean its structure
  # differs, and then even the pairs it found cannot be trusted.
  if report.unexpected and not (backbone_only and source.by_name):
    problems.append(f'checkpoint variables with no home in the model: '
                    f'{len(report.unexpected)}{_examples(report.unexpected, 5)}')
  if report.missing and (strict or backbone_only):
    why = 'backbone_only needs every backbone weight' if backbone_only else 'strict'
    problems.append(f'model weights not in the checkpoint ({why}): '
                    f'{len(report.missing)}{_examples(report.missing, 5)}')
  if not report.matched:
    problems.append('no model weight is in the checkpoint')
  return problems


def _mismatch_message(config: ModelConfig, source: CheckpointSource, problems: List[str],
                      hints: List[str]) -> str:
  decoder = (f'decoder at stride {config.decoder_output_stride}'
             if config.decoder_output_stride else 'no decoder')
  lines = [f'{source.path} ({source.format}) does not fit the model (backbone '
           f'{config.backbone}, {config.num_classes} classes, ASPP rates '
           f'{list(config.resolved_atrous_rates)}, {decoder}); nothing was loaded:']
  lines += [f'  - {problem}' for problem in problems]
  if hints:
    lines.append('To fix:')
    lines += [f'  - {hint}' for hint in hints]
  return '\n'.join(lines)


def _examples(names, count: int) -> str:
  if not names:
    return ''
  more = ', ...' if len(names) > count else ''
  return ' (' + ', '.join(str(name) for name in names[:count]) + more + ')'
