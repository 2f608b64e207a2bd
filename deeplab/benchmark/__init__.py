"""Speed of DeepLab on this machine: the model's inference and training, the input
pipeline and exported models, each against the machine's own ceiling.

- `run_benchmarks(config, measurements)`: what `deeplab-benchmark` calls; yields one
  JSON-ready result per measurement, each stating the machine and configuration.
- `BenchmarkConfig`: backbone, output stride, size, batch, precision, XLA, runs.
- `describe_machine`, `set_threads`, `measure_ceiling`: the machine and its limits.
- `measure_speed_table`: the README's speed table (every backbone).
- `measure_runtimes`: the exported model in TensorFlow, ONNX Runtime and OpenVINO,
  side by side (the `onnx` extra).

Example:
  >>> config = BenchmarkConfig(backbone='mobilenet_v2', size=(65, 65), runs=1, warmup=0)
  >>> [r['measurement'] for r in run_benchmarks(config, ['cost'])]
  ['cost']
"""

from deeplab.benchmark.agreement import (calibrate_random_batch_norm,
                                         fit_logits_to_color_regions, measure_agreement)
from deeplab.benchmark.inference import (EVAL_SCALES, BenchmarkConfig, build_benchmark_model,
                                         forward_function, measure_cost, measure_latency,
                                         measure_multiscale, measure_saved_model, nominal_cost)
from deeplab.benchmark.machine import (CEILING_OPS, COMPUTE_DTYPES, describe_machine,
                                       measure_ceiling, set_threads)
from deeplab.benchmark.runtimes import RUNTIMES, measure_runtimes
from deeplab.benchmark.runner import (DEFAULT_MEASUREMENTS, MEASUREMENTS, append_results,
                                      run_benchmarks)
from deeplab.benchmark.table import (MARKER, conv_ceilings, measure_speed_table, speed_rows,
                                     speed_table, write_speed_table)
from deeplab.benchmark.timing import Timing, time_calls, time_interleaved
from deeplab.benchmark.training import (measure_input_pipeline, measure_train_step,
                                        write_voc_like_records)

__all__ = [
    'BenchmarkConfig',
    'CEILING_OPS',
    'COMPUTE_DTYPES',
    'DEFAULT_MEASUREMENTS',
    'EVAL_SCALES',
    'MARKER',
    'MEASUREMENTS',
    'RUNTIMES',
    'Timing',
    'append_results',
    'build_benchmark_model',
    'calibrate_random_batch_norm',
    'conv_ceilings',
    'describe_machine',
    'fit_logits_to_color_regions',
    'forward_function',
    'measure_agreement',
    'measure_ceiling',
    'measure_cost',
    'measure_input_pipeline',
    'measure_latency',
    'measure_multiscale',
    'measure_runtimes',
    'measure_saved_model',
    'measure_speed_table',
    'measure_train_step',
    'nominal_cost',
    'run_benchmarks',
    'set_threads',
    'speed_rows',
    'speed_table',
    'time_calls',
    'time_interleaved',
    'write_speed_table',
    'write_voc_like_records',
]
