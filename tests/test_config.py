"""ModelConfig validation and (de)serialization."""

import dataclasses

import pytest

from deeplab import ConfigError, ModelConfig
from deeplab.hyperparams import from_dict, load_yaml, override, save_yaml, to_dict


def test_defaults_are_the_paper_deeplabv3plus_with_official_flags():
  config = ModelConfig()
  assert (config.backbone, config.output_stride, config.decoder_output_stride) == (
      'xception_65', 16, 4)
  assert config.resolved_atrous_rates == (6, 12, 18)
  assert config.aspp_with_separable_conv and config.decoder_use_separable_conv
  assert config.add_image_level_feature
  assert (config.num_classes, config.weight_decay, config.dropout) == (21, 4e-5, 0.1)
  assert config.resolved_multi_grid == (1, 1, 1)


@pytest.mark.parametrize('output_stride, rates', [(8, (12, 24, 36)), (16, (6, 12, 18)),
                                                  (32, (3, 6, 9))])
def test_atrous_rates_follow_the_output_stride(output_stride, rates):
  assert ModelConfig(output_stride=output_stride).resolved_atrous_rates == rates


@pytest.mark.parametrize('kwargs, message', [
    (dict(backbone='resnet'), r'ModelConfig.backbone must be one of .*xception_65'),
    (dict(output_stride=12), r'ModelConfig.output_stride must be one of 8, 16, 32; got 12'),
    (dict(num_classes=-1), r'ModelConfig.num_classes must be at least 2'),
    (dict(atrous_rates=(6, 12)), r'ModelConfig.atrous_rates must be three positive'),
    (dict(decoder_output_stride=16), r'ModelConfig.decoder_output_stride must be one of 4, 8'),
    (dict(multi_grid=(1, 2)), r'ModelConfig.multi_grid must be three'),
    (dict(depth_multiplier=0.5), r'depth_multiplier applies to mobilenet_v2 only'),
    (dict(backbone='mobilenet_v2', multi_grid=(1, 2, 4)), r'multi_grid applies to ResNet'),
    (dict(dropout=1.0), r'ModelConfig.dropout must be in \[0, 1\)'),
    (dict(num_classes='21'), r'ModelConfig.num_classes must be an integer'),
    (dict(aspp_with_separable_conv='false'), r'must be true or false'),
])
def test_bad_values_name_the_field_and_the_allowed_values(kwargs, message):
  with pytest.raises(ConfigError, match=message):
    ModelConfig(**kwargs)


def test_dict_and_yaml_round_trip(tmp_path):
  config = ModelConfig(backbone='resnet_v1_101_beta', multi_grid=[1, 2, 4], num_classes=19)
  assert config.multi_grid == (1, 2, 4)
  assert from_dict(ModelConfig, to_dict(config)) == config
  path = str(tmp_path / 'model.yaml')
  save_yaml(config, path)
  assert from_dict(ModelConfig, load_yaml(path)) == config


def test_unknown_keys_are_rejected_with_their_name():
  with pytest.raises(ConfigError, match=r'Unknown key ModelConfig.outputstride'):
    from_dict(ModelConfig, {'outputstride': 8})
  with pytest.raises(ConfigError, match=r'Unknown key ModelConfig.rates'):
    override(ModelConfig(), 'rates=[1, 2, 3]')


def test_overrides_parse_lists_numbers_and_none():
  config = override(ModelConfig(), 'atrous_rates=[12, 24, 36],output_stride=8,'
                    'weight_decay=1e-4,decoder_output_stride=null')
  assert config.atrous_rates == (12, 24, 36)
  assert config.weight_decay == 1e-4
  assert config.decoder_output_stride is None
  assert dataclasses.replace(config, output_stride=16).output_stride == 16
