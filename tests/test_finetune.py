"""Fine-tuning on one's own data with the defaults: BatchNorm statistics that fit the
trained weights, the dataset as the source of its classes, and the warnings."""

import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from conftest import write_official_checkpoint

from deeplab import ModelConfig, build_model
from deeplab.config import ConfigError, load_experiment
from deeplab.data import resolve_dataset_settings
from deeplab.data.info import DatasetInfo, SplitInfo, write_dataset_info
from deeplab.training import train
from deeplab.training.advice import collapse_warning, setup_warnings, suggested_class_weights
from deeplab.training.batch_norm import recompute_moving_statistics, staleness

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2

# The finetune_mobilenet_v2 experiment, tiny: a decoder so that 80 steps of 8 crops
# learn the synthetic shapes; every BatchNorm setting is the experiment's (official
# decays 0.997 and 0.9997, BatchNorm trained).
TINY = ('model.depth_multiplier=0.25,model.aspp_convs_filters=16,model.decoder_output_stride=4,'
        'model.decoder_filters=16,train_data.crop_size=[65, 65],trainer.train_steps=80,'
        'trainer.checkpoint_every_n_steps=80,trainer.log_every_n_steps=40,'
        'trainer.base_learning_rate=0.1')


@pytest.fixture(scope='module')
def zoo_checkpoint(tmp_path_factory):
  """An official-layout checkpoint of another dataset (21 classes) whose BatchNorm
  statistics fit other data: random means and variances, as in the official parity
  checkpoints."""
  tf_keras.utils.set_random_seed(0)
  model = build_model(ModelConfig(backbone='mobilenet_v2', depth_multiplier=0.25,
                                  atrous_rates=(), decoder_output_stride=4, decoder_filters=16,
                                  aspp_convs_filters=16, num_classes=21))
  rng = np.random.default_rng(0)
  for layer in model.submodules:
    if isinstance(layer, tf_keras.layers.BatchNormalization):
      layer.moving_mean.assign(rng.normal(0, 1, layer.moving_mean.shape))
      layer.moving_variance.assign(rng.uniform(0.5, 2, layer.moving_variance.shape))
  return write_official_checkpoint(model, tmp_path_factory.mktemp('zoo'))


def _finetune(synthetic_dir, checkpoint, model_dir, overrides=''):
  config = load_experiment(
      'finetune_mobilenet_v2', (),
      f'{TINY},train_data.dataset_dir={synthetic_dir},eval_data.dataset_dir={synthetic_dir},'
      f'trainer.initial_checkpoint={checkpoint}{overrides}')
  return train(config, str(model_dir))


def test_a_short_finetune_with_the_defaults_evaluates_as_well_as_it_trains(
    synthetic_dir, zoo_checkpoint, tmp_path):
  result = _finetune(synthetic_dir, zoo_checkpoint, tmp_path)
  evaluation = result.evaluations[-1]
  assert evaluation.step == 80  # evaluated at the checkpoint without being asked
  train_miou, eval_miou = result.metrics['train_miou'], evaluation.metrics.mean_iou
  # Measured over 6 runs (seeds 0-3 with oneDNN, 0-1 with the generic kernels): train
  # 0.35-0.52, eval minus train +0.02 to +0.22, eval 0.42-0.67. With the official
  # moving averages the same runs evaluate at 0.009-0.15 (next test).
  assert eval_miou > train_miou - 0.1, (eval_miou, train_miou)
  assert eval_miou > 0.2
  assert not any('labels' in w and 'of the pixels' in w for w in result.warnings)
  assert any('batches of 8 images' in w for w in result.warnings)


