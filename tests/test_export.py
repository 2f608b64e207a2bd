"""Exporting for TF Serving and ONNX: layout, signatures, parity gates, guards, no
retracing; OpenVINO reads the ONNX model.

One tiny DeepLabV3+ (MobileNetV2 x0.25, decoder) is exported once per module (with
model.onnx where the onnx extra is installed) and every test reads that export.
"""

import importlib.util
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
import yaml

from deeplab import ModelConfig, build_model
from deeplab.config import ExportConfig, TilingConfig
from deeplab.data.synthetic import generate_example
from deeplab.export import (ONNX_FILENAME, PADDED_LABEL, SIGNATURES, ParityError,
                            ServingModule, export_model, exporter, onnx_model)
from deeplab.export.parity import Agreement, check, reference_labels, sample_images
from deeplab.export.saved_model import (next_version, saved_model_agreements, version_path,
                                        write_saved_model, write_warmup_requests)
from deeplab.predict import predict_labels, predict_logits
from test_export_decoding import jpeg_declaring, png_header

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2

NUM_CLASSES = 4
CONFIG = ModelConfig(backbone='mobilenet_v2', num_classes=NUM_CLASSES, depth_multiplier=0.25,
                     aspp_convs_filters=16, decoder_filters=16)
# Images above 100x100 pixels (none but the tiling test's) run in 65x65 tiles.
EXPORT = ExportConfig(include_probabilities=True, tiling=TilingConfig(
    max_whole_image_pixels=100 * 100, tile_size=65, tile_overlap=24))
BIN = pathlib.Path(sys.executable).parent
ONNX_INSTALLED = all(importlib.util.find_spec(name) for name in ('tf2onnx', 'onnxruntime'))
needs_onnx = pytest.mark.skipif(
    not ONNX_INSTALLED,
    reason=f'the onnx extra is not installed ({onnx_model.INSTALL_COMMAND})')


def seeded_model(config, seed):
  # Untrained models have nearly tied class scores; fixed weights keep the
  # comparisons with the Keras model from depending on a lucky draw.
  tf_keras.utils.set_random_seed(seed)
  return build_model(config)


@pytest.fixture(scope='module')
def model():
  return seeded_model(CONFIG, seed=1)


@pytest.fixture(scope='module')
def export(model, tmp_path_factory, request):
  export_dir = tmp_path_factory.mktemp('serving') / 'deeplab'
  # model.onnx when a selected test reads it (the generic-kernel pass selects none).
  onnx = ONNX_INSTALLED and any(mark == needs_onnx.mark for item in request.session.items
                                if item.module is request.module
                                for mark in item.iter_markers('skipif'))
  return export_model(model, str(export_dir), EXPORT, onnx=onnx)


@pytest.fixture(scope='module')
def signatures(export):
  loaded = tf.saved_model.load(export.path)
  yield loaded.signatures
  del loaded


def scene(height, width, seed):
  return generate_example(np.random.default_rng(seed), height, width)[0]


def keras_labels(model, image):
  return predict_labels(model, image[np.newaxis])[0].numpy()


def agreement(expected, actual):
  return float(np.mean(np.asarray(expected) == np.asarray(actual)))


@pytest.mark.portable
def test_export_is_a_tf_serving_version_directory_and_passes_its_parity_gate(export):
  export_dir = os.path.dirname(export.path)
  assert export.version == 1 and os.listdir(export_dir) == ['1']  # no temporary left
  for name in ('saved_model.pb', 'variables', 'assets.extra/deeplab_export.yaml'):
    assert os.path.exists(os.path.join(export.path, name)), name
  assert [a.name for a in export.agreements] == ['serving_default', 'image_tensor',
                                                 'tf_example']
  assert all(a.passed and a.agreement >= 0.999 for a in export.agreements)
  with open(os.path.join(export.path, 'assets.extra', 'deeplab_export.yaml')) as f:
    recorded = yaml.safe_load(f)
  assert recorded['model']['num_classes'] == NUM_CLASSES
  assert recorded['export']['include_probabilities'] is True


