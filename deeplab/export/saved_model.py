"""SavedModels in TF Serving's layout: version directories, warm-up, the parity check.

TF Serving watches a base directory and serves its highest numbered version
subdirectory, `<export_dir>/<version>/saved_model.pb` + `variables/`. Versions here
are consecutive integers: the next one is one more than the highest existing
(1 in an empty directory), so the newest export is the one served.

Example:
  >>> next_version('/tmp/empty_or_missing_dir')
  1
"""

import os
from typing import Callable, List, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from deeplab.data.schema import IMAGE_ENCODED
from deeplab.export.parity import (SAVED_MODEL_MIN_AGREEMENT, Agreement, ParityError,
                                   SampleImage, label_agreement)
from deeplab.export.serving import ServingModule

# TF Serving replays these requests before it reports the model available.
WARMUP_FILENAME = 'tf_serving_warmup_requests'


def next_version(export_dir: str) -> int:
  """One more than the highest numbered subdirectory of `export_dir` (1 if none)."""
  if not os.path.isdir(export_dir):
    return 1
  versions = [int(name) for name in os.listdir(export_dir)
              if name.isdigit() and os.path.isdir(os.path.join(export_dir, name))]
  return max(versions, default=0) + 1


def version_path(export_dir: str, version: Optional[int]) -> str:
  """The directory of `version` (None: `next_version`) under `export_dir`.

  Raises:
    ValueError: `version` is not positive, or its directory exists already.
  """
  if version is None:
    version = next_version(export_dir)
  if version < 1:
    raise ValueError(f'Export version must be a positive integer; got {version}.')
  path = os.path.join(export_dir, str(version))
  if os.path.exists(path):
    raise ValueError(f'Export version {version} exists already ({path}); choose another '
                     f'version, or leave it unset to export as version '
                     f'{next_version(export_dir)}.')
  return path


def write_saved_model(module: ServingModule, path: str) -> None:
  """Saves `module`'s signatures (`deeplab.export.serving.SIGNATURES`) and the model
  variables they read to `path`."""
  logging.info('Tracing the serving signatures and writing the SavedModel to %s.', path)
  signatures = module.signatures()
  # The saved object holds the variables and nothing else. Saving the module itself
  # would trace each of its functions a second time (TensorFlow retraces them for
  # the object graph under its save context) and store them twice, for nothing:
  # servers and clients call the signatures.
  root = tf.Module(name='deeplab_serving')
  root.model_variables = list(module.model_variables)
  tf.saved_model.save(root, path, signatures=signatures)


def _example(encoded: bytes) -> bytes:
  feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded]))
  return tf.train.Example(features=tf.train.Features(
      feature={IMAGE_ENCODED: feature})).SerializeToString()


def saved_model_parity(path: str, expected: Sequence[np.ndarray],
                       samples: Sequence[SampleImage]) -> List[Agreement]:
  """Loads the SavedModel at `path` and runs `saved_model_agreements` on it."""
  loaded = tf.saved_model.load(path)
  agreements = saved_model_agreements(loaded.signatures, expected, samples)
  for agreement in agreements:
    logging.info('%s', agreement)
  return agreements


def saved_model_agreements(signatures: Mapping[str, Callable], expected: Sequence[np.ndarray],
                           samples: Sequence[SampleImage]) -> List[Agreement]:
  """Compares each signature of a loaded SavedModel with the Keras model on `samples`.

  `serving_default` and `tf_example` get all samples in one batch (mixed sizes, so
  padding is exercised), `image_tensor` one sample at a time.

  Args:
    signatures: `tf.saved_model.load(path).signatures` (keep the loaded object).
    expected: the Keras model's labels of each sample
      (`deeplab.export.parity.reference_labels` of the saved `ServingModule`).
    samples: the images to compare on.
  """
  logging.info('Parity check of the SavedModel on %d sample images.', len(samples))
  encoded = tf.constant([s.encoded for s in samples])
  outputs = {
      'serving_default': signatures['serving_default'](images=encoded),
      'tf_example': signatures['tf_example'](
          serialized_examples=tf.constant([_example(s.encoded) for s in samples])),
  }
  served = {}
  for name, output in outputs.items():
    sizes = np.stack([output['heights'].numpy(), output['widths'].numpy()], axis=1)
    for sample, size in zip(samples, sizes):
      if tuple(size) != sample.pixels.shape[:2]:
        raise ParityError(f'{name} reports sample {sample.name} as {size[0]}x{size[1]} '
                         f'pixels; it has {sample.pixels.shape[0]}x{sample.pixels.shape[1]}.')
    labels = output['labels'].numpy()
    served[name] = [labels[i, :h, :w] for i, (h, w) in enumerate(sizes)]
  served['image_tensor'] = [
      signatures['image_tensor'](images=tf.constant(s.pixels[np.newaxis]))['labels'][0].numpy()
      for s in samples]
  pixels = sum(label.size for label in expected)
  return [Agreement(name, label_agreement(expected, served[name]), SAVED_MODEL_MIN_AGREEMENT,
                    pixels) for name in ('serving_default', 'image_tensor', 'tf_example')]


def write_warmup_requests(path: str, samples: Sequence[SampleImage]) -> bool:
  """Writes `assets.extra/tf_serving_warmup_requests`: one request per signature.

  Needs the `tensorflow-serving-api` package (an optional extra); without it,
  logs that warm-up records are skipped and returns False.
  """
  try:
    # pylint: disable-next=import-outside-toplevel
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
  except ImportError:
    logging.info('tensorflow-serving-api is not installed: no TF Serving warm-up '
                 'requests written (pip install tensorflow-serving-api to add them).')
    return False
  sample = samples[0]
  inputs = {
      'serving_default': ('images', [sample.encoded]),
      'image_tensor': ('images', sample.pixels[np.newaxis]),
      'tf_example': ('serialized_examples', [_example(sample.encoded)]),
  }
  directory = os.path.join(path, 'assets.extra')
  os.makedirs(directory, exist_ok=True)
  with tf.io.TFRecordWriter(os.path.join(directory, WARMUP_FILENAME)) as writer:
    for signature, (key, value) in inputs.items():
      request = predict_pb2.PredictRequest()
      request.model_spec.signature_name = signature
      request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  logging.info('Wrote TF Serving warm-up requests for %s.', ', '.join(inputs))
  return True
