"""Tables of model size and compute, for the README and the benchmark tool.

Example:
  >>> rows = cost_rows(['mobilenet_v2'], [16], 513, 513, atrous_rates=())
  >>> rows[0]['trainable_params'], rows[0]['gmacs']
  (2271109, 5.409)
"""

import re
from typing import Dict, List, Sequence

from deeplab.config import ModelConfig
from deeplab.files import atomic_write
from deeplab.model import model_cost


def cost_rows(backbones: Sequence[str],
              output_strides: Sequence[int],
              height: int = 513,
              width: int = 513,
              num_classes: int = 21,
              **config_overrides) -> List[Dict]:
  """Parameters and multiply-adds of the default DeepLabV3+ of each backbone and stride.

  Args:
    backbones: backbone names.
    output_strides: output strides to cost each backbone at.
    height, width: input size.
    num_classes: classes of the logits layer.
    **config_overrides: other `ModelConfig` fields shared by every row.

  Returns:
    One dict per row: backbone, output_stride, height, width, trainable_params,
    multiply_adds and gmacs (billions of multiply-adds, 3 decimals).
  """
  rows = []
  for backbone in backbones:
    for output_stride in output_strides:
      config = ModelConfig(backbone=backbone, output_stride=output_stride,
                           num_classes=num_classes, **config_overrides)
      cost = model_cost(config, height, width)
      rows.append({'backbone': backbone, 'output_stride': output_stride,
                   'height': height, 'width': width,
                   'trainable_params': cost.trainable_params,
                   'multiply_adds': cost.multiply_adds,
                   'gmacs': round(cost.multiply_adds / 1e9, 3)})
  return rows


def markdown_table(rows: Sequence[Dict], columns: Dict[str, str]) -> str:
  """A Markdown table of `rows` with `columns` ({key: heading}).

  Large integers get thousands separators and floats three decimals.
  """

  def cell(value):
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
      return f'{value:,}'
    if isinstance(value, float):
      return f'{value:.3f}'
    return str(value)

  lines = ['| ' + ' | '.join(columns.values()) + ' |',
           '|' + '|'.join('---' for _ in columns) + '|']
  lines += ['| ' + ' | '.join(cell(row.get(key, '')) for key in columns) + ' |'
            for row in rows]
  return '\n'.join(lines) + '\n'


def replace_marked_section(path: str, name: str, text: str) -> None:
  """Replaces the text between `<!-- name:start -->` and `<!-- name:end -->` in a file.

  The file is rewritten atomically; a missing marker pair raises a ValueError that
  names the file and the markers to add.
  """
  with open(path, encoding='utf-8') as f:
    content = f.read()
  start, end = f'<!-- {name}:start -->', f'<!-- {name}:end -->'
  pattern = re.compile(re.escape(start) + '.*?' + re.escape(end), re.DOTALL)
  if not pattern.search(content):
    raise ValueError(f'{path} has no "{start}" ... "{end}" markers to replace.')
  atomic_write(path, pattern.sub(lambda _: f'{start}\n{text}{end}', content))
