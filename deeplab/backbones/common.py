"""What the backbone families share: the dense (atrous) stride schedule."""

from typing import List, Sequence, Tuple


def atrous_schedule(unit_strides: Sequence[int], output_stride: int,
                    current_stride: int = 1) -> List[Tuple[int, int]]:
  """(stride, atrous rate) of each unit so that features stop at `output_stride`.

  Units run with their own stride until the running stride reaches
  `output_stride`; from then on they run at stride 1, and every stride they skip
  multiplies the atrous rate of the units after it. This is the official
  `stack_blocks_dense` rule, shared by Xception, ResNet and MobileNetV2, so the
  same weights serve every output stride.

  Args:
    unit_strides: the nominal stride of each unit, in order.
    output_stride: the wanted stride of the last unit's output.
    current_stride: the stride of the input to the first unit.

  Returns:
    A (stride, rate) pair per unit.

  Raises:
    ValueError: if the units cannot reach `output_stride` exactly.

  Example:
    >>> atrous_schedule([2, 2, 2, 1], output_stride=4)
    [(2, 1), (2, 1), (1, 1), (1, 2)]
  """
  schedule = []
  rate = 1
  for stride in unit_strides:
    if current_stride == output_stride:
      schedule.append((1, rate))
      rate *= stride
    else:
      schedule.append((stride, 1))
      current_stride *= stride
    if current_stride > output_stride:
      break
  if current_stride != output_stride:
    raise ValueError(f'output_stride {output_stride} cannot be reached by units with '
                     f'strides {list(unit_strides)}.')
  return schedule
