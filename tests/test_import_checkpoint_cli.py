"""deeplab-import-checkpoint end to end on the official MobileNetV2 reference checkpoint."""

import subprocess
import sys

import numpy as np
import tf_keras


def _import_checkpoint(*flags):
  return subprocess.run([sys.executable, '-m', 'deeplab.tools.import_checkpoint', *flags],
                        capture_output=True, text=True, timeout=300, check=False)


def test_imported_keras_file_reproduces_the_official_logits(shared, tmp_path):
  folder = shared('reference', 'official', 'mobilenet_v2')
  output = tmp_path / 'mobilenet_v2_voc.keras'
  # No --experiment: the model is read from the checkpoint, at the stride the
  # reference was made with.
  result = _import_checkpoint(f'--checkpoint={folder}', f'--output={output}',
                              '--params_override=model.output_stride=16', '--strict')
  assert result.returncode == 0, result.stderr
  assert 'matched: 272 (MobilenetV2/Conv/weights' in result.stdout
  assert 'missing: 0' in result.stdout and f'Wrote {output}' in result.stdout
  assert [p.name for p in tmp_path.iterdir()] == [output.name]  # No temporary left.

  reference = np.load(folder / 'reference.npz')
  model = tf_keras.models.load_model(str(output))
  logits = model(reference['input'], training=False).numpy()
  expected = reference['logits_upsampled']
  error = np.linalg.norm(logits - expected) / np.linalg.norm(expected)
  assert error < 1e-4, f'relative error {error:.2e} >= 1e-4'


def test_class_count_mismatch_exits_with_advice_and_writes_nothing(shared, tmp_path):
  folder = shared('reference', 'official', 'mobilenet_v2')
  output = tmp_path / 'model.keras'
  result = _import_checkpoint(f'--checkpoint={folder}', f'--output={output}',
                              '--params_override=model.num_classes=19')
  assert result.returncode == 1
  assert 'set model.num_classes=21' in result.stderr
  assert not output.exists()
