import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import write_official_checkpoint
from deeplab import ModelConfig, build_model, with_output_stride
from deeplab.data.colormaps import get_colormap
from deeplab.data.png import decode_label_png, png_header
from deeplab.predict import load_label_predictor, predict_labels

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2

# The stand-in SavedModel below predicts class c where the red value is in [60c, 60c + 60).
_CLASS_WIDTH = 60


class _RedClassifier(tf.Module):
  """Has the 'image_tensor' signature of deeplab-export's SavedModels, known outputs."""

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
  def image_tensor(self, images):
    return {'labels': tf.cast(images[..., 0], tf.int32) // _CLASS_WIDTH}


@pytest.fixture(scope='module')
def saved_model(tmp_path_factory):
  """A TF Serving base directory holding version 3 of the stand-in model."""
  base = tmp_path_factory.mktemp('serving')
  module = _RedClassifier()
  tf.saved_model.save(module, str(base / '3'), signatures={'image_tensor': module.image_tensor})
  return base


def _image_of_classes(classes: np.ndarray) -> np.ndarray:
  rng = np.random.default_rng(int(classes.sum()))
  image = rng.integers(0, 256, classes.shape + (3,)).astype(np.uint8)
  image[..., 0] = classes * _CLASS_WIDTH + 5
  return image


def _write_png(path, pixels):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(tf.io.encode_png(pixels).numpy())


def _run(*flags):
  return subprocess.run([sys.executable, '-m', 'deeplab.tools.predict', *flags],
                        capture_output=True, text=True, timeout=300, check=False)


def test_load_label_predictor_finds_the_latest_version_and_crops_to_the_input(saved_model):
  predict = load_label_predictor(str(saved_model))
  classes = np.array([[0, 1, 2], [3, 2, 1]])
  np.testing.assert_array_equal(predict(_image_of_classes(classes)[np.newaxis])[0], classes)


def test_load_label_predictor_names_what_is_missing(tmp_path):
  with pytest.raises(ValueError, match='holds no SavedModel'):
    load_label_predictor(str(tmp_path))
  module = tf.Module()
  module.f = tf.function(lambda x: {'y': x}, input_signature=[tf.TensorSpec([], tf.float32)])
  tf.saved_model.save(module, str(tmp_path / 'other'), signatures={'serving_default': module.f})
  with pytest.raises(ValueError, match='no "image_tensor" signature; it has serving_default'):
    load_label_predictor(str(tmp_path / 'other'))


def test_cli_writes_palette_labels_overlays_and_panels_from_a_saved_model(saved_model,
                                                                          tmp_path):
  rng = np.random.default_rng(0)
  truths = {'a/one': rng.integers(0, 4, [33, 45]), 'b': rng.integers(0, 2, [20, 31])}
  for name, classes in truths.items():
    _write_png(str(tmp_path / 'images' / f'{name}.png'), _image_of_classes(classes))
    _write_png(str(tmp_path / 'truth' / f'{name}.png'), classes.astype(np.uint8)[..., None])
  out = tmp_path / 'out'
  process = _run(f'--saved_model={saved_model}', f'--images={tmp_path / "images"}',
                 f'--output_dir={out}', f'--ground_truth={tmp_path / "truth"}',
                 '--colormap=cityscapes')
  assert process.returncode == 0, process.stderr
  assert f'Wrote 6 files to {out}' in process.stdout
  for name, classes in truths.items():
    data = (out / 'labels' / f'{name}.png').read_bytes()
    header = png_header(data)
    assert (header.height, header.width, header.color_type) == (*classes.shape, 3)
    np.testing.assert_array_equal(decode_label_png(data), classes)
    position = data.index(b'PLTE')
    palette = np.frombuffer(data[position + 4:position + 4 + 768], np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(palette, get_colormap('cityscapes'))
    overlay = tf.io.decode_png((out / 'overlays' / f'{name}.png').read_bytes()).numpy()
    assert overlay.shape == classes.shape + (3,)
    panel = png_header((out / 'panels' / f'{name}.png').read_bytes())
    assert (panel.height, panel.width) == (classes.shape[0], 3 * classes.shape[1] + 16)


def test_cli_writes_cityscapes_results_as_label_ids_with_benchmark_names(saved_model, tmp_path):
  classes = np.zeros([16, 24], np.int64)
  classes[:, 12:] = 2  # road | building
  _write_png(str(tmp_path / 'test' / 'bonn' / 'bonn_000004_000019_leftImg8bit.png'),
             _image_of_classes(classes))
  out = tmp_path / 'results'
  process = _run(f'--saved_model={saved_model}', f'--images={tmp_path / "test"}',
                 f'--output_dir={out}', '--cityscapes_label_ids', '--nooverlays', '--nopanels')
  assert process.returncode == 0, process.stderr
  assert sorted(os.listdir(out / 'labels' / 'bonn')) == ['bonn_000004_000019_gtFine_labelIds.png']
  data = (out / 'labels' / 'bonn' / 'bonn_000004_000019_gtFine_labelIds.png').read_bytes()
  assert png_header(data).color_type == 0
  label_ids = decode_label_png(data)
  assert (label_ids[:, :12] == 7).all() and (label_ids[:, 12:] == 11).all()


def test_cli_names_an_unreadable_image(saved_model, tmp_path):
  (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
  process = _run(f'--saved_model={saved_model}', f'--images={tmp_path / "broken.jpg"}',
                 f'--output_dir={tmp_path / "out"}')
  assert process.returncode == 1
  assert f'{tmp_path / "broken.jpg"}: not a readable' in process.stderr


@pytest.mark.full_mobilenet_v2
def test_cli_takes_the_model_from_an_official_checkpoint_given_alone(tmp_path):
  # An official MobileNetV2-like model: no atrous ASPP branches, no decoder.
  model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3, depth_multiplier=0.25,
                                  atrous_rates=(), decoder_output_stride=None,
                                  aspp_convs_filters=16))
  rng = np.random.default_rng(3)
  for weight in model.weights:
    if 'moving_variance' in weight.name:
      weight.assign(rng.uniform(0.05, 0.2, weight.shape))
  folder = write_official_checkpoint(model, tmp_path / 'zoo_model')
  image = rng.integers(0, 256, [65, 65, 3]).astype(np.uint8)
  _write_png(str(tmp_path / 'images' / 'photo.png'), image)

  process = _run(f'--checkpoint={folder}', f'--images={tmp_path / "images"}',
                 f'--output_dir={tmp_path / "out"}', '--raw')
  assert process.returncode == 0, process.stderr
  labels = decode_label_png((tmp_path / 'out' / 'labels' / 'photo.png').read_bytes())
  # config_from_checkpoint builds the network at the zoo's export stride, 8.
  expected = predict_labels(with_output_stride(model, 8), image[np.newaxis])[0].numpy()
  assert np.mean(labels == expected) >= 0.999


@pytest.mark.full_mobilenet_v2
def test_cli_reproduces_the_official_predictions_from_the_reference_checkpoint(shared, tmp_path):
  folder = shared('reference', 'official', 'mobilenet_v2')
  reference = np.load(folder / 'reference.npz')
  _write_png(str(tmp_path / 'images' / 'input.png'), reference['input'][0].astype(np.uint8))
  # The reference was made at output stride 16.
  process = _run(f'--checkpoint={folder}', f'--images={tmp_path / "images"}',
                 f'--output_dir={tmp_path / "out"}', '--raw', '--output_stride=16')
  assert process.returncode == 0, process.stderr
  labels = decode_label_png((tmp_path / 'out' / 'labels' / 'input.png').read_bytes())
  agreement = np.mean(labels == reference['predictions'][0])
  assert agreement > 0.999, f'labels agree with the official ones on {agreement:.4%} of pixels'
