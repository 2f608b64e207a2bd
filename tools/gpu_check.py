r"""A GPU check in one command: train, evaluate, export and serve on this machine's GPU.

For each backbone, on a synthetic dataset of images a little larger than the crops:
  1. trains the paper's DeepLabV3+ (`deeplab.training.train`) for --steps steps at
     --crop_size crops, in --precision, the train step compiled with XLA (--xla);
  2. evaluates the trained model (`deeplab.evaluation.run_evaluation`, mIoU);
  3. exports it in float32 (`deeplab.export.export_from_checkpoint`; the default
     portable export, which serves on GPUs);
  4. serves the export's `serving_default` signature on a few encoded validation
     images in this process (on the GPU) and in a CPU-only process
     (CUDA_VISIBLE_DEVICES=''), and compares the labels.
It prints the GPU, the TensorFlow build (CUDA, cuDNN), then one JSON line with the
results (training images/s, steps, mIoU, export path, GPU-vs-CPU label agreement,
seconds of each phase), also written to `<output_dir>/gpu_check.json`. It exits
with status 1 when a GPU-vs-CPU agreement is below 99.9%.

  python -m deeplab.tools.gpu_check --output_dir=/tmp/gpu_check
  python -m deeplab.tools.gpu_check --output_dir=/tmp/gpu_check --backbones=xception_65 \
      --batch_size=16

Without a GPU it stops at once; --allow_cpu runs it on the CPU at whatever size is
given, e.g. the quick run:
  python -m deeplab.tools.gpu_check --output_dir=/tmp/cpu_check --allow_cpu \
      --backbones=mobilenet_v2 --crop_size=65 --steps=2 --batch_size=2 \
      --precision=float32 --noxla

Images/s are those `train` reports (its TensorBoard summaries) over every logged
interval after the first, which includes tracing, XLA compilation and filling the
input pipeline. Training uses the paper's model and schedule from scratch, so the
mIoU after a few steps only shows that evaluation runs, not what the model reaches.
The results of an earlier check in the same --output_dir are replaced.
"""

import contextlib
import glob
import json
import os
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Sequence

from absl import flags
import numpy as np

from deeplab.config import SUPPORTED_BACKBONES, SUPPORTED_PRECISIONS, ExperimentConfig
from deeplab.files import atomic_write
from deeplab.hyperparams import override
from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

_OUTPUT_DIR = flags.DEFINE_string(
    'output_dir', 'gpu_check_output', 'Where the dataset, the runs (replacing those of an '
    'earlier check) and gpu_check.json go.')
_BACKBONES = flags.DEFINE_list('backbones', ['xception_65', 'resnet_v1_101_beta'],
                               'Backbones to check, one after the other.')
_STEPS = flags.DEFINE_integer('steps', 50, 'Training steps per backbone (at least 2).')
_CROP_SIZE = flags.DEFINE_integer('crop_size', 513, 'Height and width of training crops.')
_BATCH_SIZE = flags.DEFINE_integer('batch_size', 8, 'Training batch size.')
_PRECISION = flags.DEFINE_enum('precision', 'mixed_float16', list(SUPPORTED_PRECISIONS),
                               'Precision of training and evaluation (exports run float32).')
_XLA = flags.DEFINE_bool('xla', True, 'Compile the train step with XLA.')
_ALLOW_CPU = flags.DEFINE_bool(
    'allow_cpu', False, 'Run without a GPU, on the CPU, at the size the flags give.')

# Synthetic classes of the dataset (background + 4 shapes, as the synthetic experiment).
_NUM_CLASSES = 5
# Training images per image of a batch: enough that batches differ.
_TRAIN_IMAGES_PER_BATCH_IMAGE = 4
_VAL_IMAGES = 8
# Validation images served through the export on both devices.
_SERVED_IMAGES = 4
# Logged intervals per training run; the first one is not timed.
_LOGGED_INTERVALS = 5
# Exports are traced in float32 whatever the training precision (mixed precision
# keeps float32 weights), so GPU and CPU serve the same computation.
_EXPORT_PRECISION = 'float32'
# Run in a CPU-only process: serve an export on images, save the labels as .npz.
_CPU_SERVING_PROGRAM = '\n'.join([
    'import sys',
    'import numpy as np',
    'from deeplab.tools.gpu_check import serve_labels',
    'np.savez(sys.argv[1], *serve_labels(sys.argv[2], sys.argv[3:]))',
])


