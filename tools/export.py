r"""deeplab-export: a checkpoint as a TF Serving SavedModel (and ONNX, TFLite models).

Writes <export_dir>/<version>/ (version: one more than the highest existing) only
after the export's predictions match the Keras model's (the parity gate):
  deeplab-export --experiment=synthetic --checkpoint=runs/synthetic \
      --export_dir=/tmp/serving/deeplab

Multi-scale + flip inside the graph, at output stride 8, checked on real images:
  deeplab-export --experiment=synthetic --checkpoint=runs/synthetic/ckpt-1000 \
      --export_dir=/tmp/serving/deeplab --output_stride=8 \
      --eval_scales=0.5,0.75,1.0,1.25,1.5,1.75 --flip --sample_images='images/*.jpg'

An official model-zoo checkpoint, whose weights give the model (no --experiment):
  deeplab-export --checkpoint=deeplabv3_pascal_trainval --export_dir=/tmp/serving/deeplab

Also model.onnx (ONNX Runtime, OpenVINO, TensorRT; needs pip install 'deeplab[onnx]'):
  deeplab-export ... --onnx

Also TFLite models at 513x513, int8 calibrated on 100 training images:
  deeplab-export ... --tflite=float32,int8 --tflite_input_size=513,513 \
      --calibration_data='data/train-*'
"""

import dataclasses

from absl import flags

from deeplab.config import QUANTIZATIONS
from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

common.define_experiment_flags()
flags.DEFINE_string('checkpoint', None,
                    'Checkpoint prefix (native or official TF1) or model directory (its '
                    'latest checkpoint); ' + common.OFFICIAL_CHECKPOINT_HELP)
flags.DEFINE_string('export_dir', None,
                    'TF Serving base directory of the model; the export goes to '
                    '<export_dir>/<version>/.')
flags.DEFINE_integer('version', None, 'Version number of the export; default: one more '
                     'than the highest existing version in --export_dir (1 if none).')
common.define_inference_flags('export')
flags.DEFINE_boolean('include_probabilities', None, 'Also return class probabilities; '
                     'default: the experiment\'s export.include_probabilities.')
flags.DEFINE_list('sample_images', [], 'Image files or globs the parity gate runs on; '
                  'default: a few synthetic images.')
flags.DEFINE_boolean('onnx', False, 'Also write model.onnx (the image_tensor signature, '
                     'opset 17), checked in ONNX Runtime by the parity gate; needs '
                     "pip install 'deeplab[onnx]'.")
flags.DEFINE_list('tflite', [], 'TFLite models to write beside the SavedModel: any of '
                  + ', '.join(QUANTIZATIONS) + '.')
flags.DEFINE_list('tflite_input_size', ['513', '513'], 'Fixed height,width of the TFLite '
                  'models.')
flags.DEFINE_string('calibration_data', '', 'TFRecords (file pattern) whose images calibrate '
                    'int8 TFLite models; default: synthetic images.')
flags.DEFINE_integer('calibration_images', 100, 'Images that calibrate int8 TFLite models.')
flags.DEFINE_float('tflite_min_agreement', None, 'Pixel agreement with the Keras model each '
                   'TFLite model must reach; default per quantization: float32 0.995, '
                   'float16 0.99, dynamic_int8 0.97, int8 0.95.')
flags.mark_flags_as_required(['checkpoint', 'export_dir'])
FLAGS = flags.FLAGS


def _tflite_configs():
  unknown = [q for q in FLAGS.tflite if q not in QUANTIZATIONS]
  if unknown:
    raise ValueError(f'--tflite must list some of {", ".join(QUANTIZATIONS)}; '
                     f'got {", ".join(unknown)}.')
  input_size = common.numbers(FLAGS.tflite_input_size, int, 'tflite_input_size')
  if len(input_size) != 2:
    raise ValueError(f'--tflite_input_size must be height,width; '
                     f'got {",".join(FLAGS.tflite_input_size)!r}.')
  from deeplab.export import TfliteConfig
  return [TfliteConfig(quantization, input_size, FLAGS.calibration_data,
                       FLAGS.calibration_images, FLAGS.tflite_min_agreement)
          for quantization in FLAGS.tflite]


def main(argv):
  del argv  # Checked by common.run_tool.
  experiment = common.experiment_from_flags(inference_section='export',
                                            checkpoint=FLAGS.checkpoint)
  if FLAGS.include_probabilities is not None:
    experiment = dataclasses.replace(experiment, export=dataclasses.replace(
        experiment.export, include_probabilities=FLAGS.include_probabilities))
  tflite = _tflite_configs()
  from deeplab.export import export_from_checkpoint
  report = export_from_checkpoint(experiment, FLAGS.checkpoint, FLAGS.export_dir,
                                  version=FLAGS.version,
                                  sample_image_paths=FLAGS.sample_images,
                                  tflite=tflite, onnx=FLAGS.onnx)
  print(report.summary())
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
