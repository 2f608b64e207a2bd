import os

import numpy as np
import pytest
import tensorflow as tf

from deeplab import ModelConfig, build_model
from deeplab.config import EvalConfig, ExperimentConfig
from deeplab.data.colormaps import get_colormap
from deeplab.data.png import decode_label_png, png_header
from deeplab.predict import predict_labels
from deeplab.visualization import (PredictionOutputs, cityscapes_label_ids,
                                   cityscapes_result_name, confusion_matrix_image, list_images,
                                   load_predictor, overlay, predict_files, read_image,
                                   side_by_side)

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2


def _palette(data: bytes) -> np.ndarray:
  """The PLTE chunk of a PNG as uint8 [N, 3]."""
  position = data.index(b'PLTE')
  length = int.from_bytes(data[position - 4:position], 'big')
  return np.frombuffer(data[position + 4:position + 4 + length], np.uint8).reshape(-1, 3)


def _write_png(path, pixels):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'wb') as f:
    f.write(tf.io.encode_png(pixels).numpy())


def _red_classes(images):
  """A stand-in predictor: class = red // 60 at each pixel."""
  return np.asarray(images)[..., 0].astype(np.int32) // 60


def test_overlay_blends_label_colours_into_the_image():
  image = np.zeros([2, 3, 3], np.uint8)
  labels = np.array([[0, 1, 2], [15, 15, 0]])
  blended = overlay(image, labels, 'pascal', alpha=0.25)
  expected = np.round(0.25 * get_colormap('pascal')[labels].astype(np.float64))
  np.testing.assert_array_equal(blended, expected)
  with pytest.raises(ValueError, match='differ in size'):
    overlay(image, labels[:, :2], 'pascal')


def test_side_by_side_places_panels_left_to_right_on_white():
  left = np.zeros([4, 2, 3], np.uint8)
  right = np.full([3, 5, 3], 7, np.uint8)
  canvas = side_by_side([left, right], gap=1)
  assert canvas.shape == (4, 8, 3)
  assert (canvas[:, :2] == 0).all() and (canvas[:, 2] == 255).all()
  assert (canvas[:3, 3:] == 7).all() and (canvas[3, 3:] == 255).all()


def test_confusion_matrix_picture_is_row_normalized_with_a_grid():
  confusion = np.array([[100, 300], [0, 0]])
  picture = confusion_matrix_image(confusion, max_size=20)
  assert picture.shape == (20, 20, 3)
  quarter, three_quarters = picture[5, 5], picture[5, 15]
  assert (three_quarters < quarter).all()  # darker where more of the row went
  # White (255) to (8, 48, 107) in proportion to the row fraction.
  np.testing.assert_array_equal(quarter, np.round(255 + 0.25 * (np.array([8, 48, 107]) - 255)))
  assert (picture[11:, 11:] == 200).all()  # a class absent from the ground truth is grey
  assert (picture[10] == 160).all() and (picture[:, 0] == 160).all()  # cell borders


def test_list_images_searches_directories_and_keeps_their_structure(tmp_path):
  for relative in ('a/x.jpg', 'a/sub/y.PNG', 'a/notes.txt', 'b/z.png'):
    path = tmp_path / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'')
  found = list_images([str(tmp_path / 'a'), str(tmp_path / 'b' / '*.png')])
  assert [name for _, name in found] == ['sub/y', 'x', 'z']
  with pytest.raises(FileNotFoundError, match='missing'):
    list_images([str(tmp_path / 'missing')])
  (tmp_path / 'c').mkdir()
  (tmp_path / 'c' / 'x.png').write_bytes(b'')
  with pytest.raises(ValueError, match='both be written as x.png'):
    list_images([str(tmp_path / 'a' / 'x.jpg'), str(tmp_path / 'c' / 'x.png')])


def test_an_unreadable_image_is_reported_with_its_path(tmp_path):
  path = tmp_path / 'broken.jpg'
  path.write_bytes(b'\xff\xd8\xff\xe0 not really a jpeg')
  with pytest.raises(ValueError, match='broken.jpg: not a readable'):
    read_image(str(path))


def test_cityscapes_results_use_label_ids_and_benchmark_names():
  # cityscapesScripts labels.py: trainId -> labelId.
  expected = {0: 7, 1: 8, 2: 11, 5: 17, 10: 23, 11: 24, 13: 26, 16: 31, 18: 33}
  assert cityscapes_label_ids(np.array(list(expected))).tolist() == list(expected.values())
  assert cityscapes_result_name('frankfurt/frankfurt_000000_000294_leftImg8bit') == (
      'frankfurt/frankfurt_000000_000294_gtFine_labelIds')
  with pytest.raises(ValueError, match='not named like a Cityscapes image'):
    cityscapes_result_name('holiday_photo')


