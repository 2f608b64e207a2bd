"""Writes the README's command-line reference: every deeplab-* tool's --help.

  python -m deeplab.tools.cli_reference                         # print it
  python -m deeplab.tools.cli_reference --update_readme=README.md
"""

import concurrent.futures
import importlib.metadata
import os
import re
import subprocess
import sys
from typing import Dict

from absl import flags

from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

_UPDATE_README = flags.DEFINE_string(
    'update_readme', None,
    'Write the reference between the "cli-reference" markers of this file.')

SECTION = 'cli-reference'


def tools() -> Dict[str, str]:
  """The installed deeplab-* console scripts: {command: 'module:function'}."""
  return {entry.name: entry.value
          for entry in importlib.metadata.entry_points(group='console_scripts')
          if entry.name.startswith('deeplab-')}


def tool_help(command: str) -> str:
  """`command --help`, with the machine-specific script path replaced by its name."""
  path = os.path.join(os.path.dirname(sys.executable), command)
  result = subprocess.run([path, '--help'], capture_output=True, text=True, check=False,
                          timeout=300)
  # absl exits with status 1 after printing the help; what matters is the text.
  if f'{command}:' not in result.stdout:
    raise RuntimeError(f'{command} --help printed no flags: {result.stderr[-2000:]}')
  text = re.sub(r'^\S*' + re.escape(command) + r':$', f'{command}:', result.stdout,
                flags=re.MULTILINE)
  text = text.replace('Try --helpfull to get a list of all flags.', '')
  return text.strip() + '\n'


def cli_reference() -> str:
  """Markdown: one subsection per tool with its --help in a code block."""
  commands = sorted(tools())
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
    helps = list(pool.map(tool_help, commands))
  sections = [f'### {command}\n\n```\n{text}```\n' for command, text in zip(commands, helps)]
  return '\n'.join(sections)


def main(argv):
  del argv
  text = cli_reference()
  if _UPDATE_README.value:
    from deeplab.costs import replace_marked_section
    replace_marked_section(_UPDATE_README.value, SECTION, text)
  else:
    print(text, end='')
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
