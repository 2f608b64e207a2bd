"""Timing of repeated calls: the median and spread of several runs after warm-up.

Example:
  >>> timing = time_calls(lambda: sum(range(1000)), runs=5, warmup=1)
  >>> timing.runs, timing.minimum <= timing.median <= timing.maximum
  (5, True)
"""

import dataclasses
import time
from typing import Any, Callable, Dict, Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class Timing:
  """Seconds per call over `runs` timed calls: median, min/max and quartiles."""
  median: float
  minimum: float
  maximum: float
  q1: float
  q3: float
  runs: int

  @classmethod
  def from_seconds(cls, seconds: Sequence[float]) -> 'Timing':
    values = np.asarray(seconds, np.float64)
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return cls(float(median), float(values.min()), float(values.max()), float(q1),
               float(q3), len(values))

  def as_dict(self) -> Dict[str, Any]:
    """Seconds rounded to microseconds, for JSON."""
    return {key: round(value, 6) if isinstance(value, float) else value
            for key, value in dataclasses.asdict(self).items()}


def time_calls(function: Callable[[], Any], runs: int = 5, warmup: int = 2) -> Timing:
  """Times `function()` `runs` times after `warmup` untimed calls.

  `function` must block until its work is done (return NumPy values, not pending
  tensors), so each wall-clock interval covers exactly one call.

  Args:
    function: the call to time.
    runs: timed calls (at least 1).
    warmup: untimed calls first (tracing, kernel selection, caches).

  Returns:
    A `Timing` in seconds per call.
  """
  return time_interleaved({'call': function}, runs, warmup)['call']


def time_interleaved(functions: Dict[str, Callable[[], Any]], runs: int = 5,
                     warmup: int = 2) -> Dict[str, Timing]:
  """Times several functions in turns (A B A B ...), so they share the machine's load.

  Comparisons between variants measured this way stay fair on a busy machine,
  where back-to-back blocks of runs would not.

  Example:
    >>> timings = time_interleaved({'a': lambda: None, 'b': lambda: None}, runs=3)
    >>> sorted(timings), timings['a'].runs
    (['a', 'b'], 3)
  """
  if runs < 1:
    raise ValueError(f'runs must be at least 1; got {runs}.')
  if warmup < 0:
    raise ValueError(f'warmup must be at least 0; got {warmup}.')
  for function in functions.values():
    for _ in range(warmup):
      function()
  seconds: Dict[str, list] = {name: [] for name in functions}
  for _ in range(runs):
    for name, function in functions.items():
      start = time.perf_counter()
      function()
      seconds[name].append(time.perf_counter() - start)
  return {name: Timing.from_seconds(values) for name, values in seconds.items()}
