"""Training across strategies and processes: the same weights, and exact resumption.

Every run here is a subprocess: logical devices must be set before TensorFlow
starts, multi-worker training needs one process per worker, and op determinism
is process-wide. The tiny models have the short MobileNetV2 (short_mobilenet_v2.py).
"""

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from short_mobilenet_v2 import tool_command

HERE = pathlib.Path(__file__).resolve().parent

# One process of a comparison run: trains the tiny model on fixed in-memory
# batches; each input pipeline takes its contiguous share of every global batch,
# so 1 worker x 4 images and 2 replicas x 2 images see the same images per step.
CHILD = r'''
import json, os, sys
args = json.loads(sys.argv[1])
if args.get('tf_config'):
  os.environ['TF_CONFIG'] = json.dumps(args['tf_config'])
import numpy as np
import tensorflow as tf
# Without Grappler: its rewrites keep a graph's math and take a third of each run's
# time here (a two-replica step graph has 30k nodes); what these runs compare is the
# distributed math, and the other training tests run it with Grappler.
tf.config.optimizer.set_experimental_options({'disable_meta_optimizer': True})
if args.get('logical_cpus'):
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * args['logical_cpus'])
sys.path.insert(0, args['tests_dir'])
from short_mobilenet_v2 import use_short_mobilenet_v2
use_short_mobilenet_v2()
from deeplab.config import load_experiment
from deeplab.data.synthetic import generate_example
from deeplab.training import train

def dataset_fn(file_pattern, *, training, batch_size, crop_size, input_context=None, **unused):
  rng = np.random.default_rng(0)
  examples = [generate_example(rng, *crop_size) for _ in range(8)]
  dataset = tf.data.Dataset.from_tensor_slices({
      'images': np.stack([e[0] for e in examples]).astype(np.float32),
      'labels': np.stack([e[1] for e in examples]).astype(np.int32)})
  dataset = dataset.repeat().batch(batch_size)
  if input_context is None:
    return dataset
  share = batch_size // input_context.num_input_pipelines
  start = input_context.input_pipeline_id * share
  return (dataset.map(lambda batch: {k: v[start:start + share] for k, v in batch.items()})
          .unbatch().batch(input_context.get_per_replica_batch_size(batch_size)))

for run in args['runs']:
  train(load_experiment('synthetic', (), run['overrides']), run['model_dir'],
        dataset_fn=dataset_fn)
'''

