"""The GPU check: its quick CPU run and its refusal to run without a GPU."""

import json
import os
import pathlib
import subprocess

import pytest

from short_mobilenet_v2 import tool_command

# Hides any GPU, so the tests behave the same on machines with one.
_CPU_ONLY = {**os.environ, 'CUDA_VISIBLE_DEVICES': ''}


def _gpu_check(*arguments):
  # The check's own MobileNetV2 is the tests' short one.
  return subprocess.run([*tool_command('deeplab.tools.gpu_check'), *arguments],
                        capture_output=True, text=True, timeout=600, env=_CPU_ONLY,
                        check=False)


@pytest.mark.slow
def test_cpu_run_writes_the_summary_and_serves_equal_labels_in_both_processes(tmp_path):
  result = _gpu_check(f'--output_dir={tmp_path}', '--allow_cpu', '--backbones=mobilenet_v2',
                      '--crop_size=65', '--steps=2', '--batch_size=2', '--precision=float32',
                      '--noxla')
  assert result.returncode == 0, result.stderr[-3000:]
  summary = json.loads((tmp_path / 'gpu_check.json').read_text())
  assert json.loads(result.stdout.strip().splitlines()[-1]) == summary
  assert set(summary) == {'device', 'settings', 'backbones', 'seconds'}
  assert summary['device']['gpus'] == []
  assert {'tensorflow', 'cuda_build', 'cuda_version', 'cudnn_version'} <= set(summary['device'])
  assert summary['settings'] == {'steps': 2, 'crop_size': 65, 'batch_size': 2,
                                 'precision': 'float32', 'xla': False,
                                 'min_label_agreement': 0.999}
  assert set(summary['seconds']) == {'data', 'total'}
  check = summary['backbones']['mobilenet_v2']
  assert set(check) == {'images_per_second', 'steps', 'timed_steps', 'mean_iou', 'export_path',
                        'export_precision', 'serving_device', 'served_images',
                        'label_agreement_with_cpu', 'seconds'}
  assert set(check['seconds']) == {'train', 'evaluate', 'export', 'serve', 'serve_cpu'}
  assert (check['steps'], check['timed_steps']) == (2, 1)
  assert check['images_per_second'] > 0
  assert 0 <= check['mean_iou'] <= 1
  assert (pathlib.Path(check['export_path']) / 'saved_model.pb').exists()
  assert (check['export_precision'], check['serving_device']) == ('float32', '/CPU:0')
  # Both sides run the same float32 graph on the same CPU: identical labels.
  assert check['label_agreement_with_cpu'] == 1.0


def test_without_a_gpu_stops_at_once_naming_allow_cpu(tmp_path):
  result = _gpu_check(f'--output_dir={tmp_path / "out"}')
  assert result.returncode != 0
  assert 'This is a GPU check' in result.stderr
  assert '--allow_cpu' in result.stderr
  assert not (tmp_path / 'out').exists()
