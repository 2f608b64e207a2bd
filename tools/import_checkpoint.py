r"""Imports an official TF1 DeepLab checkpoint (the model zoo) into a `.keras` file or a
TF2 checkpoint directory.

Without --experiment the model is read from the checkpoint's weights
(`config_from_checkpoint`; --params_override still applies over it); with
one, it is the experiment's `model` config.

Example:
  deeplab-import-checkpoint --checkpoint=deeplabv3_pascal_train_aug \
    --output=xception65_voc.keras

  # An ImageNet backbone as the start of a training run on 5 classes:
  deeplab-import-checkpoint --checkpoint=xception_65/model.ckpt --backbone_only \
    --experiment=pascal_voc_xception_65 --params_override=model.num_classes=5 \
    --output=train_dir
"""

from absl import flags

from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

common.define_experiment_flags()
flags.DEFINE_string('checkpoint', None,
                    'Official TF1 checkpoint: a prefix such as .../model.ckpt, or the '
                    'unpacked model-zoo folder holding model.ckpt.index.')
flags.DEFINE_string('output', None,
                    'Where to write the model: a .keras file, or a new directory for a TF2 '
                    'checkpoint (ckpt-0).')
flags.DEFINE_enum('initialize_last_layer', 'true', ['true', 'false', 'auto'],
                  'Load the logits too (true), never (false: new logits, e.g. another '
                  'class count), or only if their shapes agree (auto).')
flags.DEFINE_bool('backbone_only', False,
                  'Load only the backbone (ImageNet-pretrained checkpoints); the rest of '
                  'the checkpoint is reported and ignored.')
flags.DEFINE_bool('strict', False, 'Fail if any model weight is not in the checkpoint.')
flags.mark_flags_as_required(['checkpoint', 'output'])

FLAGS = flags.FLAGS
_LAST_LAYER = {'true': True, 'false': False, 'auto': 'auto'}


def main(argv):
  del argv  # Checked by common.run_tool.
  # A backbone alone holds no network to read: the experiment gives it.
  experiment = common.experiment_from_flags(
      checkpoint='' if FLAGS.backbone_only else FLAGS.checkpoint)
  from deeplab.checkpoints import import_official_checkpoint
  report = import_official_checkpoint(
      experiment.model, FLAGS.checkpoint, FLAGS.output,
      initialize_last_layer=_LAST_LAYER[FLAGS.initialize_last_layer],
      backbone_only=FLAGS.backbone_only, strict=FLAGS.strict)
  print(report.summary(max_names=5))
  print(f'Wrote {FLAGS.output}.')
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
