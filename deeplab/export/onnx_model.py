"""ONNX models of the serving graph, checked in ONNX Runtime by the parity gate.

`model.onnx` is the SavedModel's `image_tensor` signature converted by tf2onnx
(opset `OPSET`): input `images` uint8 [N, H, W, 3], RGB pixels 0..255, of any
size; output `labels` int32 [N, H, W] (and `probabilities` float32
[N, H, W, num_classes] with `ExportConfig.include_probabilities`). The model's
padding to a valid size and the export's scales, flip and output stride are in
the graph, as in the SavedModel; tiled inference is not (every image runs whole:
tile large images before calling, or serve them with the SavedModel). The
request checks of `image_tensor` (an empty batch, more than
`ExportConfig.max_image_pixels` pixels) are TensorFlow Assert ops, which ONNX has
no counterpart for: the converted graph has none, so callers check their inputs.

The same file runs in other ONNX runtimes: OpenVINO reads it directly
(`openvino.Core().compile_model('model.onnx', 'CPU')`, labels checked by
tests/test_export.py), and TensorRT builds an engine from it (README,
"Deploy").

Needs the `onnx` extra (tf2onnx, onnx, onnxruntime): `pip install 'deeplab[onnx]'`.

Example (a conversion takes seconds to minutes, so this is not a doctest):
  module = ServingModule(model, ExportConfig())
  expected = reference_labels(module, sample_images())
  report = export_onnx(module, '/tmp/onnx', sample_images(), expected)
  print(report.agreement, report.size_bytes)
"""

import dataclasses
import importlib
import os
import time
from typing import Any, List, Sequence, Tuple, Union

import numpy as np
from absl import logging

from deeplab.config import TilingConfig
from deeplab.export.parity import (SAVED_MODEL_MIN_AGREEMENT, Agreement, SampleImage,
                                   label_agreement)
from deeplab.export.serving import ServingModule

ONNX_FILENAME = 'model.onnx'
# Opset 17 (ONNX 1.12, 2022) is read by ONNX Runtime >= 1.12, OpenVINO and TensorRT 8.5+.
OPSET = 17
INSTALL_COMMAND = "pip install 'deeplab[onnx]'"
# The ONNX graph runs the SavedModel's float32 ops in another runtime: labels may
# differ only where two classes' scores tie to float rounding, as for the SavedModel.
ONNX_MIN_AGREEMENT = SAVED_MODEL_MIN_AGREEMENT


@dataclasses.dataclass(frozen=True)
class OnnxReport:
  """The written ONNX model: where, how big, how close to the Keras model, how fast.

  Attributes:
    path: the .onnx file.
    size_bytes: file size.
    agreement: the parity gate's result in ONNX Runtime.
    conversion_seconds: wall time of the tf2onnx conversion.
    seconds_per_image: mean ONNX Runtime time per sample image during the gate.
  """
  path: str
  size_bytes: int
  agreement: Agreement
  conversion_seconds: float
  seconds_per_image: float


def require_onnx() -> Tuple[Any, Any]:
  """The `tf2onnx` and `onnxruntime` modules.

  Raises:
    ImportError: the `onnx` extra is not installed; the message says how to install it.
  """
  try:
    return importlib.import_module('tf2onnx'), importlib.import_module('onnxruntime')
  except ImportError as e:
    raise ImportError(f'ONNX export needs tf2onnx and onnxruntime: {INSTALL_COMMAND} '
                      f'(the import failed: {e}).') from e


def convert(module: ServingModule) -> bytes:
  """The ONNX model (serialized ModelProto) of `module`'s `image_tensor` function,
  with every image run whole.

  tf2onnx cannot give the convolutions inside the tiled path's loop a rank, so
  the converted function is the module's with tiling off; the rest (padding,
  scales, flips, output stride) is the SavedModel's.
  """
  tf2onnx, _ = require_onnx()
  logging.info('Converting the image_tensor signature to ONNX (opset %d).', OPSET)
  whole_images = dataclasses.replace(module.export_config,
                                     tiling=TilingConfig(max_whole_image_pixels=0))
  # Kept referenced while converting: a tf.function method holds its object weakly.
  whole_module = ServingModule(module.model, whole_images)
  function = whole_module.serve_image_tensor
  model_proto, _ = tf2onnx.convert.from_function(function, function.input_signature,
                                                 opset=OPSET)
  return model_proto.SerializeToString()


def onnx_session(model: Union[bytes, str]):
  """An ONNX Runtime CPU `InferenceSession` of a serialized model or a .onnx path."""
  _, onnxruntime = require_onnx()
  return onnxruntime.InferenceSession(model, providers=['CPUExecutionProvider'])


def onnx_labels(session, images: Sequence[np.ndarray]) -> Tuple[List[np.ndarray], float]:
  """Labels int32 [H, W] of each uint8 image [1, H, W, 3], and seconds per image."""
  labels = []
  start = time.perf_counter()
  for image in images:
    labels.append(session.run(['labels'], {'images': image})[0][0])
  return labels, (time.perf_counter() - start) / max(len(images), 1)


def export_onnx(module: ServingModule, directory: str, samples: Sequence[SampleImage],
                expected: Sequence[np.ndarray]) -> OnnxReport:
  """Converts `module`, checks the ONNX model in ONNX Runtime, writes it.

  The file is `<directory>/model.onnx`, written whether or not the gate passed:
  `directory` is the export's temporary directory, published only if every gate
  passes, and the caller raises if `report.agreement` did not pass.

  Args:
    module: the `ServingModule` the SavedModel was written from.
    directory: where `model.onnx` goes.
    samples: the gate's images, each run alone at its own size.
    expected: the Keras model's labels of each sample (`parity.reference_labels`).
  """
  start = time.perf_counter()
  onnx_model = convert(module)
  conversion_seconds = time.perf_counter() - start
  images = [sample.pixels[np.newaxis] for sample in samples]
  labels, seconds = onnx_labels(onnx_session(onnx_model), images)
  agreement = Agreement('onnx (ONNX Runtime)', label_agreement(expected, labels),
                        ONNX_MIN_AGREEMENT, sum(e.size for e in expected))
  path = os.path.join(directory, ONNX_FILENAME)
  with open(path, 'wb') as f:
    f.write(onnx_model)
  logging.info('%s; %s, %.1f MB, converted in %.1f s, %.1f ms per image.', agreement, path,
               len(onnx_model) / 2**20, conversion_seconds, 1000 * seconds)
  return OnnxReport(path, len(onnx_model), agreement, conversion_seconds, seconds)
