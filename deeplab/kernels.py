"""The model's convolutions, each in a formulation the device and build can run.

TensorFlow's kernel sets differ in what a dilated (atrous) convolution may ask:

| kernel set                          | dilated depthwise | its gradient | dilated conv | its gradient |
|-------------------------------------|-------------------|--------------|--------------|--------------|
| oneDNN, x86 CPU (Linux/Windows)     | native            | wrong        | native       | native       |
| generic CPU (macOS, ARM, no oneDNN) | rejected          | rejected     | native       | rejected     |
| GPU (cuDNN)                         | rejected          | rejected     | native       | native       |
| XLA (TPU, `jit_compile`)            | native            | native       | native       | native       |

("wrong": TensorFlow 2.21's oneDNN gradient of a dilated depthwise convolution is
the undilated one's; `tests/test_platforms.py` checks every formulation's
gradient against XLA's.)

Where the native op is rejected, the convolution runs as TensorFlow's own
`tf.nn.depthwise_conv2d` does with dilations: space-to-batch (the input's
`rate x rate` phases become batch entries), the undilated convolution, then
batch-to-space. That is exact (the same multiply-adds, the same results up to
float summation order) and runs on every kernel set, at the cost of two copies
(at 513x513 on x86 as fast as the native op, within run-to-run noise); on
oneDNN's x86 CPU kernels the native op is kept at inference, the graph every
benchmark of this package measured. The choice is made when the layer is traced,
from the target below:

- 'auto' (the default): the fastest formulation the traced device runs: native on
  a oneDNN x86 CPU and under XLA, portable elsewhere (GPU, generic CPU).
- 'portable': a graph every kernel set runs, for graphs that leave this process
  (exported SavedModels).
- 'native': the native ops wherever their results are right (everywhere but the
  depthwise gradient); oneDNN's x86 CPU kernels, XLA and TFLite run such a graph
  (TFLite models are converted from it), TensorFlow's GPU and generic CPU kernels
  do not.

Example:
  >>> with kernel_target('portable'):
  ...   outputs = depthwise_conv2d(tf.zeros([1, 9, 9, 4]), tf.zeros([3, 3, 4, 1]),
  ...                              strides=1, padding='SAME', dilation_rate=2,
  ...                              gradients=False)
  >>> outputs.shape
  TensorShape([1, 9, 9, 4])
"""

import contextlib
import functools
import platform
import threading
from typing import FrozenSet, Iterator, List, Tuple, Union

import tensorflow as tf
# TensorFlow's own queries of its build: whether oneDNN's kernels are in use in this
# process (TF_ENABLE_ONEDNN_OPTS, read when TensorFlow starts) and whether a graph
# is being built for XLA. Neither has a public equivalent.
from tensorflow.python.ops import control_flow_util
from tensorflow.python.util import _pywrap_util_port

KERNEL_TARGETS = ('auto', 'portable', 'native')

Padding = Union[str, List[List[int]]]

# oneDNN's depthwise kernels take at most this much implicit padding per side;
# beyond it (3x3 atrous rates above 6, e.g. the ASPP's 12 and 18) TensorFlow's
# oneDNN build runs a generic grouped convolution, 3-7x slower than padding the
# input first.
_MAX_IMPLICIT_DEPTHWISE_PADDING = 6

_state = threading.local()


@contextlib.contextmanager
def kernel_target(target: str) -> Iterator[None]:
  """Convolutions traced inside use `target`'s formulation ('auto', 'portable' or
  'native', see the module docstring); the previous target is restored after."""
  if target not in KERNEL_TARGETS:
    raise ValueError(f'kernel target must be one of {", ".join(KERNEL_TARGETS)}; '
                     f'got {target!r}.')
  previous = current_kernel_target()
  _state.target = target
  try:
    yield
  finally:
    _state.target = previous


def current_kernel_target() -> str:
  return getattr(_state, 'target', 'auto')


def onednn_cpu_kernels() -> bool:
  """Whether this process runs oneDNN's x86 CPU kernels (on by default in
  TensorFlow's x86 builds; off with TF_ENABLE_ONEDNN_OPTS=0)."""
  return (_pywrap_util_port.IsMklEnabled() and
          platform.machine().lower() in ('x86_64', 'amd64', 'i386', 'i686'))


@functools.lru_cache(maxsize=None)
def cpu_model_and_flags() -> Tuple[str, FrozenSet[str]]:
  """The CPU's model name and feature flags from /proc/cpuinfo (Linux); elsewhere
  the platform's processor name and no flags. Read once per process."""
  model, flags = platform.processor() or platform.machine(), frozenset()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        key, _, value = line.partition(':')
        if key.strip() == 'model name':
          model = value.strip()
        elif key.strip() == 'flags':
          flags = frozenset(value.split())
          break
  except OSError:
    pass
  return model, flags


def cpu_lacks_bfloat16() -> bool:
  """Whether this is an x86 CPU known to lack bfloat16 instructions (AVX-512 BF16,
  AMX): TensorFlow still computes bfloat16 there, but emulated, slower than float32."""
  _, flags = cpu_model_and_flags()
  return bool(flags) and 'avx2' in flags and not flags & {'avx512_bf16', 'amx_bf16'}


def _in_xla_context() -> bool:
  return (not tf.executing_eagerly() and
          control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))


def _device_type(inputs: tf.Tensor) -> str:
  """The device type `inputs` lives on: its device if placed, else where TensorFlow
  places new ops by default (the first GPU when there is one)."""
  device = getattr(inputs, 'device', '') or ''
  if device:
    return tf.DeviceSpec.from_string(device).device_type or 'CPU'
  return 'GPU' if tf.config.list_logical_devices('GPU') else 'CPU'


