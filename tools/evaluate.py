r"""deeplab-eval: mean IoU of a checkpoint on the experiment's evaluation data.

Single scale at the training output stride:
  deeplab-eval --experiment=synthetic --checkpoint=runs/synthetic

The paper's best setting (output stride 8, scales 0.5..1.75, flipped inputs):
  deeplab-eval --experiment=synthetic --checkpoint=runs/synthetic/ckpt-1000 \
      --output_stride=8 --eval_scales=0.5,0.75,1.0,1.25,1.5,1.75 --flip

An official model-zoo checkpoint, whose weights give the model (no --experiment):
  deeplab-eval --checkpoint=deeplabv3_pascal_trainval \
      --params_override=eval_data.dataset_dir=data/voc

Next to a training run, evaluating each checkpoint as it is written:
  deeplab-eval --experiment=synthetic --checkpoint=runs/synthetic --continuous
"""

import dataclasses

from absl import flags

from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

common.define_experiment_flags()
flags.DEFINE_string('checkpoint', None,
                    'Checkpoint prefix (native or official TF1) or model directory (its '
                    'latest checkpoint; with --continuous, each new one); ' +
                    common.OFFICIAL_CHECKPOINT_HELP)
flags.DEFINE_string('output_dir', '',
                    'Where metrics.json, confusion_matrix.{csv,png} and TensorBoard '
                    'summaries go; default <model_dir>/eval.')
common.define_inference_flags('evaluation')
flags.DEFINE_list('trimap_widths', None, 'Also report mIoU within these band widths '
                  '(pixels) around label boundaries, e.g. 2,4,8,16.')
flags.DEFINE_boolean('continuous', False, 'Evaluate each new checkpoint of the model '
                     'directory until the step reaches trainer.train_steps.')
flags.DEFINE_integer('max_evaluations', 0, 'With --continuous: stop after this many '
                     'evaluations (0: no limit).')
flags.DEFINE_float('timeout', None, 'With --continuous: stop when no new checkpoint appears '
                   'for this many seconds (default: wait forever).')
flags.mark_flag_as_required('checkpoint')
FLAGS = flags.FLAGS


class _ProgressBar:
  """One progress bar per evaluation over the images of the split."""

  def __init__(self):
    self._bar = None
    self._done = 0

  def __call__(self, done, total):
    if self._bar is None or done < self._done:
      import tf_keras
      self._bar = tf_keras.utils.Progbar(total, unit_name='image')
    self._done = done
    self._bar.update(done)


def _print_result(result):
  from deeplab.evaluation import format_results
  print()
  print(format_results(result))


def main(_):
  experiment = common.experiment_from_flags(inference_section='evaluation',
                                            checkpoint=FLAGS.checkpoint)
  if FLAGS.trimap_widths is not None:
    experiment = dataclasses.replace(experiment, evaluation=dataclasses.replace(
        experiment.evaluation,
        trimap_widths=common.numbers(FLAGS.trimap_widths, int, 'trimap_widths')))
  from deeplab.evaluation import run_evaluation
  from deeplab.evaluation.runner import default_output_dir
  output_dir = FLAGS.output_dir or default_output_dir(FLAGS.checkpoint)
  results = run_evaluation(experiment, FLAGS.checkpoint, output_dir=output_dir,
                           continuous=FLAGS.continuous, max_evaluations=FLAGS.max_evaluations,
                           timeout=FLAGS.timeout, on_result=_print_result,
                           progress=_ProgressBar())
  print(f'Results written to {output_dir} ({len(results)} evaluation(s)).')
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