# float64: float32 rounding differences between summation orders flip ReLU gates
# and grow over steps (about 1% of an update after one step); in float64 they stay
# at rounding level, so equal weights show that the distributed math is exact.
# Output stride 32 and no ASPP atrous branches: TensorFlow's CPU depthwise
# convolution has no float64 kernel with dilations.
EXACT = ('model.depth_multiplier=0.25,model.aspp_convs_filters=16,model.decoder_filters=16,'
         'model.output_stride=32,model.atrous_rates=[],model.dropout=0.0,'
         'model.sync_batch_norm=true,train_data.crop_size=[65, 65],train_data.batch_size=4,'
         'trainer.train_steps=2,trainer.log_every_n_steps=2,trainer.checkpoint_every_n_steps=2,'
         'trainer.eval_every_n_steps=0,runtime.mixed_precision_dtype=float64,'
         'runtime.deterministic=true')


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(('127.0.0.1', 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _start_child(script, runs, **extra):
  """A process that trains each (overrides, model_dir) of `runs` in turn."""
  args = json.dumps({'runs': [{'overrides': o, 'model_dir': str(d)} for o, d in runs],
                     'tests_dir': str(HERE), **extra})
  return subprocess.Popen([sys.executable, str(script), args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _finish(process, timeout=420):
  output, _ = process.communicate(timeout=timeout)
  return process.returncode, output


def _checkpoint_values(prefix):
  reader = tf.train.load_checkpoint(str(prefix))
  return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
          if name.startswith(('model/', 'optimizer/', 'step'))}


@pytest.mark.slow
def test_one_worker_two_workers_and_two_devices_train_the_same_weights(tmp_path):
  script = tmp_path / 'child.py'
  script.write_text(CHILD)
  ports = _free_ports(2)
  cluster = {'worker': [f'127.0.0.1:{port}' for port in ports]}
  # One process trains on one device and then mirrored on two (the same weights
  # from the same seed, whatever ran before), two processes are the two workers.
  processes = {'single_then_mirrored': _start_child(
      script, [(EXACT, tmp_path / 'single'),
               (EXACT + ',runtime.distribution_strategy=mirrored', tmp_path / 'mirrored')],
      logical_cpus=2)}
  for index in range(2):
    processes[f'worker{index}'] = _start_child(
        script, [(EXACT + ',runtime.distribution_strategy=multi_worker', tmp_path / 'workers')],
        tf_config={'cluster': cluster, 'task': {'type': 'worker', 'index': index}})
  results = {name: _finish(process) for name, process in processes.items()}
  for name in processes:
    assert results[name][0] == 0, f'{name} failed:\n{results[name][1][-3000:]}'

  # The logits and the loss stay float32, so agreement is to ~1e-7 of each variable's
  # scale; the same runs in float32 differ by ~10% of it.
  single = _checkpoint_values(tmp_path / 'single' / 'ckpt-2')
  for name in ('mirrored', 'workers'):
    other = _checkpoint_values(tmp_path / name / 'ckpt-2')
    assert other.keys() == single.keys()
    for key, value in single.items():
      scale = float(np.max(np.abs(value))) if value.size else 0.0
      np.testing.assert_allclose(other[key], value, rtol=0, atol=1e-5 * scale + 1e-12,
                                 err_msg=f'{name}: {key}')
  # The chief alone wrote the model directory; the other worker's scratch space is gone.
  assert not any(entry.startswith('.worker') for entry in os.listdir(tmp_path / 'workers'))


def _train_command(model_dir, dataset_dir):
  overrides = ('model.depth_multiplier=0.25,model.aspp_convs_filters=16,model.decoder_filters=16,'
               'train_data.crop_size=[65, 65],train_data.batch_size=4,trainer.train_steps=8,'
               'trainer.log_every_n_steps=2,trainer.checkpoint_every_n_steps=2,'
               'trainer.eval_every_n_steps=0,'
               f'runtime.deterministic=true,train_data.dataset_dir={dataset_dir}')
  return [*tool_command('deeplab.tools.train'), '--experiment=synthetic',
          f'--model_dir={model_dir}', f'--params_override={overrides}']


def _latest_step(model_dir):
  state = tf.train.get_checkpoint_state(str(model_dir))
  if state is None or not state.model_checkpoint_path:
    return 0
  return int(state.model_checkpoint_path.rsplit('-', 1)[1])


@pytest.mark.slow
def test_a_run_killed_and_restarted_ends_with_the_weights_of_an_uninterrupted_run(
    synthetic_dir, tmp_path):
  # Real TFRecords through deeplab-train, with dropout on: the restarted run must
  # restore weights, optimizer, step, the data stream's position and the dropout
  # random state.
  uninterrupted = subprocess.Popen(_train_command(tmp_path / 'a', synthetic_dir),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  killed = subprocess.Popen(_train_command(tmp_path / 'b', synthetic_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while _latest_step(tmp_path / 'b') < 2 and killed.poll() is None and time.time() < deadline:
    time.sleep(0.02)
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  assert killed.returncode == -signal.SIGKILL, 'the run ended before it could be killed'
  killed_at = _latest_step(tmp_path / 'b')
  assert 2 <= killed_at < 8

  resumed = subprocess.run(_train_command(tmp_path / 'b', synthetic_dir), capture_output=True,
                           text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f'at step {killed_at}' in resumed.stderr  # 'Resumed from .../ckpt-N at step N.'
  returncode, output = _finish(uninterrupted)
  assert returncode == 0, output[-3000:]

  expected = _checkpoint_values(tmp_path / 'a' / 'ckpt-8')
  actual = _checkpoint_values(tmp_path / 'b' / 'ckpt-8')
  assert actual.keys() == expected.keys()
  for key, value in expected.items():
    np.testing.assert_array_equal(actual[key], value, err_msg=key)
