"""TFLite export: the float32 model runs in tf.lite.Interpreter and passes its gate."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab import ModelConfig, build_model
from deeplab.config import ExportConfig
from deeplab.data.schema import make_example
from deeplab.data.synthetic import generate_example
from deeplab.export import TfliteConfig
from deeplab.export.parity import sample_images
from deeplab.export.tflite import calibration_images, export_tflite, interpreter
from deeplab.hyperparams import ConfigError
from deeplab.predict import predict_labels

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2

INPUT_SIZE = (65, 65)


@pytest.mark.slow
def test_float32_tflite_runs_in_the_interpreter_and_matches_keras(tmp_path):
  tf_keras.utils.set_random_seed(4)
  model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3, depth_multiplier=0.25,
                                  aspp_convs_filters=16, decoder_filters=16))
  report = export_tflite(model, ExportConfig(), TfliteConfig('float32', INPUT_SIZE),
                         str(tmp_path), sample_images())
  assert report.path == str(tmp_path / 'float32_65x65.tflite')
  assert report.size_bytes == os.path.getsize(report.path) > 0
  assert report.agreement.passed and report.agreement.agreement >= 0.995

  with open(report.path, 'rb') as f:
    runner = interpreter(f.read()).get_signature_runner()
  inputs, outputs = runner.get_input_details(), runner.get_output_details()
  assert inputs['images']['dtype'] == np.uint8
  assert inputs['images']['shape'].tolist() == [1, 65, 65, 3]
  assert outputs['labels']['dtype'] == np.int32
  image = generate_example(np.random.default_rng(7), *INPUT_SIZE)[0][np.newaxis]
  labels = runner(images=image)['labels']
  expected = predict_labels(model, image).numpy()
  assert labels.shape == (1, 65, 65) and np.mean(labels == expected) >= 0.995


def test_int8_calibration_reads_images_through_the_data_pipeline(tmp_path):
  with tf.io.TFRecordWriter(str(tmp_path / 'train-00000-of-00001.tfrecord')) as writer:
    for height, width in ((40, 50), (70, 33)):
      image = generate_example(np.random.default_rng(height), height, width)[0]
      writer.write(make_example(tf.io.encode_png(image).numpy(), 'png', f'{height}',
                                height, width).SerializeToString())
  config = TfliteConfig('int8', (33, 35), calibration_file_pattern=str(tmp_path / 'train-*'),
                        calibration_images=5)
  images = list(calibration_images(config))
  assert len(images) == 2  # all the records hold, fewer than asked for
  assert all(i.shape == (1, 33, 35, 3) and i.dtype == np.uint8 for i in images)
  assert images[0].max() > images[0].min()  # real pixels, not padding

  synthetic = list(calibration_images(TfliteConfig('int8', (33, 35), calibration_images=3)))
  assert len(synthetic) == 3 and synthetic[0].shape == (1, 33, 35, 3)


@pytest.mark.parametrize('fields, message', [
    ({'quantization': 'int4'}, 'quantization must be one of float32, float16, dynamic_int8'),
    ({'input_size': (0, 65)}, 'input_size must be two positive sizes'),
    ({'min_agreement': 1.5}, 'min_agreement must be in [0, 1]'),
])
def test_tflite_config_rejects_bad_values(fields, message):
  with pytest.raises(ConfigError, match=message.replace('[', r'\[')):
    TfliteConfig(**fields)


def test_each_quantization_has_its_own_parity_threshold():
  thresholds = [TfliteConfig(q).resolved_min_agreement
                for q in ('float32', 'float16', 'dynamic_int8', 'int8')]
  assert thresholds == [0.995, 0.99, 0.97, 0.95]
  assert TfliteConfig('int8', min_agreement=0.9).resolved_min_agreement == 0.9
