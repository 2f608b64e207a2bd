"""The main job end to end, as `make demo` runs it, at a reduced size and with a
whole-image export (test_export.py serves the tiled path)."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import SHARED_DIR
from deeplab.data.synthetic import generate_example


@pytest.mark.slow
def test_demo_runs_every_tool_and_writes_its_summary(tmp_path):
  command = [sys.executable, '-m', 'deeplab.tools.demo', f'--output_dir={tmp_path}',
             '--num_examples=train=24,val=6', '--overview_images=2',
             '--params_override=trainer.train_steps=6,trainer.checkpoint_every_n_steps=3,'
             'trainer.eval_every_n_steps=0,trainer.log_every_n_steps=3,'
             'export.tiling.max_whole_image_pixels=0']
  result = subprocess.run(command, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((tmp_path / 'summary.json').read_text())
  assert 0 <= summary['validation_mean_iou'] <= 1
  assert set(summary['seconds']) == {'convert', 'train', 'evaluate', 'export', 'predict',
                                     'total'}
  outputs = summary['outputs']
  assert (tmp_path / 'train' / 'ckpt-6.index').exists()
  assert (tmp_path / 'export' / '1' / 'saved_model.pb').exists()
  assert len(list((tmp_path / 'predictions' / 'overlays').iterdir())) == 6
  overview = tf.io.decode_png((tmp_path / 'overview.png').read_bytes()).numpy()
  assert overview.ndim == 3 and overview.shape[2] == 3 and np.ptp(overview) > 0
  assert outputs['overview'] == str(tmp_path / 'overview.png')
  assert 'validation mIoU' in result.stdout
  card = (tmp_path / 'MODEL_CARD.md').read_text()
  assert outputs['model_card'] == str(tmp_path / 'MODEL_CARD.md')
  assert f'mean IoU **{summary["validation_mean_iou"]:.4f}**' in card
  assert '24 training and 6 validation' in card and '6 steps' in card
  for name in ('background', 'disc', 'square', 'triangle', 'ring'):
    assert f'| {name} | ' in card

  # The export serves a real photo where there is one (test_platforms serves exports
  # with the other kernel set).
  photos = sorted(SHARED_DIR.glob('data/cc0-images-ibm-max/*.jpg'))
  if photos:
    photo = tf.io.read_file(str(photos[0]))
  else:
    photo = tf.io.encode_jpeg(generate_example(np.random.default_rng(0), 97, 131)[0])
  serving = tf.saved_model.load(str(tmp_path / 'export' / '1')).signatures['serving_default']
  labels = serving(images=tf.stack([photo]))['labels'].numpy()
  height, width = tf.io.extract_jpeg_shape(photo).numpy()[:2]
  assert labels.shape == (1, height, width)
  assert set(np.unique(labels)) <= set(range(5))
