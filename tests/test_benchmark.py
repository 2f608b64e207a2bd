"""The benchmark tool and library: what they report, not how fast it is; and the
inference fast paths of the layers, which must compute what the plain ones do."""

import functools
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab.benchmark import inference
from deeplab.benchmark import (BenchmarkConfig, Timing, append_results, describe_machine,
                               measure_agreement, measure_ceiling, run_benchmarks,
                               speed_table, time_calls, time_interleaved, write_speed_table)
from deeplab.layers import ConvBN, DepthwiseConvBN, SeparableConvBN
from deeplab.model import precision_policy
from short_mobilenet_v2 import tool_command

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py), in the tool's process
# too; the photo agreement, calibrated on the full one, builds it.
pytestmark = pytest.mark.short_mobilenet_v2
RESULTS_DIR = pathlib.Path(__file__).resolve().parent.parent / 'tools' / 'benchmarks'
TINY = dict(backbone='mobilenet_v2', size=(65, 65), batch_size=2, runs=1, warmup=0)
MACHINE_KEYS = {'cpu', 'cores', 'cpu_features', 'tensorflow', 'onednn', 'intra_op_threads',
                'inter_op_threads', 'gpus'}
SECONDS_KEYS = {'median', 'minimum', 'maximum', 'q1', 'q3', 'runs'}
SPEED_KEYS = {'images_per_second', 'gmac_per_second', 'fraction_of_ceiling'}


def _run_tool(*flags):
  return subprocess.run([*tool_command('deeplab.tools.benchmark'), *flags],
                        capture_output=True, text=True, timeout=600, check=False)


def test_tool_prints_one_json_line_per_measurement_with_the_documented_keys():
  result = _run_tool('--backbone=mobilenet_v2', '--size=65,65', '--batch_size=2', '--runs=2',
                     '--warmup=0', '--threads=2,1',
                     '--measurements=cost,latency,throughput,train_step,input_pipeline')
  assert result.returncode == 0, result.stderr[-3000:]
  lines = [json.loads(line) for line in result.stdout.splitlines()]
  by_name = {line['measurement']: line for line in lines}
  assert list(by_name) == ['cost', 'latency', 'throughput', 'train_step', 'input_pipeline']
  for line in lines:
    assert set(line['machine']) == MACHINE_KEYS
    assert line['machine']['intra_op_threads'] == 2
    assert line['machine']['inter_op_threads'] == 1
    assert line['config']['backbone'] == 'mobilenet_v2'
    assert line['config']['size'] == [65, 65]
  assert by_name['cost']['trainable_params'] > 0 and by_name['cost']['gmacs'] > 0
  for name in ('latency', 'throughput', 'train_step'):
    assert set(by_name[name]['seconds']) == SECONDS_KEYS
    assert by_name[name]['seconds']['runs'] == 2
    assert SPEED_KEYS <= set(by_name[name])
    assert 0 < by_name[name]['fraction_of_ceiling']
  assert by_name['latency']['batch_size'] == 1
  assert by_name['throughput']['batch_size'] == 2
  assert by_name['input_pipeline']['images_per_second'] > 0
  assert by_name['input_pipeline']['image_size'] == [375, 500]


def test_tool_adds_its_results_to_the_output_file(tmp_path):
  output = tmp_path / 'results.json'
  append_results(str(output), [{'measurement': 'earlier'}])
  result = _run_tool('--backbone=mobilenet_v2', '--size=65,65', '--measurements=cost',
                     f'--output={output}')
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads(output.read_text())['results']
  assert [r['measurement'] for r in results] == ['earlier', 'cost']
  assert results[1] == json.loads(result.stdout.splitlines()[0])


def test_results_file_that_is_not_one_is_named(tmp_path):
  path = tmp_path / 'notes.json'
  path.write_text('[1, 2]')
  with pytest.raises(ValueError, match='notes.json'):
    append_results(str(path), [{'measurement': 'cost'}])


@pytest.mark.parametrize('path', sorted(RESULTS_DIR.glob('*.json')), ids=lambda p: p.name)
def test_kept_results_state_machine_config_and_timings(path):
  results = json.loads(path.read_text())['results']
  assert results
  for result in results:
    assert set(result['machine']) == MACHINE_KEYS and result['config']['backbone']
    if 'seconds' in result:
      assert set(result['seconds']) == SECONDS_KEYS and result['seconds']['runs'] >= 5


