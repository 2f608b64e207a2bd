"""DeepLabV3+ semantic segmentation on TensorFlow 2 and tf-keras.

Public API:
  ModelConfig, build_model, with_output_stride, model_cost: the network.
  load_official_checkpoint, restore_weights: official TF1 and native weights.
  config_from_checkpoint: the ModelConfig an official checkpoint holds.
  ExperimentConfig, load_experiment: experiments (data, training, evaluation, export).

Names are imported on first use, so `import deeplab.config` (or a command-line
tool's flag parsing) does not load TensorFlow.
"""

import importlib

_EXPORTS = {
    'CheckpointMismatchError': 'deeplab.checkpoints',
    'ImportReport': 'deeplab.checkpoints',
    'config_from_checkpoint': 'deeplab.checkpoints',
    'is_official_checkpoint': 'deeplab.checkpoints',
    'load_official_checkpoint': 'deeplab.checkpoints',
    'restore_weights': 'deeplab.checkpoints',
    'ConfigError': 'deeplab.hyperparams',
    'ExperimentConfig': 'deeplab.config',
    'ModelConfig': 'deeplab.config',
    'load_experiment': 'deeplab.config',
    'DeepLabModel': 'deeplab.model',
    'ModelCost': 'deeplab.model',
    'build_model': 'deeplab.model',
    'model_cost': 'deeplab.model',
    'with_output_stride': 'deeplab.model',
}

__all__ = sorted(_EXPORTS)
__version__ = '0.1.0'


def __getattr__(name):
  if name not in _EXPORTS:
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
  value = getattr(importlib.import_module(_EXPORTS[name]), name)
  globals()[name] = value
  return value


def __dir__():
  return sorted(set(globals()) | set(_EXPORTS))
