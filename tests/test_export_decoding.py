"""Header checks and decoding of the serving graph: no allocation before the size check,
errors that name the image, and encoders for every supported format."""

import re
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf

from deeplab.export.image_decoding import decode_rgb, declared_size, first_bytes

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


def bmp_header(width, height, pixel_bytes=0):
  """A BMP file header and info header declaring width x height 24-bit pixels."""
  return (b'BM' + struct.pack('<IHHI', 54 + pixel_bytes, 0, 0, 54) +
          struct.pack('<IiiHHIIiiII', 40, width, height, 1, 24, 0, pixel_bytes, 0, 0, 0, 0))


def encode_bmp(pixels):
  """A 24-bit BMP of uint8 RGB `pixels` [H, W, 3]: BGR rows, bottom-up, 4-byte aligned."""
  height, width = pixels.shape[:2]
  padding = bytes(-3 * width % 4)
  rows = b''.join(pixels[y, :, ::-1].tobytes() + padding for y in reversed(range(height)))
  return bmp_header(width, height, len(rows)) + rows


def gif_header(width, height, flags=0):
  """A GIF signature and logical screen descriptor declaring width x height pixels."""
  return b'GIF89a' + struct.pack('<HHBBB', width, height, flags, 0, 0)


def gif_frame(indices, top=0, left=0):
  """A GIF image descriptor at (top, left) and its data: palette `indices` uint8 [H, W]
  (0..127), stored uncompressed: with a clear code every 100 pixels the LZW code
  table never outgrows 8-bit codes, so the codes are the bytes."""
  height, width = indices.shape
  clear, end = 128, 129
  codes = []
  for start in range(0, indices.size, 100):
    codes += [clear] + indices.ravel()[start:start + 100].tolist()
  data = bytes(codes + [end])
  blocks = b''.join(bytes([len(data[i:i + 255])]) + data[i:i + 255]
                    for i in range(0, len(data), 255))
  return b',' + struct.pack('<HHHHB', left, top, width, height, 0) + bytes([7]) + blocks + b'\0'


def encode_gif(indices, palette, more_frames=()):
  """A GIF of palette `indices` uint8 [H, W] (0..127) and `palette` uint8 [128, 3],
  then `more_frames` (from `gif_frame`), each after a graphic control extension."""
  height, width = indices.shape
  control = b'!\xf9\x04\x00\x00\x00\x00\x00'
  # 0xf6: a global colour table of 2**(6 + 1) = 128 entries, 8 bits per channel.
  return (gif_header(width, height, 0xf6) + palette.tobytes() +
          b''.join(control + frame for frame in [gif_frame(indices), *more_frames]) + b';')


def animated_gif(num_frames, screen=(30, 40), top=0):
  """A GIF of `num_frames` frames filling a screen of `screen` pixels, the last at
  row `top`."""
  indices = rgb(*screen)[..., 0] // 2
  frames = [gif_frame(indices, top=top if i == num_frames - 2 else 0)
            for i in range(num_frames - 1)]
  return encode_gif(indices, rgb(128, 1)[:, 0], frames)


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
    (b'\xff\xd8\xff' + bytes(20), 'images[2] has a truncated or corrupt image header (23 bytes)'),
    (b'\x89PNG\xff\x00"\\', 'images[2] is not a JPEG, PNG, BMP or GIF image (its first bytes '
                          'are 89 50 4e 47 ff 00 22 5c |.PNG....|)'),
    (animated_gif(9), 'images[2] has 9 GIF frames of 30x40 pixels; accepted are at most 10000 '
                      'pixels (height x width x frames) per image.'),
    (gif_header(4, 30, 0xf6) + encode_gif(rgb()[..., 0] // 2, rgb(128, 1)[:, 0])[13:],
     'images[2] has a GIF frame outside its 30x4 logical screen (frame 0: 30x40 pixels at '
     'top 0, left 0).'),
    (animated_gif(3, top=1), 'images[2] has a GIF frame outside its 30x40 logical screen '
                             '(frame 2: 30x40 pixels at top 1, left 0).'),
], ids=['empty', 'not-an-image', 'png-bomb', 'jpeg-bomb', 'bmp-bomb', 'int64-overflow',
        'no-pixels', 'truncated', 'jpeg-without-frame-header', 'bytes-shown-escaped',
        'gif-frame-count', 'gif-frame-larger-than-screen', 'gif-frame-moved-off-screen'])
def test_declared_size_rejects_bad_input_with_a_clear_error(contents, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
    checked_size(contents)


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def checked_pixels(contents):
  return decode_rgb(contents, checked_size(contents), name='images[2]')


def test_decode_rgb_converts_grayscale_and_rgba_to_rgb():
  image = rgb()
  gray = image[..., :1]
  rgba = np.concatenate([image, rgb(seed=1)[..., :1]], axis=-1)
  np.testing.assert_array_equal(checked_pixels(tf.io.encode_png(gray)), np.repeat(gray, 3, -1))
  np.testing.assert_array_equal(checked_pixels(tf.io.encode_png(rgba)), image)
  assert checked_pixels(tf.io.encode_jpeg(gray)).shape == (30, 40, 3)


def test_decode_rgb_reads_bmp_and_gif_pixels():
  image = rgb(height=5, width=7)  # rows of 21 bytes: BMP pads each to 24
  np.testing.assert_array_equal(checked_pixels(encode_bmp(image)), image)
  indices = rgb(seed=1)[..., 0] // 2
  palette = rgb(height=128, width=1, seed=2)[:, 0]
  np.testing.assert_array_equal(checked_pixels(encode_gif(indices, palette)), palette[indices])


def test_declared_size_accepts_an_animated_gif_within_the_pixel_limit():
  # 8 frames x 30 x 40 = 9600 pixels, under the 10000 of 9 frames' 10800.
  contents = animated_gif(8)
  assert checked_size(contents).numpy().tolist() == [30, 40]
  assert checked_pixels(contents).shape == (30, 40, 3)


@pytest.mark.parametrize('contents, message', [
    (tf.io.encode_png(rgb()).numpy()[:60],
     'images[2] could not be decoded: its data is corrupt or truncated (60 bytes; its first '
     'bytes are 89 50 4e 47 0d 0a 1a 0a 00 00 00 0d |.PNG........|)'),
], ids=['corrupt'])
def test_decode_rgb_names_an_image_it_cannot_decode_as_declared(contents, message):
  with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
    checked_pixels(contents)


def test_first_bytes_show_any_bytes_as_hex_and_printable_ascii():
  shown = first_bytes(tf.constant(bytes(range(250, 256)) + b'ok "x"\\ and more')).numpy()
  assert shown == b'fa fb fc fd fe ff 6f 6b 20 22 78 22 |......ok .x.|'
