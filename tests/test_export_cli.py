"""deeplab-export end to end: a native checkpoint in, a served version out, with
multi-scale + flip at output stride 8 inside the graph."""

import os
import subprocess

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from deeplab import ModelConfig, build_model, load_experiment, with_output_stride
from deeplab.data.synthetic import generate_example
from deeplab.export import export_from_checkpoint
from deeplab.predict import predict_labels
from short_mobilenet_v2 import tool_command

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py), in the tool's process too.
pytestmark = pytest.mark.short_mobilenet_v2

CONFIG = ModelConfig(backbone='mobilenet_v2', num_classes=3, depth_multiplier=0.25,
                     decoder_output_stride=None, aspp_convs_filters=16)
OVERRIDES = ('model.num_classes=3,model.depth_multiplier=0.25,model.decoder_output_stride=null,'
             'model.aspp_convs_filters=16')


def run_export(*flags, overrides=OVERRIDES):
  return subprocess.run([*tool_command('deeplab.tools.export'), f'--params_override={overrides}',
                         *flags],
                        capture_output=True, text=True,
                        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})


@pytest.mark.slow
def test_cli_exports_a_native_checkpoint_with_scales_flip_and_output_stride(tmp_path):
  tf_keras.utils.set_random_seed(5)
  model = build_model(CONFIG)
  tf.train.Checkpoint(model=model).write(str(tmp_path / 'train' / 'ckpt-7'))
  for index, (height, width) in enumerate(((57, 71), (44, 38))):
    image = generate_example(np.random.default_rng(index), height, width)[0]
    (tmp_path / f'sample{index}.jpg').write_bytes(tf.io.encode_jpeg(image).numpy())
  export_dir = tmp_path / 'serving'

  # Without the tiled path (tested in test_export.py), a second copy of the network
  # to trace, save and check.
  result = run_export(f'--checkpoint={tmp_path / "train"}', f'--export_dir={export_dir}',
                      '--eval_scales=0.75,1.0', '--flip', '--output_stride=8',
                      '--max_whole_image_pixels=0',
                      f'--sample_images={tmp_path / "sample*.jpg"}')
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Exported version 1' in result.stdout
  assert 'serving_default: labels agree with the Keras model on' in result.stdout
  assert os.listdir(export_dir) == ['1']

  signatures = tf.saved_model.load(str(export_dir / '1')).signatures
  image = generate_example(np.random.default_rng(5), 49, 61)[0][np.newaxis]
  served = signatures['image_tensor'](images=tf.constant(image))['labels']
  expected = predict_labels(with_output_stride(model, 8), image, eval_scales=(0.75, 1.0),
                            flip=True)
  assert np.mean(served.numpy() == expected.numpy()) >= 0.999


# Calibrated on the full backbone: the random model's bfloat16 labels pass the parity
# gate's 99.9% there, not with the short one (near-ties everywhere).
@pytest.mark.full_mobilenet_v2
def test_export_computes_in_the_runtime_precision_and_agrees_with_float32(tmp_path):
  experiment = load_experiment(
      'synthetic', params_override=f'{OVERRIDES},runtime.mixed_precision_dtype=mixed_bfloat16,'
      # Whole images only: the tiled path computes in the same precision.
      'export.tiling.max_whole_image_pixels=0')
  tf_keras.utils.set_random_seed(6)
  model = build_model(experiment.model)
  tf.train.Checkpoint(model=model).write(str(tmp_path / 'train' / 'ckpt-1'))
  report = export_from_checkpoint(experiment, str(tmp_path / 'train'),
                                  str(tmp_path / 'serving'))

  serve = tf.saved_model.load(report.path).signatures['image_tensor']
  library = serve.graph.as_graph_def().library.function
  graph_dtypes = {node.attr['T'].type for function in library for node in function.node_def
                  if 'T' in node.attr}
  assert tf.bfloat16.as_datatype_enum in graph_dtypes, 'the export computes in float32'
  image = generate_example(np.random.default_rng(6), 65, 65)[0][np.newaxis]
  served = serve(images=tf.constant(image))['labels'].numpy()
  expected = predict_labels(model, image).numpy()
  # Random weights predict near-ties everywhere; a trained model agrees more
  # (deeplab-benchmark --measurements=agreement).
  assert np.mean(served == expected) >= 0.95
