"""Runs a set of measurements for one configuration, each result stating the
machine and the configuration it was measured with.

Example:
  >>> config = BenchmarkConfig(backbone='mobilenet_v2', size=(65, 65), runs=1, warmup=0)
  >>> [r['measurement'] for r in run_benchmarks(config, ['cost'])]
  ['cost']
"""

import json
import os
from typing import Any, Dict, Iterator, Optional, Sequence

from absl import logging

from deeplab.benchmark import agreement, inference, runtimes, training
from deeplab.benchmark.inference import BenchmarkConfig
from deeplab.benchmark.machine import (CEILING_OPS, COMPUTE_DTYPES, describe_machine,
                                       measure_ceiling)
from deeplab.config import DEFAULT_MEASUREMENTS, MEASUREMENTS
from deeplab.files import atomic_write

# Measured by 'ceiling': every op in float32 and bfloat16 (float16 too when asked).
CEILING_DTYPES = ('float32', 'bfloat16')
_NEEDS_CEILING = ('latency', 'throughput', 'train_step')


def run_benchmarks(config: BenchmarkConfig,
                   measurements: Sequence[str] = DEFAULT_MEASUREMENTS,
                   image_paths: Sequence[str] = (),
                   output: Optional[str] = None) -> Iterator[Dict[str, Any]]:
  """Yields one result per measurement (the ceiling: one per op and dtype), named
  as in `MEASUREMENTS`.

  Every result holds 'measurement', 'machine' (`describe_machine()`), 'config'
  (`config.as_dict()`) and its own figures; speeds of the model come with the
  fraction of the machine's convolution ceiling in the model's compute dtype.

  Args:
    config: the model and timing settings.
    measurements: names from `MEASUREMENTS`, run in that order.
    image_paths: images (paths or globs) of the 'agreement' measurement; none
      uses synthetic scenes.
    output: a JSON results file each result is added to as it is measured
      (`append_results`).

  Raises:
    ValueError: an unknown measurement name.
  """
  unknown = sorted(set(measurements) - set(MEASUREMENTS))
  if unknown:
    raise ValueError(f'Unknown measurement(s) {", ".join(unknown)}; choose from '
                     f'{", ".join(MEASUREMENTS)}.')
  machine = describe_machine()
  compute_dtype = COMPUTE_DTYPES[config.precision]
  ceiling_gflops: Optional[float] = None

  def result(values: Dict[str, Any]) -> Dict[str, Any]:
    logging.info('Measured %s.', values['measurement'])
    values = {'measurement': values.pop('measurement'), 'machine': machine,
              'config': config.as_dict(), **values}
    if output:
      append_results(output, [values])
    return values

  if 'ceiling' in measurements:
    dtypes = sorted(set(CEILING_DTYPES) | {compute_dtype}, key=str)
    for op in CEILING_OPS:
      for dtype in dtypes:
        ceiling = measure_ceiling(op, dtype, config.runs, config.warmup)
        if op == 'conv3x3' and dtype == compute_dtype:
          ceiling_gflops = ceiling['gflop_per_second']
        yield result({'measurement': 'ceiling', **ceiling})
  elif any(m in measurements for m in _NEEDS_CEILING):
    ceiling_gflops = measure_ceiling('conv3x3', compute_dtype, config.runs,
                                     config.warmup)['gflop_per_second']
  if 'cost' in measurements:
    yield result(inference.measure_cost(config))
  model = None
  if any(m in measurements
         for m in ('latency', 'throughput', 'saved_model', 'runtimes', 'multiscale')):
    model = inference.build_benchmark_model(config)
  if 'latency' in measurements:
    yield result(inference.measure_latency(config, ceiling_gflops, 1, model))
  if 'throughput' in measurements:
    yield result(inference.measure_latency(config, ceiling_gflops, config.batch_size, model))
  if 'train_step' in measurements:
    yield result(training.measure_train_step(config, ceiling_gflops))
  if 'input_pipeline' in measurements:
    yield result(training.measure_input_pipeline(config))
  if 'saved_model' in measurements:
    yield result(inference.measure_saved_model(config, model))
  if 'runtimes' in measurements:
    yield result(runtimes.measure_runtimes(config, model))
  if 'multiscale' in measurements:
    yield result(inference.measure_multiscale(config, model=model))
  if 'agreement' in measurements:
    yield result(agreement.measure_agreement(config, image_paths))


def append_results(path: str, results: Sequence[Dict[str, Any]]) -> None:
  """Adds `results` to the JSON results file at `path` (created if absent).

  The file is {'results': [...]}, one entry per measurement, each stating its
  machine and configuration, so runs of several configurations (and machines)
  collect in one file; it is rewritten atomically.
  """
  document = {'results': []}
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      try:
        document = json.load(f)
      except json.JSONDecodeError as e:
        raise ValueError(f'{path} is not a JSON results file ({e}); remove it or choose '
                         f'another --output.') from e
    if not isinstance(document, dict) or not isinstance(document.get('results'), list):
      raise ValueError(f'{path} is not a results file: expected {{"results": [...]}}.')
  document['results'].extend(results)
  atomic_write(path, json.dumps(document, indent=1) + '\n')
