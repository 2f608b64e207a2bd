"""What the machine is, and what it can do at best: the ceilings model speed is
measured against.

The ceilings are a large 3x3 convolution (256 -> 256 channels at 129x129, the
shape of DeepLab's dense layers) and a 4096^3 matrix product, in float32 and
bfloat16 (and float16 on request), plus a depthwise 3x3 convolution of the same
size, which memory rather than arithmetic limits. A model's efficiency is
2 * multiply-adds / seconds / the convolution ceiling of its compute dtype.

Example:
  >>> info = describe_machine()
  >>> info['cores'] >= 1 and 'tensorflow' in info
  True
  >>> ceiling = measure_ceiling('conv3x3', 'float32', runs=1, warmup=0, size=9)
  >>> ceiling['gflop_per_second'] > 0
  True
"""

import os
from typing import Any, Dict, Optional

import tensorflow as tf

from deeplab.benchmark.timing import time_calls
from deeplab.kernels import cpu_model_and_flags, onednn_cpu_kernels

CEILING_OPS = ('conv3x3', 'depthwise3x3', 'matmul')
# Compute dtype of each precision policy: the ceiling a model is compared to.
COMPUTE_DTYPES = {'float32': 'float32', 'mixed_bfloat16': 'bfloat16',
                  'mixed_float16': 'float16', 'float64': 'float64'}
_CONV_CHANNELS = 256
_CONV_SIZE = 129
_MATMUL_SIZE = 4096


def describe_machine() -> Dict[str, Any]:
  """The machine every measurement states: CPU, cores, TensorFlow, oneDNN, threads.

  Returns:
    {'cpu': model name, 'cores': usable cores, 'cpu_features': the vector/matrix
     extensions that matter for speed, 'tensorflow': version, 'onednn': bool,
     'intra_op_threads', 'inter_op_threads': TF's settings (0 = one per core),
     'gpus': visible GPUs}.
  """
  model, flags = cpu_model_and_flags()
  features = [f for f in ('avx2', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'amx_bf16')
              if f in flags]
  cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
  return {
      'cpu': model,
      'cores': cores,
      'cpu_features': features,
      'tensorflow': tf.__version__,
      'onednn': onednn_cpu_kernels(),
      'intra_op_threads': tf.config.threading.get_intra_op_parallelism_threads(),
      'inter_op_threads': tf.config.threading.get_inter_op_parallelism_threads(),
      'gpus': len(tf.config.list_physical_devices('GPU')),
  }


def set_threads(intra_op: Optional[int] = None, inter_op: Optional[int] = None) -> None:
  """Sets TensorFlow's thread pools; must run before TensorFlow executes anything.

  Args:
    intra_op: threads one op may use (0 = one per core); None leaves it.
    inter_op: ops that may run at once (0 = TensorFlow's choice); None leaves it.

  Raises:
    ValueError: TensorFlow is already initialized with other settings.
  """
  try:
    if intra_op is not None:
      tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op is not None:
      tf.config.threading.set_inter_op_parallelism_threads(inter_op)
  except RuntimeError as e:
    raise ValueError(f'Thread counts must be set before TensorFlow runs anything: {e}') from e


def _ceiling_function(op: str, dtype: tf.DType, size: int):
  """The op as a compiled function, its inputs, and its multiply-adds."""
  if op == 'matmul':
    a = tf.random.stateless_normal([size, size], [0, 1], dtype=tf.float32)
    b = tf.random.stateless_normal([size, size], [0, 2], dtype=tf.float32)
    function = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)[:1]))
    return function, (tf.cast(a, dtype), tf.cast(b, dtype)), size ** 3
  channels = _CONV_CHANNELS
  images = tf.random.stateless_normal([1, size, size, channels], [0, 3])
  if op == 'conv3x3':
    kernel = tf.random.stateless_normal([3, 3, channels, channels], [0, 4]) * 0.05
    function = tf.function(lambda x, k: tf.reduce_sum(
        tf.nn.conv2d(x, k, 1, 'SAME')[:, :1, :1]))
    macs = 9 * channels * channels * size * size
  elif op == 'depthwise3x3':
    kernel = tf.random.stateless_normal([3, 3, channels, 1], [0, 4]) * 0.3
    function = tf.function(lambda x, k: tf.reduce_sum(
        tf.nn.depthwise_conv2d(x, k, [1, 1, 1, 1], 'SAME')[:, :1, :1]))
    macs = 9 * channels * size * size
  else:
    raise ValueError(f'ceiling op must be one of {", ".join(CEILING_OPS)}; got {op!r}.')
  return function, (tf.cast(images, dtype), tf.cast(kernel, dtype)), macs


def measure_ceiling(op: str, dtype: str = 'float32', runs: int = 5, warmup: int = 2,
                    size: Optional[int] = None) -> Dict[str, Any]:
  """The machine's speed at one large op: GFLOP/s (2 FLOPs per multiply-add).

  Args:
    op: 'conv3x3' (256 -> 256 channels at 129x129), 'depthwise3x3' (256 channels
      at 129x129) or 'matmul' (4096 x 4096 by 4096 x 4096).
    dtype: 'float32', 'bfloat16' or 'float16'.
    runs, warmup: timed and untimed calls.
    size: overrides the spatial size (convolutions) or matrix size (tests).

  Returns:
    {'op', 'dtype', 'shape', 'multiply_adds', 'seconds': Timing dict,
     'gflop_per_second': at the median time}.
  """
  size = size or (_MATMUL_SIZE if op == 'matmul' else _CONV_SIZE)
  function, inputs, macs = _ceiling_function(op, tf.as_dtype(dtype), size)
  timing = time_calls(lambda: function(*inputs).numpy(), runs, warmup)
  shape = ([size, size, size] if op == 'matmul'
           else [1, size, size, _CONV_CHANNELS])
  return {'op': op, 'dtype': dtype, 'shape': shape, 'multiply_adds': macs,
          'seconds': timing.as_dict(),
          'gflop_per_second': round(2 * macs / timing.median / 1e9, 2)}