def native_dilations(depthwise: bool, inputs: tf.Tensor, gradients: bool) -> bool:
  """Whether a dilated convolution of `inputs` runs as the native op here.

  Args:
    depthwise: a depthwise convolution (else a regular one).
    inputs: the convolution's input, whose device counts.
    gradients: gradients will be taken through it (training).
  """
  if _in_xla_context():
    return True
  if depthwise and gradients:
    return False  # Only XLA's gradient is right.
  target = current_kernel_target()
  if target == 'native':
    return True
  if target == 'auto':
    device_type = _device_type(inputs)
    if device_type == 'CPU' and onednn_cpu_kernels():
      # oneDNN computes float32 and bfloat16; float16 and float64 run the generic kernels.
      return inputs.dtype in (tf.float32, tf.bfloat16)
    if device_type == 'GPU':
      return not depthwise
  # Generic CPU kernels, and every kernel set for a portable graph.
  return not depthwise and not gradients


def pad_explicitly(inputs: tf.Tensor, padding: Padding):
  """(inputs, op padding): explicit padding is applied to the inputs as a pad op
  and the convolution runs 'VALID'; 'SAME' and 'VALID' pass through.

  As an op it has fast oneDNN gradient kernels (an explicitly padded convolution
  runs Eigen's, several times slower, in bfloat16 most of all), and it avoids a
  TensorFlow crash: the fused depthwise convolution + bias rejects the EXPLICIT
  padding attribute.
  """
  if not isinstance(padding, list):
    return inputs, padding
  if any(map(any, padding)):
    inputs = tf.pad(inputs, padding)
  return inputs, 'VALID'


def symmetric_padding(kernel_size: int, dilation_rate: int) -> List[List[int]]:
  """Explicit padding of a (dilated) kernel, split evenly between both sides (the
  bottom/right gets the extra pixel of an even total): 'SAME' at stride 1 for odd
  kernels, and the official `conv2d_same` at any stride."""
  total = (kernel_size - 1) * dilation_rate
  return [[0, 0], [total // 2, total - total // 2], [total // 2, total - total // 2], [0, 0]]


def _convolve(convolution, inputs: tf.Tensor, kernel: tf.Tensor, strides: int,
              padding: Padding, dilation_rate: int, native: bool) -> tf.Tensor:
  """`convolution(inputs, kernel, strides, padding, dilation_rate)`, run natively or
  through space-to-batch (dilated convolutions have stride 1)."""
  if dilation_rate == 1 or native:
    inputs, padding = pad_explicitly(inputs, padding)
    return convolution(inputs, kernel, strides, padding, dilation_rate)
  if padding == 'SAME':
    padding = symmetric_padding(int(kernel.shape[0]), dilation_rate)
  inputs, padding = pad_explicitly(inputs, padding)
  return tf.nn.with_space_to_batch(
      inputs, [dilation_rate, dilation_rate], padding,
      lambda phases, _, phase_padding: convolution(phases, kernel, 1, phase_padding, 1))


def _native_conv2d(inputs, kernel, strides, padding, dilation_rate):
  return tf.nn.conv2d(inputs, kernel, strides=strides, padding=padding,
                      dilations=dilation_rate)


def _native_depthwise_conv2d(inputs, kernel, strides, padding, dilation_rate):
  # The native op runs dilations directly; tf.nn.depthwise_conv2d would wrap a
  # dilated one in SpaceToBatchND / BatchToSpaceND copies on every kernel set.
  return tf.compat.v1.nn.depthwise_conv2d_native(
      inputs, kernel, strides=[1, strides, strides, 1], padding=padding,
      dilations=[1, dilation_rate, dilation_rate, 1])


def conv2d(inputs: tf.Tensor, kernel: tf.Tensor, strides: int, padding: Padding,
           dilation_rate: int, gradients: bool) -> tf.Tensor:
  """A (possibly atrous) convolution that runs on the traced device's kernels.

  Args:
    inputs: float [batch, height, width, channels].
    kernel: [k, k, channels, filters], in the dtype of `inputs`.
    strides: square stride (1 when dilated).
    padding: 'SAME', 'VALID' or explicit [[0, 0], [top, bottom], [left, right], [0, 0]].
    dilation_rate: atrous rate.
    gradients: gradients will be taken through it (training).

  Returns:
    [batch, height', width', filters].
  """
  native = native_dilations(False, inputs, gradients)
  return _convolve(_native_conv2d, inputs, kernel, strides, padding, dilation_rate, native)


def depthwise_conv2d(inputs: tf.Tensor, kernel: tf.Tensor, strides: int, padding: Padding,
                     dilation_rate: int, gradients: bool) -> tf.Tensor:
  """A (possibly atrous) depthwise convolution that runs on the traced device's kernels.

  Args:
    inputs: float [batch, height, width, channels].
    kernel: [k, k, channels, 1], in the dtype of `inputs`.
    strides, padding, dilation_rate, gradients: as for `conv2d`.

  Returns:
    [batch, height', width', channels].
  """
  native = native_dilations(True, inputs, gradients)
  if native and not gradients and strides == 1 and padding == 'SAME':
    same_padding = symmetric_padding(int(kernel.shape[0]), dilation_rate)
    # At inference only: oneDNN's filter gradient rejects such padded inputs.
    if same_padding[1][1] > _MAX_IMPLICIT_DEPTHWISE_PADDING:
      padding = same_padding
  return _convolve(_native_depthwise_conv2d, inputs, kernel, strides, padding,
                   dilation_rate, native)
