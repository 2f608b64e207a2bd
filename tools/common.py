"""Flags every command-line tool shares: which experiment, and overrides of it.

A tool calls `define_experiment_flags()` at import time and
`experiment_from_flags()` in its main; the layering is the one of
`deeplab.config.load_experiment`.
"""

import sys

from absl import app, flags, logging

from deeplab.config import ExperimentConfig, load_experiment, registered_experiments
from deeplab.hyperparams import ConfigError


def define_experiment_flags(default_experiment: str = 'synthetic'):
  """Defines --experiment, --config_file and --params_override."""
  flags.DEFINE_string(
      'experiment', default_experiment,
      'Registered experiment name (' + ', '.join(registered_experiments()) +
      ') or the path of an experiment YAML file.')
  flags.DEFINE_multi_string(
      'config_file', [],
      'YAML file(s) overriding the experiment, applied in order; repeatable.')
  flags.DEFINE_string(
      'params_override', '',
      'Comma-separated dotted overrides applied last, e.g. '
      '"trainer.train_steps=100,model.output_stride=8,train_data.crop_size=[321, 321]".')


def experiment_from_flags() -> ExperimentConfig:
  """The experiment config the flags describe; exits with the config error if invalid."""
  values = flags.FLAGS
  try:
    return load_experiment(values.experiment, values.config_file, values.params_override)
  except ConfigError as e:
    raise app.UsageError(str(e)) from e


def run_tool(main):
  """Runs an absl main, turning library ValueErrors into a one-line error and exit 1.

  Under a console script `__main__` is a generated wrapper, while absl's --help
  describes the module and flags of `sys.argv[0]`; point both at the tool.
  """
  tool = sys.modules[main.__module__]
  for flag in flags.FLAGS.get_flags_for_module(tool.__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  for flag in flags.FLAGS.get_flags_for_module(__name__):
    flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
  main_module = sys.modules['__main__']
  if not main_module.__doc__:
    main_module.__doc__ = tool.__doc__

  def guarded(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected positional arguments: {" ".join(argv[1:])}.')
    try:
      return main(argv)
    except (ConfigError, ValueError, FileNotFoundError) as e:
      logging.error('%s', e)
      print(f'error: {e}', file=sys.stderr)
      return 1

  app.run(guarded)
