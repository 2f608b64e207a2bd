"""Official TF1 checkpoints and every other weights format: names, parity, options, errors."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from conftest import shared_path, write_official_checkpoint, write_tf1_checkpoint
from deeplab import ModelConfig, build_model
from deeplab.checkpoints import (CheckpointMismatchError, is_official_checkpoint,
                                 load_official_checkpoint, official_weight_names,
                                 restore_weights, save_model)
from deeplab.checkpoints.architecture import config_from_checkpoint, config_from_variables
from deeplab.model import end_points

OFFICIAL = ('reference', 'official')
# The official intermediate tensors, in network order, so a failure names the first
# layer where the outputs part.
END_POINTS_IN_ORDER = ('backbone_features', 'aspp_image_pooling', 'aspp0', 'aspp1', 'aspp2',
                       'aspp3', 'aspp_concat_projection', 'decoder_feature_projection0',
                       'decoder_conv0', 'decoder_conv1', 'logits', 'logits_upsampled')
RELATIVE_TOLERANCE = 1e-4
MIN_ARGMAX_AGREEMENT = 0.999
# The official MobileNetV2 models: no atrous ASPP branches; the reference folders
# differ only in the decoder.
MOBILENET = ModelConfig(backbone='mobilenet_v2', atrous_rates=(), decoder_output_stride=None)
MOBILENET_DECODER = dataclasses.replace(MOBILENET, decoder_output_stride=4)
# The folders of /reference/official: each has the variables.txt of one official layout.
OFFICIAL_LAYOUTS = ('mobilenet_v2', 'mobilenet_v2_decoder', 'xception_65', 'resnet_v1_101_beta')


def _tiny(**kwargs):
  defaults = dict(backbone='mobilenet_v2', num_classes=4, depth_multiplier=0.25,
                  aspp_convs_filters=16, decoder_filters=16)
  defaults.update(kwargs)
  return ModelConfig(**defaults)


def _official_config(variant: str) -> ModelConfig:
  """The ModelConfig of an official reference's ModelOptions (config.json)."""
  options = json.loads(shared_path(*OFFICIAL, variant, 'config.json').read_text())
  options = options['model_options']
  return ModelConfig(
      backbone=options['model_variant'],
      num_classes=options['outputs_to_num_classes']['semantic'],
      output_stride=options['output_stride'],
      atrous_rates=tuple(options['atrous_rates'] or ()),
      decoder_output_stride=(options['decoder_output_stride'] or [None])[0],
      multi_grid=tuple(options['multi_grid']) if options['multi_grid'] else None,
      depth_multiplier=options['depth_multiplier'])


def _official_shapes(variant: str):
  """{name: shape} of variables.txt (lines 'name<TAB>[shape]<TAB>dtype<TAB>trainable')."""
  shapes = {}
  for line in shared_path(*OFFICIAL, variant, 'variables.txt').read_text().splitlines():
    name, shape = line.split('\t')[:2]
    shapes[name] = tuple(json.loads(shape))
  return shapes


def _reference_variables(variant):
  reader = tf.train.load_checkpoint(str(shared_path(*OFFICIAL, variant) / 'model.ckpt'))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def _weights(model):
  return {name: variable.numpy() for name, variable in official_weight_names(model).items()}


def _relative_error(ours, reference):
  return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


@pytest.mark.portable
@pytest.mark.parametrize('variant,config', [('mobilenet_v2', MOBILENET),
                                            ('mobilenet_v2_decoder', MOBILENET_DECODER)])
def test_official_checkpoint_reproduces_official_outputs_within_1e_4(shared, variant, config):
  folder = shared(*OFFICIAL, variant)
  reference = np.load(folder / 'reference.npz')
  model = build_model(config)
  report = load_official_checkpoint(model, str(folder), strict=True)
  assert len(report.matched) == len(model.weights)
  assert not report.unexpected and not report.shape_mismatches

  ours = end_points(model, reference['input'])
  compared = [name for name in END_POINTS_IN_ORDER if name in reference]
  assert 'logits_upsampled' in compared and 'backbone_features' in compared
  for name in compared:
    error = _relative_error(ours[name].numpy(), reference[name])
    assert error < RELATIVE_TOLERANCE, (
        f'{variant}: {name} is the first tensor that differs from the official one '
        f'(relative error {error:.2e} >= {RELATIVE_TOLERANCE})')
  labels = np.argmax(ours['logits_upsampled'].numpy(), axis=-1)
  agreement = np.mean(labels == reference['predictions'])
  assert agreement > MIN_ARGMAX_AGREEMENT, f'argmax agrees on {agreement:.4%} of pixels only'