def test_the_official_moving_averages_collapse_and_the_end_says_why(
    synthetic_dir, zoo_checkpoint, tmp_path):
  result = _finetune(synthetic_dir, zoo_checkpoint, tmp_path,
                     ',trainer.precise_batch_norm_batches=0')
  # Measured over the same 6 runs: eval mIoU 0.009-0.15 (all background, or nearly),
  # train 0.35-0.52.
  assert result.evaluations[-1].metrics.mean_iou < 0.2 < result.metrics['train_miou']
  start, end = result.warnings[1], result.warnings[-1]
  assert 'hold 98% of their initial values after 80 steps' in start
  assert 'trainer.precise_batch_norm_batches=100' in start
  assert end.startswith('The evaluation at step 80 ')
  assert 'Likely cause: BatchNorm moving statistics' in end
  assert 'trainer.precise_batch_norm_batches=0' in end


def _batch_norm_model():
  inputs = tf_keras.Input([8, 8, 3])
  batch_norm = tf_keras.layers.BatchNormalization(momentum=0.99)
  return tf_keras.Model(inputs, batch_norm(inputs * 1.0)), batch_norm


@pytest.mark.portable
@pytest.mark.parametrize('traced', [True, False], ids=['traced', 'eager'])
def test_recompute_sets_the_mean_batch_statistics_and_keeps_non_finite_ones(traced):
  model, batch_norm = _batch_norm_model()
  rng = np.random.default_rng(0)
  batches = rng.normal(3, 2, [3, 4, 8, 8, 3]).astype(np.float32)
  dataset = tf.data.Dataset.from_tensor_slices({'images': batches})
  assert recompute_moving_statistics(model, iter(dataset), 3, traced=traced) == (1, 0)
  np.testing.assert_allclose(batch_norm.moving_mean.numpy(),
                             batches.mean(axis=(1, 2, 3)).mean(axis=0), atol=1e-5)
  # The training updates' variance: unbiased within each batch.
  np.testing.assert_allclose(batch_norm.moving_variance.numpy(),
                             batches.var(axis=(1, 2, 3), ddof=1).mean(axis=0), rtol=1e-5)
  assert batch_norm.momentum == 0.99
  assert staleness(model, 100) == pytest.approx(0.99**100)

  before = batch_norm.moving_mean.numpy()
  batches[1, 0, 0, 0, 0] = np.nan
  dataset = tf.data.Dataset.from_tensor_slices({'images': batches})
  assert recompute_moving_statistics(model, iter(dataset), 3, traced=traced) == (1, 1)
  np.testing.assert_array_equal(batch_norm.moving_mean.numpy(), before)


def _write_info(directory, num_classes=11, ignore_label=11, counts=None, num_examples=10):
  counts = counts or [1000] * num_classes
  info = DatasetInfo('mine', num_classes, ignore_label,
                     tuple(f'c{i}' for i in range(num_classes)),
                     splits={'train': SplitInfo(num_examples, tuple(counts), 500)})
  write_dataset_info(info, str(directory))
  return info


def test_unset_classes_and_ignore_label_come_from_the_dataset(tmp_path):
  _write_info(tmp_path)
  config = load_experiment('finetune_mobilenet_v2', (),
                           f'train_data.dataset_dir={tmp_path},eval_data.dataset_dir={tmp_path}')
  assert config.model.num_classes is None and config.train_data.ignore_label is None
  resolved = resolve_dataset_settings(config)
  assert resolved.model.num_classes == 11
  assert resolved.train_data.ignore_label == resolved.eval_data.ignore_label == 11
  assert resolve_dataset_settings(resolved) == resolved


