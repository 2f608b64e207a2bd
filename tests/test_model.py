"""The model family: shapes, dtypes, serialization, output-stride rebuilds, errors."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab import ModelConfig, build_model, with_output_stride
from deeplab.config import SUPPORTED_OUTPUT_STRIDES

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2


def _tiny(**kwargs):
  """A small but complete DeepLabV3+ (separable ASPP, image pooling, decoder)."""
  defaults = dict(backbone='mobilenet_v2', num_classes=4, depth_multiplier=0.25,
                  aspp_convs_filters=16, decoder_filters=16)
  defaults.update(kwargs)
  return ModelConfig(**defaults)


# Every backbone at every output stride, its logits' shape and dtype on both kernel
# sets: tests/test_platforms.py.


def test_batch_and_size_are_dynamic():
  model = build_model(_tiny())
  assert model.input_shape == (None, None, None, 3)
  assert model(np.zeros([3, 33, 47, 3], np.float32)).shape == (3, 33, 47, 4)


def test_features_have_the_configured_output_stride():
  for output_stride in SUPPORTED_OUTPUT_STRIDES:
    model = build_model(_tiny(output_stride=output_stride))
    features = model.backbone(tf.zeros([1, 129, 129, 3]))['features']
    assert features.shape[1] == (129 - 1) // output_stride + 1


@pytest.mark.parametrize('suffix', ['keras', 'savedmodel'])
def test_save_and_load_round_trip_gives_identical_outputs(tmp_path, suffix):
  model = build_model(_tiny())
  pixels = np.random.RandomState(0).randint(0, 256, [2, 65, 65, 3]).astype(np.float32)
  expected = model(pixels, training=False).numpy()
  path = str(tmp_path / ('model.keras' if suffix == 'keras' else 'saved_model'))
  model.save(path)
  loaded = tf_keras.models.load_model(path)
  assert loaded.config == model.config
  np.testing.assert_array_equal(loaded(pixels, training=False).numpy(), expected)


def test_rebuild_at_another_output_stride_reuses_every_weight():
  model = build_model(_tiny(backbone='xception_41', depth_multiplier=1.0))
  dense = with_output_stride(model, 8)
  assert dense.config.output_stride == 8
  assert dense.config.resolved_atrous_rates == (12, 24, 36)
  assert [w.name for w in dense.weights] == [w.name for w in model.weights]
  for ours, theirs in zip(dense.weights, model.weights):
    np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
  pixels = np.random.RandomState(1).randint(0, 256, [1, 65, 65, 3]).astype(np.float32)
  assert dense(pixels, training=False).shape == (1, 65, 65, 4)


def test_explicit_atrous_rates_scale_with_the_output_stride():
  config = _tiny(atrous_rates=(3, 6, 9))
  assert config.with_output_stride(8).atrous_rates == (6, 12, 18)
  assert _tiny(atrous_rates=()).with_output_stride(8).atrous_rates == ()


@pytest.mark.parametrize('channels', [1, 4])
def test_input_with_wrong_channel_count_raises(channels):
  model = build_model(_tiny())
  # Keras's own input check or the model's normalization layer, whichever sees it first.
  with pytest.raises(ValueError, match=r'(None, None, None, 3\)|\[batch, height, width, 3\])'):
    model(np.zeros([1, 65, 65, channels], np.float32))


def test_build_model_rejects_other_configs():
  with pytest.raises(TypeError, match='ModelConfig'):
    build_model({'backbone': 'xception_65'})


def test_deeplabv3_without_decoder_and_without_image_pooling_builds():
  model = build_model(_tiny(decoder_output_stride=None, add_image_level_feature=False,
                            aspp_with_separable_conv=False))
  names = {layer.name for layer in model.layers}
  assert 'decoder' not in names
  assert model(np.zeros([1, 65, 65, 3])).shape == (1, 65, 65, 4)


def test_sync_batch_norm_builds_synchronized_layers():
  model = build_model(_tiny(sync_batch_norm=True))
  aspp = model.get_layer('aspp')
  assert aspp.aspp0.batch_norm.synchronized


@pytest.mark.portable
def test_mixed_bfloat16_model_keeps_float32_variables_and_logits_and_its_policy():
  config = ModelConfig(backbone='mobilenet_v2', num_classes=4, depth_multiplier=0.5)
  tf_keras.utils.set_random_seed(3)
  model = build_model(config)
  mixed = build_model(config, precision='mixed_bfloat16')
  assert tf_keras.mixed_precision.global_policy().name == 'float32'
  mixed.set_weights(model.get_weights())
  assert {w.dtype for w in mixed.weights} == {tf.float32}
  images = tf.random.stateless_uniform([1, 65, 65, 3], [0, 1], 0, 255)
  logits = mixed(images, training=False)
  assert logits.dtype == tf.float32
  assert mixed.get_layer('logits/semantic').compute_dtype == 'float32'
  assert mixed.get_layer('aspp').compute_dtype == 'bfloat16'
  reference = model(images, training=False)
  # Measured 0.009-0.026 of the largest logit over 8 weight and image seeds, both kernel
  # sets (0.014-0.037 with the full backbone).
  assert np.abs(logits - reference).max() < 0.1 * np.abs(reference).max()
  assert with_output_stride(mixed, 8).dtype_policy.name == 'mixed_bfloat16'
  with pytest.raises(ValueError, match='precision must be one of'):
    build_model(config, precision='int8')