@pytest.mark.parametrize('variant', OFFICIAL_LAYOUTS)
def test_config_read_from_the_official_variables_builds_exactly_them(shared, tmp_path, variant):
  official = _official_shapes(variant)
  config = config_from_variables(official)
  # The weights do not tell the output stride: it is the zoo's export setting, 8;
  # at the stride the references were made with, the config is the official one.
  assert config.output_stride == 8
  made_with = _official_config(variant)
  assert config.with_output_stride(16).resolved_atrous_rates == made_with.resolved_atrous_rates
  assert (dataclasses.replace(config, output_stride=16, atrous_rates=None) ==
          dataclasses.replace(made_with, atrous_rates=None))

  model = build_model(config)
  weights = official_weight_names(model)
  assert {name: tuple(v.shape) for name, v in weights.items()} == official
  assert len({id(v) for v in weights.values()}) == len(model.weights) == len(official)

  rng = np.random.default_rng(0)
  values = {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in official.items()}
  slots = {f'{name}/Momentum': np.zeros(official[name], np.float32)
           for name in list(official)[:5] + ['logits/semantic/weights']}
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt',
                                 {**values, **slots, 'global_step': np.int64(30000)})
  assert is_official_checkpoint(prefix)

  report = load_official_checkpoint(model, prefix, strict=True)
  assert sorted(report.matched) == sorted(official)
  assert sorted(report.skipped) == sorted([*slots, 'global_step'])
  assert not (report.missing or report.unexpected or report.excluded)
  for name, variable in weights.items():
    np.testing.assert_array_equal(variable.numpy(), values[name], err_msg=name)


def test_class_count_mismatch_names_the_fix_and_assigns_nothing(shared):
  model = build_model(dataclasses.replace(MOBILENET, num_classes=19))
  before = _weights(model)
  with pytest.raises(CheckpointMismatchError) as error:
    load_official_checkpoint(model, str(shared(*OFFICIAL, 'mobilenet_v2')))
  message = str(error.value)
  assert "the checkpoint's logits have 21 classes: set model.num_classes=21" in message
  assert 'initialize_last_layer=False' in message
  assert [name for name, _, _ in error.value.report.shape_mismatches] == [
      'logits/semantic/weights', 'logits/semantic/biases']
  for name, value in _weights(model).items():
    np.testing.assert_array_equal(value, before[name], err_msg=f'{name} changed')


@pytest.mark.parametrize('initialize_last_layer', [False, 'auto'])
def test_fine_tuning_to_another_class_count_keeps_new_logits(shared, initialize_last_layer):
  model = build_model(dataclasses.replace(MOBILENET, num_classes=19))
  new_logits = model.get_layer('logits/semantic').get_weights()
  report = load_official_checkpoint(model, str(shared(*OFFICIAL, 'mobilenet_v2')),
                                    initialize_last_layer=initialize_last_layer, strict=True)
  logits = ('logits/semantic/weights', 'logits/semantic/biases')
  assert sorted(report.excluded) == sorted(logits)
  assert set(logits) <= set(report.skipped)
  assert len(report.matched) == len(model.weights) - 2
  checkpoint = _reference_variables('mobilenet_v2')
  weights = _weights(model)
  for name in report.matched:
    np.testing.assert_array_equal(weights[name], checkpoint[name], err_msg=name)
  for ours, initial in zip(model.get_layer('logits/semantic').get_weights(), new_logits):
    np.testing.assert_array_equal(ours, initial)


def test_auto_loads_the_logits_when_the_class_counts_agree(shared):
  model = build_model(MOBILENET)
  report = load_official_checkpoint(model, str(shared(*OFFICIAL, 'mobilenet_v2')),
                                    initialize_last_layer='auto')
  assert 'logits/semantic/weights' in report.matched and not report.excluded


