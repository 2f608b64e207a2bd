"""Header checks and decoding of the serving graph: no allocation before the size check."""

import re
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab.export.image_decoding import decode_rgb, declared_size

MAX_PIXELS = 10_000


def png_header(width, height):
  """A PNG signature and IHDR chunk (valid CRC) declaring width x height RGB pixels."""
  ihdr = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + struct.pack('>I', len(ihdr)) + b'IHDR' + ihdr +
          struct.pack('>I', zlib.crc32(b'IHDR' + ihdr)))


def jpeg_declaring(height, width):
  """A real baseline JPEG whose frame header (SOF0) is patched to height x width."""
  data = bytearray(tf.io.encode_jpeg(tf.zeros([8, 8, 3], tf.uint8)).numpy())
  sof = data.index(b'\xff\xc0')
  data[sof + 5:sof + 9] = struct.pack('>HH', height, width)
  return bytes(data)


def bmp_header(width, height):
  return b'BM' + bytes(16) + struct.pack('<ii', width, height) + bytes(28)


def gif_header(width, height):
  return b'GIF89a' + struct.pack('<HH', width, height) + bytes(3)


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def checked_size(contents):
  return declared_size(contents, MAX_PIXELS, name='images[2]')


def rgb(height=30, width=40, seed=0):
  return np.random.default_rng(seed).integers(0, 256, [height, width, 3], dtype=np.uint8)


@pytest.mark.parametrize('contents', [
    tf.io.encode_png(rgb()).numpy(),
    tf.io.encode_jpeg(rgb()).numpy(),
    bmp_header(40, -30),  # negative height: rows stored top-down
    gif_header(40, 30),
], ids=['png', 'jpeg', 'bmp', 'gif'])
def test_declared_size_reads_each_format_header(contents):
  assert checked_size(contents).numpy().tolist() == [30, 40]


@pytest.mark.parametrize('contents, message', [
    (b'', 'images[2] is empty'),
    (b'<html>not an image</html>', 'images[2] is not a JPEG, PNG, BMP or GIF image'),
    (png_header(50000, 50000), 'images[2] declares 50000x50000 pixels; accepted are 1 to '
                               '10000 pixels'),
    (jpeg_declaring(50000, 50000), 'images[2] declares 50000x50000 pixels'),
    (bmp_header(50000, 50000), 'images[2] declares 50000x50000 pixels'),
    (png_header(2**32 - 1, 2**32 - 1), 'declares 4294967295x4294967295 pixels'),
    (png_header(0, 10), 'declares 10x0 pixels'),
    (png_header(40, 30)[:20], 'images[2] has a truncated or corrupt image header (20 bytes)'),
], ids=['empty', 'not-an-image', 'png-bomb', 'jpeg-bomb', 'bmp-bomb', 'int64-overflow',
        'no-pixels', 'truncated'])
def test_declared_size_rejects_bad_input_with_a_clear_error(contents, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
    checked_size(contents)


def test_decode_rgb_converts_grayscale_and_rgba_to_rgb():
  image = rgb()
  gray = image[..., :1]
  rgba = np.concatenate([image, rgb(seed=1)[..., :1]], axis=-1)
  np.testing.assert_array_equal(decode_rgb(tf.io.encode_png(gray)), np.repeat(gray, 3, -1))
  np.testing.assert_array_equal(decode_rgb(tf.io.encode_png(rgba)), image)
  assert decode_rgb(tf.io.encode_jpeg(gray)).shape == (30, 40, 3)
