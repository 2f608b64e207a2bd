"""Label PNGs: read the stored class ids (palette indices included), write palette PNGs.

`tf.io.decode_png` expands a palette PNG to its RGB colours, yet in VOC's label
PNGs the palette *index* is the class id. A palette image's pixel data has exactly
the layout of a grayscale image of the same bit depth, so rewriting the header
(colour type 3 -> 0, palette chunks dropped) lets TensorFlow's decoder return the
indices; `encode_palette_png` does the reverse. Bit depths 1, 2 and 4 come back from
the decoder scaled to 0..255 and are scaled back exactly.

Example:
  >>> import numpy as np
  >>> from deeplab.data.colormaps import get_colormap
  >>> labels = np.array([[0, 1], [15, 255]], np.uint8)
  >>> data = encode_palette_png(labels, get_colormap('pascal'))
  >>> png_header(data).color_type
  3
  >>> decode_label_png(data).tolist()
  [[0, 1], [15, 255]]
"""

import dataclasses
import struct
import zlib
from typing import Iterator, List, Tuple

import numpy as np
import tensorflow as tf

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
COLOR_GRAY, COLOR_RGB, COLOR_PALETTE, COLOR_GRAY_ALPHA, COLOR_RGBA = 0, 2, 3, 4, 6
_COLOR_NAMES = {COLOR_GRAY: 'grayscale', COLOR_RGB: 'RGB', COLOR_PALETTE: 'palette',
                COLOR_GRAY_ALPHA: 'grayscale+alpha', COLOR_RGBA: 'RGBA'}


class LabelFormatError(ValueError):
  """A label image is not a single-channel map of class ids (e.g. an RGB mask)."""


@dataclasses.dataclass(frozen=True)
class PngHeader:
  """The IHDR fields of a PNG."""
  width: int
  height: int
  bit_depth: int
  color_type: int

  @property
  def color_name(self) -> str:
    return _COLOR_NAMES.get(self.color_type, f'colour type {self.color_type}')


def is_png(data: bytes) -> bool:
  return data[:8] == PNG_SIGNATURE


def _chunks(data: bytes) -> Iterator[Tuple[bytes, memoryview]]:
  """(type, payload) of each chunk; raises ValueError on a truncated file."""
  if not is_png(data):
    raise ValueError('not a PNG file (bad signature)')
  data = memoryview(data)
  offset = len(PNG_SIGNATURE)
  while True:
    if offset + 8 > len(data):
      raise ValueError('truncated PNG (no IEND chunk)')
    length, kind = struct.unpack_from('>I4s', data, offset)
    end = offset + 12 + length
    if end > len(data):
      raise ValueError(f'truncated PNG (chunk {kind!r} runs past the end of the file)')
    yield kind, data[offset + 8:offset + 8 + length]
    if kind == b'IEND':
      return
    offset = end


def _chunk(kind: bytes, payload) -> bytes:
  payload = bytes(payload)
  return (struct.pack('>I', len(payload)) + kind + payload +
          struct.pack('>I', zlib.crc32(kind + payload)))


def png_header(data: bytes) -> PngHeader:
  """The size, bit depth and colour type of a PNG, read from its first chunk."""
  kind, payload = next(_chunks(data))
  if kind != b'IHDR' or len(payload) != 13:
    raise ValueError('not a valid PNG file (the first chunk is not IHDR)')
  width, height, bit_depth, color_type = struct.unpack_from('>IIBB', payload)
  return PngHeader(width, height, bit_depth, color_type)


def _with_color_type(data: bytes, color_type: int, extra: List[Tuple[bytes, bytes]]) -> bytes:
  """The PNG with its colour type replaced and only IHDR, `extra`, IDAT and IEND kept.

  Ancillary chunks are dropped because several (tRNS, bKGD, sBIT, hIST) are laid
  out differently for palette and grayscale images.
  """
  parts = [PNG_SIGNATURE]
  for kind, payload in _chunks(data):
    if kind == b'IHDR':
      parts.append(_chunk(kind, bytes(payload[:9]) + bytes([color_type]) +
                          bytes(payload[10:])))
      parts.extend(_chunk(k, p) for k, p in extra)
    elif kind in (b'IDAT', b'IEND'):
      parts.append(_chunk(kind, payload))
  return b''.join(parts)


def decode_label_png(data: bytes) -> np.ndarray:
  """The class ids stored in a grayscale or palette PNG.

  Args:
    data: PNG bytes; grayscale (any bit depth) or palette (indices are the ids).

  Returns:
    [H, W] uint8 (uint16 for 16-bit grayscale) ids as stored in the file.

  Raises:
    LabelFormatError: the PNG has colour channels (RGB/RGBA) or an alpha channel.
    ValueError, tf.errors.InvalidArgumentError: the file is not a readable PNG.
  """
  header = png_header(data)
  for _ in _chunks(data):  # A truncated file fails here, with a clear message.
    pass
  if header.color_type not in (COLOR_GRAY, COLOR_PALETTE):
    raise LabelFormatError(f'{header.color_name} PNG where a single-channel PNG of class '
                           f'ids was expected')
  if header.color_type == COLOR_PALETTE:
    data = _with_color_type(data, COLOR_GRAY, [])
  dtype = tf.uint16 if header.bit_depth == 16 else tf.uint8
  ids = tf.io.decode_png(data, channels=1, dtype=dtype).numpy()[..., 0]
  if header.bit_depth < 8:
    ids = ids // (255 // (2**header.bit_depth - 1))
  return ids


def encode_label_png(labels) -> bytes:
  """An 8-bit grayscale PNG of class ids uint8 [H, W] (the TFRecord label format)."""
  labels = np.asarray(labels)
  if labels.ndim != 2 or labels.dtype != np.uint8:
    raise ValueError(f'Expected uint8 labels [H, W]; got {labels.dtype} {list(labels.shape)}.')
  return tf.io.encode_png(labels[..., None]).numpy()


def encode_palette_png(labels, colormap) -> bytes:
  """A palette PNG of class ids: viewers show the colours, readers get the ids back.

  Args:
    labels: uint8 [H, W] class ids.
    colormap: uint8 [N, 3] colours, N <= 256 (rows past N are written black).

  Returns:
    PNG bytes, 8-bit palette; `decode_label_png` returns `labels` from them.

  Example:
    >>> from deeplab.data.colormaps import get_colormap
    >>> data = encode_palette_png(np.zeros([4, 5], np.uint8), get_colormap('ade20k'))
    >>> data[:8] == PNG_SIGNATURE
    True
  """
  colormap = np.asarray(colormap, np.uint8)
  if colormap.ndim != 2 or colormap.shape[1] != 3 or not 0 < len(colormap) <= 256:
    raise ValueError(f'Expected a colormap uint8 [N <= 256, 3]; got {list(colormap.shape)}.')
  palette = np.zeros([256, 3], np.uint8)
  palette[:len(colormap)] = colormap
  return _with_color_type(encode_label_png(labels), COLOR_PALETTE,
                          [(b'PLTE', palette.tobytes())])