def test_backbone_only_imports_an_imagenet_checkpoint_and_reports_its_head(shared, tmp_path):
  checkpoint = {name: value for name, value in _reference_variables('mobilenet_v2').items()
                if name.startswith('MobilenetV2/')}
  head = {'MobilenetV2/Conv_1/weights': np.ones([1, 1, 320, 1280], np.float32),
          'MobilenetV2/Logits/Conv2d_1c_1x1/weights': np.ones([1, 1, 1280, 1001], np.float32),
          'MobilenetV2/Logits/Conv2d_1c_1x1/biases': np.ones([1001], np.float32)}
  training = {'global_step': np.int64(1),
              'MobilenetV2/Conv/weights/ExponentialMovingAverage': checkpoint[
                  'MobilenetV2/Conv/weights']}
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt', {**checkpoint, **head, **training})
  # Another head (atrous ASPP, decoder, 5 classes) on the official backbone.
  model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=5, aspp_convs_filters=16,
                                  decoder_filters=16))
  head_before = {name: value for name, value in _weights(model).items()
                 if not name.startswith('MobilenetV2/')}

  report = load_official_checkpoint(model, prefix, backbone_only=True)
  assert sorted(report.matched) == sorted(checkpoint)
  assert sorted(report.unexpected) == sorted(head)
  assert sorted(report.skipped) == sorted(training)
  assert sorted(report.excluded) == sorted(head_before)
  weights = _weights(model)
  for name, value in checkpoint.items():
    np.testing.assert_array_equal(weights[name], value, err_msg=name)
  for name, value in head_before.items():
    np.testing.assert_array_equal(weights[name], value, err_msg=f'{name} changed')

  with pytest.raises(CheckpointMismatchError, match='pass backbone_only=True'):
    load_official_checkpoint(model, prefix)
  incomplete = {k: v for k, v in checkpoint.items() if k != 'MobilenetV2/Conv/weights'}
  prefix = write_tf1_checkpoint(tmp_path / 'incomplete.ckpt', incomplete)
  with pytest.raises(CheckpointMismatchError,
                     match=r'backbone_only needs every backbone weight.*MobilenetV2/Conv/weights'):
    load_official_checkpoint(model, prefix, backbone_only=True)


def test_missing_decoder_is_allowed_unless_strict(shared):
  model = build_model(MOBILENET_DECODER)
  path = str(shared(*OFFICIAL, 'mobilenet_v2'))
  report = load_official_checkpoint(model, path)
  assert report.missing and all(name.startswith('decoder/') for name in report.missing)
  assert len(report.missing) == 25  # 5 convolutions, each with weights and 4 BatchNorm values.
  with pytest.raises(CheckpointMismatchError,
                     match=r'(?s)model weights not in the checkpoint \(strict\): 25 .*'
                           r'has no decoder: set model.decoder_output_stride=null'):
    load_official_checkpoint(model, path, strict=True)


@pytest.mark.parametrize('variant,overrides,advice', [
    ('mobilenet_v2_decoder', dict(decoder_output_stride=None),
     'includes the decoder (separable convolutions): set model.decoder_output_stride=4'),
    ('mobilenet_v2', dict(depth_multiplier=0.5), 'set model.depth_multiplier=1'),
    ('mobilenet_v2', dict(aspp_convs_filters=128), 'set model.aspp_convs_filters=256'),
    ('mobilenet_v2', dict(add_image_level_feature=False),
     'set model.add_image_level_feature=true'),
])
def test_checkpoint_that_does_not_fit_the_config_names_the_setting(shared, variant, overrides,
                                                                   advice):
  base = MOBILENET_DECODER if variant == 'mobilenet_v2_decoder' else MOBILENET
  model = build_model(dataclasses.replace(base, **overrides))
  with pytest.raises(CheckpointMismatchError) as error:
    load_official_checkpoint(model, str(shared(*OFFICIAL, variant)))
  assert advice in str(error.value)
  assert 'nothing was loaded' in str(error.value)


def test_model_with_atrous_branches_is_told_the_checkpoint_has_none(shared):
  # The official MobileNetV2 model in a config that leaves the atrous rates to the
  # output stride, as a user would first write it.
  path = str(shared(*OFFICIAL, 'mobilenet_v2'))
  model = build_model(ModelConfig(backbone='mobilenet_v2', output_stride=8,
                                  decoder_output_stride=None))
  with pytest.raises(CheckpointMismatchError) as error:
    load_official_checkpoint(model, path)
  message = str(error.value)
  assert 'concat_projection/weights: checkpoint [1, 1, 512, 256], model [1, 1, 1280, 256]' in (
      message)
  assert 'the checkpoint has no ASPP atrous branches: set model.atrous_rates=[]' in message
  assert f"deeplab.config_from_checkpoint('{path}/model.ckpt')" in message