@pytest.mark.parametrize('override, message', [
    ('model.num_classes=21', r'model.num_classes is 21 but the dataset in .* has 11 classes '
                             r'.*--params_override=model.num_classes=11'),
    ('train_data.ignore_label=255', r'train_data.ignore_label is 255 but the dataset in .* '
                                    r'uses 11 .*--params_override=train_data.ignore_label=11'),
])
def test_a_contradiction_is_refused_before_anything_is_written(tmp_path, override, message):
  data = tmp_path / 'data'
  data.mkdir()
  _write_info(data)
  (data / 'train-00000-of-00001.tfrecord').write_bytes(b'')
  config = load_experiment('finetune_mobilenet_v2', (),
                           f'train_data.dataset_dir={data},{override}')
  with pytest.raises(ConfigError, match=message):
    train(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


def test_unset_classes_without_a_dataset_info_are_named(tmp_path):
  with pytest.raises(ConfigError, match=r'model.num_classes is not set and no dataset says it'):
    resolve_dataset_settings(load_experiment('finetune_mobilenet_v2', (),
                                             f'train_data.dataset_dir={tmp_path}'))


def _setup_warnings(info, overrides, replicas=1, momentum=0.9997):
  config = resolve_dataset_settings(load_experiment('finetune_mobilenet_v2', (), overrides))
  return setup_warnings(config, info, replicas, momentum)


def test_setup_warnings_name_each_trap_and_its_setting(tmp_path):
  counts = [50000, 30000, 19000, 400, 0, 600]
  info = _write_info(tmp_path, 6, 255, counts, num_examples=4)
  warnings = _setup_warnings(info, f'train_data.dataset_dir={tmp_path},'
                                   'trainer.train_steps=1000,train_data.crop_size=[513, 513],'
                                   'trainer.precise_batch_norm_batches=0')
  small_batch, unconverged, padding, rare = warnings
  assert 'batches of 8 images' in small_batch and 'fine_tune_batch_norm=false' in small_batch
  assert 'hold 74% of their initial values after 1000 steps' in unconverged
  # 25,125 pixels an image (about 158x158) at scales 0.5-2 in a 513x513 crop.
  assert "about 158x158" in padding and "train_data.crop_size=[145, 145]" in padding
  assert '2 class(es) are under 1% of the labelled training pixels: c3 (0.4%), c5 (0.6%).' in rare
  assert '1 class(es) have no pixel in the training split: c4;' in rare
  assert f'trainer.class_weights={suggested_class_weights(counts)}' in rare

  quiet = _setup_warnings(info, f'train_data.dataset_dir={tmp_path},train_data.batch_size=16,'
                                'trainer.train_steps=30000,train_data.crop_size=[193, 193],'
                                f'trainer.class_weights={[1.0] * 6}')
  assert quiet == []
  # Synchronized BatchNorm over 2 replicas normalizes the whole global batch.
  assert _setup_warnings(None, 'model.sync_batch_norm=true,train_data.batch_size=16,'
                               'model.num_classes=6', replicas=2) == []
  assert 'batches of 8' in _setup_warnings(None, 'model.sync_batch_norm=false,model.num_classes=6,'
                                                 'train_data.batch_size=16', replicas=2)[0]


def test_suggested_class_weights_are_square_roots_of_median_frequency_capped():
  assert suggested_class_weights([600, 300, 100, 0]) == [0.71, 1.0, 1.73, 1.0]
  assert suggested_class_weights([10**6, 1]) == [0.71, 10.0]


def test_collapse_warning_on_one_class_or_far_below_training():
  config = load_experiment('finetune_mobilenet_v2', (), 'model.num_classes=3')
  collapsed = np.array([[50, 0, 0], [30, 0, 0], [20, 0, 0]])
  warning = collapse_warning(collapsed, 0.6, config, 'The evaluation', ('a', 'b', 'c'))
  assert warning.startswith('The evaluation labels 100% of the pixels "a" (which is 50% of the '
                            'labels) and has mIoU 0.167, under half the training mIoU 0.600.')
  assert 'BatchNorm statistics fit the weights here' in warning
  good = np.array([[45, 5, 0], [3, 27, 0], [2, 0, 18]])
  assert collapse_warning(good, 0.6, config, 'x') is None
  # A dataset that is mostly one class is not a collapse.
  assert collapse_warning(np.array([[96, 0], [3, 1]]), None, config, 'x') is None
