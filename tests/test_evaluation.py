import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from conftest import write_official_checkpoint
from deeplab import ModelConfig, build_model
from deeplab.config import EvalConfig
from deeplab.data.info import DatasetInfo
from deeplab.data.png import decode_label_png, png_header
from deeplab.datasets.core import DatasetSource, Example, convert_source
from deeplab.evaluation import (EvalResult, Evaluator, evaluate, evaluate_checkpoints,
                                format_results, write_results)
from deeplab.metrics import segmentation_metrics
from deeplab.predict import predict_labels, predict_logits, predict_probabilities
from short_mobilenet_v2 import tool_command

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2

NUM_CLASSES = 4
IGNORE = 255
# The pixel classifier below predicts class c for red values in [60c, 60c + 60).
_CLASS_WIDTH = 60.0


def _pixel_classifier() -> tf_keras.Model:
  """A stand-in model whose prediction is known exactly: class = red // 60, per pixel.

  Being per pixel, it commutes with flips, and upsampling by an integer factor
  keeps the original pixels on the grid, so multi-scale + flip must return the
  labels the red channel encodes, pixel for pixel.
  """
  images = tf_keras.Input((None, None, 3))
  classes = tf_keras.layers.Lambda(lambda x: tf.clip_by_value(
      tf.cast(tf.math.floor(x[..., 0] / _CLASS_WIDTH), tf.int32), 0, NUM_CLASSES - 1))(images)
  logits = tf_keras.layers.Lambda(lambda c: 20.0 * tf.one_hot(c, NUM_CLASSES))(classes)
  model = tf_keras.Model(images, logits)
  model.config = ModelConfig(backbone='mobilenet_v2', num_classes=NUM_CLASSES)
  return model