# In the oneDNN pass only: test_platforms.py serves an export in a plain TensorFlow
# process with the generic kernels.
def test_plain_tensorflow_process_runs_every_signature_on_jpeg_and_png(model, export,
                                                                       tmp_path):
  jpeg = tf.io.encode_jpeg(scene(70, 90, seed=1)).numpy()
  png = tf.io.encode_png(scene(49, 57, seed=2)).numpy()
  (tmp_path / 'a.jpg').write_bytes(jpeg)
  (tmp_path / 'b.png').write_bytes(png)
  script = textwrap.dedent(f"""
      import sys
      import numpy as np
      import tensorflow as tf
      signatures = tf.saved_model.load({export.path!r}).signatures
      jpeg = open({str(tmp_path / 'a.jpg')!r}, 'rb').read()
      png = open({str(tmp_path / 'b.png')!r}, 'rb').read()
      encoded = signatures['serving_default'](images=tf.constant([jpeg, png]))
      example = tf.train.Example(features=tf.train.Features(feature={{
          'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(value=[png]))}}))
      examples = signatures['tf_example'](
          serialized_examples=tf.constant([example.SerializeToString()]))
      pixels = tf.io.decode_png(png, channels=3)[tf.newaxis]
      tensor = signatures['image_tensor'](images=pixels)
      assert not [m for m in sys.modules if m.split('.')[0] == 'deeplab'], 'deeplab imported'
      np.savez({str(tmp_path / 'out.npz')!r},
               **{{f'encoded_{{k}}': v.numpy() for k, v in encoded.items()}},
               **{{f'example_{{k}}': v.numpy() for k, v in examples.items()}},
               **{{f'tensor_{{k}}': v.numpy() for k, v in tensor.items()}})
      """)
  subprocess.run([sys.executable, '-c', script], check=True, cwd=tmp_path,
                 env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
  out = np.load(tmp_path / 'out.npz')
  jpeg_pixels = tf.io.decode_jpeg(jpeg, channels=3).numpy()
  png_pixels = tf.io.decode_png(png, channels=3).numpy()
  assert out['encoded_heights'].tolist() == [70, 49]
  assert out['encoded_widths'].tolist() == [90, 57]
  assert agreement(keras_labels(model, jpeg_pixels), out['encoded_labels'][0]) >= 0.999
  assert agreement(keras_labels(model, png_pixels), out['encoded_labels'][1, :49, :57]) >= 0.999
  np.testing.assert_array_equal(out['example_labels'][0], out['encoded_labels'][1, :49, :57])
  np.testing.assert_array_equal(out['tensor_labels'][0], out['encoded_labels'][1, :49, :57])
  assert out['tensor_probabilities'].shape == (1, 49, 57, NUM_CLASSES)


def test_mixed_sizes_are_padded_with_the_documented_label(signatures):
  small, large = scene(33, 65, seed=3), scene(65, 41, seed=4)
  out = signatures['serving_default'](images=tf.constant(
      [tf.io.encode_png(small).numpy(), tf.io.encode_png(large).numpy()]))
  labels, probabilities = out['labels'].numpy(), out['probabilities'].numpy()
  assert labels.shape == (2, 65, 65) and probabilities.shape == (2, 65, 65, NUM_CLASSES)
  assert (labels[0, 33:] == PADDED_LABEL).all() and (labels[0, :, 65:] == PADDED_LABEL).all()
  assert (labels[1, :, 41:] == PADDED_LABEL).all() and (probabilities[1, :, 41:] == 0).all()
  assert labels[0, :33, :65].min() >= 0 and labels[1, :65, :41].min() >= 0
  np.testing.assert_allclose(probabilities[0, :33, :65].sum(-1), 1.0, atol=1e-5)


# In the oneDNN pass only: the checks and their messages are the same ops on every
# kernel set.
def test_bad_requests_fail_clearly_and_the_model_keeps_serving(model, signatures, capfd):
  serve = signatures['serving_default']
  image = scene(45, 53, seed=5)
  png = tf.io.encode_png(image).numpy()
  bad_requests = [
      ([b'\x00garbage, not an image'], 'images[0] is not a JPEG, PNG, BMP or GIF image (its '
                                       'first bytes are 00 67 61 72 62 61 67 65 2c 20 6e 6f '
                                       '|.garbage, no|)'),
      ([png, b''], 'images[1] is empty'),
      ([png_header(50000, 50000)], 'images[0] declares 50000x50000 pixels'),
      ([png, jpeg_declaring(50000, 50000)], 'images[1] declares 50000x50000 pixels'),
      ([png, png[:100]], 'images[1] could not be decoded: its data is corrupt or truncated '
                         '(100 bytes; its first bytes are 89 50 4e 47'),
      ([], 'images is empty: expected at least one encoded image'),
      # Several problems: the first image's first failing check, headers before pixels.
      ([b'', b'garbage'], 'images[0] is empty'),
      ([png[:100], b'garbage'], 'images[1] is not a JPEG, PNG, BMP or GIF image'),
  ]
  for request, message in bad_requests:
    for _ in range(3):  # the same message every time
      with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        serve(images=tf.constant(request, tf.string))
  with pytest.raises(tf.errors.InvalidArgumentError, match='images is empty'):
    signatures['image_tensor'](images=tf.zeros([0, 8, 8, 3], tf.uint8))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=re.escape('serialized_examples[0] is not a serialized tf.Example')):
    signatures['tf_example'](serialized_examples=tf.constant([b'\xff\xfe not an example']))
  # The JPEG decoder logs this when asked to decode the forged header: it must never be.
  assert 'Image too large' not in capfd.readouterr().err

  gray = image[..., :1]
  rgba = np.concatenate([image, np.full_like(gray, 7)], axis=-1)
  labels = serve(images=tf.constant([tf.io.encode_png(x).numpy() for x in (
      gray, np.repeat(gray, 3, axis=-1), rgba, image)]))['labels'].numpy()
  np.testing.assert_array_equal(labels[0], labels[1])  # gray: replicated to RGB
  np.testing.assert_array_equal(labels[2], labels[3])  # RGBA: alpha dropped
  assert agreement(keras_labels(model, image), labels[3]) >= 0.999


