"""Layer behaviour against the official definitions."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab.backbones.common import atrous_schedule
from deeplab.layers import (ASPP, ConvBN, Decoder, DepthwiseConvBN, ImageNormalization,
                            ResizeLike, SeparableConvBN, SyncBatchNormalization,
                            resize_bilinear)

# Also run with TensorFlow's generic kernels (TF_ENABLE_ONEDNN_OPTS=0).
pytestmark = pytest.mark.portable

BN = {'momentum': 0.9997, 'epsilon': 1e-5}


def _random(shape, seed=0):
  return tf.constant(np.random.RandomState(seed).randn(*shape).astype(np.float32))


@pytest.mark.parametrize('size', [64, 65])
def test_strided_conv_pads_symmetrically_like_official_conv2d_same(size):
  inputs = _random([1, size, size, 3])
  layer = ConvBN(4, 3, strides=2, activation=None, batch_norm=None)
  outputs = layer(inputs)
  # conv2d_same: pad (k - 1) // 2 before and the rest after, then a VALID conv.
  padded = tf.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]])
  expected = tf.nn.conv2d(padded, layer.kernel, 2, 'VALID') + layer.bias
  np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-5)


def test_strided_depthwise_pads_like_tf_same_when_not_explicit():
  inputs = _random([1, 64, 64, 5])
  layer = DepthwiseConvBN(3, strides=2, activation=None, batch_norm=None,
                          explicit_padding=False)
  outputs = layer(inputs)
  expected = tf.nn.depthwise_conv2d(inputs, layer.depthwise_kernel, [1, 2, 2, 1], 'SAME')
  np.testing.assert_allclose(outputs.numpy(), (expected + layer.bias).numpy(), atol=1e-5)


def test_atrous_depthwise_equals_the_dilated_reference():
  inputs = _random([1, 17, 17, 4])
  layer = DepthwiseConvBN(3, dilation_rate=3, activation=None, batch_norm=None)
  outputs = layer(inputs)
  expected = tf.nn.depthwise_conv2d(inputs, layer.depthwise_kernel, [1, 1, 1, 1], 'SAME',
                                    dilations=[3, 3])
  np.testing.assert_allclose(outputs.numpy(), (expected + layer.bias).numpy(), atol=1e-5)


def test_separable_conv_puts_batch_norm_between_depthwise_and_pointwise():
  layer = SeparableConvBN(8, batch_norm=BN, name='aspp1')
  inputs = _random([2, 9, 9, 4])
  outputs = layer(inputs, training=False)
  assert layer.depthwise.name == 'aspp1_depthwise'
  assert layer.pointwise.name == 'aspp1_pointwise'
  assert layer.depthwise.batch_norm is not None and layer.pointwise.batch_norm is not None
  expected = layer.pointwise(layer.depthwise(inputs, training=False), training=False)
  np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-6)
  assert outputs.numpy().min() >= 0, 'activation after each BatchNorm ends with a ReLU'


def test_separable_conv_preactivation_applies_relu_to_the_input_only():
  layer = SeparableConvBN(8, preactivation=True, batch_norm=BN)
  inputs = _random([1, 9, 9, 4], seed=3)
  outputs = layer(inputs, training=False)
  expected = layer.pointwise(layer.depthwise(tf.nn.relu(inputs), training=False),
                             training=False)
  np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-6)
  assert outputs.numpy().min() < 0, 'no activation after the BatchNorms'


def test_aspp_concatenates_in_the_official_order():
  aspp = ASPP(8, atrous_rates=(1, 2, 3), separable=False, batch_norm=BN)
  features = _random([2, 9, 9, 6])
  outputs = aspp(features, training=False)
  pooled = aspp.image_pooling_conv(tf.reduce_mean(features, [1, 2], keepdims=True),
                                   training=False)
  branches = [tf.broadcast_to(pooled, [2, 9, 9, 8]), aspp.aspp0(features, training=False)]
  branches += [conv(features, training=False) for conv in aspp.atrous_convs]
  expected = aspp.concat_projection(tf.concat(branches, -1), training=False)
  np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-5)
  assert [c.name for c in aspp.atrous_convs] == ['aspp1', 'aspp2', 'aspp3']
  assert [c.dilation_rate for c in aspp.atrous_convs] == [1, 2, 3]


def test_aspp_dropout_is_active_in_training_only():
  aspp = ASPP(8, atrous_rates=(), dropout=0.5, batch_norm=BN)
  features = _random([4, 9, 9, 4])
  np.testing.assert_array_equal(aspp(features, training=False).numpy(),
                                aspp(features, training=False).numpy())
  projected = aspp.end_points(features, training=True)['concat_projection'].numpy()
  dropped = aspp(features, training=True).numpy()
  # Counted among the outputs the ReLU left positive (it alone zeroes 45-61% of all):
  # measured 0.47-0.53 dropped over 40 seeds, both kernel sets.
  assert 0.35 < np.mean(dropped[projected > 0] == 0) < 0.65
  kept = dropped != 0
  np.testing.assert_allclose(dropped[kept], 2 * projected[kept], rtol=1e-6)


def test_decoder_concatenates_upsampled_aspp_features_then_the_projection():
  decoder = Decoder(8, low_level_filters=48, batch_norm=BN)
  aspp_features, low_level = _random([1, 9, 9, 16]), _random([1, 33, 33, 24], seed=1)
  outputs = decoder([aspp_features, low_level], training=False)
  assert outputs.shape == (1, 33, 33, 8)
  assert decoder.convs[0].depthwise.depthwise_kernel.shape == (3, 3, 16 + 48, 1)
  projection = decoder.feature_projection(low_level, training=False)
  concat = tf.concat([resize_bilinear(aspp_features, [33, 33]), projection], -1)
  expected = decoder.convs[1](decoder.convs[0](concat, training=False), training=False)
  np.testing.assert_allclose(outputs.numpy(), expected.numpy(), atol=1e-5)


def test_plain_decoder_uses_the_official_repeat_names():
  decoder = Decoder(8, separable=False, batch_norm=BN)
  assert [c.name for c in decoder.convs] == ['decoder/decoder_conv0/decoder_conv0_1',
                                             'decoder/decoder_conv0/decoder_conv0_2']


def test_resize_aligns_corners():
  image = _random([1, 9, 9, 2])
  resized = ResizeLike()([image, tf.zeros([1, 33, 33, 1])])
  np.testing.assert_allclose(resized.numpy()[0, ::4, ::4], image.numpy()[0], atol=1e-5)


def test_image_normalization_maps_pixels_to_minus_one_one():
  normalized = ImageNormalization(2 / 255, -1.0)(tf.constant([[[[0, 127.5, 255]]]]))
  np.testing.assert_allclose(normalized.numpy(), [[[[-1, 0, 1]]]], atol=1e-6)


@pytest.mark.parametrize('strides, output_stride, expected', [
    ([2, 2, 2, 1], 8, [(2, 1), (2, 1), (2, 1), (1, 1)]),
    ([2, 2, 2, 1], 4, [(2, 1), (2, 1), (1, 1), (1, 2)]),
    ([2, 1, 2, 1], 2, [(2, 1), (1, 1), (1, 1), (1, 2)]),
])
def test_atrous_schedule_trades_strides_for_rates(strides, output_stride, expected):
  assert atrous_schedule(strides, output_stride) == expected


def test_atrous_schedule_rejects_unreachable_strides():
  with pytest.raises(ValueError, match='output_stride 64 cannot be reached'):
    atrous_schedule([2, 2], 64)


def test_synchronized_batch_norm_equals_keras_with_one_all_reduce_instead_of_three_each_way(
    monkeypatch):
  context = tf.distribute.get_replica_context()
  home = next(c for c in type(context).__mro__ if 'all_reduce' in vars(c))
  all_reduce = vars(home)['all_reduce']
  reduced = []

  def counted_all_reduce(self, reduce_op, value, options=None):
    reduced.append([t.shape.as_list() for t in tf.nest.flatten(value)])
    return all_reduce(self, reduce_op, value, options)
  monkeypatch.setattr(home, 'all_reduce', counted_all_reduce)

  inputs = _random([2, 5, 7, 6]) * 3 + 1
  results = {}
  for name, layer in (('ours', SyncBatchNormalization(**BN)),
                      ('keras', tf_keras.layers.BatchNormalization(synchronized=True, **BN))):
    layer.build(inputs.shape)
    layer.gamma.assign(np.linspace(0.5, 1.5, 6))
    layer.beta.assign(np.linspace(-1, 1, 6))
    reduced.clear()
    with tf.GradientTape() as tape:
      tape.watch(inputs)
      outputs = layer(inputs, training=True)
      loss = tf.reduce_sum(outputs * tf.range(6, dtype=tf.float32))
    gradients = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
    results[name] = [outputs, *gradients, layer.moving_mean, layer.moving_variance]
    results[name + ' all-reduces'] = list(reduced)
  # Forward and backward: the per-channel sums, sums of squares and counts stacked
  # in one tensor (then its gradient), where Keras reduces each (then each gradient).
  assert results['ours all-reduces'] == [[[3, 1, 1, 1, 6]]] * 2
  assert results['keras all-reduces'] == [[[1, 1, 1, 6]]] * 6
  for ours, keras in zip(results['ours'], results['keras']):
    np.testing.assert_allclose(ours.numpy(), keras.numpy(), rtol=1e-6, atol=1e-6)
