r"""deeplab-predict: label PNGs, colour overlays and side-by-side panels for image files.

From a checkpoint (scales, flip and output stride default to the experiment's
`evaluation` settings):
  deeplab-predict --experiment=synthetic --checkpoint=runs/synthetic \
      --images=photos/ --output_dir=/tmp/predictions --output_stride=8 --flip

From an exported SavedModel, with ground truth in the panels:
  deeplab-predict --saved_model=/tmp/serving/deeplab --colormap=pascal \
      --images='VOC2012/JPEGImages/2007_*.jpg' --ground_truth=VOC2012/SegmentationClass \
      --output_dir=/tmp/predictions

From an official model-zoo checkpoint, whose weights give the model (no --experiment):
  deeplab-predict --checkpoint=deeplabv3_mnv2_pascal_train_aug --images=photos/ \
      --output_dir=/tmp/predictions

Cityscapes benchmark results (labelIds, official names):
  deeplab-predict --experiment=... --checkpoint=... --images=leftImg8bit/test \
      --cityscapes_label_ids --nooverlays --nopanels --output_dir=/tmp/cityscapes
"""

from absl import flags

from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

common.define_experiment_flags()
common.define_inference_flags('evaluation')
flags.DEFINE_string('checkpoint', '', 'Checkpoint prefix (native or official TF1) or model '
                    'directory (its latest checkpoint); ' + common.OFFICIAL_CHECKPOINT_HELP)
flags.DEFINE_string('saved_model', '', 'A SavedModel written by deeplab-export (or its '
                    'versions directory), instead of --checkpoint.')
flags.DEFINE_list('images', None, 'Image files, directories (searched recursively) or glob '
                  'patterns.')
flags.DEFINE_string('output_dir', None, 'Where labels/, overlays/ and panels/ are written.')
flags.DEFINE_string('ground_truth', '', 'Directory of label PNGs named like the images; '
                    'found ones join the panels.')
flags.DEFINE_string('colormap', '', 'pascal, cityscapes, ade20k or a colormap file; default: '
                    'the colormap of the experiment\'s dataset (dataset_info.json), else '
                    'pascal.')
flags.DEFINE_boolean('raw', False, 'Write label PNGs as grayscale class ids instead of '
                     'palette PNGs.')
flags.DEFINE_boolean('cityscapes_label_ids', False, 'Write label PNGs as Cityscapes '
                     'benchmark results: trainIds mapped to labelIds, named '
                     '<city>_<seq>_<frame>_gtFine_labelIds.png.')
flags.DEFINE_boolean('overlays', True, 'Write overlays/.')
flags.DEFINE_boolean('panels', True, 'Write panels/ (image | prediction | ground truth).')
flags.DEFINE_float('alpha', 0.5, 'Weight of the label colours in overlays.')
flags.mark_flags_as_required(['images', 'output_dir'])
FLAGS = flags.FLAGS


def _colormap(experiment):
  if FLAGS.colormap:
    return FLAGS.colormap
  from deeplab.data import read_dataset_info
  try:
    return read_dataset_info(experiment.eval_data.dataset_dir).colormap
  except FileNotFoundError:
    return 'pascal'


class _ProgressBar:

  def __init__(self):
    self._bar = None

  def __call__(self, done, total):
    if self._bar is None:
      import tf_keras
      self._bar = tf_keras.utils.Progbar(total, unit_name='image')
    self._bar.update(done)


def main(_):
  experiment = common.experiment_from_flags(inference_section='evaluation',
                                            checkpoint=FLAGS.checkpoint)
  from deeplab.visualization import PredictionOutputs, load_predictor, predict_files
  outputs = PredictionOutputs(
      raw_labels=FLAGS.raw, overlays=FLAGS.overlays, panels=FLAGS.panels, alpha=FLAGS.alpha,
      cityscapes_label_ids=FLAGS.cityscapes_label_ids)
  predict = load_predictor(experiment, FLAGS.checkpoint, FLAGS.saved_model)
  written = predict_files(predict, FLAGS.images, FLAGS.output_dir,
                          colormap=_colormap(experiment), outputs=outputs,
                          ground_truth_dir=FLAGS.ground_truth, progress=_ProgressBar())
  print(f'Wrote {len(written)} files to {FLAGS.output_dir}.')
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