@pytest.mark.portable
def test_a_signature_runs_an_image_above_the_budget_in_tiles_in_one_call(model, signatures):
  image = scene(161, 241, seed=7)[np.newaxis]
  served = signatures['image_tensor'](images=tf.constant(image))['labels']
  tiled = predict_labels(model, image, tiling=EXPORT.tiling)
  assert agreement(tiled, served) >= 0.999
  whole = predict_logits(model, image, tiling=None)
  # The served labels are the tiled ones, which differ from whole-image logits'.
  assert agreement(tf.argmax(whole, -1, output_type=tf.int32), tiled) < 1.0


def test_serving_functions_are_traced_once_for_all_sizes_and_batches(model):
  module = ServingModule(model, ExportConfig(max_image_pixels=70 * 70))
  for shapes in ([(40, 50)], [(33, 33), (65, 41), (20, 70)]):
    images = [tf.io.encode_png(scene(h, w, seed=h)).numpy() for h, w in shapes]
    module.serve_encoded_images(tf.constant(images))
  module.serve_image_tensor(tf.zeros([2, 30, 40, 3], tf.uint8))
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match='images are 80x90 pixels; accepted are at most 4900 pixels'):
    module.serve_image_tensor(tf.zeros([1, 80, 90, 3], tf.uint8))
  assert module.serve_encoded_images.experimental_get_tracing_count() == 1
  assert module.serve_image_tensor.experimental_get_tracing_count() == 1
  assert module.predict_pixels.experimental_get_tracing_count() == 1