def test_config_from_a_tarball_folder_fits_its_checkpoint_and_names_what_it_read(tmp_path):
  written = build_model(_tiny(atrous_rates=(), decoder_output_stride=None, decoder_filters=256))
  folder = write_official_checkpoint(written, tmp_path / 'zoo_model', name='model.ckpt-30000')
  with pytest.raises(CheckpointMismatchError,
                     match=r'(?s)no ASPP atrous branches: set model.atrous_rates=\[\].*'
                           r'deeplab.config_from_checkpoint'):
    load_official_checkpoint(build_model(_tiny(decoder_output_stride=None)), folder)

  for path in (folder, f'{folder}/model.ckpt-30000', f'{folder}/model.ckpt-30000.index'):
    config = config_from_checkpoint(path)
    assert config == dataclasses.replace(written.config, output_stride=8), path
  report = load_official_checkpoint(build_model(config), folder, strict=True)
  assert len(report.matched) == len(written.weights) and report.skipped == ('global_step',)


@pytest.mark.parametrize('config', [
    _tiny(depth_multiplier=0.35, aspp_with_separable_conv=False, add_image_level_feature=False,
          decoder_output_stride=8, decoder_use_separable_conv=False, decoder_filters=24),
    _tiny(num_classes=19, depth_multiplier=0.5, atrous_rates=(), aspp_convs_filters=32),
], ids=['plain_branches_decoder_at_8', 'separable_decoder_at_4_no_atrous'])
def test_config_read_from_a_model_variables_rebuilds_the_same_variables(config):
  expected = {name: tuple(v.shape) for name, v in official_weight_names(build_model(config)).items()}
  read = config_from_variables(expected)
  assert {name: tuple(v.shape)
          for name, v in official_weight_names(build_model(read)).items()} == expected
  # A decoder on stride-8 features needs output stride 16; otherwise the zoo's 8.
  assert read.output_stride == (16 if config.decoder_output_stride == 8 else 8)
  assert read.multi_grid is None


def test_checkpoints_without_a_whole_network_are_refused_with_the_reason():
  names = official_weight_names(build_model(_tiny()))
  backbone = {name: tuple(v.shape) for name, v in names.items() if name.startswith('Mobilenet')}
  with pytest.raises(ValueError, match=r'holds a mobilenet_v2 backbone only .* backbone_only'):
    config_from_variables(backbone, source='imagenet/mobilenet_v2')
  with pytest.raises(ValueError, match=r'holds a head this package does not build'):
    config_from_variables({**backbone, 'dense_prediction_cell/branch0/weights': (1, 1, 8, 8)})
  with pytest.raises(ValueError, match=r'one supported backbone .* top-level scopes '
                                       r'MobilenetV3'):
    config_from_variables({'MobilenetV3/Conv/weights': (3, 3, 3, 16)})


def test_checkpoint_of_another_backbone_names_it(shared, tmp_path):
  # Names only matter here, so every variable is a single number.
  names = _official_shapes('resnet_v1_101_beta')
  prefix = write_tf1_checkpoint(tmp_path / 'model.ckpt',
                                 {name: np.zeros([1], np.float32) for name in names})
  with pytest.raises(CheckpointMismatchError) as error:
    load_official_checkpoint(build_model(_tiny()), prefix)
  message = str(error.value)
  assert ('the checkpoint holds resnet_v1_101/... variables: set '
          'model.backbone=resnet_v1_101_beta') in message
  assert 'no model weight is in the checkpoint' in message


def test_paths_that_are_not_checkpoints_get_clear_errors(tmp_path):
  model = build_model(_tiny())
  with pytest.raises(FileNotFoundError, match='does not exist'):
    restore_weights(model, str(tmp_path / 'absent'))
  (tmp_path / 'notes.txt').write_text('not a checkpoint')
  with pytest.raises(ValueError, match=r'notes.txt is not a checkpoint: expected an official '
                                       r'TF1 checkpoint .* a .keras file'):
    restore_weights(model, str(tmp_path / 'notes.txt'))
  with pytest.raises(ValueError, match='initialize_last_layer must be'):
    restore_weights(model, str(tmp_path / 'notes.txt'), initialize_last_layer='yes')
  assert not is_official_checkpoint(str(tmp_path / 'absent'))


def test_official_checkpoint_paths_resolve_from_prefix_file_or_folder(shared):
  folder = shared(*OFFICIAL, 'mobilenet_v2')
  for path in (folder, folder / 'model.ckpt', folder / 'model.ckpt.index'):
    assert is_official_checkpoint(str(path)), path


def _randomized(model):
  """`model` with random weights (positive variances), unlike any freshly built one."""
  rng = np.random.default_rng(len(model.weights))
  model.set_weights([np.abs(rng.standard_normal(w.shape)).astype(np.float32) + 0.1
                     for w in model.weights])
  return model


