"""Parameter and multiply-add counts against the official numbers.

The expected values are the official TF1 graph's (shared/reference/official-numbers.md):
21 classes, 513x513, batch 1, trainable parameters without BN moving statistics.
"""

import pytest

from deeplab import ModelConfig, build_model, model_cost

_MNV2 = dict(backbone='mobilenet_v2', atrous_rates=())
_R101 = dict(backbone='resnet_v1_101_beta', multi_grid=(1, 2, 4))
_PLAIN = dict(aspp_with_separable_conv=False, decoder_use_separable_conv=False)

# name: (config, trainable params, nominal multiply-adds in billions)
OFFICIAL_NUMBERS = {
    'xception_65_os16': (dict(backbone='xception_65'), 41_055_413, 54.035),
    'xception_65_os8': (dict(backbone='xception_65', output_stride=8), 41_055_413, 176.852),
    'resnet_v1_101_beta_os16': (_R101, 45_812_037, 65.168),
    'resnet_v1_101_beta_os8': (dict(_R101, output_stride=8), 45_812_037, 202.064),
    'mobilenet_v2_os16': (dict(_MNV2, decoder_output_stride=None), 2_113_557, 2.741),
    'mobilenet_v2_os8': (dict(_MNV2, decoder_output_stride=None, output_stride=8),
                         2_113_557, 8.826),
    'mobilenet_v2_decoder_os16': (_MNV2, 2_271_109, 5.409),
    'mobilenet_v2_decoder_os8': (dict(_MNV2, output_stride=8), 2_271_109, 11.477),
    'resnet_v3_plain_os16': (dict(_R101, **_PLAIN, decoder_output_stride=None),
                             58_164_437, 76.052),
    'resnet_v3_plain_os8': (dict(_R101, **_PLAIN, decoder_output_stride=None, output_stride=8),
                            58_164_437, 252.252),
    'resnet_v3plus_plain_os16': (dict(_R101, **_PLAIN), 59_468_085, 97.811),
    'resnet_v3plus_plain_os8': (dict(_R101, **_PLAIN, output_stride=8), 59_468_085, 273.994),
    'xception_v3_plain_os16': (dict(_PLAIN, decoder_output_stride=None), 53_407_813, 64.920),
    'xception_v3_plain_os8': (dict(_PLAIN, decoder_output_stride=None, output_stride=8),
                              53_407_813, 227.040),
    'xception_v3plus_plain_os16': (_PLAIN, 54_711_461, 86.679),
    'xception_v3plus_plain_os8': (dict(_PLAIN, output_stride=8), 54_711_461, 248.782),
    'resnet_v1_101_7x7_stem_v3plus_plain_os16': (
        dict(_PLAIN, backbone='resnet_v1_101'), 59_344_309, 90.673),
}


@pytest.mark.parametrize('name', sorted(OFFICIAL_NUMBERS))
def test_cost_equals_official_numbers(name):
  config_kwargs, params, billions = OFFICIAL_NUMBERS[name]
  cost = model_cost(ModelConfig(**config_kwargs), 513, 513)
  assert cost.trainable_params == params
  # The official figures are rounded to 1e6 multiply-adds; require 0.1% anyway.
  assert cost.multiply_adds / 1e9 == pytest.approx(billions, rel=1e-3), (
      f'{name}: {cost.multiply_adds / 1e9:.3f}B multiply-adds, official {billions}B '
      f'(tolerance 0.1%)')


def test_mobilenet_depth_multiplier_half_has_the_official_widths():
  # Widths of the official dm 0.5 model (its TFLite tensors): stem 16, then the
  # last unit of each stage 8, 12, 16, 32, 48, 80, 160.
  model = build_model(ModelConfig(backbone='mobilenet_v2', depth_multiplier=0.5,
                                  atrous_rates=(), decoder_output_stride=None))
  backbone = model.backbone
  widths = [backbone.get_layer('Conv').filters] + [
      backbone.get_layer(f'expanded_conv{suffix}/project').filters
      for suffix in ('', '_2', '_5', '_9', '_12', '_15', '_16')]
  assert widths == [16, 8, 12, 16, 32, 48, 80, 160]