def test_tool_rejects_an_unknown_measurement_by_name():
  result = _run_tool('--backbone=mobilenet_v2', '--measurements=cost,speed')
  assert result.returncode == 1
  assert 'speed' in result.stderr and 'latency' in result.stderr


def test_tool_table_mode_writes_the_marked_readme_section(tmp_path):
  readme = tmp_path / 'README.md'
  readme.write_text('# Title\n<!-- speed-table:start -->\nold\n<!-- speed-table:end -->\nrest\n')
  result = _run_tool('--table', '--backbones=mobilenet_v2', '--precisions=float32',
                     '--size=65,65', '--batch_size=2', '--runs=1', '--warmup=0',
                     f'--update_readme={readme}')
  assert result.returncode == 0, result.stderr[-3000:]
  text = readme.read_text()
  assert 'old' not in text and text.endswith('<!-- speed-table:end -->\nrest\n')
  assert '| mobilenet_v2 | 16 | float32 |' in text
  assert 'Measured on ' in text and 'GFLOP/s in float32' in text


def test_timing_reports_median_quartiles_and_extremes():
  timing = Timing.from_seconds([3.0, 1.0, 2.0, 5.0, 4.0])
  assert (timing.median, timing.minimum, timing.maximum, timing.q1, timing.q3,
          timing.runs) == (3.0, 1.0, 5.0, 2.0, 4.0, 5)


def test_time_calls_runs_warmup_then_timed_calls():
  calls = []
  timing = time_calls(lambda: calls.append(1), runs=3, warmup=2)
  assert len(calls) == 5 and timing.runs == 3


def test_time_interleaved_alternates_the_functions():
  order = []
  time_interleaved({'a': lambda: order.append('a'), 'b': lambda: order.append('b')},
                   runs=2, warmup=1)
  assert order == ['a', 'b', 'a', 'b', 'a', 'b']


def test_ceiling_counts_two_flops_per_multiply_add():
  result = measure_ceiling('conv3x3', 'float32', runs=1, warmup=0, size=9)
  assert result['multiply_adds'] == 9 * 256 * 256 * 9 * 9
  assert result['gflop_per_second'] == pytest.approx(
      2 * result['multiply_adds'] / result['seconds']['median'] / 1e9, rel=1e-3, abs=0.01)


def test_unknown_measurement_and_precision_are_rejected():
  with pytest.raises(ValueError, match='speed'):
    list(run_benchmarks(BenchmarkConfig(**TINY), ['speed']))
  with pytest.raises(ValueError, match='precision'):
    BenchmarkConfig(precision='int8')


def test_speed_table_states_the_machine_and_rows():
  rows = [{'backbone': 'xception_65', 'output_stride': 16, 'size': [513, 513],
           'precision': 'float32', 'xla': False, 'batch_size': 4, 'gmacs': 54.035,
           'latency_ms': 400, 'images_per_second': 2.7, 'gmac_per_second': 135,
           'fraction_of_ceiling': 0.7}]
  text = speed_table(rows, describe_machine(), {'float32': 386.0})
  assert '| xception_65 | 16 | float32 | 54.035 | 400 | 2.700 | 135 | 0.700 |' in text
  assert '386 GFLOP/s in float32' in text


def test_speed_table_needs_its_markers(tmp_path):
  readme = tmp_path / 'README.md'
  readme.write_text('no markers\n')
  with pytest.raises(ValueError, match='speed-table'):
    write_speed_table(str(readme), [], {})


@pytest.mark.slow
def test_multiscale_and_saved_model_measurements_compare_like_with_like(monkeypatch):
  config = BenchmarkConfig(**TINY)
  # Two of the six default scales: each scale is one more function to build.
  monkeypatch.setattr(inference, 'measure_multiscale',
                      functools.partial(inference.measure_multiscale, scales=(0.75, 1.25)))
  results = {r['measurement']: r
             for r in run_benchmarks(config, ['saved_model', 'multiscale'])}
  saved = results['saved_model']
  assert saved['ratio_to_in_process'] == pytest.approx(
      saved['seconds']['median'] / saved['in_process_seconds']['median'], rel=1e-2)
  multiscale = results['multiscale']
  assert multiscale['scales'] == [0.75, 1.25] and multiscale['flip']
  assert len(multiscale['pass_seconds']) == 2
  assert multiscale['sum_of_passes_seconds'] == pytest.approx(
      2 * sum(multiscale['pass_seconds'].values()), abs=1e-5)
  assert multiscale['overhead'] > 0


