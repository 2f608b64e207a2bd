"""Labels, loss and gradient norm of seeded models, for comparing kernel sets.

Run as a script it writes them for every case to an .npz file, so a process with
other kernels (TF_ENABLE_ONEDNN_OPTS=0 or 1) can compare its own results with them:
  python tests/platform_matrix.py results.npz [all]
"""

import sys
from typing import Dict

import numpy as np
import tensorflow as tf
import tf_keras

from deeplab import ModelConfig, build_model
from deeplab.config import SUPPORTED_BACKBONES, SUPPORTED_OUTPUT_STRIDES

# Every backbone at every output stride: `python platform_matrix.py OUT all`.
ALL_CASES = tuple(f'{b}-os{s}' for b in SUPPORTED_BACKBONES for s in SUPPORTED_OUTPUT_STRIDES)
# What `make test` compares: every output stride, every kind of unit and stem (Xception's
# entry, middle and exit flows; ResNet's plain and beta stems and multi-grid block;
# MobileNetV2's dilated blocks; the ASPP), at a fifth of the cost of all. The other
# backbones repeat these units at other depths (Xception-71 has a longer entry flow than
# Xception-65, ResNet-101 more blocks than ResNet-50).
CASES = ('xception_41-os16', 'xception_65-os8', 'resnet_v1_50-os32', 'resnet_v1_101_beta-os16',
         'mobilenet_v2-os8')
SIZE = 49
MIN_LABEL_AGREEMENT = 0.999


def config(case: str) -> ModelConfig:
  backbone, output_stride = case.rsplit('-os', 1)
  narrow = backbone == 'mobilenet_v2'
  return ModelConfig(backbone=backbone, num_classes=5, output_stride=int(output_stride),
                     depth_multiplier=0.5 if narrow else 1.0, aspp_convs_filters=32,
                     decoder_filters=32)


def images() -> np.ndarray:
  return np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.uint8)


def results(case: str) -> Dict[str, np.ndarray]:
  """Labels at inference, and the loss and logits-layer gradient of a training step,
  of the case's seeded model (after checking its logits' shape and dtype).

  (The other gradients of an untrained network in training mode are dominated by
  rounding: BatchNorm cancels most of them, so their norms differ by percents
  between any two summation orders, XLA's included. `test_platforms` checks every
  atrous formulation's gradient against XLA's on single convolutions instead.)
  """
  tf_keras.utils.set_random_seed(0)
  model = build_model(config(case))
  weights_sum = np.float64(sum(float(tf.reduce_sum(tf.abs(w))) for w in model.weights))
  labels = tf.argmax(model(images(), training=False), -1, output_type=tf.int32)
  # Any size, uint8 or float32 pixels: float32 logits at the input size, the same for both.
  pixels = np.random.default_rng(1).integers(0, 256, [1, 37, 54, 3])
  logits = model(pixels.astype(np.uint8), training=False)
  if logits.shape != (1, 37, 54, 5) or logits.dtype != tf.float32:
    raise AssertionError(f'{case}: logits {logits.dtype.name} {logits.shape} for 37x54 pixels')
  if not np.array_equal(logits, model(pixels.astype(np.float32), training=False)):
    raise AssertionError(f'{case}: uint8 and float32 pixels give other logits')
  with tf.GradientTape() as tape:
    logits = model(images(), training=True)
    loss = tf.reduce_mean(tf.math.reduce_logsumexp(logits, -1) - logits[..., 0])
  gradients = tape.gradient(loss, model.trainable_variables)
  problems = [v.name for v, g in zip(model.trainable_variables, gradients)
              if g is None or not np.all(np.isfinite(g))]
  if problems:
    raise AssertionError(f'{case}: no or non-finite gradient for {problems[:3]}')
  logits_kernel = [g for v, g in zip(model.trainable_variables, gradients)
                   if v.name.startswith('logits/semantic/kernel')]
  return {'labels': labels.numpy(), 'loss': loss.numpy(),
          'logits_gradient': logits_kernel[0].numpy(), 'weights_sum': weights_sum}


def compare(case: str, ours: Dict[str, np.ndarray], theirs: Dict[str, np.ndarray]) -> None:
  """Asserts two processes' results of `case` agree: same weights, labels on 99.9% of
  pixels, loss within 1e-4 and logits-layer gradient within 2e-2 of its largest value.

  Measured with and without oneDNN over all 24 cases: labels 100%, loss within 4e-6,
  logits-layer gradient within 1.9e-3 (ResNet-101 at output stride 16; at most 9e-5
  for Xception and MobileNetV2).
  """
  assert ours['weights_sum'] == theirs['weights_sum'], f'{case}: other weights were built'
  agreement = np.mean(ours['labels'] == theirs['labels'])
  assert agreement >= MIN_LABEL_AGREEMENT, f'{case}: labels agree on {agreement:.4%}'
  np.testing.assert_allclose(ours['loss'], theirs['loss'], rtol=1e-4, err_msg=case)
  scale = np.abs(theirs['logits_gradient']).max()
  np.testing.assert_allclose(ours['logits_gradient'], theirs['logits_gradient'],
                             atol=2e-2 * scale, err_msg=case)


def main(path: str, cases=CASES) -> None:
  arrays = {}
  for case in cases:
    for key, value in results(case).items():
      arrays[f'{case}/{key}'] = value
    tf_keras.backend.clear_session()
  np.savez(path, **arrays)


if __name__ == '__main__':
  main(sys.argv[1], ALL_CASES if sys.argv[2:] == ['all'] else CASES)
