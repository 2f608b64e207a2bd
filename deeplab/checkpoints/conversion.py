"""Converting an official checkpoint into a file every tool of this package reads.

The output is a `.keras` model file (config and weights) or a directory holding a
TF2 checkpoint (`ckpt-0`, readable by `restore_weights` and as a training start
point). Both are written under a temporary name and renamed, so an interrupted
run never leaves a half-written output.
"""

import os

import tensorflow as tf

from deeplab.checkpoints.loading import InitializeLastLayer, ImportReport, load_official_checkpoint
from deeplab.config import ModelConfig
from deeplab.model import DeepLabModel, build_model

# Outputs with these suffixes look like files of formats this module does not write.
_FILE_SUFFIXES = ('.h5', '.hdf5', '.pb', '.tflite', '.ckpt', '.index')


def import_official_checkpoint(config: ModelConfig,
                               checkpoint: str,
                               output: str,
                               *,
                               initialize_last_layer: InitializeLastLayer = True,
                               backbone_only: bool = False,
                               strict: bool = False) -> ImportReport:
  """Builds the model of `config`, loads an official checkpoint, and saves it.

  Args:
    config: the `ModelConfig` the checkpoint was trained with (see the README's
      model-zoo table); the output stride may differ, weights are the same.
    checkpoint: the official checkpoint (prefix, file, or unpacked tarball folder).
    output: a `.keras` file, or a directory for a TF2 checkpoint.
    initialize_last_layer, backbone_only, strict: as for `load_official_checkpoint`.

  Returns:
    The `ImportReport`.

  Example:
    >>> config = ModelConfig(backbone='mobilenet_v2', atrous_rates=(),  # doctest: +SKIP
    ...                      decoder_output_stride=None)
    >>> import_official_checkpoint(config, 'deeplabv3_mnv2_pascal_train_aug',  # doctest: +SKIP
    ...                            'mnv2_voc.keras').missing
    ()
  """
  _check_output(output)
  model = build_model(config)
  report = load_official_checkpoint(model, checkpoint,
                                    initialize_last_layer=initialize_last_layer,
                                    backbone_only=backbone_only, strict=strict)
  save_model(model, output)
  return report


def _check_output(output: str) -> None:
  """Rejects an unusable output before any work is done."""
  if output.endswith('.keras'):
    return
  if output.rstrip('/').endswith(_FILE_SUFFIXES):
    raise ValueError(f'Output {output} must be a .keras file or a directory (for a TF2 '
                     f'checkpoint).')
  if tf.io.gfile.exists(output) and (not tf.io.gfile.isdir(output) or
                                     tf.io.gfile.listdir(output)):
    raise ValueError(f'Output {output} exists and is not an empty directory; choose a new '
                     f'directory so that no existing checkpoint is replaced.')


def save_model(model: DeepLabModel, output: str) -> str:
  """Saves `model` atomically as a `.keras` file or a TF2 checkpoint directory.

  Args:
    model: the model to save.
    output: a path ending in `.keras`, or a directory (absent or empty), which then
      holds `ckpt-0` and a `checkpoint` state file.

  Returns:
    `output`.

  Example:
    >>> save_model(model, 'imported.keras')  # doctest: +SKIP
    'imported.keras'
  """
  _check_output(output)
  output = output.rstrip('/')
  parent = os.path.dirname(output)
  if parent:
    tf.io.gfile.makedirs(parent)
  # tf_keras picks the format from the suffix, so the temporary name keeps it.
  temporary = f'{output}.tmp-{os.getpid()}' + ('.keras' if output.endswith('.keras') else '')
  try:
    if output.endswith('.keras'):
      model.save(temporary)
      tf.io.gfile.rename(temporary, output, overwrite=True)
    else:
      manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), temporary,
                                           max_to_keep=1)
      manager.save(checkpoint_number=0)
      if tf.io.gfile.exists(output):  # An empty directory (checked above).
        tf.io.gfile.rmtree(output)
      tf.io.gfile.rename(temporary, output)
  finally:
    if tf.io.gfile.isdir(temporary):
      tf.io.gfile.rmtree(temporary)
    elif tf.io.gfile.exists(temporary):
      tf.io.gfile.remove(temporary)
  return output
