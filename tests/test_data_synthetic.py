import json
import os
import time

import numpy as np
import pytest

from deeplab.data import png, synthetic


def test_examples_follow_the_seed_and_hold_every_kind_of_pixel():
  image, labels = synthetic.generate_example(np.random.default_rng([3, 1]), 140, 150)
  again, labels_again = synthetic.generate_example(np.random.default_rng([3, 1]), 140, 150)
  np.testing.assert_array_equal(image, again)
  np.testing.assert_array_equal(labels, labels_again)
  assert image.shape == (140, 150, 3) and image.dtype == np.uint8
  other, _ = synthetic.generate_example(np.random.default_rng([4, 1]), 140, 150)
  assert not np.array_equal(image, other)


def test_classes_have_their_own_colours_and_boundaries_are_ignored():
  classes, colors = set(), {c: [] for c in range(1, 5)}
  for index in range(40):
    image, labels = synthetic.generate_example(np.random.default_rng([0, index]), 129, 129)
    assert set(np.unique(labels)) <= {0, 1, 2, 3, 4, 255}
    assert 0 < (labels == 255).mean() < 0.2
    for class_id in colors:
      if (labels == class_id).any():
        colors[class_id].append(image[labels == class_id].mean(axis=0))
    classes |= set(np.unique(labels).tolist())
  assert classes == {0, 1, 2, 3, 4, 255}
  means = {c: np.mean(v, axis=0) for c, v in colors.items()}
  # Mean colours lie far apart: the classes are learnable.
  for a in means:
    for b in means:
      if a < b:
        assert np.abs(means[a] - means[b]).max() > 60, (a, b)


def test_num_classes_is_checked():
  with pytest.raises(ValueError, match=r'\[2, 7\]'):
    synthetic.generate_example(np.random.default_rng(0), 50, 50, num_classes=9)


def test_writing_is_fast_complete_and_done_once(tmp_path):
  root = str(tmp_path / 'synthetic')
  start = time.perf_counter()
  synthetic.write_synthetic_dataset(root, {'train': 30, 'val': 10}, num_classes=4, seed=1)
  assert time.perf_counter() - start < 10
  assert sorted(os.listdir(root)) == ['synthetic.json', 'train', 'val']
  assert len(os.listdir(os.path.join(root, 'train', 'images'))) == 30
  mask_path = os.path.join(root, 'val', 'masks', 'val_00003.png')
  with open(mask_path, 'rb') as f:
    labels = png.decode_label_png(f.read())
  assert 129 <= labels.shape[0] <= 160 and set(np.unique(labels)) <= {0, 1, 2, 3, 255}
  assert json.load(open(os.path.join(root, 'synthetic.json')))['num_classes'] == 4
  mtime = os.path.getmtime(mask_path)
  synthetic.write_synthetic_dataset(root, {'train': 30, 'val': 10}, num_classes=4, seed=1)
  assert os.path.getmtime(mask_path) == mtime
  assert [p for p in os.listdir(tmp_path) if p.startswith('.tmp')] == []


def test_an_unrelated_directory_is_never_overwritten(tmp_path):
  (tmp_path / 'mine').mkdir()
  with pytest.raises(ValueError, match='not a generated synthetic dataset'):
    synthetic.write_synthetic_dataset(str(tmp_path / 'mine'), {'train': 1})
