"""Every kernel set runs the model: oneDNN's x86 CPU kernels, TensorFlow's generic
CPU kernels (TF_ENABLE_ONEDNN_OPTS=0: what GPUs, macOS, ARM and TF Serving builds
without oneDNN run), and XLA.

`make test` runs this file twice, with oneDNN on and off; tests marked `portable`
run in both passes, the others compare the two kernel sets across processes.
"""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

import platform_matrix
from deeplab import ModelConfig, build_model, kernels
from deeplab.config import ExportConfig, TilingConfig
from deeplab.data.synthetic import generate_example
from deeplab.export import export_model
from deeplab.predict import predict_labels

HERE = pathlib.Path(__file__).resolve().parent
ONEDNN = kernels.onednn_cpu_kernels()
# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py), in both processes;
# the matrix of every kind of unit builds full backbones.
pytestmark = pytest.mark.short_mobilenet_v2
# The other kernel set, for the process a test starts.
OTHER_KERNELS = dict(os.environ, TF_ENABLE_ONEDNN_OPTS='0' if ONEDNN else '1')
MIN_LABEL_AGREEMENT = platform_matrix.MIN_LABEL_AGREEMENT


def _convolution(depthwise, rate, training):
  """f(inputs) -> (outputs, input gradient) of a seeded atrous convolution."""
  channels = 6
  shape = [3, 3, channels, 1 if depthwise else 4]
  kernel = tf.random.stateless_normal(shape, [rate, int(depthwise)])
  convolve = kernels.depthwise_conv2d if depthwise else kernels.conv2d

  def f(inputs):
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      outputs = convolve(inputs, kernel, 1, 'SAME', rate, gradients=training)
    return outputs, tape.gradient(outputs, inputs)
  return f


@pytest.mark.portable
@pytest.mark.parametrize('depthwise', [False, True], ids=['conv', 'depthwise'])
@pytest.mark.parametrize('rate', [2, 12, 36])
def test_portable_atrous_convolution_equals_the_native_op_under_xla_within_1e_5(depthwise,
                                                                                 rate):
  # XLA runs the native dilated ops on every platform, so it is the reference in
  # both passes; the odd size makes space-to-batch pad to a multiple of the rate.
  inputs = tf.random.stateless_normal([2, 19, 23, 6], [0, rate])
  f = _convolution(depthwise, rate, training=True)
  with kernels.kernel_target('native'):
    expected = tf.function(f, jit_compile=True)(inputs)
  targets = ['portable', 'auto'] + (['native'] if ONEDNN else [])
  for target in targets:
    with kernels.kernel_target(target):
      for outputs, reference in zip(tf.function(f)(inputs), expected):
        np.testing.assert_allclose(outputs, reference, rtol=1e-5, atol=1e-5,
                                   err_msg=f'kernel target {target}')


@pytest.mark.portable
def test_auto_target_uses_native_dilated_ops_only_where_the_kernels_have_them():
  cpu_tensor = tf.zeros([1, 5, 5, 2])
  assert kernels.native_dilations(True, cpu_tensor, gradients=False) == ONEDNN
  assert not kernels.native_dilations(True, cpu_tensor, gradients=True)
  # Generic CPU kernels run a dilated convolution forward but not its gradient.
  assert kernels.native_dilations(False, cpu_tensor, gradients=False)
  assert kernels.native_dilations(False, cpu_tensor, gradients=True) == ONEDNN
  for dtype in (tf.float16, tf.float64):  # No oneDNN kernels: the generic ones run.
    assert not kernels.native_dilations(True, tf.zeros([1, 5, 5, 2], dtype), gradients=False)

  with tf.Graph().as_default(), tf.device('/GPU:0'):
    on_gpu = tf.zeros([1, 5, 5, 2])
    # cuDNN has dilated convolutions and their gradients, not dilated depthwise ones.
    assert not kernels.native_dilations(True, on_gpu, gradients=False)
    assert kernels.native_dilations(False, on_gpu, gradients=True)

  choices = []
  tf.function(lambda x: choices.append(kernels.native_dilations(True, x, True)) or x,
              jit_compile=True)(cpu_tensor)
  assert choices == [True]  # XLA.
  with kernels.kernel_target('portable'):
    assert not kernels.native_dilations(True, cpu_tensor, gradients=False)
    assert not kernels.native_dilations(False, cpu_tensor, gradients=True)
  with kernels.kernel_target('native'):
    assert kernels.native_dilations(True, cpu_tensor, gradients=False)
    assert not kernels.native_dilations(True, cpu_tensor, gradients=True)
  assert kernels.current_kernel_target() == 'auto'


