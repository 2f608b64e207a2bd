"""DeepLabV3+ semantic segmentation on TensorFlow 2 and tf-keras.

Public API:
  ModelConfig, build_model, with_output_stride, model_cost, ...
"""

from deeplab.config import ConfigError, ModelConfig
from deeplab.model import DeepLabModel, ModelCost, build_model, model_cost, with_output_stride

__all__ = [
    'ConfigError',
    'DeepLabModel',
    'ModelConfig',
    'ModelCost',
    'build_model',
    'model_cost',
    'with_output_stride',
]
__version__ = '0.1.0'
