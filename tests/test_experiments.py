"""Registered experiments carry the paper's settings; the YAML loader is strict."""

import pytest

from deeplab.config import (ConfigError, ExperimentConfig, ModelConfig, load_experiment,
                            load_experiment_yaml, registered_experiments)

PAPER_EXPERIMENTS = {
    # name: (backbone, classes, train split, crop, steps, ignore label, weight decay)
    'pascal_voc_xception_65': ('xception_65', 21, 'train_aug', 513, 30000, 255, 4e-5),
    'pascal_voc_resnet_101': ('resnet_v1_101_beta', 21, 'train_aug', 513, 30000, 255, 1e-4),
    'pascal_voc_mobilenet_v2': ('mobilenet_v2', 21, 'train_aug', 513, 30000, 255, 4e-5),
    'cityscapes_xception_65': ('xception_65', 19, 'train_fine', 769, 90000, 255, 4e-5),
    'cityscapes_xception_71': ('xception_71', 19, 'train_fine', 769, 90000, 255, 4e-5),
    'ade20k_xception_65': ('xception_65', 151, 'train', 513, 150000, 0, 4e-5),
}


def test_registry_lists_the_paper_experiments_and_synthetic_but_not_bases():
  names = registered_experiments()
  assert set(PAPER_EXPERIMENTS) | {'synthetic'} <= set(names)
  assert not any(name.startswith('_') for name in names)


@pytest.mark.parametrize('name', sorted(PAPER_EXPERIMENTS))
def test_paper_experiments_have_the_paper_hyperparameters(name):
  backbone, classes, split, crop, steps, ignore, decay = PAPER_EXPERIMENTS[name]
  config = load_experiment(name)
  assert (config.model.backbone, config.model.num_classes) == (backbone, classes)
  assert (config.model.output_stride, config.model.weight_decay) == (16, decay)
  assert config.train_data.split == split and config.train_data.crop_size == (crop, crop)
  assert config.train_data.ignore_label == config.eval_data.ignore_label == ignore
  assert config.train_data.batch_size == 16
  assert (config.train_data.min_scale_factor, config.train_data.max_scale_factor,
          config.train_data.scale_factor_step_size) == (0.5, 2.0, 0.25)
  trainer = config.trainer
  assert (trainer.train_steps, trainer.base_learning_rate, trainer.learning_power,
          trainer.momentum) == (steps, 0.007, 0.9, 0.9)
  assert trainer.fine_tune_batch_norm


def test_model_variants_follow_the_paper():
  resnet = load_experiment('pascal_voc_resnet_101').model
  assert resnet.multi_grid == (1, 2, 4) and resnet.decoder_output_stride == 4
  mobilenet = load_experiment('pascal_voc_mobilenet_v2').model
  assert mobilenet.atrous_rates == () and mobilenet.decoder_output_stride is None
  assert load_experiment('pascal_voc_xception_65').model.resolved_atrous_rates == (6, 12, 18)
  assert not load_experiment('cityscapes_xception_71').model.add_image_level_feature


def test_the_staged_recipes_change_only_their_stage_settings():
  train_aug = load_experiment('pascal_voc_xception_65')
  coco = load_experiment('pascal_voc_xception_65_coco')
  assert (coco.train_data.split, coco.eval_data.split) == ('train', 'val')
  assert coco.model == train_aug.model and coco.trainer == train_aug.trainer
  trainval = load_experiment('pascal_voc_xception_65_trainval')
  assert trainval.train_data.split == 'trainval'
  assert trainval.model.output_stride == 8 and trainval.model.resolved_atrous_rates == (12, 24, 36)
  assert not trainval.trainer.fine_tune_batch_norm
  assert trainval.trainer.base_learning_rate == 0.0001
  assert len(trainval.evaluation.eval_scales) == 6 and trainval.evaluation.add_flipped_images
  coarse = load_experiment('cityscapes_xception_65_coarse')
  assert coarse.train_data.split == 'train_fine_coarse'
  assert coarse.model == load_experiment('cityscapes_xception_65').model


def test_synthetic_experiment_is_small_and_has_five_classes():
  config = load_experiment('synthetic')
  assert config.model.num_classes == 5 and config.model.backbone == 'mobilenet_v2'
  assert max(config.train_data.crop_size) <= 129


def test_a_file_extends_its_base_and_overrides_apply_last(tmp_path):
  (tmp_path / 'base.yaml').write_text('model: {num_classes: 7, output_stride: 8}\n'
                                      'trainer: {train_steps: 50}\n')
  child = tmp_path / 'child.yaml'
  child.write_text('base: base.yaml\nmodel: {num_classes: 9}\n')
  config = load_experiment(str(child), (), 'trainer.train_steps=60')
  assert (config.model.num_classes, config.model.output_stride) == (9, 8)
  assert config.trainer.train_steps == 60


