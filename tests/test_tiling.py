"""Tiled inference: tile placement, blending, agreement with whole-image inference on
a real photo, and memory bounded by the tile (the serving signature: test_export.py)."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO_ROOT, shared_path
from deeplab import predict
from deeplab.config import TilingConfig
from deeplab.predict import predict_labels, predict_logits
from deeplab.tiling import blend_tiles, mean_over_tiles, tile_starts

# Images above 129x129 pixels run in 129x129 tiles (k * 16 + 1) sharing 48 pixels.
SMALL_TILES = TilingConfig(max_whole_image_pixels=129 * 129, tile_size=129, tile_overlap=48)


def agreement(expected, actual):
  return float(np.mean(np.asarray(expected) == np.asarray(actual)))


@pytest.fixture(scope='module')
def photo():
  """A real photo (1280x853) scaled to 161x241: 2 x 3 tiles of SMALL_TILES."""
  contents = tf.io.read_file(str(shared_path('data', 'cc0-images-ibm-max', 'cow.jpg')))
  image = tf.image.resize(tf.io.decode_jpeg(contents)[tf.newaxis], [161, 241])
  return tf.cast(tf.round(image), tf.uint8)


@pytest.fixture(scope='module')
def photo_model(tiny_model, photo):
  """`tiny_model` with its logits biases centred on the photo, so its labels there
  are of every class (19492, 15788, 1997 and 1524 pixels), not nearly all one."""
  bias = tiny_model.get_layer('logits/semantic').weights[1]
  bias.assign(bias - tf.reduce_mean(predict_logits(tiny_model, photo, tiling=None), [0, 1, 2]))
  return tiny_model


@pytest.mark.portable
@pytest.mark.parametrize('length, tile_size, overlap', [
    (513, 129, 48), (1025, 513, 256), (129, 129, 48), (65, 129, 48)])
def test_tiles_cover_the_side_from_stride_multiples_sharing_the_overlap(length, tile_size,
                                                                        overlap):
  starts = tile_starts(tf.constant(length), tile_size, overlap, alignment=16).numpy()
  size = min(tile_size, length)
  assert starts[0] == 0 and starts[-1] + size == length
  assert (starts % 16 == 0).all()
  assert (np.diff(starts) <= size - overlap).all()


@pytest.mark.portable
def test_blending_a_per_pixel_function_gives_its_values_within_1e_5():
  images = tf.random.stateless_uniform([2, 177, 241, 3], seed=[0, 1], maxval=255)
  blended = blend_tiles(lambda tile: tf.concat([tile, tile[..., :1] ** 2], -1), images,
                        tile_size=65, overlap=24, alignment=16, channels=4)
  expected = tf.concat([images, images[..., :1] ** 2], -1)
  np.testing.assert_allclose(blended, expected, rtol=1e-5)


@pytest.mark.portable
def test_the_mean_over_tiles_is_the_whole_image_mean_each_cell_counted_once():
  images = tf.random.stateless_uniform([2, 177, 241, 3], seed=[0, 2], maxval=255)
  # A feature grid at stride 16 aligned with the image's: every 16th pixel.
  mean = mean_over_tiles(lambda tile: tile[:, ::16, ::16, :], images, tile_size=65,
                         overlap=24, alignment=16, channels=3)
  np.testing.assert_allclose(mean, tf.reduce_mean(images[:, ::16, ::16, :], axis=[1, 2]),
                             rtol=1e-5)


@pytest.mark.portable
def test_tiled_labels_agree_with_whole_image_labels_on_a_photo(photo_model, photo):
  tiled = predict_logits(photo_model, photo, tiling=SMALL_TILES)
  whole = predict_logits(photo_model, photo, tiling=None)
  # Tiles really ran: near tile edges the logits differ.
  assert float(tf.reduce_max(tf.abs(tiled - whole))) > 1e-3
  # Measured 0.982 (one scale) and 0.985 (two scales and flips, each copy above
  # the budget runs in tiles): an untrained model's margins are thin, and 129-pixel
  # tiles are small against its receptive field; real models with 1025-pixel tiles
  # agree more (README).
  assert agreement(tf.argmax(whole, -1), tf.argmax(tiled, -1)) >= 0.97
  scales = (0.75, 1.25)
  assert agreement(predict_labels(photo_model, photo, scales, True, tiling=None),
                   predict_labels(photo_model, photo, scales, True, tiling=SMALL_TILES)) >= 0.97


def test_a_multiscale_graph_for_any_size_builds_each_path_once_and_equals_eager(
    photo_model, photo, monkeypatch):
  # Every scaled and flipped copy calls one shared function: the network and its
  # tiled branch are traced once, not once per copy.
  traces = {'_whole': 0, '_tiled': 0}
  for name in traces:
    original = getattr(predict._PaddedLogits, name)  # pylint: disable=protected-access

    def counted(self, padded, name=name, original=original):
      traces[name] += 1
      return original(self, padded)
    monkeypatch.setattr(predict._PaddedLogits, name, counted)  # pylint: disable=protected-access
  scales = (0.75, 1.0)
  graph = tf.function(lambda images: predict.predict_probabilities(
      photo_model, images, scales, True, SMALL_TILES),
                      input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
  # 121x181 and 161x241 pixels: both scales run in tiles.
  in_graph = graph(photo)
  assert traces == {'_whole': 1, '_tiled': 1}
  eager = predict.predict_probabilities(photo_model, photo, scales, True, SMALL_TILES)
  np.testing.assert_allclose(in_graph, eager, atol=1e-5)


def test_xla_compiles_multiscale_inference_of_whole_images(tiny_model):
  # XLA cannot compile tiles (their sizes are not compile-time constants); without
  # tiling it compiles, and gives eager's probabilities.
  images = np.random.default_rng(0).uniform(0, 255, [1, 65, 81, 3]).astype(np.float32)
  compiled = tf.function(
      lambda x: predict.predict_probabilities(tiny_model, x, (0.75, 1.0), True, tiling=None),
      input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)], jit_compile=True)
  np.testing.assert_allclose(
      compiled(images), predict.predict_probabilities(tiny_model, images, (0.75, 1.0), True,
                                                      tiling=None), atol=1e-5)


# How far the resident memory peaks above where it stood (MiB) while one 1153x1153
# image is labelled, after a 385x385 one traced the function; in a fresh process per
# path. The kernel's high-water mark is reset just before the call (clear_refs),
# so neither tracing nor sampling gaps hide the peak.
_MEMORY_SCRIPT = textwrap.dedent('''
    import json, re, sys
    sys.path.insert(0, 'tests')
    from short_mobilenet_v2 import use_short_mobilenet_v2
    use_short_mobilenet_v2()  # the same peaks as the full backbone, at half the set-up
    import tensorflow as tf
    from deeplab import ModelConfig, build_model
    from deeplab.config import TilingConfig
    from deeplab.predict import label_predictor

    def status(field):
      with open('/proc/self/status') as f:
        return int(re.search(field + r':\\s+(\\d+)', f.read()).group(1)) / 1024

    # A decoder wide enough that activations, not the image-sized buffers, dominate
    # (they are at strides 4 and 16, where the short and full backbones are alike).
    model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=4,
                                    depth_multiplier=0.25, aspp_convs_filters=16,
                                    decoder_filters=128))
    tiling = (TilingConfig(max_whole_image_pixels=193 * 193, tile_size=193, tile_overlap=64)
              if sys.argv[1] == 'tiled' else None)
    predict = label_predictor(model, tiling=tiling)
    predict(tf.zeros([1, 385, 385, 3], tf.uint8)).numpy()
    images = tf.zeros([1, 1153, 1153, 3], tf.uint8)
    before = status('VmRSS')
    with open('/proc/self/clear_refs', 'w') as f:
      f.write('5')
    predict(images).numpy()
    print(json.dumps(status('VmHWM') - before))
''')


def test_peak_memory_of_a_tiled_image_grows_with_its_area_far_less_than_whole_inference():
  processes = {mode: subprocess.Popen([sys.executable, '-c', _MEMORY_SCRIPT, mode],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, cwd=REPO_ROOT)
               for mode in ('tiled', 'whole')}
  growth = {}
  for mode, process in processes.items():
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr[-2000:]
    growth[mode] = json.loads(stdout.strip().splitlines()[-1])
  # Measured 44-57 MiB tiled against 163-165 whole (alone and beside other tests, short
  # and full backbone): tiled, only the image-sized buffers grow (the input, its padded
  # float copy and the blended logits), not the network's activations.
  assert growth['tiled'] < growth['whole'] / 2, growth