def _no_gpu_message() -> str:
  return ('This is a GPU check, and TensorFlow sees no GPU here '
          '(tf.config.list_physical_devices("GPU") is empty: no GPU, no CUDA driver, or '
          'CUDA_VISIBLE_DEVICES hides it). Run it on a machine with an NVIDIA GPU, or pass '
          '--allow_cpu to run it on the CPU at whatever size you give, e.g. --allow_cpu '
          '--backbones=mobilenet_v2 --crop_size=65 --steps=2 --batch_size=2 '
          '--precision=float32 --noxla.')


def _device_report(gpus) -> Dict:
  """The GPUs TensorFlow sees (name, model, compute capability) and its build."""
  import tensorflow as tf
  details = []
  for gpu in gpus:
    info = tf.config.experimental.get_device_details(gpu)
    details.append({'name': gpu.name, 'device_name': info.get('device_name', ''),
                    'compute_capability': list(info.get('compute_capability', ()))})
  build = tf.sysconfig.get_build_info()
  return {
      'gpus': details,
      'tensorflow': tf.__version__,
      'cuda_build': bool(build.get('is_cuda_build', False)),
      'cuda_version': build.get('cuda_version', ''),
      'cudnn_version': build.get('cudnn_version', ''),
      'cuda_compute_capabilities': list(build.get('cuda_compute_capabilities', ())),
  }


def _print_device(device: Dict) -> None:
  for gpu in device['gpus']:
    print(f'GPU {gpu["name"]}: {gpu["device_name"]}, compute capability '
          f'{".".join(str(v) for v in gpu["compute_capability"])}')
  if not device['gpus']:
    print('No GPU: running on the CPU (--allow_cpu).')
  print(f'TensorFlow {device["tensorflow"]}: CUDA build {device["cuda_build"]}, CUDA '
        f'{device["cuda_version"] or "-"}, cuDNN {device["cudnn_version"] or "-"}, kernels '
        f'for {", ".join(device["cuda_compute_capabilities"]) or "-"}', flush=True)


@contextlib.contextmanager
def _timed(seconds: Dict[str, float], phase: str):
  start = time.perf_counter()
  yield
  seconds[phase] = round(time.perf_counter() - start, 1)