def test_a_given_model_replaces_the_experiments_and_overrides_still_apply():
  model = ModelConfig(backbone='mobilenet_v2', atrous_rates=(), decoder_output_stride=None)
  config = load_experiment('pascal_voc_xception_65', (), 'model.output_stride=8', model=model)
  assert config.model == ModelConfig(backbone='mobilenet_v2', atrous_rates=(),
                                     decoder_output_stride=None, output_stride=8)
  assert config.train_data.split == 'train_aug'


def test_config_files_override_a_registered_experiment(tmp_path):
  override = tmp_path / 'mine.yaml'
  override.write_text('train_data: {dataset_dir: /data/voc}\n')
  config = load_experiment('pascal_voc_xception_65', [str(override)])
  assert config.train_data.dataset_dir == '/data/voc'
  assert config.model.num_classes == 21


def test_base_cycles_and_missing_bases_are_named(tmp_path):
  (tmp_path / 'a.yaml').write_text('base: b.yaml\n')
  (tmp_path / 'b.yaml').write_text('base: a.yaml\n')
  with pytest.raises(ConfigError, match=r'cycle.*a\.yaml'):
    load_experiment_yaml(str(tmp_path / 'a.yaml'))
  (tmp_path / 'c.yaml').write_text('base: nowhere.yaml\n')
  with pytest.raises(ConfigError, match=r'c\.yaml.*nowhere\.yaml.*is neither a file.*nor a '
                                        r'registered experiment: .*pascal_voc_mobilenet_v2'):
    load_experiment_yaml(str(tmp_path / 'c.yaml'))


def test_base_may_name_a_registered_experiment_and_a_file_beside_wins(tmp_path):
  mine = tmp_path / 'mine.yaml'
  mine.write_text('base: pascal_voc_mobilenet_v2\ntrain_data: {dataset_dir: /data/mine}\n')
  config = load_experiment(str(mine))
  assert config == load_experiment('pascal_voc_mobilenet_v2', (),
                                   'train_data.dataset_dir=/data/mine')
  (tmp_path / 'pascal_voc_mobilenet_v2').write_text('model: {num_classes: 3}\n')
  assert load_experiment(str(mine)).model.num_classes == 3


@pytest.mark.parametrize('text, message', [
    ('trainer: {train_step: 10}\n', r'Unknown key ExperimentConfig\.trainer\.train_step'),
    ('trainer: {train_steps: ten}\n', r'ExperimentConfig\.trainer\.train_steps must be an int'),
    ('train_data: {crop_size: [513]}\n', r'train_data\.crop_size must have 2 items'),
    ('runtime: {distribution_strategy: horovod}\n',
     r'distribution_strategy must be one of default, mirrored, multi_worker, tpu'),
    ('train_data: {crop_size: [17, 17]}\n', r'crop_size must be at least 33x33'),
    ('model: {num_classes: 3}\ntrainer: {class_weights: [1, 2]}\n',
     r'class_weights must have one weight per class'),
    ('trainer: {warmup_steps: 100, train_steps: 100}\n', r'warmup_steps \(100\) must be smaller'),
])
def test_bad_experiment_files_are_rejected_naming_the_key(tmp_path, text, message):
  path = tmp_path / 'bad.yaml'
  path.write_text(text)
  with pytest.raises(ConfigError, match=message):
    load_experiment(str(path))


def test_bad_overrides_are_rejected_naming_the_key():
  with pytest.raises(ConfigError, match=r'Unknown key ExperimentConfig\.trainer\.stepz'):
    load_experiment('synthetic', (), 'trainer.stepz=3')
  with pytest.raises(ConfigError, match=r'trainer\.fine_tune_batch_norm must be true or false'):
    load_experiment('synthetic', (), 'trainer.fine_tune_batch_norm=maybe')


def test_unknown_experiment_names_the_registered_ones():
  with pytest.raises(ConfigError, match=r'Unknown experiment .*pascal_voc_xception_65'):
    load_experiment('pascal_voc_xception_99')


def test_a_folder_named_like_an_experiment_does_not_hide_it(tmp_path, monkeypatch):
  (tmp_path / 'synthetic').mkdir()
  monkeypatch.chdir(tmp_path)
  assert load_experiment('synthetic').model.num_classes == 5


def test_defaults_match_the_official_train_flags():
  trainer = ExperimentConfig().trainer
  assert (trainer.last_layer_gradient_multiplier, trainer.last_layers_contain_logits_only,
          trainer.top_k_percent_pixels, trainer.hard_example_mining_step) == (1.0, False, 1.0, 0)
  assert trainer.initialize_last_layer and trainer.fine_tune_batch_norm
