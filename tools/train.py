r"""deeplab-train: train (or resume) an experiment in a model directory.

  deeplab-train --experiment=pascal_voc_xception_65 --model_dir=runs/voc_x65 \
      --params_override=train_data.dataset_dir=/data/voc/tfrecord \
      --initial_checkpoint=/models/xception_65/model.ckpt

Rerunning the same command resumes from the latest checkpoint in --model_dir.
Strategies: --strategy=mirrored (all local GPUs), --strategy=multi_worker (cluster
from TF_CONFIG), --strategy=tpu --tpu=NAME. Every other setting is an experiment
field: --params_override=runtime.mixed_precision_dtype=mixed_float16,trainer.train_steps=100.
"""

import dataclasses
import sys

from absl import flags

from deeplab.config import SUPPORTED_STRATEGIES
from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

common.define_experiment_flags()
flags.DEFINE_string('model_dir', None,
                    'Directory of the run: checkpoints, config.yaml, TensorBoard summaries '
                    '(train/, eval/). An existing run there is resumed.')
flags.DEFINE_enum('strategy', None, SUPPORTED_STRATEGIES,
                  'Distribution strategy; default: the experiment\'s '
                  'runtime.distribution_strategy.')
flags.DEFINE_string('tpu', None, 'TPU name or address for --strategy=tpu; default: the '
                    'experiment\'s runtime.tpu.')
flags.DEFINE_string('initial_checkpoint', None,
                    'Checkpoint to start a new run from: native, official TF1 (model zoo) '
                    'or ImageNet backbone (detected); default: the experiment\'s '
                    'trainer.initial_checkpoint.')
flags.DEFINE_boolean('initialize_last_layer', None,
                     'Also load the logits from --initial_checkpoint (skipped anyway when '
                     'the number of classes differs); default: the experiment\'s '
                     'trainer.initialize_last_layer.')
flags.mark_flag_as_required('model_dir')
FLAGS = flags.FLAGS
# Exit status of a run stopped by SIGTERM / SIGINT after saving, so that schedulers
# restart it (128 + SIGTERM).
PREEMPTED_EXIT_STATUS = 143


def main(argv):
  del argv
  config = common.experiment_from_flags()
  runtime, trainer = {}, {}
  if FLAGS.strategy is not None:
    runtime['distribution_strategy'] = FLAGS.strategy
  if FLAGS.tpu is not None:
    runtime['tpu'] = FLAGS.tpu
  if FLAGS.initial_checkpoint is not None:
    trainer['initial_checkpoint'] = FLAGS.initial_checkpoint
  if FLAGS.initialize_last_layer is not None:
    trainer['initialize_last_layer'] = FLAGS.initialize_last_layer
  config = dataclasses.replace(
      config, runtime=dataclasses.replace(config.runtime, **runtime),
      trainer=dataclasses.replace(config.trainer, **trainer))
  from deeplab.training import TrainingDivergedError, train
  try:
    result = train(config, FLAGS.model_dir, progress_bar=sys.stdout.isatty())
  except TrainingDivergedError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print(f'Trained to step {result.step}; checkpoint {result.checkpoint}.')
  return PREEMPTED_EXIT_STATUS if result.preempted else 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
