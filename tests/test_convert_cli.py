"""deeplab-convert end to end, run as the installed console script runs it.

Each run is a subprocess (as users run it), which also keeps this tool's flags out of
the test process, where other tools define flags of the same names.
"""

import os
import subprocess
import sys

import numpy as np

from deeplab.data import info as info_lib
from deeplab.data import png


def _run(*args):
  # `run()` under a generated __main__, exactly as the `deeplab-convert` script.
  return subprocess.run([sys.executable, '-c', 'from deeplab.tools.convert import run; run()',
                         *args], capture_output=True, text=True, timeout=300,
                        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '3'})


def test_help_lists_datasets_examples_and_flags():
  result = _run('--help')
  for text in ('dataset doctor', '--dataset=sbd', '--colormap', '--check_only', '--skip_bad',
               'voc2012|sbd|train_aug|cityscapes|ade20k|folder|synthetic'):
    assert text in result.stdout, text


def test_synthetic_end_to_end(tmp_path):
  out = tmp_path / 'data'
  result = _run('--dataset=synthetic', f'--output_dir={out}', '--num_examples=train=6,val=3',
                '--num_shards=2')
  assert result.returncode == 0, result.stderr
  assert 'train: 6 examples' in result.stdout and 'val: 3 examples' in result.stdout
  assert 'synthetic train: 6/6 examples' in result.stderr  # Progress with counts.
  assert sorted(f for f in os.listdir(out) if f.endswith('.tfrecord')) == [
      'train-00000-of-00002.tfrecord', 'train-00001-of-00002.tfrecord',
      'val-00000-of-00002.tfrecord', 'val-00001-of-00002.tfrecord']
  info = info_lib.read_dataset_info(str(out))
  assert (info.name, info.num_classes, info.splits['val'].num_examples) == ('synthetic', 5, 3)


def test_bad_files_fail_naming_them(tmp_path):
  data = tmp_path / 'mine'
  for folder in ('images', 'masks'):
    (data / folder).mkdir(parents=True)
  (data / 'images' / 'a.png').write_bytes(png.encode_label_png(np.zeros([4, 4], np.uint8)))
  (data / 'masks' / 'a.png').write_bytes(b'not a png')
  result = _run('--dataset=folder', f'--data_dir={data}', '--num_classes=3', '--check_only')
  assert result.returncode == 1
  assert 'masks/a.png: label: not a PNG file' in result.stderr