def _write_dataset(data_dir: str, crop_size: int, batch_size: int) -> str:
  """Generates and converts a synthetic dataset whose images all hold a crop.

  Returns:
    The directory of the TFRecords.
  """
  from deeplab.data import synthetic
  from deeplab.data.info import SYNTHETIC_CLASSES
  from deeplab.datasets.convert import convert
  raw_dir = os.path.join(data_dir, 'raw')
  records_dir = os.path.join(data_dir, 'records')
  splits = {'train': _TRAIN_IMAGES_PER_BATCH_IMAGE * batch_size, 'val': _VAL_IMAGES}
  synthetic.write_synthetic_dataset(raw_dir, splits, num_classes=_NUM_CLASSES,
                                    min_size=crop_size, max_size=crop_size + crop_size // 8)
  convert('folder', raw_dir, records_dir, num_classes=_NUM_CLASSES,
          ignore_label=synthetic.IGNORE_LABEL, class_names=SYNTHETIC_CLASSES[:_NUM_CLASSES],
          name='synthetic')
  return records_dir


def _experiment(backbone: str, records_dir: str) -> ExperimentConfig:
  """The paper's DeepLabV3+ with `backbone`, trained and evaluated as the flags say."""
  steps = _STEPS.value
  return override(ExperimentConfig(), {
      'model': {'backbone': backbone, 'num_classes': _NUM_CLASSES},
      'train_data': {'dataset_dir': records_dir, 'batch_size': _BATCH_SIZE.value,
                     'crop_size': (_CROP_SIZE.value, _CROP_SIZE.value), 'cache': True},
      'eval_data': {'dataset_dir': records_dir},
      'trainer': {'train_steps': steps, 'checkpoint_every_n_steps': steps,
                  'log_every_n_steps': max(1, steps // _LOGGED_INTERVALS)},
      'runtime': {'mixed_precision_dtype': _PRECISION.value, 'enable_xla': _XLA.value},
  })


def _steady_images_per_second(model_dir: str, batch_size: int):
  """Training images/s after the first logged interval, from `train`'s summaries.

  Returns:
    (images per second, steps timed).
  """
  import tensorflow as tf
  from deeplab.training.reporting import SUMMARY_SUBDIR
  rates = {}
  for path in glob.glob(os.path.join(model_dir, SUMMARY_SUBDIR, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == 'images_per_second':
          rates[event.step] = float(tf.make_ndarray(value.tensor))
  logged = sorted(rates)
  intervals = [(stop - start, rates[stop]) for start, stop in zip(logged, logged[1:])]
  steps = sum(count for count, _ in intervals)
  seconds = sum(count * batch_size / rate for count, rate in intervals)
  return steps * batch_size / seconds, steps


def serve_labels(export_path: str, image_paths: Sequence[str]) -> List[np.ndarray]:
  """Class ids int32 [H, W] per image from an export's `serving_default` signature.

  The encoded images go in as one batch, on the current device.
  """
  import tensorflow as tf
  loaded = tf.saved_model.load(export_path)
  encoded = tf.constant([tf.io.read_file(path).numpy() for path in image_paths])
  outputs = loaded.signatures['serving_default'](images=encoded)
  labels = outputs['labels'].numpy()
  sizes = zip(outputs['heights'].numpy(), outputs['widths'].numpy())
  return [labels[index, :height, :width] for index, (height, width) in enumerate(sizes)]


def _serve_labels_on_cpu(export_path: str, image_paths: Sequence[str],
                         labels_path: str) -> List[np.ndarray]:
  """`serve_labels` in a new process that sees no GPU."""
  command = [sys.executable, '-c', _CPU_SERVING_PROGRAM, labels_path, export_path,
             *image_paths]
  result = subprocess.run(command, env={**os.environ, 'CUDA_VISIBLE_DEVICES': ''},
                          check=False)
  if result.returncode != 0:
    raise RuntimeError(f'Serving {export_path} in a CPU-only process failed with exit '
                       f'status {result.returncode}.')
  with np.load(labels_path) as saved:
    return [saved[f'arr_{index}'] for index in range(len(image_paths))]


def _check_backbone(backbone: str, records_dir: str, run_dir: str,
                    served_images: Sequence[str], serving_device: str) -> Dict:
  """Trains, evaluates, exports and serves one backbone; returns its results."""
  import tensorflow as tf
  import tf_keras
  from deeplab.evaluation import run_evaluation
  from deeplab.export import export_from_checkpoint
  from deeplab.export.parity import label_agreement
  from deeplab.training import train
  experiment = _experiment(backbone, records_dir)
  model_dir = os.path.join(run_dir, 'train')
  seconds: Dict[str, float] = {}
  print(f'\n=== {backbone}: training {_STEPS.value} steps', flush=True)
  with _timed(seconds, 'train'):
    trained = train(experiment, model_dir)
  images_per_second, timed_steps = _steady_images_per_second(model_dir, _BATCH_SIZE.value)
  print(f'=== {backbone}: evaluating', flush=True)
  with _timed(seconds, 'evaluate'):
    evaluation = run_evaluation(experiment, model_dir,
                                output_dir=os.path.join(run_dir, 'eval'))[-1]
  print(f'=== {backbone}: exporting in {_EXPORT_PRECISION}', flush=True)
  export_experiment = override(experiment, {'runtime': {'mixed_precision_dtype':
                                                        _EXPORT_PRECISION}})
  with _timed(seconds, 'export'):
    export = export_from_checkpoint(export_experiment, model_dir,
                                    os.path.join(run_dir, 'export'),
                                    sample_image_paths=served_images)
  print(f'=== {backbone}: serving on {serving_device} and in a CPU-only process', flush=True)
  with _timed(seconds, 'serve'), tf.device(serving_device):
    served = serve_labels(export.path, served_images)
  with _timed(seconds, 'serve_cpu'):
    served_on_cpu = _serve_labels_on_cpu(export.path, served_images,
                                         os.path.join(run_dir, 'cpu_labels.npz'))
  tf_keras.backend.clear_session()
  agreement = label_agreement(served_on_cpu, served)
  print(f'=== {backbone}: {images_per_second:.1f} training images/s over {timed_steps} '
        f'steps, mIoU {evaluation.metrics.mean_iou:.4f}; the {_EXPORT_PRECISION} export '
        f'served on {serving_device} agrees with the CPU on {agreement:.4%} of the pixels',
        flush=True)
  return {
      'images_per_second': round(images_per_second, 2),
      'steps': trained.step,
      'timed_steps': timed_steps,
      'mean_iou': round(evaluation.metrics.mean_iou, 4),
      'export_path': export.path,
      'export_precision': _EXPORT_PRECISION,
      'serving_device': serving_device,
      'served_images': len(served_images),
      'label_agreement_with_cpu': agreement,
      'seconds': seconds,
  }


def _check_flags() -> None:
  unknown = [b for b in _BACKBONES.value if b not in SUPPORTED_BACKBONES]
  if unknown or not _BACKBONES.value:
    raise ValueError(f'--backbones must name backbones from {", ".join(SUPPORTED_BACKBONES)}; '
                     f'got {",".join(_BACKBONES.value)!r}.')
  if _STEPS.value < 2:
    raise ValueError(f'--steps must be at least 2 (the first logged steps include '
                     f'compilation and are not timed); got {_STEPS.value}.')
  if _BATCH_SIZE.value < 1:
    raise ValueError(f'--batch_size must be at least 1; got {_BATCH_SIZE.value}.')


def main(argv):
  del argv
  import tensorflow as tf
  from deeplab.export.parity import SAVED_MODEL_MIN_AGREEMENT
  gpus = tf.config.list_physical_devices('GPU')
  if not gpus and not _ALLOW_CPU.value:
    raise ValueError(_no_gpu_message())
  _check_flags()
  start = time.perf_counter()
  device = _device_report(gpus)
  _print_device(device)
  out = os.path.abspath(_OUTPUT_DIR.value)
  seconds: Dict[str, float] = {}
  with _timed(seconds, 'data'):
    records_dir = _write_dataset(os.path.join(out, 'data'), _CROP_SIZE.value,
                                 _BATCH_SIZE.value)
  served_images = sorted(glob.glob(os.path.join(out, 'data', 'raw', 'val', 'images',
                                                '*')))[:_SERVED_IMAGES]
  backbones = {}
  for backbone in _BACKBONES.value:
    run_dir = os.path.join(out, 'runs', backbone)
    shutil.rmtree(run_dir, ignore_errors=True)
    backbones[backbone] = _check_backbone(backbone, records_dir, run_dir, served_images,
                                          '/GPU:0' if gpus else '/CPU:0')
  summary = {
      'device': device,
      'settings': {'steps': _STEPS.value, 'crop_size': _CROP_SIZE.value,
                   'batch_size': _BATCH_SIZE.value, 'precision': _PRECISION.value,
                   'xla': _XLA.value, 'min_label_agreement': SAVED_MODEL_MIN_AGREEMENT},
      'backbones': backbones,
      'seconds': {**seconds, 'total': round(time.perf_counter() - start, 1)},
  }
  line = json.dumps(summary)
  atomic_write(os.path.join(out, 'gpu_check.json'), line + '\n')
  print(line, flush=True)
  failed = [name for name, result in backbones.items()
            if result['label_agreement_with_cpu'] < SAVED_MODEL_MIN_AGREEMENT]
  if failed:
    print(f'error: the export served on {backbones[failed[0]]["serving_device"]} disagrees '
          f'with the CPU on more than {1 - SAVED_MODEL_MIN_AGREEMENT:.1%} of the pixels for '
          f'{", ".join(failed)}.', file=sys.stderr)
    return 1
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
