"""Every docstring example in the library runs and shows what it claims."""

import doctest
import importlib
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'deeplab'
MODULES = sorted(
    '.'.join(('deeplab',) + p.relative_to(PACKAGE).with_suffix('').parts).removesuffix(
        '.__init__') for p in PACKAGE.rglob('*.py'))


@pytest.mark.parametrize('name', MODULES)
def test_docstring_examples(name):
  module = importlib.import_module(name)
  result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  assert result.failed == 0, f'{result.failed} docstring example(s) failed in {name}'
