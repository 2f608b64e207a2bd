r"""Measures DeepLab's speed on this machine; prints one JSON line per measurement.

  deeplab-benchmark                                   # xception_65, OS 16, 513x513
  deeplab-benchmark --backbone=resnet_v1_101_beta --measurements=latency,throughput
  deeplab-benchmark --precision=mixed_bfloat16 --xla --threads=2,1
  deeplab-benchmark --measurements=agreement --precision=mixed_bfloat16 \
      --images='photos/*.jpg'                         # labels vs float32
  deeplab-benchmark --measurements=runtimes --size=513,513 --runs=7
      # the export in TensorFlow, ONNX Runtime, OpenVINO: pip install 'deeplab[onnx,openvino]'
  deeplab-benchmark --table --update_readme=README.md # the README's speed table
  deeplab-benchmark --output=tools/benchmarks/cpu-2core-avx512.json  # keep the results

Every line states the machine (CPU, cores, TensorFlow, oneDNN, threads) and the
configuration; speeds come with the fraction of the machine's 3x3 convolution
ceiling (2 x multiply-adds / time / ceiling GFLOP/s).
"""

import json

from absl import flags

from deeplab.config import (DEFAULT_MEASUREMENTS, MEASUREMENTS, SUPPORTED_BACKBONES,
                            SUPPORTED_PRECISIONS)
from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

_BACKBONE = flags.DEFINE_enum('backbone', 'xception_65', list(SUPPORTED_BACKBONES),
                              'Backbone of the DeepLabV3+ model.')
_OUTPUT_STRIDE = flags.DEFINE_integer('output_stride', 16, 'Output stride of the model.')
_SIZE = flags.DEFINE_list('size', ['513', '513'],
                          'Input height,width (inference) and crop size (training).')
_BATCH_SIZE = flags.DEFINE_integer(
    'batch_size', 4, 'Images per batch for throughput, the train step and the pipeline.')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 21, 'Classes of the logits layer.')
_PRECISION = flags.DEFINE_enum('precision', 'float32', list(SUPPORTED_PRECISIONS),
                               'Precision policy of the model and the train step.')
_XLA = flags.DEFINE_bool('xla', False, 'Compile the model / train step with XLA.')
_THREADS = flags.DEFINE_list(
    'threads', [], 'intra_op,inter_op thread counts (0 = TensorFlow\'s default); '
    'empty keeps TensorFlow\'s defaults.')
_RUNS = flags.DEFINE_integer('runs', 5, 'Timed runs per measurement (median reported).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed runs before the timed ones.')
_MEASUREMENTS = flags.DEFINE_list(
    'measurements', list(DEFAULT_MEASUREMENTS),
    f'Measurements to run, from: {", ".join(MEASUREMENTS)}.')
_IMAGES = flags.DEFINE_list('images', [],
                            'Images (paths or globs) of the agreement measurement.')
_TABLE = flags.DEFINE_bool(
    'table', False, 'Measure every backbone (of --backbones) and print the speed table.')
_BACKBONES = flags.DEFINE_list('backbones', list(SUPPORTED_BACKBONES),
                               'Backbones of the --table mode.')
_PRECISIONS = flags.DEFINE_list('precisions', ['float32', 'mixed_bfloat16'],
                                'Precisions of the --table mode.')
_OUTPUT = flags.DEFINE_string(
    'output', None, 'Also add the results to this JSON file (created if absent), e.g. '
    'the machine\'s file under tools/benchmarks/.')
_UPDATE_README = flags.DEFINE_string(
    'update_readme', None,
    'With --table: write the table between the "speed-table" markers of this file.')


def _threads():
  if not _THREADS.value:
    return None, None
  if len(_THREADS.value) != 2:
    raise ValueError(f'--threads takes intra_op,inter_op; got {",".join(_THREADS.value)}.')
  return tuple(int(v) for v in _THREADS.value)


def main(argv):
  del argv
  threads = _threads()
  from deeplab.benchmark import (BenchmarkConfig, measure_speed_table, run_benchmarks,
                                 set_threads)
  set_threads(*threads)
  config = BenchmarkConfig(
      backbone=_BACKBONE.value, output_stride=_OUTPUT_STRIDE.value,
      size=tuple(int(v) for v in _SIZE.value), batch_size=_BATCH_SIZE.value,
      num_classes=_NUM_CLASSES.value, precision=_PRECISION.value, xla=_XLA.value,
      runs=_RUNS.value, warmup=_WARMUP.value)
  if _TABLE.value:
    _, table = measure_speed_table(_BACKBONES.value, config, _PRECISIONS.value,
                                   _UPDATE_README.value)
    print(table, end='')
    return 0
  for result in run_benchmarks(config, _MEASUREMENTS.value, _IMAGES.value, _OUTPUT.value):
    print(json.dumps(result), flush=True)
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
