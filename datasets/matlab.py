"""A small reader of MATLAB v5 MAT files: enough for SBD's `cls/*.mat` labels.

MAT v5 is a 128-byte header followed by tagged data elements; variables are
`miMATRIX` elements, usually zlib-compressed (`miCOMPRESSED`). Numeric arrays,
structs and cells are read; other classes (sparse, char, objects) come back as None.
SBD stores each label as a struct `GTcls` whose field `Segmentation` is the uint8
[H, W] class map (0..20, no boundary).

Example:
  >>> with open('benchmark_RELEASE/dataset/cls/2008_000002.mat', 'rb') as f:
  ...   labels = sbd_segmentation(f.read())
  >>> labels.dtype, labels.ndim
  (dtype('uint8'), 2)
"""

import struct
import zlib
from typing import Any, Dict, Tuple

import numpy as np

_HEADER_SIZE = 128
_MI_MATRIX, _MI_COMPRESSED = 14, 15
_MI_DTYPES = {1: 'i1', 2: 'u1', 3: 'i2', 4: 'u2', 5: 'i4', 6: 'u4', 7: 'f4', 9: 'f8',
              12: 'i8', 13: 'u8'}
_CLASS_CELL, _CLASS_STRUCT = 1, 2
# mxClass -> dtype of the numeric array classes (mxDOUBLE_CLASS .. mxUINT64_CLASS).
_CLASS_DTYPES = {6: 'f8', 7: 'f4', 8: 'i1', 9: 'u1', 10: 'i2', 11: 'u2', 12: 'i4', 13: 'u4',
                 14: 'i8', 15: 'u8'}


class MatFileError(ValueError):
  """The bytes are not a MAT v5 file this reader understands."""


class _Reader:
  """Walks the data elements of a byte string in the file's byte order."""

  def __init__(self, data: bytes, order: str):
    self.data, self.order = data, order

  def element(self, offset: int) -> Tuple[int, bytes, int]:
    """(type, payload, offset of the next element) of the element at `offset`."""
    if offset + 8 > len(self.data):
      raise MatFileError('truncated MAT file (element tag runs past the end)')
    kind, size = struct.unpack(self.order + 'II', self.data[offset:offset + 8])
    if kind >> 16:  # Small data element: size and up to 4 bytes inside the tag.
      return kind & 0xFFFF, self.data[offset + 4:offset + 4 + (kind >> 16)], offset + 8
    end = offset + 8 + size
    if end > len(self.data):
      raise MatFileError('truncated MAT file (element data runs past the end)')
    padded = end if kind == _MI_COMPRESSED else offset + 8 + (size + 7) // 8 * 8
    return kind, self.data[offset + 8:end], padded

  def numbers(self, offset: int) -> Tuple[np.ndarray, int]:
    kind, payload, end = self.element(offset)
    if kind not in _MI_DTYPES:
      raise MatFileError(f'unexpected data type {kind} in a numeric element')
    return np.frombuffer(payload, np.dtype(_MI_DTYPES[kind]).newbyteorder(self.order)), end


def _matrix(payload: bytes, order: str) -> Tuple[str, Any]:
  """(name, value) of the contents of an miMATRIX element."""
  if not payload:
    return '', None
  reader = _Reader(payload, order)
  flags, offset = reader.numbers(0)
  array_class = int(flags[0]) & 0xFF
  dims, offset = reader.numbers(offset)
  _, name, offset = reader.element(offset)
  shape = tuple(int(d) for d in dims)
  count = int(np.prod(shape))
  if array_class in _CLASS_DTYPES:
    values, _ = reader.numbers(offset)
    values = values.astype(np.dtype(_CLASS_DTYPES[array_class]).newbyteorder('='))
    return name.decode('latin-1'), values.reshape(shape, order='F')
  if array_class == _CLASS_STRUCT:
    name_length, offset = reader.numbers(offset)
    _, names, offset = reader.element(offset)
    width = int(name_length[0])
    fields = [names[i:i + width].split(b'\0')[0].decode('latin-1')
              for i in range(0, len(names), width)]
    elements = []
    for _ in range(count):
      element = {}
      for field in fields:
        kind, field_payload, offset = reader.element(offset)
        element[field] = _matrix(field_payload, order)[1] if kind == _MI_MATRIX else None
      elements.append(element)
    return name.decode('latin-1'), elements[0] if count == 1 else elements
  if array_class == _CLASS_CELL:
    cells = []
    for _ in range(count):
      kind, cell_payload, offset = reader.element(offset)
      cells.append(_matrix(cell_payload, order)[1] if kind == _MI_MATRIX else None)
    return name.decode('latin-1'), cells
  return name.decode('latin-1'), None


def read_mat(data: bytes) -> Dict[str, Any]:
  """The variables of a MAT v5 file: arrays as numpy (MATLAB's shape), structs as dicts.

  Raises:
    MatFileError: not a MAT v5 file (e.g. a v7.3 HDF5 file) or truncated.
  """
  if len(data) < _HEADER_SIZE:
    raise MatFileError('truncated MAT file (shorter than its 128-byte header)')
  if data[:19] == b'MATLAB 7.3 MAT-file':
    raise MatFileError('MAT v7.3 (HDF5) files are not supported; save with -v7 or -v6')
  endian = data[126:128]
  if endian not in (b'IM', b'MI') or not data.startswith(b'MATLAB'):
    raise MatFileError('not a MATLAB 5.0 MAT file (bad header)')
  order = '<' if endian == b'IM' else '>'
  reader = _Reader(data, order)
  variables = {}
  offset = _HEADER_SIZE
  while offset < len(data):
    kind, payload, offset = reader.element(offset)
    if kind == _MI_COMPRESSED:
      try:
        payload = zlib.decompress(payload)
      except zlib.error as e:
        raise MatFileError(f'corrupt compressed element ({e})') from e
      kind, payload, _ = _Reader(payload, order).element(0)
    if kind == _MI_MATRIX:
      name, value = _matrix(payload, order)
      variables[name] = value
  return variables


def sbd_segmentation(data: bytes) -> np.ndarray:
  """The class map uint8 [H, W] of an SBD `cls/<id>.mat` file (`GTcls.Segmentation`)."""
  variables = read_mat(data)
  gt = variables.get('GTcls')
  if not isinstance(gt, dict) or not isinstance(gt.get('Segmentation'), np.ndarray):
    raise MatFileError(f'no GTcls.Segmentation array (variables: {", ".join(variables)})')
  segmentation = gt['Segmentation']
  if segmentation.ndim != 2:
    raise MatFileError(f'GTcls.Segmentation has shape {list(segmentation.shape)}; '
                       f'expected [H, W]')
  return segmentation
