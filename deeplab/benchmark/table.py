"""The README's speed table: latency, throughput and efficiency of every backbone.

It lives between `<!-- speed-table:start -->` and `<!-- speed-table:end -->`
markers (next to the cost table's `cost-table` markers) and states the machine it
was measured on.

Example:
  >>> rows = speed_rows(['mobilenet_v2'], BenchmarkConfig(size=(65, 65)))  # doctest: +SKIP
  >>> row = {'backbone': 'mobilenet_v2', 'output_stride': 16, 'size': [513, 513],
  ...        'precision': 'float32', 'xla': False, 'batch_size': 4, 'gmacs': 5.9,
  ...        'latency_ms': 77, 'images_per_second': 13.2, 'gmac_per_second': 77,
  ...        'fraction_of_ceiling': 0.55}
  >>> machine = {'cpu': 'Some CPU', 'cores': 2, 'cpu_features': ['avx512f'],
  ...            'tensorflow': '2.21.0', 'onednn': True}
  >>> print(speed_table([row], machine).splitlines()[-1])
  | mobilenet_v2 | 16 | float32 | 5.900 | 77 | 13.200 | 77 | 0.550 |
"""

import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging

from deeplab.benchmark.inference import (BenchmarkConfig, build_benchmark_model,
                                         measure_cost, measure_latency)
from deeplab.benchmark.machine import COMPUTE_DTYPES, describe_machine, measure_ceiling
from deeplab.costs import markdown_table, replace_marked_section

MARKER = 'speed-table'
COLUMNS = {
    'backbone': 'backbone', 'output_stride': 'output stride', 'precision': 'precision',
    'gmacs': 'multiply-adds (billions)', 'latency_ms': 'latency, batch 1 (ms)',
    'images_per_second': 'images/s, batch N', 'gmac_per_second': 'GMAC/s, batch 1',
    'fraction_of_ceiling': 'fraction of conv ceiling, batch 1',
}


def conv_ceilings(precisions: Sequence[str], runs: int = 5,
                  warmup: int = 2) -> Dict[str, float]:
  """The 3x3 convolution ceiling (GFLOP/s) of each precision's compute dtype."""
  dtypes = sorted({COMPUTE_DTYPES[p] for p in precisions})
  return {dtype: measure_ceiling('conv3x3', dtype, runs, warmup)['gflop_per_second']
          for dtype in dtypes}


def speed_rows(backbones: Sequence[str], config: BenchmarkConfig,
               precisions: Sequence[str] = ('float32',),
               ceilings: Optional[Dict[str, float]] = None) -> List[Dict[str, Any]]:
  """Latency (batch 1) and throughput (batch `config.batch_size`) of each backbone
  at `config`'s output stride, size and XLA setting, in each precision.

  Args:
    backbones: backbone names.
    config: the shared settings (its `backbone` and `precision` are replaced).
    precisions: precision policies to measure each backbone in.
    ceilings: convolution GFLOP/s per compute dtype; missing ones are measured.

  Returns:
    One dict per backbone and precision, with the keys of `COLUMNS` and
    'batch_size', 'size', 'xla', 'latency_s'.
  """
  missing = [p for p in precisions if COMPUTE_DTYPES[p] not in (ceilings or {})]
  ceilings = {**conv_ceilings(missing, config.runs, config.warmup), **(ceilings or {})}
  rows = []
  for precision in precisions:
    dtype = COMPUTE_DTYPES[precision]
    for backbone in backbones:
      row_config = dataclasses.replace(config, backbone=backbone, precision=precision)
      model = build_benchmark_model(row_config)
      latency = measure_latency(row_config, ceilings[dtype], 1, model)
      throughput = measure_latency(row_config, ceilings[dtype], row_config.batch_size, model)
      logging.info('%s %s: %.3f s at batch 1.', backbone, precision,
                   latency['seconds']['median'])
      rows.append({
          'backbone': backbone, 'output_stride': config.output_stride,
          'size': list(config.size), 'precision': precision, 'xla': config.xla,
          'batch_size': config.batch_size, 'gmacs': measure_cost(row_config)['gmacs'],
          'latency_s': latency['seconds']['median'],
          'latency_ms': int(round(1000 * latency['seconds']['median'])),
          'images_per_second': round(throughput['images_per_second'], 2),
          'gmac_per_second': int(round(latency['gmac_per_second'])),
          'fraction_of_ceiling': latency['fraction_of_ceiling'],
      })
  return rows


def speed_table(rows: Sequence[Dict[str, Any]], machine: Optional[Dict[str, Any]] = None,
                ceilings: Optional[Dict[str, float]] = None) -> str:
  """The Markdown of the README section: what was measured where, then the table."""
  machine = machine or describe_machine()
  first = rows[0] if rows else {}
  lines = [
      f'Measured on {machine["cpu"]} ({machine["cores"]} cores, '
      f'{", ".join(machine["cpu_features"]) or "no AVX"}), TensorFlow '
      f'{machine["tensorflow"]}, oneDNN {"on" if machine["onednn"] else "off"}, '
      f'XLA {"on" if first.get("xla") else "off"}; input '
      f'{"x".join(str(s) for s in first.get("size", []))}, batch N = '
      f'{first.get("batch_size")}; medians of several runs after warm-up.',
  ]
  if ceilings:
    lines.append('The machine\'s 3x3 convolution ceiling (256 -> 256 channels at 129x129): ' +
                 ', '.join(f'{gflops:.0f} GFLOP/s in {dtype}'
                           for dtype, gflops in sorted(ceilings.items())) +
                 '; fraction = 2 x multiply-adds / time / ceiling.')
  return '\n'.join(lines) + '\n\n' + markdown_table(rows, COLUMNS)


def write_speed_table(path: str, rows: Sequence[Dict[str, Any]],
                      ceilings: Optional[Dict[str, float]] = None) -> str:
  """Replaces the `speed-table` section of the Markdown file at `path`; returns it."""
  text = speed_table(rows, ceilings=ceilings)
  replace_marked_section(path, MARKER, text)
  return text


def measure_speed_table(backbones: Sequence[str], config: BenchmarkConfig,
                        precisions: Sequence[str] = ('float32',),
                        readme: Optional[str] = None) -> Tuple[List[Dict[str, Any]], str]:
  """Measures the ceilings and `speed_rows`, renders the table, and writes it into
  the `speed-table` section of `readme` when given.

  The ceilings are measured before and after the rows and the higher value kept:
  another process busy for a moment lowers a measurement, never the machine's
  limit, and the fractions of every row use the same ceiling.

  Returns:
    (rows, Markdown text).
  """
  before = conv_ceilings(precisions, config.runs, config.warmup)
  rows = speed_rows(backbones, config, precisions, before)
  after = conv_ceilings(precisions, config.runs, config.warmup)
  ceilings = {dtype: max(before[dtype], after[dtype]) for dtype in before}
  for row in rows:
    ceiling = ceilings[COMPUTE_DTYPES[row['precision']]]
    row['fraction_of_ceiling'] = round(2 * row['gmacs'] / row['latency_s'] / ceiling, 3)
  if readme:
    return rows, write_speed_table(readme, rows, ceilings)
  return rows, speed_table(rows, ceilings=ceilings)
