"""Does reduced precision predict what float32 predicts? Labels of a model at a
precision policy against the same weights in float32, on real-looking images.

A random network predicts near-ties everywhere (any rounding flips its labels),
and no trained weights of every backbone are at hand; so the reference model is a
random backbone made well-conditioned and given a fitted head, as a briefly
trained model would have:

1. random BatchNorm scales and offsets, with moving statistics equal to the batch
   statistics of the images, so activations stay normalized through the depth;
2. the logits layer fitted by ridge regression (a linear probe) to colour regions
   of the images (k-means of their pixels), so labels form coherent segments with
   decision margins like a trained model's.

Example:
  >>> from deeplab.benchmark.inference import BenchmarkConfig
  >>> config = BenchmarkConfig(backbone='mobilenet_v2', size=(65, 65),
  ...                          precision='mixed_bfloat16')
  >>> result = measure_agreement(config)  # synthetic scenes; pass photos for a real check
  >>> result['measurement'], result['images'], 0.0 <= result['agreement'] <= 1.0
  ('agreement', 3, True)
"""

from typing import Any, Dict, Sequence

import numpy as np
import tensorflow as tf
import tf_keras

from deeplab.benchmark.inference import BenchmarkConfig, build_benchmark_model
from deeplab.export.parity import sample_images
from deeplab.model import build_model, end_points
from deeplab.predict import label_predictor

# Colour regions the head is fitted to (at most the number of classes).
NUM_REGIONS = 6
_RIDGE = 0.1
_KMEANS_ITERATIONS = 10


def calibrate_random_batch_norm(model: tf_keras.Model, images, seed: int = 0) -> None:
  """Random BatchNorm scales and offsets, then moving statistics equal to the batch
  statistics of `images`, so every layer's activations stay normalized.

  Args:
    model: a `DeepLabModel` (its BatchNorm variables are overwritten).
    images: float32 [N, H, W, 3] pixels 0..255, all of one size.
    seed: seed of the random scales and offsets.
  """
  rng = np.random.default_rng(seed)
  batch_norms = [layer for layer in model.submodules
                 if isinstance(layer, tf_keras.layers.BatchNormalization)]
  momenta = [layer.momentum for layer in batch_norms]
  for layer in batch_norms:
    channels = layer.gamma.shape[0]
    layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
    layer.beta.assign(rng.normal(0.0, 0.2, channels).astype(np.float32))
    # With momentum 0, one training-mode pass stores exactly its batch statistics.
    layer.momentum = 0.0
  try:
    model(images, training=True)
  finally:
    for layer, momentum in zip(batch_norms, momenta):
      layer.momentum = momentum
  for layer in batch_norms:
    # A channel that barely varies on these few images would be scaled up by
    # 1 / sqrt(epsilon) and amplify rounding noise as no trained model does;
    # flooring its variance at the layer's mean damps it instead.
    variance = layer.moving_variance.numpy()
    layer.moving_variance.assign(variance + variance.mean())


def color_regions(images, height: int, width: int, num_regions: int,
                  seed: int = 0) -> np.ndarray:
  """Region ids int [N, height, width]: k-means clusters of the images' colours,
  resized (area) to height x width."""
  pixels = tf.image.resize(tf.cast(images, tf.float32), [height, width], 'area').numpy()
  colors = pixels.reshape(-1, 3)
  rng = np.random.default_rng(seed)
  centers = colors[rng.choice(len(colors), num_regions, replace=False)]
  for _ in range(_KMEANS_ITERATIONS):
    assignment = np.argmin(((colors[:, None] - centers[None]) ** 2).sum(-1), axis=1)
    centers = np.stack([colors[assignment == k].mean(0) if np.any(assignment == k)
                        else centers[k] for k in range(num_regions)])
  return assignment.reshape(pixels.shape[:3])


def fit_logits_to_color_regions(model: tf_keras.Model, images, seed: int = 0) -> None:
  """Sets the logits layer to the ridge regression of one-hot colour regions on the
  features it sees (the decoder's, or the ASPP's without decoder).

  Args:
    model: a float32 `DeepLabModel`.
    images: float32 [N, H, W, 3] pixels 0..255, all of one size.
    seed: seed of the k-means initialization.
  """
  points = end_points(model, images)
  features = points['decoder_conv1' if 'decoder_conv1' in points
                    else 'aspp_concat_projection'].numpy()
  num_classes = model.config.num_classes
  regions = color_regions(images, features.shape[1], features.shape[2],
                          min(NUM_REGIONS, num_classes), seed)
  design = np.concatenate([features.reshape(-1, features.shape[-1]),
                           np.ones([regions.size, 1], np.float32)], axis=1).astype(np.float64)
  targets = np.eye(num_classes)[regions.reshape(-1)]
  gram = design.T @ design + _RIDGE * len(design) * np.eye(design.shape[1])
  solution = np.linalg.solve(gram, design.T @ targets).astype(np.float32)
  logits = model.get_layer('logits/semantic')
  logits.kernel.assign(solution[:-1].reshape(logits.kernel.shape))
  logits.bias.assign(solution[-1])


def measure_agreement(config: BenchmarkConfig, image_paths: Sequence[str] = (),
                      seed: int = 0) -> Dict[str, Any]:
  """How often `config.precision` predicts the float32 model's label, per pixel.

  The float32 reference is calibrated and fitted on the images resized to
  `config.size` (see the module docstring); the model at `config.precision` gets
  its weights; both label every image at its own size through `deeplab.predict`.

  Args:
    config: the model and precision.
    image_paths: images (paths or globs); none uses synthetic scenes.
    seed: seeds the random weights (it sets the global Python, NumPy and
      TensorFlow seeds, `tf_keras.utils.set_random_seed`), so runs repeat.

  Returns:
    {'agreement': fraction of equal labels, 'pixels', 'images', 'seed',
     'classes_predicted': distinct float32 labels (a trivial model predicts one)}.
  """
  # RGB uint8 images of `image_paths` (globs allowed), or synthetic scenes.
  images = [sample.pixels for sample in sample_images(image_paths)]
  resized = tf.stack([tf.image.resize(image, config.size) for image in images])
  tf_keras.utils.set_random_seed(seed)
  reference = build_model(config.model_config())
  calibrate_random_batch_norm(reference, resized, seed)
  fit_logits_to_color_regions(reference, resized, seed)
  model = build_benchmark_model(config, weights_from=reference)
  predict_reference, predict = label_predictor(reference), label_predictor(model)
  equal = total = 0
  classes = set()
  for image in images:
    want = predict_reference(image[np.newaxis]).numpy()
    got = predict(image[np.newaxis]).numpy()
    equal += int(np.sum(want == got))
    total += want.size
    classes.update(np.unique(want).tolist())
  return {'measurement': 'agreement', 'reference_precision': 'float32',
          'agreement': round(equal / total, 5), 'pixels': total, 'images': len(images),
          'seed': seed, 'classes_predicted': len(classes)}
