"""The tests' short MobileNetV2, in this process or in a command-line tool's.

MobileNetV2 cut to eight of its 17 units: the first six as they are (through the
decoder's end points at strides 4 and 8), then two strided units to output stride 32.
Every kind of unit (with and without expansion and residual), the atrous schedule at
every output stride and the variable names of the full backbone are there, in half the
layers: building, tracing and preparing a model's functions cost in proportion to its
layers, not its width, and they dominate the tests that train, evaluate, export and
serve tiny models. Fidelity tests (official checkpoints, parameter counts, kernels of
every backbone) and the documented runs (demo, fine-tune guide) build the full one.

A command-line tool with it, for a test that hands the tool a checkpoint of a short
model (`tool_command`):
  python tests/short_mobilenet_v2.py -m deeplab.tools.export --flag=...
"""

import os
import runpy
import sys
from typing import List

UNITS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 96, 2),
         (6, 320, 2))


def use_short_mobilenet_v2():
  """Builds every later MobileNetV2 of this process with `UNITS`.

  Official-layout checkpoints are recognized by their last unit, which the library
  reads from the full table when it loads: they need the full backbone.
  """
  from deeplab.backbones import mobilenet_v2  # pylint: disable=import-outside-toplevel
  mobilenet_v2.MOBILENET_V2_UNITS = UNITS


def tool_command(module: str) -> List[str]:
  """The command line of `python -m <module>` building the short MobileNetV2."""
  return [sys.executable, os.path.abspath(__file__), '-m', module]


if __name__ == '__main__':
  if sys.argv[1:2] != ['-m'] or len(sys.argv) < 3:
    sys.exit('usage: python short_mobilenet_v2.py -m MODULE [ARGS...]')
  module = sys.argv[2]
  sys.argv = [module] + sys.argv[3:]
  use_short_mobilenet_v2()
  runpy.run_module(module, run_name='__main__', alter_sys=True)
