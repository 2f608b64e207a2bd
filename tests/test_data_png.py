import re
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import png
from deeplab.data.colormaps import get_colormap


def _chunk(kind: bytes, payload: bytes) -> bytes:
  return (struct.pack('>I', len(payload)) + kind + payload +
          struct.pack('>I', zlib.crc32(kind + payload)))


def write_png(samples: np.ndarray, bit_depth: int, color_type: int, palette=None,
              transparency=None) -> bytes:
  """A PNG written by hand (filter 0 rows), for bit depths TF cannot encode."""
  height, width = samples.shape[:2]
  rows = []
  for row in samples.reshape(height, -1):
    if bit_depth < 8:
      bits = np.unpackbits(row.astype(np.uint8)[:, None], axis=1)[:, 8 - bit_depth:]
      data = np.packbits(bits.reshape(-1)).tobytes()
    elif bit_depth == 16:
      data = row.astype('>u2').tobytes()
    else:
      data = row.astype(np.uint8).tobytes()
    rows.append(b'\0' + data)
  header = struct.pack('>IIBBBBB', width, height, bit_depth, color_type, 0, 0, 0)
  chunks = [_chunk(b'IHDR', header)]
  if palette is not None:
    chunks.append(_chunk(b'PLTE', np.asarray(palette, np.uint8).tobytes()))
  if transparency is not None:
    chunks.append(_chunk(b'tRNS', transparency))
  chunks += [_chunk(b'IDAT', zlib.compress(b''.join(rows))), _chunk(b'IEND', b'')]
  return png.PNG_SIGNATURE + b''.join(chunks)


def test_real_voc_palette_masks_decode_to_class_ids(shared):
  root = shared('data', 'voc2012-samples-datum', 'SegmentationClass')
  ids = png.decode_label_png((root / '2007_000032.png').read_bytes())
  assert ids.shape == (281, 500)
  assert set(np.unique(ids)) == {0, 1, 15, 255}
  assert set(np.unique(png.decode_label_png((root / '2007_000033.png').read_bytes()))) == {
      0, 1, 255}


def test_real_voc_mask_colours_are_the_pascal_colormap_of_the_ids(shared):
  data = shared('data', 'voc2012-samples-datum', 'SegmentationClass',
                '2007_000032.png').read_bytes()
  rgb = tf.io.decode_png(data, channels=3).numpy()
  np.testing.assert_array_equal(rgb, get_colormap('pascal')[png.decode_label_png(data)])


@pytest.mark.parametrize('bit_depth', [1, 2, 4, 8])
def test_palette_indices_survive_every_bit_depth(bit_depth):
  samples = np.random.default_rng(bit_depth).integers(0, 2**bit_depth, (7, 13))
  palette = get_colormap('pascal')[:2**bit_depth]
  data = write_png(samples, bit_depth, png.COLOR_PALETTE, palette,
                   transparency=bytes([0] * len(palette)))
  np.testing.assert_array_equal(png.decode_label_png(data), samples)


@pytest.mark.parametrize('bit_depth', [1, 2, 4, 8])
def test_grayscale_ids_are_not_rescaled_at_low_bit_depths(bit_depth):
  samples = np.random.default_rng(bit_depth).integers(0, 2**bit_depth, (5, 9))
  np.testing.assert_array_equal(
      png.decode_label_png(write_png(samples, bit_depth, png.COLOR_GRAY)), samples)


def test_16_bit_grayscale_keeps_its_values():
  samples = np.array([[0, 1, 300], [65535, 7, 256]])
  ids = png.decode_label_png(write_png(samples, 16, png.COLOR_GRAY))
  assert ids.dtype == np.uint16
  np.testing.assert_array_equal(ids, samples)


@pytest.mark.parametrize('channels,name', [(3, 'RGB'), (4, 'RGBA'), (2, 'grayscale+alpha')])
def test_colour_and_alpha_masks_are_rejected(channels, name):
  data = tf.io.encode_png(np.zeros([4, 4, channels], np.uint8)).numpy()
  with pytest.raises(png.LabelFormatError, match=f'^{re.escape(name)} PNG .*single-channel'):
    png.decode_label_png(data)


def test_truncated_png_is_reported():
  data = png.encode_label_png(np.zeros([20, 20], np.uint8))
  with pytest.raises(ValueError, match='truncated PNG'):
    png.decode_label_png(data[:-20])
  with pytest.raises(ValueError, match='not a PNG'):
    png.decode_label_png(b'\xff\xd8\xff' + data)


def test_palette_png_round_trips_and_shows_the_colormap():
  labels = np.random.default_rng(0).integers(0, 151, (33, 17)).astype(np.uint8)
  colormap = get_colormap('ade20k')
  data = png.encode_palette_png(labels, colormap)
  header = png.png_header(data)
  assert (header.width, header.height, header.bit_depth, header.color_type) == (17, 33, 8, 3)
  np.testing.assert_array_equal(png.decode_label_png(data), labels)
  np.testing.assert_array_equal(tf.io.decode_png(data, channels=3).numpy(), colormap[labels])


def test_encode_label_png_rejects_wrong_dtypes():
  with pytest.raises(ValueError, match='uint8 labels'):
    png.encode_label_png(np.zeros([3, 3], np.int32))
  with pytest.raises(ValueError, match='colormap'):
    png.encode_palette_png(np.zeros([3, 3], np.uint8), np.zeros([300, 3], np.uint8))
