"""The README tells the truth about what the code does."""

import pathlib
import re

import pytest

from deeplab.costs import cost_rows

README = pathlib.Path(__file__).resolve().parent.parent / 'README.md'


def _cost_table():
  text = README.read_text()
  section = re.search(r'<!-- cost-table:start -->(.*?)<!-- cost-table:end -->', text, re.S)
  assert section, 'README.md lost its cost-table markers'
  rows = {}
  for line in section.group(1).strip().splitlines()[2:]:
    backbone, stride, params, gmacs = (c.strip() for c in line.strip('|').split('|'))
    rows[(backbone, int(stride))] = (int(params.replace(',', '')), float(gmacs))
  return rows


def test_cost_table_lists_every_backbone_and_output_stride():
  from deeplab.config import SUPPORTED_BACKBONES, SUPPORTED_OUTPUT_STRIDES
  assert set(_cost_table()) == {(b, s) for b in SUPPORTED_BACKBONES
                                for s in SUPPORTED_OUTPUT_STRIDES}


@pytest.mark.parametrize('backbone, output_stride', [('mobilenet_v2', 16),
                                                     ('resnet_v1_50_beta', 8)])
def test_cost_table_rows_equal_what_the_tool_computes(backbone, output_stride):
  row, = cost_rows([backbone], [output_stride])
  assert _cost_table()[(backbone, output_stride)] == (row['trainable_params'], row['gmacs']), (
      'README.md cost table is stale: run deeplab-cost --update_readme=README.md')


def test_cli_reference_is_every_tool_help():
  from deeplab.tools.cli_reference import SECTION, cli_reference  # pylint: disable=import-outside-toplevel
  text = README.read_text()
  section = re.search(f'<!-- {SECTION}:start -->\n(.*?)<!-- {SECTION}:end -->', text, re.S)
  assert section, f'README.md lost its {SECTION} markers'
  assert section.group(1) == cli_reference(), (
      'README.md command-line reference is stale: run '
      'python -m deeplab.tools.cli_reference --update_readme=README.md')
