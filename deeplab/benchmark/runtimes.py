"""One exported graph in each runtime, side by side: TensorFlow runs the SavedModel's
`image_tensor` signature, ONNX Runtime and OpenVINO (where installed) its
conversion `model.onnx`, on the same uint8 image, timed in turns in one process
(`time_interleaved`), so every runtime sees the same machine load.

Each runtime is reported with its median seconds, its ratio to TensorFlow's, the
fraction of pixels whose labels equal TensorFlow's, and the peak resident memory
of a fresh process that loads the export in that runtime alone and labels one
image (Linux; what a server of that runtime needs). OpenVINO computes in float32
(`INFERENCE_PRECISION_HINT`), as the parity gate checks; by default it computes
in bfloat16 on CPUs with bfloat16 units.

Needs the `onnx` extra; OpenVINO is measured where `openvino` imports.

Example (an export and a conversion take tens of seconds, so this is not a doctest):
  config = BenchmarkConfig(backbone='xception_65', size=(513, 513), runs=5)
  result = measure_runtimes(config)
  result['runtimes']['onnxruntime']['ratio_to_tensorflow']  # e.g. 1.06
"""

import importlib
import subprocess
import sys
import tempfile
from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras

from deeplab.benchmark.inference import BenchmarkConfig, benchmark_images, build_benchmark_model
from deeplab.benchmark.timing import time_interleaved
from deeplab.config import ExportConfig
from deeplab.export import ExportReport, export_model
from deeplab.export.onnx_model import onnx_session, require_onnx
from deeplab.predict import load_label_predictor

RUNTIMES = ('tensorflow', 'onnxruntime', 'openvino')
# Loads `path` in one runtime and labels `images`, in a process of its own.
_LOAD_AND_RUN = {
    'tensorflow': 'import tensorflow as tf\n'
                  'signature = tf.saved_model.load(path).signatures["image_tensor"]\n'
                  'signature(images=tf.constant(images))',
    'onnxruntime': 'import onnxruntime\n'
                   'session = onnxruntime.InferenceSession(\n'
                   '    path, providers=["CPUExecutionProvider"])\n'
                   'session.run(["labels"], {"images": images})',
    'openvino': 'import openvino\n'
                'compiled = openvino.Core().compile_model(path, "CPU", '
                '{"INFERENCE_PRECISION_HINT": "f32"})\n'
                'compiled({"images": images})',
}
_PEAK_MEMORY = ('import sys\nimport numpy as np\n'
                'path, height, width = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])\n'
                'images = np.zeros([1, height, width, 3], np.uint8)\n'
                '{load_and_run}\n'
                'status = open("/proc/self/status").read()\n'
                'print(int(status.split("VmHWM:")[1].split()[0]) / 1024)\n')


def peak_resident_mib(runtime: str, path: str, size) -> Optional[float]:
  """Peak resident memory (MiB) of a fresh Python process that loads `path` (the
  SavedModel for 'tensorflow', model.onnx otherwise) in `runtime` and labels one
  uint8 image of `size`; None where /proc is absent (not Linux) or the process fails."""
  script = _PEAK_MEMORY.format(load_and_run=_LOAD_AND_RUN[runtime])
  result = subprocess.run([sys.executable, '-c', script, path, *map(str, size)],
                          capture_output=True, text=True, check=False, timeout=600)
  try:
    return round(float(result.stdout.split()[-1]), 1)
  except (IndexError, ValueError):
    return None


def _openvino_labels(path: str) -> Optional[Callable[[np.ndarray], np.ndarray]]:
  """OpenVINO's labels function of the ONNX model at `path`, or None without OpenVINO."""
  try:
    openvino = importlib.import_module('openvino')
  except ImportError:
    return None
  compiled = openvino.Core().compile_model(path, 'CPU', {'INFERENCE_PRECISION_HINT': 'f32'})
  output = compiled.output('labels')
  return lambda images: compiled({'images': images})[output]


def _loaders(report: ExportReport) -> Dict[str, Callable[[], Optional[Callable]]]:
  """Per runtime, a function that loads the export and returns its labels function
  (uint8 [1, H, W, 3] -> int32 [1, H, W] NumPy), or None where not installed."""

  def tensorflow_labels():
    predict = load_label_predictor(report.path)
    return lambda images: predict(tf.constant(images)).numpy()

  def onnxruntime_labels():
    session = onnx_session(report.onnx.path)
    return lambda images: session.run(['labels'], {'images': images})[0]

  return {'tensorflow': tensorflow_labels, 'onnxruntime': onnxruntime_labels,
          'openvino': lambda: _openvino_labels(report.onnx.path)}


def measure_runtimes(config: BenchmarkConfig,
                     model: Optional[tf_keras.Model] = None) -> Dict[str, Any]:
  """Latency (batch 1, `config.size`) and memory of the exported model in each runtime.

  The model is exported with `model.onnx` through `deeplab.export.export_model`
  (both parity gates) into a temporary directory, removed afterwards.

  Args:
    config: the model, input size, runs and warm-up runs (at least one is made:
      it also gives the labels compared).
    model: a built model; None builds the one of `config`.

  Returns:
    {'measurement': 'runtimes', 'batch_size': 1, 'onnx_size_bytes',
     'onnx_conversion_seconds', 'not_installed': runtimes skipped, 'runtimes':
     {name: {'seconds', 'ratio_to_tensorflow', 'label_agreement_with_tensorflow',
     'peak_resident_mib'}}}.

  Raises:
    ImportError: the `onnx` extra is not installed.
  """
  require_onnx()
  model = model or build_benchmark_model(config)
  images = benchmark_images(1, config.size, tf.uint8).numpy()
  with tempfile.TemporaryDirectory(prefix='deeplab-export-') as export_dir:
    report = export_model(model, export_dir, ExportConfig(), onnx=True)
    functions, labels = {}, {}
    for name, load in _loaders(report).items():
      function = load()
      if function is not None:
        labels[name] = function(images)
        functions[name] = lambda f=function: f(images)
    timings = time_interleaved(functions, config.runs, max(config.warmup - 1, 0))
    memory = {name: peak_resident_mib(name, report.path if name == 'tensorflow'
                                      else report.onnx.path, config.size)
              for name in functions}
  reference = timings['tensorflow'].median
  return {
      'measurement': 'runtimes', 'batch_size': 1,
      'onnx_size_bytes': report.onnx.size_bytes,
      'onnx_conversion_seconds': round(report.onnx.conversion_seconds, 2),
      'not_installed': [name for name in RUNTIMES if name not in functions],
      'runtimes': {
          name: {'seconds': timing.as_dict(),
                 'ratio_to_tensorflow': round(timing.median / reference, 3),
                 'label_agreement_with_tensorflow': round(
                     float(np.mean(labels[name] == labels['tensorflow'])), 6),
                 'peak_resident_mib': memory[name]}
          for name, timing in timings.items()},
  }
