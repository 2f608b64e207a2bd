"""One export: SavedModel (+ ONNX, TFLite models), checked against the model, then published.

Everything is written to a hidden temporary directory inside `export_dir` and
renamed to its version number only once every parity check has passed, so TF
Serving (which ignores non-numeric names) never sees a partial or failing export,
and a failed or killed export leaves no version directory behind.

Layout of `<export_dir>/<version>/`:
  saved_model.pb, variables/          the SavedModel (signatures: `serving.SIGNATURES`)
  assets.extra/deeplab_export.yaml    the model and export configs
  assets.extra/tf_serving_warmup_requests   with tensorflow-serving-api installed
  model.onnx                          with onnx=True: the image_tensor signature in ONNX
  tflite/<quantization>_<H>x<W>.tflite      each requested TFLite model

Example (an export takes tens of seconds, so this is not a doctest):
  experiment = load_experiment('synthetic')
  report = export_from_checkpoint(experiment, 'train_dir', '/tmp/serving/deeplab',
                                  tflite=[TfliteConfig('float32', (129, 129))])
  print(report.summary())
"""

import dataclasses
import os
import shutil
import time
import uuid
from typing import Optional, Sequence, Tuple

import yaml
from absl import logging

from deeplab import kernels
from deeplab.checkpoints import restore_weights
from deeplab.config import ExperimentConfig, ExportConfig
from deeplab.data import resolve_dataset_settings
from deeplab.export.onnx_model import OnnxReport, export_onnx, require_onnx
from deeplab.export.parity import Agreement, check, reference_labels, sample_images
from deeplab.export.saved_model import (saved_model_parity, version_path,
                                        write_saved_model, write_warmup_requests)
from deeplab.export.serving import ServingModule
from deeplab.export.tflite import TfliteConfig, TfliteReport, export_tflite
from deeplab.hyperparams import to_dict
from deeplab.model import DeepLabModel, build_model, with_output_stride

CONFIG_FILENAME = 'deeplab_export.yaml'


@dataclasses.dataclass(frozen=True)
class ExportReport:
  """What an export wrote and how it compared with the Keras model.

  Attributes:
    path: the version directory, `<export_dir>/<version>`.
    version: the version number.
    agreements: the SavedModel's parity results, one per signature.
    tflite: one report per TFLite model.
    onnx: the ONNX model's report, if one was asked for.
    warmup_requests: whether TF Serving warm-up requests were written.
    seconds: wall time of the export.
  """
  path: str
  version: int
  agreements: Tuple[Agreement, ...]
  tflite: Tuple[TfliteReport, ...] = ()
  onnx: Optional[OnnxReport] = None
  warmup_requests: bool = False
  seconds: float = 0.0

  def summary(self) -> str:
    """A few lines: where, each parity result, each ONNX and TFLite model's size and
    speed."""
    lines = [f'Exported version {self.version} to {self.path} in {self.seconds:.0f} s.']
    lines += [f'  {a}' for a in self.agreements]
    if self.onnx:
      lines.append(f'  {self.onnx.agreement}')
      lines.append(f'    {self.onnx.path}: {self.onnx.size_bytes / 2**20:.2f} MB, converted in '
                   f'{self.onnx.conversion_seconds:.1f} s, '
                   f'{1000 * self.onnx.seconds_per_image:.1f} ms per image')
    for t in self.tflite:
      lines.append(f'  {t.agreement}')
      lines.append(f'    {t.path}: {t.size_bytes / 2**20:.2f} MB, '
                   f'{1000 * t.seconds_per_image:.1f} ms per image')
    if not self.warmup_requests:
      lines.append('  no TF Serving warm-up requests (tensorflow-serving-api not installed)')
    return '\n'.join(lines)


