"""The train step on its own: frozen parts, precision, XLA; and initial checkpoints."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab import ModelConfig, build_model
from deeplab.checkpoints import official_weight_names
from deeplab.config import load_experiment
from deeplab.data.synthetic import generate_example
from deeplab.training.checkpointing import initialize_weights
from deeplab.training.loop import build_train_step

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2

TINY = ('model.depth_multiplier=0.25,model.aspp_convs_filters=16,model.decoder_filters=16,'
        'model.dropout=0.0,model.sync_batch_norm=false,train_data.crop_size=[65, 65],'
        'train_data.batch_size=4,trainer.base_learning_rate=0.02')


def _batches():
  rng = np.random.default_rng(0)
  examples = [generate_example(rng, 65, 65) for _ in range(4)]
  return tf.data.Dataset.from_tensors({
      'images': np.stack([e[0] for e in examples]).astype(np.float32),
      'labels': np.stack([e[1] for e in examples]).astype(np.int32)}).repeat()


def _train(overrides: str, num_steps: int = 3):
  """(weights before, weights after, per-step metrics, model) of `num_steps` steps."""
  tf_keras.utils.set_random_seed(0)
  step = build_train_step(load_experiment('synthetic', (), f'{TINY},{overrides}'))
  before = [v.numpy() for v in step.model.weights]
  iterator = iter(_batches())
  metrics = []
  for _ in range(num_steps):
    step(iterator, 1)
    metrics.append(step.read_metrics(1))
  return before, [v.numpy() for v in step.model.weights], metrics, step.model


@pytest.fixture(scope='module')
def float32_run():
  return _train('runtime.mixed_precision_dtype=float32')


def _is_batch_norm(variable) -> bool:
  return any(f'/{kind}:' in variable.name
             for kind in ('gamma', 'beta', 'moving_mean', 'moving_variance'))


@pytest.mark.portable
def test_frozen_batch_norm_and_backbone_do_not_change(float32_run):
  before, after, _, model = _train('trainer.fine_tune_batch_norm=false,'
                                   'trainer.freeze_backbone=true')
  backbone = {id(v) for v in model.backbone.weights}
  changed = {v.name: not np.array_equal(b, a)
             for v, b, a in zip(model.weights, before, after)}
  for variable in model.weights:
    if id(variable) in backbone or _is_batch_norm(variable):
      assert not changed[variable.name], variable.name
  assert changed['logits/semantic/kernel:0'] and changed['decoder/kernel:0']
  # Trained normally, BatchNorm parameters and statistics do move.
  before, after, _, model = float32_run
  assert all(not np.array_equal(b, a) for v, b, a in zip(model.weights, before, after)
             if 'moving_mean' in v.name and 'decoder' in v.name)


# Largest relative loss difference measured over initialization and data seeds 0-4
# with oneDNN and 0-2 with the generic kernels: bfloat16 0.00005-0.0005, XLA at most
# 0.00001 (0.0013 with the full backbone). Steps that do not update change the loss by
# 6-8%. The XLA compile (this file's costliest
# part) runs in the oneDNN pass only; in the generic-kernel pass, XLA is the reference
# of test_platforms' atrous convolutions.
@pytest.mark.parametrize('overrides, tolerance', [
    pytest.param('runtime.mixed_precision_dtype=mixed_bfloat16', 1e-2,
                 marks=pytest.mark.portable),
    pytest.param('runtime.enable_xla=true', 5e-3, marks=pytest.mark.slow),  # XLA compile
])
def test_bfloat16_and_xla_training_track_float32(float32_run, overrides, tolerance):
  # Losses, not weights: at this random initialization the BatchNorm gradients of a
  # 65x65 batch amplify rounding differences, so individual updates of the same
  # run in float32 already differ between XLA and TensorFlow kernels.
  _, after, metrics, _ = _train(overrides)
  _, _, reference, _ = float32_run
  assert all(w.dtype == np.float32 for w in after)  # variables stay float32
  assert all(m['nonfinite_steps'] == 0 for m in metrics)
  np.testing.assert_allclose([m['total_loss'] for m in metrics],
                             [m['total_loss'] for m in reference], rtol=tolerance)


def test_initialize_from_a_native_checkpoint_skips_logits_of_another_class_count(tmp_path):
  config = ModelConfig(backbone='mobilenet_v2', num_classes=5, depth_multiplier=0.25,
                       aspp_convs_filters=16, decoder_filters=16)
  source = build_model(config)
  tf.train.Checkpoint(model=source).write(str(tmp_path / 'ckpt-7'))
  target = build_model(dataclasses.replace(config, num_classes=3))
  logits_before = target.get_layer('logits/semantic').get_weights()
  initialize_weights(target, str(tmp_path / 'ckpt-7'), initialize_last_layer=True)
  for mine, theirs in zip(target.backbone.weights, source.backbone.weights):
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
  np.testing.assert_array_equal(target.get_layer('aspp').weights[0].numpy(),
                                source.get_layer('aspp').weights[0].numpy())
  for before, after in zip(logits_before, target.get_layer('logits/semantic').get_weights()):
    np.testing.assert_array_equal(before, after)


def test_initialize_from_an_imagenet_style_backbone_checkpoint(tmp_path):
  config = ModelConfig(backbone='mobilenet_v2', num_classes=3, depth_multiplier=0.25,
                       aspp_convs_filters=16, decoder_filters=16)
  source = build_model(config)
  names = official_weight_names(source)
  backbone = {name: v for name, v in names.items() if name.startswith('MobilenetV2/')}
  # A classification checkpoint: the backbone plus an ImageNet head the model lacks.
  head = tf.Variable(tf.zeros([1, 1, 1280, 1001]), name='head')
  saver = tf.compat.v1.train.Saver(
      var_list={**backbone, 'MobilenetV2/Logits/Conv2d_1c_1x1/weights': head})
  prefix = saver.save(None, str(tmp_path / 'model.ckpt'), write_meta_graph=False)
  target = build_model(config)
  aspp_before = target.get_layer('aspp').weights[0].numpy()
  initialize_weights(target, prefix, initialize_last_layer=True)
  for mine, theirs in zip(target.backbone.weights, source.backbone.weights):
    np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
  np.testing.assert_array_equal(target.get_layer('aspp').weights[0].numpy(), aspp_before)


@pytest.mark.full_mobilenet_v2
def test_initialize_from_the_official_mobilenet_checkpoint(shared):
  path = shared('reference', 'official', 'mobilenet_v2')  # an unpacked model-zoo folder
  model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=5, atrous_rates=(),
                                  decoder_output_stride=None))
  initialize_weights(model, str(path), initialize_last_layer=True)
  reader = tf.train.load_checkpoint(str(path / 'model.ckpt'))
  names = official_weight_names(model)
  np.testing.assert_array_equal(names['MobilenetV2/Conv/weights'].numpy(),
                                reader.get_tensor('MobilenetV2/Conv/weights'))
  np.testing.assert_array_equal(names['aspp0/weights'].numpy(), reader.get_tensor('aspp0/weights'))
  assert names['logits/semantic/weights'].shape[-1] == 5  # 21 in the checkpoint: left out