def test_writing_the_saved_model_traces_each_function_once(model, tmp_path):
  # TensorFlow retraces a saved object's functions under its save context; the
  # export saves a variables-only object with the signatures, so nothing is traced
  # (or stored) twice.
  module = ServingModule(model, EXPORT)
  write_saved_model(module, str(tmp_path / 'saved'))
  for function in (module.serve_encoded_images, module.serve_image_tensor,
                   module.serve_tf_example, module.predict_pixels):
    assert function.experimental_get_tracing_count() == 1, function.name
  loaded = tf.saved_model.load(str(tmp_path / 'saved'))
  assert sorted(loaded.signatures) == sorted(SIGNATURES)
  assert len(loaded.model_variables) == len(model.variables)


def test_parity_gate_catches_an_export_of_other_weights(signatures):
  other = ServingModule(seeded_model(CONFIG, seed=2), EXPORT)  # same network, other weights
  agreements = saved_model_agreements(signatures, reference_labels(other, sample_images()),
                                      sample_images())
  assert all(a.agreement < 0.999 for a in agreements)
  with pytest.raises(ParityError, match='serving_default: labels agree with the Keras model'):
    check(agreements)


def test_failed_parity_gate_leaves_no_version_directory(model, tmp_path, monkeypatch):
  written = []

  def write_stub(module, path):
    del module
    written.append(path)
    pathlib.Path(path, 'saved_model.pb').write_bytes(b'partial')

  monkeypatch.setattr(exporter, 'write_saved_model', write_stub)
  monkeypatch.setattr(exporter, 'saved_model_parity',
                      lambda *args: [Agreement('serving_default', 0.5, 0.999, 100)])
  with pytest.raises(ParityError, match='agree with the Keras model on 50.0000%'):
    export_model(model, str(tmp_path), EXPORT)
  assert written and os.listdir(tmp_path) == []


def test_versions_count_up_and_are_never_overwritten(tmp_path):
  assert next_version(str(tmp_path / 'missing')) == 1
  for name in ('1', '3', 'notes', '.tmp-4-0a1b2c3d'):
    (tmp_path / name).mkdir()
  assert next_version(str(tmp_path)) == 4
  assert version_path(str(tmp_path), None) == str(tmp_path / '4')
  with pytest.raises(ValueError, match='version 3 exists already'):
    version_path(str(tmp_path), 3)


def test_warmup_requests_replay_on_every_signature(signatures, tmp_path):
  prediction_log_pb2 = pytest.importorskip('tensorflow_serving.apis.prediction_log_pb2')
  assert write_warmup_requests(str(tmp_path), sample_images())
  replayed = []
  for record in tf.data.TFRecordDataset(str(tmp_path / 'assets.extra' /
                                            'tf_serving_warmup_requests')):
    request = prediction_log_pb2.PredictionLog.FromString(record.numpy()).predict_log.request
    inputs = {key: tf.constant(tf.make_ndarray(value)) for key, value in request.inputs.items()}
    outputs = signatures[request.model_spec.signature_name](**inputs)
    assert outputs['labels'].shape == (1, 65, 65)
    replayed.append(request.model_spec.signature_name)
  assert replayed == ['serving_default', 'image_tensor', 'tf_example']