def _block_labels(rng, height, width, block=8, ignore_fraction=0.05):
  coarse = rng.integers(0, NUM_CLASSES, size=[-(-height // block), -(-width // block)])
  labels = np.kron(coarse, np.ones([block, block], np.int64))[:height, :width]
  labels[rng.random([height, width]) < ignore_fraction] = IGNORE
  return labels.astype(np.int32)


def _encode_in_red(labels, rng):
  """An image whose red channel tells the pixel classifier each label."""
  classes = np.where(labels == IGNORE, rng.integers(0, NUM_CLASSES, labels.shape), labels)
  image = rng.integers(0, 256, size=labels.shape + (3,)).astype(np.float32)
  image[..., 0] = classes * _CLASS_WIDTH + _CLASS_WIDTH / 2
  return image


def _dataset(images, labels, batch_size, label_padding=IGNORE, names=None):
  """Evaluation batches as the input pipeline makes them, images of any size padded."""
  names = names or [f'image_{i}' for i in range(len(images))]

  def examples():
    for image, label, name in zip(images, labels, names):
      yield {'images': image, 'labels': label, 'heights': label.shape[0],
             'widths': label.shape[1], 'filenames': name}

  signature = {'images': tf.TensorSpec([None, None, 3], tf.float32),
               'labels': tf.TensorSpec([None, None], tf.int32),
               'heights': tf.TensorSpec([], tf.int32), 'widths': tf.TensorSpec([], tf.int32),
               'filenames': tf.TensorSpec([], tf.string)}
  return tf.data.Dataset.from_generator(examples, output_signature=signature).padded_batch(
      batch_size, padding_values={'images': 127.5, 'labels': label_padding, 'heights': 0,
                                  'widths': 0, 'filenames': ''})


def _numpy_confusion(labels, predictions):
  confusion = np.zeros([NUM_CLASSES, NUM_CLASSES], np.int64)
  for label, prediction in zip(labels, predictions):
    counted = label != IGNORE
    np.add.at(confusion, (label[counted], prediction[counted]), 1)
  return confusion


@pytest.mark.portable
def test_odd_sizes_in_one_batch_evaluate_pixel_for_pixel_with_scales_and_flip():
  rng = np.random.default_rng(0)
  # 333x500 is a typical VOC size; 128x256 is Cityscapes' 1024x2048 scaled by 1/8.
  sizes = [(333, 500), (128, 256), (65, 97)]
  labels = [_block_labels(rng, h, w) for h, w in sizes]
  images = [_encode_in_red(label, rng) for label in labels]
  # Labels padded with class 0, not the ignore label: only heights/widths can keep
  # the padding out of the counts.
  dataset = _dataset(images, labels, batch_size=2, label_padding=0)
  config = EvalConfig(eval_scales=(0.5, 1.0, 2.0), add_flipped_images=True)
  evaluator = Evaluator(_pixel_classifier(), config=config)
  result = evaluator.evaluate(dataset)
  expected = np.diag(np.bincount(np.concatenate([l[l != IGNORE] for l in labels]),
                                 minlength=NUM_CLASSES))
  np.testing.assert_array_equal(result.confusion_matrix, expected)
  assert result.num_images == 3
  assert result.metrics.mean_iou == 1.0
  # Batches of three sizes, evaluated twice (as for two checkpoints): one trace.
  evaluator.evaluate(dataset.unbatch().batch(1))
  assert evaluator._step.experimental_get_tracing_count() == 1  # pylint: disable=protected-access


@pytest.mark.portable
def test_evaluation_merges_scales_and_flips_as_predict_labels_does(tiny_model):
  rng = np.random.default_rng(1)
  images = [rng.uniform(0, 255, [65, 81, 3]).astype(np.float32),
            rng.uniform(0, 255, [50, 70, 3]).astype(np.float32)]
  labels = [rng.integers(0, NUM_CLASSES, image.shape[:2]).astype(np.int32) for image in images]
  config = EvalConfig(eval_scales=(0.75, 1.25), add_flipped_images=True)
  result = evaluate(tiny_model, _dataset(images, labels, batch_size=1), config=config)
  merged = [predict_labels(tiny_model, image[None], config.eval_scales, flip=True)[0].numpy()
            for image in images]
  np.testing.assert_array_equal(result.confusion_matrix, _numpy_confusion(labels, merged))
  single = [predict_labels(tiny_model, image[None])[0].numpy() for image in images]
  assert (_numpy_confusion(labels, single) != result.confusion_matrix).any()


def test_flip_merge_of_a_mirror_symmetric_image_is_mirror_symmetric(tiny_model):
  rng = np.random.default_rng(2)
  half = rng.uniform(0, 255, [1, 49, 30, 3]).astype(np.float32)
  image = np.concatenate([half, half[:, :, ::-1]], axis=2)
  single = predict_probabilities(tiny_model, image).numpy()
  merged = predict_probabilities(tiny_model, image, flip=True).numpy()
  # The model itself is not mirror-symmetric, so the plain prediction is not either;
  # the flip merge averages it with its mirror image.
  assert not np.allclose(single, single[:, :, ::-1], atol=1e-4)
  np.testing.assert_allclose(merged, (single + single[:, :, ::-1]) / 2, atol=1e-6)
  np.testing.assert_allclose(merged, merged[:, :, ::-1], atol=1e-6)


@pytest.mark.portable
def test_output_stride_8_evaluation_of_a_stride_16_model_uses_the_same_weights(tiny_model):
  evaluator = Evaluator(tiny_model, config=EvalConfig(output_stride=8))
  assert evaluator.model.config.output_stride == 8
  assert tiny_model.config.output_stride == 16
  for ours, theirs in zip(evaluator.model.get_weights(), tiny_model.get_weights()):
    np.testing.assert_array_equal(ours, theirs)
  rng = np.random.default_rng(3)
  images = [rng.uniform(0, 255, [57, 73, 3]).astype(np.float32)]
  labels = [rng.integers(0, NUM_CLASSES, [57, 73]).astype(np.int32)]
  result = evaluator.evaluate(_dataset(images, labels, batch_size=1))
  assert result.config.output_stride == 8
  predictions = [predict_labels(evaluator.model, images[0][None])[0].numpy()]
  np.testing.assert_array_equal(result.confusion_matrix, _numpy_confusion(labels, predictions))


def test_trimap_confusion_counts_only_pixels_near_boundaries():
  rng = np.random.default_rng(4)
  labels = [_block_labels(rng, 64, 80, block=16, ignore_fraction=0.0)]
  images = [_encode_in_red(labels[0], rng)]
  result = evaluate(_pixel_classifier(), _dataset(images, labels, batch_size=1),
                    config=EvalConfig(trimap_widths=(1, 4)))
  narrow, wide = (result.trimap_confusion_matrices[w].sum() for w in (1, 4))
  assert 0 < narrow < wide < result.confusion_matrix.sum()
  assert result.trimap_metrics[4].mean_iou == 1.0


def test_labels_outside_the_classes_raise_an_error_naming_the_image():
  rng = np.random.default_rng(5)
  labels = [_block_labels(rng, 40, 40), _block_labels(rng, 40, 40)]
  labels[1][3, 4] = 9
  images = [_encode_in_red(label, rng) for label in labels]
  dataset = _dataset(images, labels, batch_size=2, names=['2007_000032', '2007_000033'])
  with pytest.raises(ValueError, match="'2007_000033' has 1 pixels labelled outside 0..3"):
    evaluate(_pixel_classifier(), dataset)


def test_evaluation_under_a_mirrored_strategy_sums_the_same_matrix():
  rng = np.random.default_rng(6)
  labels = [_block_labels(rng, 45, 61) for _ in range(3)]
  images = [_encode_in_red(label, rng) for label in labels]
  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  with strategy.scope():
    model = _pixel_classifier()
  result = evaluate(model, _dataset(images, labels, batch_size=2), strategy=strategy)
  np.testing.assert_array_equal(result.confusion_matrix, _numpy_confusion(labels, labels))


def test_results_are_written_as_json_csv_and_a_row_normalized_picture(tmp_path):
  # 'cat' is predicted but never true (IoU 0); 'bird' is nowhere (no IoU).
  confusion = np.array([[6, 2, 0, 0], [0, 0, 0, 0], [1, 0, 3, 0], [0, 0, 0, 0]], np.int64)
  names = ('background', 'cat', 'dog', 'bird')
  metrics = segmentation_metrics(confusion, names)
  result = EvalResult(metrics, confusion, {}, {}, num_images=2,
                      config=EvalConfig(eval_scales=(0.5, 1.0), add_flipped_images=True,
                                        output_stride=8), checkpoint='ckpt-7', step=7)
  paths = write_results(result, str(tmp_path / 'eval'))
  with open(paths['metrics']) as f:
    saved = json.load(f)
  assert saved['mean_iou'] == pytest.approx(metrics.mean_iou)
  assert saved["per_class_iou"]["dog"] == pytest.approx(3 / 4)
  assert saved['per_class_iou']['cat'] == 0.0
  assert saved['per_class_iou']['bird'] is None
  assert saved['confusion_matrix'] == confusion.tolist()
  assert saved['step'] == 7 and saved['eval_scales'] == [0.5, 1.0]
  with open(paths['confusion_csv']) as f:
    assert f.read().splitlines()[3] == 'dog,1,0,3,0'
  with open(paths['confusion_png'], 'rb') as f:
    data = f.read()
  header = png_header(data)
  picture = tf.io.decode_png(data).numpy()
  cell = header.width // 4
  assert header.height == header.width == 4 * cell
  row = picture[cell // 2]  # background: 3/4 of its pixels right, 1/4 as cat
  assert row[cell // 2, 0] < row[cell + cell // 2, 0] < row[2 * cell + cell // 2, 0] == 255
  no_cat = picture[cell + cell // 2, cell // 2::cell]  # no 'cat' in the ground truth: grey
  assert len(no_cat) == 4 and (no_cat == 200).all()
  assert not [p for p in os.listdir(tmp_path / 'eval') if p.startswith('.tmp')]
  table = format_results(result)
  assert 'dog' in table and f'{100 * metrics.mean_iou:.2f}%' in table
  assert 'output stride 8' in table and 'flipped' in table


def _save_checkpoint(model, model_dir, step):
  checkpoint = tf.train.Checkpoint(model=model, step=tf.Variable(step, dtype=tf.int64))
  return tf.train.CheckpointManager(checkpoint, str(model_dir), max_to_keep=5,
                                    checkpoint_name='ckpt').save(checkpoint_number=step)


def _scalars(directory, tag):
  """{step: value} of a scalar summary written in `directory`."""
  values = {}
  for path in tf.io.gfile.glob(os.path.join(directory, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values[event.step] = float(tf.make_ndarray(value.tensor))
  return values


def test_continuous_evaluation_follows_new_checkpoints_until_the_last_step(tiny_model,
                                                                           tmp_path):
  rng = np.random.default_rng(7)
  images = [rng.uniform(0, 255, [49, 65, 3]).astype(np.float32)]
  labels = [rng.integers(0, NUM_CLASSES, [49, 65]).astype(np.int32)]
  dataset = _dataset(images, labels, batch_size=1)
  trained = tf_keras.models.clone_model(tiny_model)
  trained.set_weights(tiny_model.get_weights())
  _save_checkpoint(trained, tmp_path / 'run', step=10)
  evaluator = Evaluator(build_model(tiny_model.config), class_names=['a', 'b', 'c', 'd'])

  def train_more(result):
    # What a training run does meanwhile: new weights in a new checkpoint.
    if result.step == 10:
      kernel = trained.get_layer('logits/semantic').weights[0]
      kernel.assign(-kernel)
      _save_checkpoint(trained, tmp_path / 'run', step=20)

  output_dir = str(tmp_path / 'run' / 'eval')
  results = evaluate_checkpoints(evaluator, dataset, str(tmp_path / 'run'),
                                 output_dir=output_dir, timeout=60, last_step=20,
                                 on_result=train_more)
  assert [r.step for r in results] == [10, 20]
  assert results[1].checkpoint.endswith('ckpt-20')
  assert (results[0].confusion_matrix != results[1].confusion_matrix).any()
  expected = [predict_labels(tiny_model, images[0][None])[0].numpy()]
  np.testing.assert_array_equal(results[0].confusion_matrix, _numpy_confusion(labels, expected))
  miou = _scalars(output_dir, 'mIoU')
  assert miou == {10: pytest.approx(results[0].metrics.mean_iou),
                  20: pytest.approx(results[1].metrics.mean_iou)}
  assert set(_scalars(output_dir, 'IoU/a')) == {10, 20}
  with open(os.path.join(output_dir, 'metrics.json')) as f:
    assert json.load(f)['step'] == 20
  # Without new checkpoints it gives up after the timeout, or stops at max_evaluations.
  again = evaluate_checkpoints(evaluator, dataset, str(tmp_path / 'run'),
                               output_dir=output_dir, timeout=1, max_evaluations=5)
  assert [r.step for r in again] == [20]


def _write_source_dataset(root, sizes, rng):
  """PNG images and masks of a 3-class dataset, as the generic folder layout holds them."""
  examples = []
  for index, (height, width) in enumerate(sizes):
    classes = _block_labels(rng, height, width).astype(np.uint8)
    image = rng.integers(0, 256, [height, width, 3]).astype(np.uint8)
    name = f'image_{index}'
    paths = {kind: os.path.join(root, kind, f'{name}.png') for kind in ('images', 'masks')}
    for kind, pixels in (('images', image), ('masks', np.where(classes == IGNORE, IGNORE,
                                                                classes % 3)[..., None])):
      os.makedirs(os.path.dirname(paths[kind]), exist_ok=True)
      with open(paths[kind], 'wb') as f:
        f.write(tf.io.encode_png(pixels.astype(np.uint8)).numpy())
    examples.append(Example(name, paths['images'], paths['masks']))
  return examples


def test_deeplab_eval_runs_end_to_end_on_tfrecords(tmp_path):
  rng = np.random.default_rng(8)
  sizes = [(45, 61), (33, 50), (70, 40)]
  examples = _write_source_dataset(str(tmp_path / 'source'), sizes, rng)
  info = DatasetInfo('tiny', 3, 255, ('background', 'cat', 'dog'), 'pascal')
  convert_source(DatasetSource(info, {'val': examples}), str(tmp_path / 'data'),
                 num_shards=1, num_workers=1)
  config = ModelConfig(backbone='mobilenet_v2', num_classes=3, depth_multiplier=0.25,
                       aspp_convs_filters=16, decoder_filters=16)
  model = build_model(config)
  for weight in model.weights:
    if 'moving_variance' in weight.name:
      weight.assign(rng.uniform(0.1, 0.4, weight.shape))
  _save_checkpoint(model, tmp_path / 'run', step=30)
  experiment = tmp_path / 'tiny.yaml'
  experiment.write_text(
      'model: {backbone: mobilenet_v2, num_classes: 3, depth_multiplier: 0.25,\n'
      '        aspp_convs_filters: 16, decoder_filters: 16}\n'
      f'eval_data: {{dataset_dir: "{tmp_path / "data"}", split: val, batch_size: 1}}\n')
  process = subprocess.run(
      [*tool_command('deeplab.tools.evaluate'), f'--experiment={experiment}',
       f'--checkpoint={tmp_path / "run"}', '--flip', '--trimap_widths=3'],
      capture_output=True, text=True, timeout=300, check=False)
  assert process.returncode == 0, process.stderr
  for text in ('3 images (scales 1, flipped, output stride 16', 'step 30', 'background',
               'dog', 'mIoU', 'trimap mIoU (3 px)', f'Results written to {tmp_path / "run"}'):
    assert text in process.stdout
  with open(tmp_path / 'run' / 'eval' / 'metrics.json') as f:
    saved = json.load(f)
  truth = [decode_label_png((tmp_path / 'source' / 'masks' / f'{e.name}.png').read_bytes())
           for e in examples]
  pixels = [tf.io.decode_png((tmp_path / 'source' / 'images' / f'{e.name}.png').read_bytes())
            for e in examples]
  predictions = [predict_labels(model, p[None], flip=True)[0].numpy() for p in pixels]
  confusion = np.zeros([3, 3], np.int64)
  for label, prediction in zip(truth, predictions):
    counted = label != IGNORE
    np.add.at(confusion, (label[counted], prediction[counted]), 1)
  assert saved['confusion_matrix'] == confusion.tolist()
  assert saved['num_images'] == 3 and saved['step'] == 30
  header = png_header((tmp_path / 'run' / 'eval' / 'confusion_matrix.png').read_bytes())
  assert header.width == header.height >= 3


@pytest.mark.full_mobilenet_v2
def test_deeplab_eval_takes_the_model_from_an_official_checkpoint_given_alone(tmp_path):
  rng = np.random.default_rng(9)
  examples = _write_source_dataset(str(tmp_path / 'source'), [(40, 52), (33, 41)], rng)
  info = DatasetInfo('tiny', 3, 255, ('background', 'cat', 'dog'), 'pascal')
  convert_source(DatasetSource(info, {'val': examples}), str(tmp_path / 'data'),
                 num_shards=1, num_workers=1)
  model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=3, depth_multiplier=0.25,
                                  atrous_rates=(), aspp_convs_filters=16, decoder_filters=16))
  folder = write_official_checkpoint(model, tmp_path / 'zoo_model')
  process = subprocess.run(
      [sys.executable, '-m', 'deeplab.tools.evaluate', f'--checkpoint={folder}',
       f'--params_override=eval_data.dataset_dir={tmp_path / "data"},eval_data.split=val'],
      capture_output=True, text=True, timeout=300, check=False)
  assert process.returncode == 0, process.stderr
  # The zoo's export stride; the checkpoint's global_step.
  for text in ('2 images (scales 1, output stride 8', 'step 30000', 'mIoU'):
    assert text in process.stdout
