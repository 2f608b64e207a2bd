"""Flags every command-line tool shares: which experiment, and overrides of it.

A tool calls `define_experiment_flags()` at import time and
`experiment_from_flags()` in its main; the layering is the one of
`deeplab.config.load_experiment`. A tool given an official checkpoint and no
--experiment takes the model from the checkpoint (`config_from_checkpoint`).

Tools import the library modules that load TensorFlow only in their main (or the
functions it calls), so that --help and flag errors answer at once; a test
imports every tool and checks that TensorFlow stayed out.
"""

import dataclasses
import logging as std_logging
import sys
from typing import Any, Dict, Sequence

from absl import app, flags, logging

from deeplab.config import ExperimentConfig, TilingConfig, load_experiment, registered_experiments
from deeplab.hyperparams import ConfigError, override


# The end of every --checkpoint flag's help that `experiment_from_flags(checkpoint=...)` reads.
OFFICIAL_CHECKPOINT_HELP = ('an official checkpoint given without --experiment brings its '
                            'model (config_from_checkpoint).')


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


def define_inference_flags(section: str):
  """Defines --eval_scales, --flip, --output_stride and the tiling flags, overriding
  `experiment.<section>` (the tiling flags its `tiling` field).

  Args:
    section: the experiment field they override: 'evaluation' or 'export' (both
      configs name these settings alike).
  """
  flags.DEFINE_list(
      'eval_scales', None,
      'Input scales whose predictions are averaged, e.g. 0.5,0.75,1.0,1.25,1.5,1.75; '
      f'default: the experiment\'s {section}.eval_scales.')
  flags.DEFINE_boolean(
      'flip', None, 'Also average the left-right flipped inputs; default: the '
      f'experiment\'s {section}.add_flipped_images.')
  flags.DEFINE_integer(
      'output_stride', None, 'Output stride at inference (8, 16 or 32), same weights; '
      f'default: the experiment\'s {section}.output_stride, else the model\'s.')
  flags.DEFINE_integer(
      'max_whole_image_pixels', None, 'Images with more pixels (height x width) run in '
      'overlapping tiles, bounding memory by the tile; 0 never tiles; default: the '
      f'experiment\'s {section}.tiling.max_whole_image_pixels.')
  flags.DEFINE_integer(
      'tile_size', None, 'Tile height and width in pixels, rounded up to k * output_stride '
      f'+ 1; default: the experiment\'s {section}.tiling.tile_size.')
  flags.DEFINE_integer(
      'tile_overlap', None, 'Pixels adjacent tiles share, at least; default: the '
      f'experiment\'s {section}.tiling.tile_overlap.')


def numbers(values: Sequence[str], kind, flag: str) -> tuple:
  """A list flag's values as numbers of `kind`, or a ValueError naming the flag."""
  try:
    return tuple(kind(v) for v in values)
  except ValueError as e:
    raise ValueError(f'--{flag} must be a comma-separated list of {kind.__name__}s; '
                     f'got {",".join(values)!r}.') from e


def inference_overrides() -> Dict[str, Any]:
  """The fields of `define_inference_flags` that the user set, as config overrides."""
  values = flags.FLAGS
  overrides: Dict[str, Any] = {}
  if values.eval_scales is not None:
    overrides['eval_scales'] = numbers(values.eval_scales, float, 'eval_scales')
  if values.flip is not None:
    overrides['add_flipped_images'] = values.flip
  if values.output_stride is not None:
    overrides['output_stride'] = values.output_stride
  # The tiling flags are named as the TilingConfig fields they set.
  tiling = {field.name: values[field.name].value for field in dataclasses.fields(TilingConfig)
            if values[field.name].value is not None}
  if tiling:
    overrides['tiling'] = tiling
  return overrides


def experiment_from_flags(inference_section: str = '', checkpoint: str = '') -> ExperimentConfig:
  """The experiment config the flags describe; exits with the config error if invalid.

  Args:
    inference_section: with `define_inference_flags`, the experiment field
      ('evaluation' or 'export') their values override.
    checkpoint: the checkpoint the tool runs. Without --experiment, an official
      checkpoint supplies the model (`config_from_checkpoint`), which
      --config_file and --params_override still override.
  """
  values = flags.FLAGS
  model = None
  if checkpoint and not values['experiment'].present:
    # pylint: disable-next=import-outside-toplevel
    from deeplab.checkpoints import config_from_checkpoint, is_official_checkpoint
    if is_official_checkpoint(checkpoint):
      model = config_from_checkpoint(checkpoint)
      logging.info('The model of official checkpoint %s (no --experiment given): %s',
                   checkpoint, model)
  try:
    config = load_experiment(values.experiment, values.config_file, values.params_override,
                             model=model)
    if inference_section:
      config = override(config, {inference_section: inference_overrides()})
    return config
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
  # TensorFlow's Python INFO messages (tracing, SavedModel internals) drown the
  # tool's own progress lines; its warnings and errors still show.
  std_logging.getLogger('tensorflow').setLevel(std_logging.WARNING)

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
