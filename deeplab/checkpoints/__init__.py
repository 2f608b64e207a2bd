"""Official TF1 DeepLab checkpoints (the model zoo) and every other weights format.

The official variable names are derived from the model's layer names (which are
the official scopes) in `names.py`; nothing else in the package spells them.

- `load_official_checkpoint(model, path, ...)`: a TF1 checkpoint, e.g. an unpacked
  model-zoo tarball, with options for fine-tuning (`initialize_last_layer`),
  ImageNet backbones (`backbone_only`) and `strict` loading.
- `restore_weights(model, path, ...)`: what every tool calls; detects official,
  TF2, `.keras` and `.weights.h5` checkpoints.
- `import_official_checkpoint(config, checkpoint, output)`: the
  `deeplab-import-checkpoint` tool's conversion to a `.keras` file or TF2 checkpoint.
- `config_from_checkpoint(path)` (also `deeplab.config_from_checkpoint`): the config
  of the network an official checkpoint holds, read from its variable names and shapes.

Loading checks the whole checkpoint against the model before assigning anything,
and a checkpoint that does not fit raises `CheckpointMismatchError` naming the
setting to change. Weights are the same at every output stride: the model-zoo
checkpoints were trained at output stride 16 and their frozen graphs exported at
8; import at either and switch with `deeplab.model.with_output_stride`.

Example:
  >>> model = build_model(ModelConfig(backbone='xception_65', num_classes=21))  # doctest: +SKIP
  >>> report = load_official_checkpoint(model, 'deeplabv3_pascal_train_aug')  # doctest: +SKIP
  >>> print(report.summary())  # doctest: +SKIP
"""

from deeplab.checkpoints.architecture import config_from_checkpoint
from deeplab.checkpoints.conversion import import_official_checkpoint, save_model
from deeplab.checkpoints.loading import (CheckpointMismatchError, ImportReport,
                                         load_official_checkpoint, restore_weights)
from deeplab.checkpoints.names import official_weight_names
from deeplab.checkpoints.sources import is_official_checkpoint

__all__ = [
    'CheckpointMismatchError',
    'ImportReport',
    'config_from_checkpoint',
    'import_official_checkpoint',
    'is_official_checkpoint',
    'load_official_checkpoint',
    'official_weight_names',
    'restore_weights',
    'save_model',
]
