"""DeepLabV3+ semantic segmentation on TensorFlow 2 and tf-keras.

Public API:
  ModelConfig, build_model, with_output_stride, model_cost: the network.
  load_official_checkpoint, restore_weights: official TF1 and native weights.
  ExperimentConfig, load_experiment: experiments (data, training, evaluation, export).
"""

from deeplab.checkpoints import (CheckpointMismatchError, ImportReport, is_official_checkpoint,
                                 load_official_checkpoint, restore_weights)
from deeplab.config import ConfigError, ExperimentConfig, ModelConfig, load_experiment
from deeplab.model import DeepLabModel, ModelCost, build_model, model_cost, with_output_stride

__all__ = [
    'CheckpointMismatchError',
    'ConfigError',
    'DeepLabModel',
    'ExperimentConfig',
    'ImportReport',
    'ModelConfig',
    'ModelCost',
    'build_model',
    'is_official_checkpoint',
    'load_experiment',
    'load_official_checkpoint',
    'model_cost',
    'restore_weights',
    'with_output_stride',
]
__version__ = '0.1.0'