def test_predict_files_writes_palette_labels_overlays_and_panels(tmp_path):
  rng = np.random.default_rng(0)
  truth = rng.integers(0, 4, [37, 51]).astype(np.uint8)
  image = rng.integers(0, 256, [37, 51, 3]).astype(np.uint8)
  image[..., 0] = truth * 60 + 10
  _write_png(str(tmp_path / 'in' / 'city' / 'street.png'), image)
  _write_png(str(tmp_path / 'truth' / 'city' / 'street.png'), truth[..., None])
  out = tmp_path / 'out'
  written = predict_files(_red_classes, [str(tmp_path / 'in')], str(out), colormap='pascal',
                          ground_truth_dir=str(tmp_path / 'truth'))
  assert sorted(os.path.relpath(p, out) for p in written) == [
      'labels/city/street.png', 'overlays/city/street.png', 'panels/city/street.png']
  data = (out / 'labels' / 'city' / 'street.png').read_bytes()
  assert png_header(data).color_type == 3
  np.testing.assert_array_equal(_palette(data), get_colormap('pascal')[:256])
  np.testing.assert_array_equal(decode_label_png(data), truth)
  overlay_png = tf.io.decode_png((out / 'overlays' / 'city' / 'street.png').read_bytes())
  assert overlay_png.shape == (37, 51, 3)
  panel = png_header((out / 'panels' / 'city' / 'street.png').read_bytes())
  assert (panel.height, panel.width) == (37, 3 * 51 + 2 * 8)  # image | prediction | truth


def test_predict_files_raw_and_cityscapes_label_files(tmp_path):
  image = np.zeros([8, 12, 3], np.uint8)
  image[:, 6:, 0] = 70  # left half class 0 (road), right half class 1 (sidewalk)
  _write_png(str(tmp_path / 'berlin_000123_000019_leftImg8bit.png'), image)
  inputs = [str(tmp_path / '*.png')]
  raw = PredictionOutputs(raw_labels=True, overlays=False, panels=False)
  predict_files(_red_classes, inputs, str(tmp_path / 'raw'), colormap='cityscapes',
                outputs=raw)
  data = (tmp_path / 'raw' / 'labels' / 'berlin_000123_000019_leftImg8bit.png').read_bytes()
  assert png_header(data).color_type == 0
  assert np.unique(decode_label_png(data)).tolist() == [0, 1]
  submission = PredictionOutputs(overlays=False, panels=False, cityscapes_label_ids=True)
  written = predict_files(_red_classes, inputs, str(tmp_path / 'sub'), colormap='cityscapes',
                          outputs=submission)
  assert [os.path.basename(p) for p in written] == ['berlin_000123_000019_gtFine_labelIds.png']
  with open(written[0], 'rb') as f:
    label_ids = decode_label_png(f.read())
  assert (label_ids[:, :6] == 7).all() and (label_ids[:, 6:] == 8).all()


def test_load_predictor_restores_a_checkpoint_at_the_evaluation_output_stride(tmp_path):
  config = ModelConfig(backbone='mobilenet_v2', num_classes=3, depth_multiplier=0.25,
                       aspp_convs_filters=16, decoder_filters=16)
  model = build_model(config)
  for weight in model.weights:
    if 'moving_variance' in weight.name:
      weight.assign(np.random.default_rng(0).uniform(0.1, 0.4, weight.shape))
  prefix = tf.train.Checkpoint(model=model).write(str(tmp_path / 'ckpt-1'))
  experiment = ExperimentConfig(model=config, evaluation=EvalConfig(output_stride=8))
  predict = load_predictor(experiment, checkpoint=prefix)
  images = np.random.default_rng(1).integers(0, 256, [1, 41, 57, 3]).astype(np.uint8)
  dense = build_model(config.with_output_stride(8))
  dense.set_weights(model.get_weights())
  np.testing.assert_array_equal(predict(images), predict_labels(dense, images))
  with pytest.raises(ValueError, match='exactly one'):
    load_predictor(experiment)


def test_pascal_label_files_carry_the_palette_of_the_voc_annotations(shared, tmp_path):
  voc = shared('data', 'voc2012-samples-datum', 'SegmentationClass', '2007_000032.png')
  _write_png(str(tmp_path / '2008_000001.jpg'), np.zeros([5, 7, 3], np.uint8))
  written = predict_files(_red_classes, [str(tmp_path / '2008_000001.jpg')],
                          str(tmp_path / 'out'), colormap='pascal',
                          outputs=PredictionOutputs(overlays=False, panels=False))
  with open(written[0], 'rb') as f:
    ours = f.read()
  np.testing.assert_array_equal(_palette(ours), _palette(voc.read_bytes()))