def test_warmup_requests_are_skipped_without_tensorflow_serving_api(tmp_path, monkeypatch):
  for name in ('tensorflow_serving', 'tensorflow_serving.apis'):
    monkeypatch.setitem(sys.modules, name, None)  # makes their import fail
  assert not write_warmup_requests(str(tmp_path), sample_images())
  assert not (tmp_path / 'assets.extra').exists()


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures_and_runs_image_tensor(export, tmp_path):
  shown = subprocess.run([str(BIN / 'saved_model_cli'), 'show', '--all', '--dir', export.path],
                         check=True, capture_output=True, text=True).stdout
  for signature, inputs, outputs in [
      ('serving_default', [('images', 'DT_STRING', '(-1)')],
       [('labels', 'DT_INT32', '(-1, -1, -1)'), ('heights', 'DT_INT32', '(-1)'),
        ('widths', 'DT_INT32', '(-1)'), ('probabilities', 'DT_FLOAT', '(-1, -1, -1, 4)')]),
      ('image_tensor', [('images', 'DT_UINT8', '(-1, -1, -1, 3)')],
       [('labels', 'DT_INT32', '(-1, -1, -1)')]),
      ('tf_example', [('serialized_examples', 'DT_STRING', '(-1)')],
       [('labels', 'DT_INT32', '(-1, -1, -1)')]),
  ]:
    section = shown.split(f"signature_def['{signature}']:")[1].split('signature_def[')[0]
    for kind, tensors in (('inputs', inputs), ('outputs', outputs)):
      for name, dtype, shape in tensors:
        assert f"{kind}['{name}'] tensor_info:\n        dtype: {dtype}\n        shape: {shape}" \
            in section, (signature, name)

  image = scene(37, 45, seed=6)
  np.save(tmp_path / 'images.npy', image[np.newaxis])
  subprocess.run([str(BIN / 'saved_model_cli'), 'run', '--dir', export.path,
                  '--tag_set', 'serve', '--signature_def', 'image_tensor',
                  '--inputs', f'images={tmp_path / "images.npy"}', '--outdir', str(tmp_path)],
                 check=True, capture_output=True)
  labels = np.load(tmp_path / 'labels.npy')
  assert labels.shape == (1, 37, 45) and labels.dtype == np.int32


@pytest.mark.slow
def test_resnet_family_passes_the_parity_gate(tmp_path):
  config = ModelConfig(backbone='resnet_v1_50_beta', num_classes=3, decoder_output_stride=None,
                       aspp_convs_filters=16)
  # Whole images only: the tiled path is the same for every backbone (tested above).
  report = export_model(seeded_model(config, seed=3), str(tmp_path),
                        ExportConfig(tiling=TilingConfig(max_whole_image_pixels=0)))
  assert [a.passed for a in report.agreements] == [True, True, True]
  assert os.listdir(tmp_path) == ['1']


def with_input_scale(serialized: bytes, scale: float) -> bytes:
  """The ONNX model with its uint8 input pixels multiplied by `scale` first: a
  conversion that got the input's scale wrong."""
  import onnx  # pylint: disable=import-outside-toplevel
  model = onnx.ModelProto.FromString(serialized)
  graph = model.graph
  for node in graph.node:
    node.input[:] = ['scaled_images' if name == 'images' else name for name in node.input]
  scaling = [
      onnx.helper.make_node('Cast', ['images'], ['float_images'], to=onnx.TensorProto.FLOAT),
      onnx.helper.make_node('Mul', ['float_images', 'input_scale'], ['float_scaled_images']),
      onnx.helper.make_node('Cast', ['float_scaled_images'], ['scaled_images'],
                            to=onnx.TensorProto.UINT8),
  ]
  graph.initializer.append(onnx.numpy_helper.from_array(np.float32(scale), 'input_scale'))
  nodes = scaling + list(graph.node)
  del graph.node[:]
  graph.node.extend(nodes)
  return model.SerializeToString()


@needs_onnx
def test_onnx_model_passes_its_gate_and_labels_like_keras_at_another_size(export, model):
  assert export.onnx.agreement.passed and export.onnx.agreement.agreement >= 0.999
  assert export.onnx.path == os.path.join(export.path, ONNX_FILENAME)
  assert export.onnx.size_bytes == os.path.getsize(export.onnx.path) > 0
  assert 'onnx (ONNX Runtime): labels agree with the Keras model' in export.summary()

  session = onnx_model.onnx_session(export.onnx.path)
  assert [(i.name, i.type) for i in session.get_inputs()] == [('images', 'tensor(uint8)')]
  assert [(o.name, o.type) for o in session.get_outputs()] == [
      ('labels', 'tensor(int32)'), ('probabilities', 'tensor(float)')]
  images = np.stack([scene(53, 70, seed) for seed in (7, 8)])  # a size the gate did not see
  labels, probabilities = session.run(['labels', 'probabilities'], {'images': images})
  assert labels.shape == (2, 53, 70) and probabilities.shape == (2, 53, 70, NUM_CLASSES)
  expected = predict_labels(model, images).numpy()
  assert agreement(expected, labels) >= 0.999, 'ONNX labels differ on more than 0.1%'