def _with_momentum(model):
  """An SGD optimizer that has taken one step on `model`, so it holds momentum slots."""
  optimizer = tf_keras.optimizers.SGD(0.1, momentum=0.9)
  variables = model.trainable_variables
  optimizer.apply_gradients(zip([tf.ones_like(v) for v in variables], variables))
  return optimizer


def test_native_checkpoint_is_detected_and_restores_the_model_only(tmp_path):
  trained = _randomized(build_model(_tiny()))
  checkpoint = tf.train.Checkpoint(model=trained, optimizer=_with_momentum(trained),
                                   step=tf.Variable(7))
  manager = tf.train.CheckpointManager(checkpoint, str(tmp_path / 'train'), max_to_keep=2)
  prefix = manager.save(checkpoint_number=100)
  expected = _weights(trained)
  assert not is_official_checkpoint(prefix)

  model = build_model(_tiny())
  for path in (str(tmp_path / 'train'), prefix):
    model.set_weights([np.zeros(w.shape) for w in model.weights])
    report = restore_weights(model, path, strict=True)
    assert report.format == 'TF2 checkpoint' and report.checkpoint == prefix
    assert sorted(report.matched) == sorted(expected)
    assert not report.unexpected and any('optimizer' in name for name in report.skipped)
    for name, value in _weights(model).items():
      np.testing.assert_array_equal(value, expected[name], err_msg=name)

  with pytest.raises(ValueError, match='TF2 .* not an official TF1 one'):
    load_official_checkpoint(model, prefix)
  other_classes = build_model(_tiny(num_classes=7))
  with pytest.raises(CheckpointMismatchError, match='set model.num_classes=4'):
    restore_weights(other_classes, prefix)
  report = restore_weights(other_classes, prefix, initialize_last_layer=False)
  assert report.excluded == ('logits/semantic/weights', 'logits/semantic/biases')
  np.testing.assert_array_equal(_weights(other_classes)['MobilenetV2/Conv/weights'],
                                expected['MobilenetV2/Conv/weights'])


def test_native_checkpoint_of_a_model_without_decoder_reports_the_difference(tmp_path):
  trained = build_model(_tiny())
  prefix = tf.train.Checkpoint(model=trained).write(str(tmp_path / 'ckpt-1'))
  model = build_model(_tiny(decoder_output_stride=None))
  before = _weights(model)
  for backbone_only in (False, True):
    with pytest.raises(CheckpointMismatchError,
                       match='build the model with the ModelConfig it was saved from') as error:
      restore_weights(model, prefix, backbone_only=backbone_only)
    assert error.value.report.unexpected  # The decoder's variables have no home.
  for name, value in _weights(model).items():
    np.testing.assert_array_equal(value, before[name], err_msg=f'{name} changed')


@pytest.mark.parametrize('filename', ['model.keras', 'model.weights.h5'])
def test_keras_files_are_detected(tmp_path, filename):
  trained = _randomized(build_model(_tiny()))
  path = str(tmp_path / filename)
  if filename.endswith('.keras'):
    trained.save(path)
  else:
    trained.save_weights(path)
  model = build_model(_tiny())
  report = restore_weights(model, path, strict=True)
  assert len(report.matched) == len(model.weights)
  expected = _weights(trained)
  for name, value in _weights(model).items():
    np.testing.assert_array_equal(value, expected[name], err_msg=name)


def test_keras_file_of_another_class_count_loads_with_auto_last_layer(tmp_path):
  trained = build_model(_tiny(num_classes=3))
  trained.save(str(tmp_path / 'model.keras'))
  model = build_model(_tiny())
  report = restore_weights(model, str(tmp_path / 'model.keras'), initialize_last_layer='auto')
  assert report.excluded == ('logits/semantic/weights', 'logits/semantic/biases')


def test_saved_checkpoint_directory_round_trips_and_is_never_overwritten(tmp_path):
  trained = _randomized(build_model(_tiny()))
  output = str(tmp_path / 'imported')
  assert save_model(trained, output) == output
  assert sorted(p.name for p in tmp_path.iterdir()) == ['imported']  # No temporary left.
  model = build_model(_tiny())
  restore_weights(model, output, strict=True)
  expected = _weights(trained)
  for name, value in _weights(model).items():
    np.testing.assert_array_equal(value, expected[name], err_msg=name)
  with pytest.raises(ValueError, match='not an empty directory'):
    save_model(trained, output)
  with pytest.raises(ValueError, match='must be a .keras file or a directory'):
    save_model(trained, str(tmp_path / 'model.h5'))
