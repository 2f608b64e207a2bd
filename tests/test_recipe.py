"""The paper's staged PASCAL VOC recipe end to end on tiny COCO and VOC datasets
written here in their download layouts: COCO pre-training -> VOC train_aug -> VOC
trainval at output stride 8 with BatchNorm frozen, each stage starting from the last
one's checkpoint, then evaluation. The registered stages run with a tiny network and
two steps; every stage setting is theirs."""

import json

import numpy as np
import pytest
import tensorflow as tf

from deeplab import load_experiment
from deeplab.checkpoints import official_weight_names
from deeplab.data import png
from deeplab.data.colormaps import get_colormap
from deeplab.datasets.convert import convert
from deeplab.evaluation import run_evaluation
from deeplab.training import checkpointing, loop, train

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2

STAGES = ('pascal_voc_xception_65_coco', 'pascal_voc_xception_65',
          'pascal_voc_xception_65_trainval')
TINY = ('model.backbone=mobilenet_v2,model.depth_multiplier=0.25,model.aspp_convs_filters=16,'
        'model.decoder_filters=16,train_data.batch_size=2,train_data.crop_size=[65, 65],'
        'train_data.shuffle_buffer_size=4,trainer.train_steps=2,'
        'trainer.checkpoint_every_n_steps=2,trainer.log_every_n_steps=2,'
        # Only the last stage is evaluated, once, below.
        'trainer.eval_every_n_steps=0,'
        'evaluation.eval_scales=[1.0],evaluation.add_flipped_images=false')
# COCO 2017 ids: person and cat are VOC classes 15 and 8; 88 (teddy bear) is not.
PERSON, CAT, TEDDY_BEAR = 1, 17, 88
SIZE = 72


def _write_coco(root, rng):
  """train2017/, val2017/ JPEGs and annotations/instances_*.json with polygon outlines."""
  categories = [{'id': PERSON, 'name': 'person'}, {'id': CAT, 'name': 'cat'},
                {'id': TEDDY_BEAR, 'name': 'teddy bear'}]
  annotation_id = 0
  for folder, count in (('train2017', 4), ('val2017', 2)):
    (root / folder).mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(1, count + 1):
      name = f'{image_id:012d}.jpg'
      pixels = rng.integers(0, 256, [SIZE, SIZE, 3]).astype(np.uint8)
      (root / folder / name).write_bytes(tf.io.encode_jpeg(pixels).numpy())
      images.append({'id': image_id, 'file_name': name, 'height': SIZE, 'width': SIZE})
      for category in (PERSON, CAT, TEDDY_BEAR):
        x, y = rng.integers(0, SIZE // 2, 2).tolist()
        annotation_id += 1
        annotations.append({'id': annotation_id, 'image_id': image_id,
                            'category_id': category, 'iscrowd': 0,
                            'segmentation': [[x, y, x + 30, y, x + 30, y + 30, x, y + 30]]})
    (root / 'annotations').mkdir(exist_ok=True)
    (root / 'annotations' / f'instances_{folder}.json').write_text(json.dumps(
        {'images': images, 'annotations': annotations, 'categories': categories}))


def _write_voc(root, rng, splits):
  """VOCdevkit/VOC2012: JPEGs, palette label PNGs and the ImageSets/Segmentation lists."""
  voc = root / 'VOCdevkit' / 'VOC2012'
  for folder in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
    (voc / folder).mkdir(parents=True)
  for split, ids in splits.items():
    (voc / 'ImageSets' / 'Segmentation' / f'{split}.txt').write_text('\n'.join(ids) + '\n')
  for image_id in sorted({i for ids in splits.values() for i in ids}):
    pixels = rng.integers(0, 256, [SIZE, SIZE, 3]).astype(np.uint8)
    (voc / 'JPEGImages' / f'{image_id}.jpg').write_bytes(tf.io.encode_jpeg(pixels).numpy())
    labels = np.zeros([SIZE, SIZE], np.uint8)
    labels[8:40, 16:60] = rng.integers(1, 21)
    labels[0] = 255
    (voc / 'SegmentationClass' / f'{image_id}.png').write_bytes(
        png.encode_palette_png(labels, get_colormap('pascal')))


def _weights(model):
  return {name: v.numpy() for name, v in official_weight_names(model).items()}


@pytest.fixture
def data(tmp_path):
  rng = np.random.default_rng(0)
  _write_coco(tmp_path / 'coco', rng)
  _write_voc(tmp_path, rng, {'train_aug': ['a', 'b', 'c', 'd'], 'val': ['e', 'f'],
                             'trainval': ['a', 'b', 'e', 'f']})
  convert('coco', str(tmp_path / 'coco'), str(tmp_path / 'coco_records'), num_shards=1,
          num_workers=1)
  convert('voc2012', str(tmp_path), str(tmp_path / 'voc_records'), num_shards=1,
          num_workers=1)
  return {STAGES[0]: str(tmp_path / 'coco_records'), STAGES[1]: str(tmp_path / 'voc_records'),
          STAGES[2]: str(tmp_path / 'voc_records')}


def test_each_stage_starts_from_the_last_and_the_result_evaluates(data, tmp_path, monkeypatch):
  # The weights each stage starts from (after its initial checkpoint is loaded) and
  # ends with (its trained model, as its last checkpoint holds it).
  starts, models = {}, []
  initialize, build = checkpointing.initialize_weights, loop.build_train_step

  def recording_initialize(model, path, initialize_last_layer):
    initialize(model, path, initialize_last_layer)
    starts[path] = _weights(model)

  def recording_build(*args, **kwargs):
    step = build(*args, **kwargs)
    models.append(step.model)
    return step

  monkeypatch.setattr(checkpointing, 'initialize_weights', recording_initialize)
  monkeypatch.setattr(loop, 'build_train_step', recording_build)
  ends = {}
  for stage in STAGES:
    overrides = (f'{TINY},train_data.dataset_dir={data[stage]},'
                 f'eval_data.dataset_dir={data[stage]}')
    if ends:
      overrides += f',trainer.initial_checkpoint={tmp_path / list(ends)[-1]}'
    config = load_experiment(stage, (), overrides)
    result = train(config, str(tmp_path / stage))
    assert result.step == 2 and np.isfinite(result.metrics['total_loss'])
    ends[stage] = _weights(models[-1])

  assert list(starts) == [str(tmp_path / stage) for stage in STAGES[:2]]
  for previous, start in zip(STAGES, starts.values()):
    assert start.keys() == ends[previous].keys()  # Logits included: the classes agree.
    for name, value in ends[previous].items():
      np.testing.assert_array_equal(start[name], value, err_msg=f'{previous}: {name}')

  # The last stage trains at output stride 8 with BatchNorm statistics frozen.
  assert models[-1].config.output_stride == 8
  start, end = starts[str(tmp_path / STAGES[1])], ends[STAGES[2]]
  statistics = [name for name in end if name.endswith(('moving_mean', 'moving_variance'))]
  assert statistics and all(np.array_equal(start[n], end[n]) for n in statistics)
  assert not np.array_equal(start['logits/semantic/weights'], end['logits/semantic/weights'])

  config = load_experiment(str(tmp_path / STAGES[2] / 'config.yaml'))
  result, = run_evaluation(config, str(tmp_path / STAGES[2]), output_dir=str(tmp_path / 'eval'))
  assert result.step == 2 and result.num_images == 2 and 0 <= result.metrics.mean_iou <= 1
