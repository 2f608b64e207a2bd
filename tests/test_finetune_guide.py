"""The README's fine-tuning guide runs as written: convert a folder of real VOC images,
train from a checkpoint in the official layout, evaluate, export and predict."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import numpy as np
import tensorflow as tf
from conftest import shared_path

from deeplab.data import colormaps, png

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'
# The guide's training, shortened to two steps of two small crops; the run's
# config.yaml, which the export reads, asks for whole-image graphs (test_export.py
# serves the tiled path).
SHORT_TRAINING = ('"--params_override=trainer.train_steps=2,trainer.checkpoint_every_n_steps=2,'
                  'train_data.batch_size=2,train_data.crop_size=[129, 129],'
                  'export.tiling.max_whole_image_pixels=0"')


def _guide_commands() -> str:
  text = README.read_text()
  block = re.search(r'<!-- finetune-guide:start -->\n```bash\n(.*?)```\n'
                    r'<!-- finetune-guide:end -->', text, re.S)
  assert block, 'README.md lost its finetune-guide block'
  return block.group(1)


def _image_folders(root: pathlib.Path) -> None:
  """my_data/{train,val}/{images,masks}: five real VOC images with id masks."""
  voc = shared_path('data', 'voc2012-samples-datum')
  colored = shared_path('data', 'voc-samples-vainf')
  for split, names in (('train', ('2007_000032', '2007_000033')), ('val', ('2007_000033',))):
    for folder in ('images', 'masks'):
      (root / split / folder).mkdir(parents=True, exist_ok=True)
    for name in names:
      shutil.copy(voc / 'JPEGImages' / f'{name}.jpg', root / split / 'images')
      shutil.copy(voc / 'SegmentationClass' / f'{name}.png', root / split / 'masks')
  # The colour-coded samples, as a user would save them: masks of class ids.
  pascal = colormaps.get_colormap('pascal')
  for number in (1, 23, 114):
    shutil.copy(colored / f'{number}_image.png', root / 'train' / 'images' / f'vainf_{number}.png')
    rgb = tf.io.decode_png((colored / f'{number}_target.png').read_bytes(), channels=3).numpy()
    labels = colormaps.labels_from_colors(rgb, pascal, 21, 255)
    (root / 'train' / 'masks' / f'vainf_{number}.png').write_bytes(
        png.encode_palette_png(labels, pascal))


def test_the_finetune_guide_runs_as_written(tmp_path):
  commands = _guide_commands()
  assert '--model_dir=runs/mine \\\n' in commands
  commands = commands.replace('--model_dir=runs/mine \\\n',
                              f'--model_dir=runs/mine {SHORT_TRAINING} \\\n')
  _image_folders(tmp_path / 'my_data')
  checkpoint = tmp_path / 'deeplabv3_mnv2_pascal_train_aug'
  checkpoint.mkdir()
  for path in shared_path('reference', 'official', 'mobilenet_v2').glob('model.ckpt.*'):
    shutil.copy(path, checkpoint)
  env = dict(os.environ, PATH=f'{os.path.dirname(sys.executable)}:{os.environ["PATH"]}')
  result = subprocess.run(['bash', '-euo', 'pipefail', '-c', commands], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]

  config = (tmp_path / 'runs' / 'mine' / 'config.yaml').read_text()
  assert 'num_classes: 21' in config and 'ignore_label: 255' in config
  assert 'eval_every_n_steps: 2' in config  # evaluated at its checkpoint by default
  assert 'max_whole_image_pixels: 0' in config
  assert (tmp_path / 'runs' / 'mine' / 'eval' / 'metrics.json').exists()
  assert 'Recomputed the statistics of' in result.stderr
  assert list((tmp_path / 'export' / 'mine').glob('*/saved_model.pb'))
  labels = list((tmp_path / 'predictions' / 'mine' / 'labels').glob('*.png'))
  assert [p.stem for p in labels] == ['2007_000033']
  predicted = png.decode_label_png(labels[0].read_bytes())
  assert predicted.shape == (366, 500) and np.all(predicted < 21)
