"""deeplab-train: flags, and problems reported before any training work."""

import subprocess
import sys

import pytest


def _train_tool(*flags):
  return subprocess.run([sys.executable, '-m', 'deeplab.tools.train', *flags],
                        capture_output=True, text=True, timeout=120)


def test_help_lists_the_training_flags_and_experiments():
  result = _train_tool('--help')  # absl exits with status 1 after the usage
  for text in ('--model_dir', '--strategy', '--initial_checkpoint', '--params_override',
               'pascal_voc_xception_65', 'multi_worker', '--model_dir=runs/voc_x65 \\'):
    assert text in result.stdout


def test_missing_data_fails_before_anything_is_written(tmp_path):
  result = _train_tool('--experiment=synthetic', f'--model_dir={tmp_path / "run"}',
                       f'--params_override=train_data.dataset_dir={tmp_path / "none"}')
  assert result.returncode == 1
  assert f'train_data: no files match {tmp_path / "none"}/train-*' in result.stderr
  assert not (tmp_path / 'run').exists()


@pytest.mark.parametrize('flags, message', [
    (['--strategy=horovod'], 'value should be one of <default|mirrored|multi_worker|tpu>'),
    (['--params_override=train_data.crop_size=[17, 17]'], 'crop_size must be at least 33x33'),
    ([], 'Flag --model_dir must have a value other than None'),
])
def test_bad_flags_are_named(tmp_path, flags, message):
  model_dir = [] if not flags else [f'--model_dir={tmp_path}']
  result = _train_tool('--experiment=synthetic', *model_dir, *flags)
  assert result.returncode != 0
  assert message in result.stderr