@pytest.mark.full_mobilenet_v2
def test_bfloat16_labels_agree_with_float32_on_photos_at_least_99_percent(shared):
  photos = sorted(str(p) for p in shared('data', 'cc0-images-ibm-max').glob('*.jpg'))
  tf_keras.utils.set_random_seed(0)
  config = BenchmarkConfig(**dict(TINY, size=(129, 129), precision='mixed_bfloat16'))
  result = measure_agreement(config, photos)
  assert result['images'] == len(photos) and result['pixels'] > 1e6
  assert result['classes_predicted'] > 1, 'the reference model predicts a single class'
  # These weights (seed 0): 0.99957 with oneDNN, 0.99961 with the generic kernels. The
  # weights of other seeds have more near-ties: 0.979-0.9995 over seeds 1-5 (bar 4, one class).
  assert result['agreement'] >= 0.99


# The inference fast paths: BatchNorm folded into the kernels, explicit padding of
# large atrous rates, and the pre-activation ReLU. Each must equal the plain path.


def _randomize_batch_norm(layer, seed=0):
  rng = np.random.default_rng(seed)
  for batch_norm in [l for l in layer.submodules
                     if isinstance(l, tf_keras.layers.BatchNormalization)]:
    channels = batch_norm.gamma.shape[0]
    batch_norm.gamma.assign(rng.uniform(0.5, 1.5, channels))
    batch_norm.beta.assign(rng.normal(0, 0.5, channels))
    batch_norm.moving_mean.assign(rng.normal(0, 0.5, channels))
    batch_norm.moving_variance.assign(rng.uniform(0.5, 2.0, channels))


def _plain_depthwise(layer, inputs):
  padding = layer._padding  # pylint: disable=protected-access
  outputs = tf.nn.depthwise_conv2d(inputs, layer.depthwise_kernel,
                                   [1, layer.strides, layer.strides, 1], padding,
                                   dilations=[layer.dilation_rate] * 2)
  return tf.nn.relu(layer.batch_norm(outputs, training=False))


@pytest.mark.parametrize('strides, dilation_rate', [(1, 1), (2, 1), (1, 2), (1, 12)])
def test_folded_depthwise_batch_norm_equals_the_plain_path_within_1e_5(strides,
                                                                       dilation_rate):
  layer = DepthwiseConvBN(3, strides=strides, dilation_rate=dilation_rate,
                          batch_norm={'epsilon': 1e-3})
  inputs = tf.random.stateless_normal([2, 17, 17, 8], [0, 1])
  layer(inputs)
  _randomize_batch_norm(layer)
  expected = _plain_depthwise(layer, inputs)
  for outputs in (layer(inputs, training=False),
                  tf.function(lambda x: layer(x, training=False))(inputs)):
    np.testing.assert_allclose(outputs, expected, atol=1e-5, rtol=1e-5)


def test_training_mode_still_normalizes_with_batch_statistics():
  layer = DepthwiseConvBN(3, batch_norm={'epsilon': 1e-3})
  inputs = tf.random.stateless_normal([2, 9, 9, 4], [0, 2])
  layer(inputs)
  _randomize_batch_norm(layer)
  outputs = layer.batch_norm(tf.nn.depthwise_conv2d(
      inputs, layer.depthwise_kernel, [1, 1, 1, 1], 'SAME'), training=True)
  np.testing.assert_allclose(layer(inputs, training=True), tf.nn.relu(outputs), atol=1e-5)


