"""Prints (or writes into the README) the parameter and multiply-add table.

  deeplab-cost                                  # every backbone at OS 8, 16 and 32
  deeplab-cost --backbones=xception_65 --output_strides=16 --format=json
  deeplab-cost --update_readme=README.md        # regenerate the README's cost table
"""

import json

from absl import flags

from deeplab.config import SUPPORTED_BACKBONES, SUPPORTED_OUTPUT_STRIDES
from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

_BACKBONES = flags.DEFINE_list('backbones', list(SUPPORTED_BACKBONES),
                               'Backbones to cost.')
_OUTPUT_STRIDES = flags.DEFINE_list('output_strides',
                                    [str(s) for s in SUPPORTED_OUTPUT_STRIDES],
                                    'Output strides to cost each backbone at.')
_SIZE = flags.DEFINE_list('size', ['513', '513'], 'Input height,width.')
_NUM_CLASSES = flags.DEFINE_integer('num_classes', 21, 'Classes of the logits layer.')
_FORMAT = flags.DEFINE_enum('format', 'markdown', ['markdown', 'json'], 'Output format.')
_UPDATE_README = flags.DEFINE_string(
    'update_readme', None,
    'Write the Markdown table between the "cost-table" markers of this file.')

COLUMNS = {'backbone': 'backbone', 'output_stride': 'output stride',
           'trainable_params': 'trainable parameters', 'gmacs': 'multiply-adds (billions)'}


def main(argv):
  del argv
  height, width = (int(v) for v in _SIZE.value)
  from deeplab.costs import cost_rows, markdown_table, replace_marked_section
  rows = cost_rows(_BACKBONES.value, [int(s) for s in _OUTPUT_STRIDES.value], height, width,
                   _NUM_CLASSES.value)
  if _FORMAT.value == 'json':
    for row in rows:
      print(json.dumps(row))
    return 0
  table = markdown_table(rows, COLUMNS)
  if _UPDATE_README.value:
    replace_marked_section(_UPDATE_README.value, 'cost-table', table)
  print(table, end='')
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