def test_unknown_kernel_target_names_the_choices():
  with pytest.raises(ValueError, match='auto, portable, native'):
    with kernels.kernel_target('gpu'):
      pass


@pytest.fixture(scope='module')
def other_kernels_results(tmp_path_factory):
  """platform_matrix's results computed in a process with the other kernel set; it
  runs while this process computes its own."""
  path = tmp_path_factory.mktemp('other_kernels') / 'results.npz'
  process = subprocess.Popen([sys.executable, str(HERE / 'platform_matrix.py'), str(path)],
                             env=OTHER_KERNELS, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)

  def results():
    output, _ = process.communicate(timeout=900)
    assert process.returncode == 0, output[-3000:]
    return np.load(path)
  yield results
  if process.poll() is None:
    process.kill()


@pytest.mark.full_mobilenet_v2  # as platform_matrix.py builds it in the other process
@pytest.mark.parametrize('case', platform_matrix.CASES)
def test_labels_loss_and_gradients_agree_with_and_without_onednn(other_kernels_results,
                                                                   case):
  ours = platform_matrix.results(case)
  platform_matrix.compare(case, ours, {key: other_kernels_results()[f'{case}/{key}']
                                       for key in ours})


_SERVE = '''
import sys
import numpy as np
import tensorflow as tf
serving = tf.saved_model.load(sys.argv[1]).signatures['serving_default']
image = tf.io.read_file(sys.argv[2])
labels = serving(images=tf.stack([image]))['labels'].numpy()
np.save(sys.argv[3], labels)
'''

# Whole images only: the tiled path runs the same layers on tiles (served with
# the generic kernels in test_export.py's second pass), and it doubles an export.
WHOLE_IMAGES = ExportConfig(tiling=TilingConfig(max_whole_image_pixels=0))
_EXPORT = '''
import sys
sys.path.insert(0, sys.argv[3])
from short_mobilenet_v2 import use_short_mobilenet_v2
use_short_mobilenet_v2()
from deeplab import ModelConfig, build_model
from deeplab.config import ExportConfig, TilingConfig
from deeplab.export import export_model
model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=4, depth_multiplier=0.25,
                                aspp_convs_filters=16, decoder_filters=16))
model.load_weights(sys.argv[2])
print(export_model(model, sys.argv[1],
                   ExportConfig(tiling=TilingConfig(max_whole_image_pixels=0))).path)
'''

TINY = ModelConfig(backbone='mobilenet_v2', num_classes=4, depth_multiplier=0.25,
                   aspp_convs_filters=16, decoder_filters=16)


def _serve(export_path, image_path):
  serving = tf.saved_model.load(str(export_path)).signatures['serving_default']
  return serving(images=tf.stack([tf.io.read_file(str(image_path))]))['labels'].numpy()


def _in_other_process(script, *arguments):
  return subprocess.Popen([sys.executable, '-c', script, *map(str, arguments)],
                          env=OTHER_KERNELS, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _output(process):
  stdout, stderr = process.communicate(timeout=600)
  assert process.returncode == 0, stderr[-3000:]
  return stdout


def test_saved_models_exported_with_either_kernel_set_serve_with_the_other(tmp_path):
  tf_keras.utils.set_random_seed(3)
  model = build_model(TINY)
  model.save_weights(str(tmp_path / 'tiny.weights.h5'))
  image, _ = generate_example(np.random.default_rng(5), 61, 77, num_classes=4)
  image_path = tmp_path / 'scene.png'
  image_path.write_bytes(tf.io.encode_png(image).numpy())
  # Both exports at once: this process's and the other kernel set's.
  exporting = _in_other_process(_EXPORT, tmp_path / 'theirs', tmp_path / 'tiny.weights.h5',
                                HERE)
  ours = export_model(model, str(tmp_path / 'ours'), WHOLE_IMAGES)
  theirs = _output(exporting).strip().splitlines()[-1]
  serving = _in_other_process(_SERVE, ours.path, image_path, tmp_path / 'labels.npy')
  # The serving graph pads as predict_labels does; the bare model call does not.
  expected = predict_labels(model, image[np.newaxis]).numpy()
  assert expected.shape == (1, 61, 77)
  assert np.mean(_serve(theirs, image_path) == expected) >= MIN_LABEL_AGREEMENT
  _output(serving)
  assert np.mean(np.load(tmp_path / 'labels.npy') == expected) >= MIN_LABEL_AGREEMENT
