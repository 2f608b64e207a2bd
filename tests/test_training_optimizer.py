"""The poly learning rate, gradient multipliers and the optimizer of training."""

import numpy as np
import pytest
import tf_keras

from deeplab import ModelConfig, build_model
from deeplab.config import TrainerConfig
from deeplab.schedules import (PolynomialDecayWithWarmup, build_learning_rate, build_optimizer,
                               gradient_multipliers, last_layer_variables)


def test_poly_schedule_is_the_official_polynomial_decay():
  schedule = build_learning_rate(TrainerConfig(train_steps=1000, base_learning_rate=0.007))
  steps = np.array([0, 1, 500, 999, 1000, 2000])
  expected = 0.007 * (1 - np.minimum(steps, 1000) / 1000) ** 0.9
  np.testing.assert_allclose([float(schedule(s)) for s in steps], expected, rtol=1e-4,
                             atol=1e-12)


def test_warmup_rises_linearly_then_decays_over_the_remaining_steps():
  schedule = PolynomialDecayWithWarmup(0.01, train_steps=110, power=1.0, warmup_steps=10)
  np.testing.assert_allclose([float(schedule(s)) for s in (0, 5, 10, 60, 110)],
                             [0.0, 0.005, 0.01, 0.005, 0.0], atol=1e-8)


def test_schedule_round_trips_through_its_config():
  schedule = PolynomialDecayWithWarmup(0.01, 100, 0.9, 1e-4, 5)
  restored = PolynomialDecayWithWarmup.from_config(schedule.get_config())
  assert float(restored(37)) == pytest.approx(float(schedule(37)))


@pytest.fixture(scope='module')
def model():
  return build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3, depth_multiplier=0.25,
                                 aspp_convs_filters=16, decoder_filters=16))


def test_gradient_multipliers_follow_the_official_rule(model):
  multipliers = dict(zip((v.name for v in model.trainable_variables),
                         gradient_multipliers(model, TrainerConfig(
                             last_layer_gradient_multiplier=10.0))))
  assert multipliers['logits/semantic/bias:0'] == 20.0  # last layer and bias
  assert multipliers['logits/semantic/kernel:0'] == 10.0
  head = {id(v) for v in last_layer_variables(model)}
  for variable in model.trainable_variables:
    if variable.name.startswith(('aspp/', 'decoder/')):
      assert multipliers[variable.name] == 10.0 and id(variable) in head
  backbone = [multipliers[v.name] for v in model.backbone.trainable_variables]
  assert backbone and set(backbone) == {1.0}


def test_logits_only_last_layers(model):
  config = TrainerConfig(last_layer_gradient_multiplier=4.0, last_layers_contain_logits_only=True)
  names = [v.name for v in last_layer_variables(model, logits_only=True)]
  assert names == ['logits/semantic/kernel:0', 'logits/semantic/bias:0']
  multipliers = gradient_multipliers(model, config)
  assert sorted(set(multipliers)) == [1.0, 4.0, 8.0]


@pytest.mark.parametrize('precision, kind', [('float32', tf_keras.optimizers.SGD),
                                             ('mixed_bfloat16', tf_keras.optimizers.SGD),
                                             ('mixed_float16',
                                              tf_keras.mixed_precision.LossScaleOptimizer)])
def test_optimizer_is_momentum_sgd_loss_scaled_under_float16(precision, kind):
  optimizer = build_optimizer(TrainerConfig(momentum=0.8), precision)
  assert isinstance(optimizer, kind)
  inner = getattr(optimizer, 'inner_optimizer', optimizer)
  assert float(inner.momentum) == pytest.approx(0.8)