def export_model(model: DeepLabModel,
                 export_dir: str,
                 export_config: ExportConfig = ExportConfig(),
                 *,
                 version: Optional[int] = None,
                 sample_image_paths: Sequence[str] = (),
                 tflite: Sequence[TfliteConfig] = (),
                 onnx: bool = False) -> ExportReport:
  """Exports `model` for serving as `<export_dir>/<version>`, after a parity check.

  Args:
    model: a `DeepLabModel` with its trained weights.
    export_dir: TF Serving's base directory of the model (created if absent).
    export_config: scales, flip, output stride, probabilities and the pixel limit
      baked into the graph.
    version: the version number; None takes one more than the highest existing.
    sample_image_paths: images (paths or globs) for the parity checks; none uses
      a few synthetic images.
    tflite: TFLite models to write beside the SavedModel.
    onnx: also write `model.onnx` (`deeplab.export.onnx_model`), checked in ONNX
      Runtime.

  Returns:
    An `ExportReport`.

  Raises:
    ParityError: an exported artifact disagrees with the Keras model beyond its
      threshold; nothing is left in `export_dir`.
    ValueError: the version exists already, or a sample image is unreadable.
    ImportError: `onnx` is set and the `onnx` extra is not installed.
  """
  start = time.time()
  if onnx:
    require_onnx()
  if export_config.output_stride not in (None, model.config.output_stride):
    model = with_output_stride(model, export_config.output_stride)
  samples = sample_images(sample_image_paths)
  os.makedirs(export_dir, exist_ok=True)
  final_path = version_path(export_dir, version)
  # Hidden and non-numeric: TF Serving skips it while it is written.
  temporary = os.path.join(export_dir,
                           f'.tmp-{os.path.basename(final_path)}-{uuid.uuid4().hex[:8]}')
  os.mkdir(temporary)
  try:
    # A portable graph: it serves on GPUs and on CPUs without oneDNN too, as fast
    # as the native dilated kernels on x86 (measured at 513x513); the parity check
    # runs what is exported.
    with kernels.kernel_target('portable'):
      module = ServingModule(model, export_config)
      write_saved_model(module, temporary)
      _write_configs(model, export_config, temporary)
      expected = reference_labels(module, samples)
      agreements = saved_model_parity(temporary, expected, samples)
      check(agreements)
      # The SavedModel's own image_tensor graph: ONNX runtimes get what was checked.
      onnx_report = export_onnx(module, temporary, samples, expected) if onnx else None
    check([onnx_report.agreement] if onnx_report else [])
    # TFLite's own kernels run dilated convolutions on every platform.
    with kernels.kernel_target('native'):
      tflite_reports = [export_tflite(model, export_config, config,
                                      os.path.join(temporary, 'tflite'), samples)
                        for config in tflite]
    check([report.agreement for report in tflite_reports])
    warmup = write_warmup_requests(temporary, samples)
    os.rename(temporary, final_path)
  except BaseException:
    shutil.rmtree(temporary, ignore_errors=True)
    raise
  tflite_reports = [dataclasses.replace(r, path=r.path.replace(temporary, final_path, 1))
                    for r in tflite_reports]
  if onnx_report:
    onnx_report = dataclasses.replace(
        onnx_report, path=onnx_report.path.replace(temporary, final_path, 1))
  report = ExportReport(final_path, int(os.path.basename(final_path)), tuple(agreements),
                        tuple(tflite_reports), onnx_report, warmup, time.time() - start)
  logging.info('Exported version %d to %s in %.0f s.', report.version, final_path,
               report.seconds)
  return report


def _write_configs(model: DeepLabModel, export_config: ExportConfig, path: str) -> None:
  directory = os.path.join(path, 'assets.extra')
  os.makedirs(directory, exist_ok=True)
  with open(os.path.join(directory, CONFIG_FILENAME), 'w', encoding='utf-8') as f:
    yaml.safe_dump({'model': to_dict(model.config), 'export': to_dict(export_config)}, f,
                   sort_keys=False)


def export_from_checkpoint(experiment: ExperimentConfig,
                           checkpoint: str,
                           export_dir: str,
                           *,
                           version: Optional[int] = None,
                           sample_image_paths: Sequence[str] = (),
                           tflite: Sequence[TfliteConfig] = (),
                           onnx: bool = False) -> ExportReport:
  """Builds `experiment.model`, restores `checkpoint` into it and exports it.

  Args:
    experiment: its `model` and `export` configs are used, and the precision
      policy of its `runtime` (e.g. 'mixed_bfloat16').
    checkpoint: a TF2 checkpoint (prefix, or a training directory: its latest) or
      an official TF1 checkpoint; every model weight must be found in it.
    export_dir, version, sample_image_paths, tflite, onnx: as `export_model`.

  Raises:
    FileNotFoundError, CheckpointMismatchError: from `restore_weights`.
    ParityError, ValueError, ImportError: from `export_model`.
  """
  # An existing version or a missing extra fails before the slow part.
  version_path(export_dir, version)
  if onnx:
    require_onnx()
  experiment = resolve_dataset_settings(experiment)
  model = build_model(experiment.model, precision=experiment.runtime.mixed_precision_dtype)
  restored = restore_weights(model, checkpoint, strict=True)
  logging.info('%s', restored.summary())
  return export_model(model, export_dir, experiment.export, version=version,
                      sample_image_paths=sample_image_paths, tflite=tflite, onnx=onnx)