@pytest.mark.parametrize('batch_norm', [{'epsilon': 1e-3}, None], ids=['bn', 'bias'])
def test_bfloat16_training_1x1_convolution_is_a_matrix_product_equal_to_the_convolution(
    batch_norm):
  with precision_policy('mixed_bfloat16'):
    layer = ConvBN(6, 1, batch_norm=batch_norm)
  inputs = tf.random.stateless_normal([2, 9, 11, 5], [0, 4])
  layer(inputs)
  _randomize_batch_norm(layer)
  variables = [layer.kernel] + ([layer.bias] if layer.bias is not None else [])

  def plain(x):
    outputs = tf.nn.conv2d(tf.cast(x, tf.bfloat16), tf.cast(layer.kernel, tf.bfloat16), 1,
                           'SAME')
    if layer.batch_norm is None:
      return tf.nn.relu(tf.nn.bias_add(outputs, tf.cast(layer.bias, tf.bfloat16)))
    return tf.nn.relu(layer.batch_norm(outputs, training=True))

  def gradients(function):
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      outputs = tf.cast(function(inputs), tf.float32)
      # Squared, so the upstream gradient vanishes at the ReLU's kink: an output that
      # rounds to the other side of zero in one path then changes no gradient.
      loss = tf.reduce_sum(tf.square(outputs) * tf.range(6, dtype=tf.float32))
    return [outputs, *tape.gradient(loss, [inputs] + variables)]

  traced = tf.function(lambda x: layer(x, training=True))
  ops = {op.type for op in traced.get_concrete_function(inputs).graph.get_operations()}
  assert 'MatMul' in ops and 'Conv2D' not in ops
  expected = gradients(plain)
  assert traced(inputs).shape == [2, 9, 11, 6]
  for got in (gradients(lambda x: layer(x, training=True)), gradients(traced)):
    for want, actual in zip(expected, got):
      # Relative L2 error: oneDNN computes both paths identically; TensorFlow's generic
      # kernels give up to 0.045 (kernel gradient) over 100 seeds.
      error = np.linalg.norm(actual - want) / np.linalg.norm(want)
      assert error <= 0.15, error


def test_folded_convolution_batch_norm_in_bfloat16_equals_float32_within_bfloat16_precision():
  inputs = tf.random.stateless_normal([1, 9, 9, 16], [0, 3])
  layers = {}
  for policy in ('float32', 'mixed_bfloat16'):
    with precision_policy(policy):
      layers[policy] = ConvBN(8, 3, batch_norm={'epsilon': 1e-3})
    layers[policy](inputs)
  _randomize_batch_norm(layers['float32'])
  layers['mixed_bfloat16'].set_weights(layers['float32'].get_weights())
  expected = layers['float32'](inputs, training=False)
  outputs = layers['mixed_bfloat16'](inputs, training=False)
  assert outputs.dtype == tf.bfloat16
  # Measured at most 0.16-0.25 of this tolerance over 8 seeds, both kernel sets.
  np.testing.assert_allclose(tf.cast(outputs, tf.float32), expected, atol=0.05, rtol=0.02)


_GRAPH_CHECK = """
import tensorflow as tf
from deeplab import ModelConfig
from deeplab.benchmark import BenchmarkConfig, build_benchmark_model
model = build_benchmark_model(BenchmarkConfig(backbone='xception_41',
                                              precision='mixed_bfloat16'))
print(tf.function(lambda x: model(x, training=False))(tf.zeros([1, 65, 65, 3])).shape)
"""


def test_bfloat16_xception_graph_keeps_its_grappler_fusions():
  # A ReLU of a residual sum that also feeds a shortcut convolution made Grappler's
  # remapper fail and drop every fusion ("remapper failed" in the log).
  result = subprocess.run([sys.executable, '-c', _GRAPH_CHECK], capture_output=True,
                          text=True, timeout=600, check=False,
                          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '0'})
  assert result.returncode == 0, result.stderr[-3000:]
  assert '(1, 65, 65, 21)' in result.stdout
  assert 'remapper failed' not in result.stderr, result.stderr[-3000:]


def test_preactivation_relu_of_a_residual_sum_is_a_relu():
  layer = SeparableConvBN(4, preactivation=True, batch_norm={})
  inputs = tf.random.stateless_normal([1, 5, 5, 2], [0, 5])
  layer(inputs)
  via_sum = tf.function(lambda x: layer(x + x, training=False))(inputs)
  np.testing.assert_allclose(via_sum, layer(2 * inputs, training=False), atol=1e-5)
