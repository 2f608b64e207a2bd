"""The training losses: masked cross-entropy, class weights, hard pixel mining, L2."""

import numpy as np
import pytest
import tensorflow as tf

from deeplab import ModelConfig, build_model
from deeplab.layers import ConvBN, DepthwiseConvBN
from deeplab.losses import (hard_pixel_fraction, loss_normalizer, regularized_kernels,
                            softmax_cross_entropy, weight_decay_loss)


def _numpy_pixel_losses(labels, logits):
  shifted = logits - logits.max(axis=-1, keepdims=True)
  log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
  safe = np.where(labels < logits.shape[-1], labels, 0)
  return -np.take_along_axis(log_probabilities, safe[..., None], axis=-1)[..., 0]


@pytest.fixture
def batch():
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, size=[2, 9, 9]).astype(np.int32)
  labels[0, :3] = 255
  logits = rng.normal(size=[2, 9, 9, 4]).astype(np.float32)
  return labels, logits


def test_cross_entropy_is_the_mean_over_pixels_not_ignored(batch):
  labels, logits = batch
  total, count = softmax_cross_entropy(labels, logits, ignore_label=255)
  valid = labels != 255
  expected = _numpy_pixel_losses(labels, logits)[valid]
  assert float(count) == valid.sum() == 2 * 81 - 27
  np.testing.assert_allclose(float(total) / float(count), expected.mean(), rtol=1e-5)


def test_ignore_label_zero_leaves_out_class_zero_pixels(batch):
  labels, logits = batch
  labels = np.where(labels == 255, 1, labels)
  total, count = softmax_cross_entropy(labels, logits, ignore_label=0)
  valid = labels != 0
  np.testing.assert_allclose(float(total), _numpy_pixel_losses(labels, logits)[valid].sum(),
                             rtol=1e-5)
  assert float(count) == valid.sum()


def test_logits_smaller_than_labels_are_upsampled_with_corners_aligned():
  labels = np.zeros([1, 9, 9], np.int32)
  coarse = np.random.default_rng(1).normal(size=[1, 3, 3, 2]).astype(np.float32)
  upsampled = tf.compat.v1.image.resize_bilinear(coarse, [9, 9], align_corners=True)
  total, _ = softmax_cross_entropy(labels, coarse, ignore_label=255)
  expected, _ = softmax_cross_entropy(labels, upsampled, ignore_label=255)
  np.testing.assert_allclose(float(total), float(expected), rtol=1e-6)


def test_class_weights_multiply_each_pixel_loss_and_keep_the_pixel_count(batch):
  labels, logits = batch
  weights = (0.5, 1.0, 2.0, 0.0)
  total, count = softmax_cross_entropy(labels, logits, ignore_label=255,
                                       class_weights=weights)
  valid = labels != 255
  pixel_weights = np.array(weights)[np.where(valid, labels, 0)] * valid
  expected = (_numpy_pixel_losses(labels, logits) * pixel_weights).sum()
  np.testing.assert_allclose(float(total), expected, rtol=1e-5)
  assert float(count) == valid.sum()


def test_hard_pixel_mining_keeps_the_largest_losses(batch):
  labels, logits = batch
  total, count = softmax_cross_entropy(labels, logits, ignore_label=255, top_k_fraction=0.25)
  losses = np.where(labels != 255, _numpy_pixel_losses(labels, logits), 0.0).ravel()
  k = int(0.25 * losses.size)
  np.testing.assert_allclose(float(total), np.sort(losses)[::-1][:k].sum(), rtol=1e-5)
  assert float(count) == k


def test_mining_count_is_capped_by_the_valid_pixels():
  labels = np.full([1, 4, 4], 255, np.int32)
  labels[0, 0, :2] = 1
  count = loss_normalizer(labels, num_classes=3, ignore_label=255, top_k_fraction=0.5)
  assert float(count) == 2  # k = 8 kept pixels, but only 2 are valid


def test_hard_pixel_fraction_ramps_from_all_pixels_to_top_k():
  fractions = [float(hard_pixel_fraction(step, 0.2, 100)) for step in (0, 50, 100, 1000)]
  np.testing.assert_allclose(fractions, [1.0, 0.6, 0.2, 0.2], rtol=1e-6)
  assert float(hard_pixel_fraction(0, 0.2, 0)) == pytest.approx(0.2)


def test_loss_summed_over_replica_shares_equals_the_global_batch_loss(batch):
  # The trainer divides each replica's sum by the global count: splitting the
  # batch must not change the loss, whatever the ignored pixels per share.
  labels, logits = batch
  total, count = softmax_cross_entropy(labels, logits, ignore_label=255)
  parts = [softmax_cross_entropy(labels[i:i + 1], logits[i:i + 1], ignore_label=255)
           for i in range(2)]
  global_count = sum(float(c) for _, c in parts)
  split = sum(float(t) for t, _ in parts) / global_count
  np.testing.assert_allclose(split, float(total) / float(count), rtol=1e-6)
  mean_of_means = np.mean([float(t) / float(c) for t, c in parts])
  assert abs(mean_of_means - split) > 1e-3  # the per-share average would differ


def test_weight_decay_is_half_the_squared_norm_of_convolution_kernels_only():
  model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3, depth_multiplier=0.25,
                                  aspp_convs_filters=16, decoder_filters=16))
  kernels = regularized_kernels(model)
  kernel_ids = {id(k) for k in kernels}
  convolutions = [l for l in model.submodules if isinstance(l, ConvBN)]
  assert len(kernels) == len(convolutions)
  depthwise = [l.depthwise_kernel for l in model.submodules if isinstance(l, DepthwiseConvBN)]
  assert depthwise and not any(id(k) in kernel_ids for k in depthwise)
  assert not any('gamma' in k.name or 'beta' in k.name or 'bias' in k.name for k in kernels)
  expected = 4e-5 * sum(np.sum(k.numpy().astype(np.float64) ** 2) for k in kernels) / 2
  np.testing.assert_allclose(float(weight_decay_loss(kernels, 4e-5)), expected, rtol=1e-5)
