import numpy as np

from deeplab import ModelConfig, build_model


def test_mobilenet_model_returns_logits_at_input_size():
  model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3))
  logits = model(np.zeros([1, 65, 97, 3], np.uint8))
  assert logits.shape == (1, 65, 97, 3)