@needs_onnx
def test_wrong_input_scale_in_the_onnx_conversion_is_refused_and_leaves_nothing(
    export, model, tmp_path, monkeypatch):
  with open(export.onnx.path, 'rb') as f:
    halved = with_input_scale(f.read(), 0.5)
  monkeypatch.setattr(onnx_model, 'convert', lambda module: halved)
  # The SavedModel's own gate is tested above; here it passes without the cost.
  monkeypatch.setattr(exporter, 'write_saved_model', lambda module, path: None)
  monkeypatch.setattr(exporter, 'saved_model_parity',
                      lambda *args: [Agreement('image_tensor', 1.0, 0.999, 100)])
  with pytest.raises(ParityError, match=r'onnx \(ONNX Runtime\): labels agree with the Keras '
                                        r'model on \d'):
    export_model(model, str(tmp_path), EXPORT, onnx=True)
  assert os.listdir(tmp_path) == []  # no version directory, no model.onnx, no temporary


@needs_onnx
def test_openvino_reads_model_onnx_and_labels_like_keras_in_float32(export, model):
  openvino = pytest.importorskip(
      'openvino', reason='OpenVINO is not installed (pip install \'deeplab[openvino]\'); it '
      'reads model.onnx directly')
  # On CPUs with bfloat16 units OpenVINO computes in bfloat16 unless told otherwise.
  compiled = openvino.Core().compile_model(export.onnx.path, 'CPU',
                                           {'INFERENCE_PRECISION_HINT': 'f32'})
  image = scene(61, 45, seed=9)[np.newaxis]
  labels = compiled({'images': image})[compiled.output('labels')]
  assert labels.shape == (1, 61, 45)
  assert agreement(keras_labels(model, image[0]), labels[0]) >= 0.999, (
      'OpenVINO labels differ on more than 0.1%')


def test_missing_onnx_extra_fails_first_and_names_the_install_command(model, tmp_path,
                                                                      monkeypatch):
  monkeypatch.setitem(sys.modules, 'tf2onnx', None)  # import tf2onnx raises ImportError
  with pytest.raises(ImportError, match=r"pip install 'deeplab\[onnx\]'"):
    export_model(model, str(tmp_path / 'serving'), EXPORT, onnx=True)
  assert not os.path.exists(tmp_path / 'serving')


@needs_onnx
def test_runtimes_benchmark_times_each_runtime_on_the_export_as_ratios(export, monkeypatch):
  from deeplab.benchmark import BenchmarkConfig, runtimes  # pylint: disable=import-outside-toplevel
  # This module's export, instead of exporting the benchmark's model again.
  monkeypatch.setattr(runtimes, 'export_model', lambda *args, **kwargs: export)
  # A process per runtime; the next test measures one.
  monkeypatch.setattr(runtimes, 'peak_resident_mib', lambda runtime, path, size: 1.0)
  config = BenchmarkConfig(backbone='mobilenet_v2', size=(65, 65), runs=2, warmup=1)
  result = runtimes.measure_runtimes(config, model=object())
  measured = list(result['runtimes'])
  assert measured == [name for name in runtimes.RUNTIMES if name not in result['not_installed']]
  assert measured[:2] == ['tensorflow', 'onnxruntime']
  assert result['onnx_size_bytes'] == export.onnx.size_bytes
  tensorflow = result['runtimes']['tensorflow']['seconds']['median']
  for values in result['runtimes'].values():
    assert values['seconds']['runs'] == 2
    assert values['ratio_to_tensorflow'] == pytest.approx(
        values['seconds']['median'] / tensorflow, rel=1e-2)
    assert values['label_agreement_with_tensorflow'] >= 0.999
    assert values['peak_resident_mib'] == 1.0


@needs_onnx
def test_peak_memory_of_a_runtime_is_measured_in_a_process_of_its_own(export):
  from deeplab.benchmark import runtimes  # pylint: disable=import-outside-toplevel
  assert runtimes.peak_resident_mib('onnxruntime', export.onnx.path, (65, 65)) > 10
