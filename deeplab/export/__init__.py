"""Export for serving: TF Serving SavedModels, ONNX and TFLite models, with a parity gate.

- `export_from_checkpoint(experiment, checkpoint, export_dir, ...)`: what the
  `deeplab-export` tool calls: build the model, restore a native or official
  checkpoint, export.
- `export_model(model, export_dir, export_config, ...)`: export a model in memory
  as `<export_dir>/<version>/` (TF Serving's layout), optionally with an ONNX
  model (`onnx=True`, checked in ONNX Runtime; the `onnx` extra) and TFLite
  models; the export is published only if each predicts what the Keras model does.
- `ServingModule`: the `tf.Module` with decoding, checks, `deeplab.predict` and
  padding inside the graph (signatures `serving_default`, `image_tensor`,
  `tf_example`; see `deeplab.export.serving`).
- `TfliteConfig`: one TFLite model (quantization, input size, calibration).

Example (an export takes tens of seconds, so this is not a doctest):
  model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=5))
  report = export_model(model, '/tmp/serving/deeplab', ExportConfig(),
                        tflite=[TfliteConfig('float32', input_size=(129, 129))])
  print(report.summary())  # Exported version 1 to /tmp/serving/deeplab/1 ...
"""

from deeplab.export.exporter import ExportReport, export_from_checkpoint, export_model
from deeplab.export.onnx_model import ONNX_FILENAME, OnnxReport
from deeplab.export.parity import Agreement, ParityError
from deeplab.export.saved_model import next_version
from deeplab.export.serving import PADDED_LABEL, SIGNATURES, ServingModule
from deeplab.export.tflite import QUANTIZATIONS, TfliteConfig, TfliteReport

__all__ = [
    'Agreement',
    'ExportReport',
    'ONNX_FILENAME',
    'OnnxReport',
    'PADDED_LABEL',
    'ParityError',
    'QUANTIZATIONS',
    'SIGNATURES',
    'ServingModule',
    'TfliteConfig',
    'TfliteReport',
    'export_from_checkpoint',
    'export_model',
    'next_version',
]
