import json
import os

import pytest

from deeplab.data import info as info_lib
from deeplab.hyperparams import ConfigError


def test_known_datasets_hold_the_official_facts():
  voc = info_lib.get_dataset_info('pascal_voc_seg')
  assert (voc.num_classes, voc.ignore_label, voc.colormap) == (21, 255, 'pascal')
  assert voc.class_names[15] == 'person' and voc.class_names[20] == 'tvmonitor'
  cityscapes = info_lib.get_dataset_info('cityscapes')
  assert (cityscapes.num_classes, cityscapes.ignore_label) == (19, 255)
  assert cityscapes.class_names[13] == 'car'
  ade20k = info_lib.get_dataset_info('ade20k')
  assert (ade20k.num_classes, ade20k.ignore_label, len(ade20k.class_names)) == (151, 0, 151)
  assert ade20k.class_names[1] == 'wall' and ade20k.class_names[150] == 'flag'
  assert info_lib.get_dataset_info('synthetic').num_classes == 5
  with pytest.raises(ValueError, match='known: pascal_voc_seg'):
    info_lib.get_dataset_info('voc')


def test_ade20k_names_follow_object_info_150(shared):
  lines = shared('data', 'ade20k-samples-sceneparsing',
                 'objectInfo150.csv').read_text().splitlines()[1:]
  first_words = [line.split(',')[-1].split(';')[0] for line in lines]
  names = info_lib.ADE20K_CLASSES[1:]
  assert len(names) == 150
  assert all(name.split()[0] == word for name, word in zip(names, first_words))


def test_dataset_info_round_trips_through_json(tmp_path):
  info = info_lib.get_dataset_info('pascal_voc_seg').with_split(
      'val', info_lib.SplitInfo(3, tuple(range(21)), 7, ('a.png',)))
  path = info_lib.write_dataset_info(info, str(tmp_path))
  assert os.path.basename(path) == 'dataset_info.json'
  assert os.listdir(tmp_path) == ['dataset_info.json']
  assert info_lib.read_dataset_info(str(tmp_path)) == info
  assert json.loads((tmp_path / 'dataset_info.json').read_text())['splits']['val'][
      'num_examples'] == 3


def test_reading_names_the_missing_or_bad_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='dataset_info.json does not exist.*'
                                              'deeplab-convert'):
    info_lib.read_dataset_info(str(tmp_path))
  (tmp_path / 'dataset_info.json').write_text('{"name": "x", "num_classes": 2, "colour": 1}')
  with pytest.raises(ConfigError, match='colour'):
    info_lib.read_dataset_info(str(tmp_path))


def test_inconsistent_infos_are_rejected():
  with pytest.raises(ConfigError, match='2 names for 3 classes'):
    info_lib.DatasetInfo('x', 3, class_names=('a', 'b'))
  with pytest.raises(ConfigError, match='ignore_label'):
    info_lib.DatasetInfo('x', 3, ignore_label=300)
