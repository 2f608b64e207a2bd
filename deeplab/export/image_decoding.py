"""Encoded images to RGB pixels inside a serving graph, checked in a fixed order.

A request can carry any bytes. Each image goes through the same checks, in this
order, and the first one that fails raises an InvalidArgument error naming the
image (e.g. `images[3]`):

1. empty: no bytes at all;
2. format: the first bytes are not a JPEG, PNG, BMP or GIF signature (the
   message shows them as hex and printable ASCII);
3. header: the header is truncated or corrupt (JPEG's through
   `tf.image.extract_jpeg_shape`, PNG, BMP and GIF from their fixed fields);
4. size: the header declares no pixels or more than allowed, so a small file
   declaring 50000x50000 pixels (a decompression bomb) is rejected before any
   pixel buffer is allocated;
5. decode: the pixel data is corrupt or truncated;
6. decoded size: the pixels decoded are not the size the header declares (a
   GIF frame larger than its screen).

Messages are plain ASCII whatever the request holds: TF Serving carries them in
a gRPC status or a JSON body, and clients decode them as UTF-8. TensorFlow's own
parser and decoder errors name no image (and the tf.Example parser's embeds the
raw bytes), so they are caught (`attempt`) and replaced by these messages.
Grayscale, palette and RGBA images decode to RGB.

One limit remains for GIF: the size check reads the logical screen size, but
TensorFlow's decoder sizes its output by the largest frame and expands every
frame before the first is kept, so neither the frame sizes nor the frame count
are bounded before decoding (a frame larger than the screen is rejected by the
decoded-size check, after decoding).

Example:
  >>> png = tf.io.encode_png(tf.zeros([4, 6, 1], tf.uint8))
  >>> declared_size(png, max_pixels=100).numpy()
  array([4, 6])
  >>> decode_rgb(png, declared_size(png, max_pixels=100)).shape
  TensorShape([4, 6, 3])
  >>> first_bytes(tf.constant(b'<html>\\xff')).numpy()
  b'3c 68 74 6d 6c 3e ff |<html>.|'
"""

from typing import Callable, Tuple

import tensorflow as tf

SUPPORTED_FORMATS = 'JPEG, PNG, BMP or GIF'

# Every field the size check reads lies in the first 26 bytes (BMP's height ends
# there); shorter inputs are zero-padded so the arithmetic never reads past the end.
_HEADER_BYTES = 32
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
# Enough to tell formats apart by their signatures, WebP's (RIFF....WEBP) included.
_SHOWN_BYTES = 12
_HEX = [f'{value:02x}' for value in range(256)]
# TensorFlow's error formatting escapes quotes and backslashes, so they are shown
# as '.' like any other byte outside printable ASCII: the message reads as shown.
_PRINTABLE = [chr(value) if 32 <= value < 127 and chr(value) not in '\'"\\' else '.'
              for value in range(256)]


def _header(contents: tf.Tensor) -> tf.Tensor:
  """The first `_HEADER_BYTES` bytes of `contents` as int64 [32], zero-padded."""
  padded = tf.strings.substr(contents, 0, _HEADER_BYTES) + b'\0' * _HEADER_BYTES
  return tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, _HEADER_BYTES), tf.uint8),
                 tf.int64)


def _starts_with(header: tf.Tensor, prefix: bytes) -> tf.Tensor:
  return tf.reduce_all(tf.equal(header[:len(prefix)], tf.constant(list(prefix), tf.int64)))


def _unsigned(header: tf.Tensor, start: int, size: int, big_endian: bool) -> tf.Tensor:
  """The unsigned integer stored in header[start:start + size]."""
  weights = [256**i for i in range(size)]
  if big_endian:
    weights.reverse()
  return tf.reduce_sum(header[start:start + size] * tf.constant(weights, tf.int64))


def _bmp_dimension(header: tf.Tensor, start: int) -> tf.Tensor:
  # A negative BMP height means rows are stored top-down; the size is its magnitude.
  value = _unsigned(header, start, 4, big_endian=False)
  return tf.abs(tf.where(value >= 2**31, value - 2**32, value))


def first_bytes(contents: tf.Tensor) -> tf.Tensor:
  """The first bytes of `contents` as ASCII text: hex, then printable characters.

  For error messages about request bytes, which may be anything: the result is
  always valid UTF-8 (e.g. `89 50 4e 47 0d 0a |.PNG..|`).

  Args:
    contents: scalar tf.string.

  Returns:
    Scalar tf.string.
  """
  values = tf.cast(tf.io.decode_raw(tf.strings.substr(contents, 0, _SHOWN_BYTES), tf.uint8),
                   tf.int32)
  return tf.strings.join([
      tf.strings.reduce_join(tf.gather(_HEX, values), separator=' '), ' |',
      tf.strings.reduce_join(tf.gather(_PRINTABLE, values)), '|'])


def error_message(*parts) -> tf.Tensor:
  """Joins strings, string tensors and number tensors into one error message."""
  return tf.strings.join([
      tf.strings.as_string(p) if isinstance(p, tf.Tensor) and p.dtype != tf.string else p
      for p in parts])


def require(tensors, condition: tf.Tensor, *message):
  """`tensors` (a tensor or a tuple of them), once `condition` holds.

  Otherwise raises an InvalidArgument error `message`. The check runs after the
  ops that produce `tensors`, and ops consuming the result run after the check,
  so checks chained through their results run in order and a request that fails
  several always reports the first; and a decoder fed the result allocates only
  once the checks before it have passed.
  """
  with tf.control_dependencies(tf.nest.flatten(tensors)):
    check = tf.debugging.Assert(condition, [error_message(*message)])
  with tf.control_dependencies([check]):
    return tf.nest.map_structure(tf.identity, tensors)


def attempt(function: Callable, value, fallback) -> Tuple[tf.Tensor, tf.Tensor]:
  """`(function(value), True)`, or `(fallback, False)` where `function` raises.

  For TensorFlow's parsers and decoders, whose errors would otherwise end the
  request with a message that names no input (and may embed its raw bytes):
  the caller raises its own with `require`. `fallback` must have the structure
  and dtypes of `function`'s result.
  """
  # A tf.data pipeline is the one place a graph can recover from an op's error.
  results = tf.data.Dataset.from_tensors(value).map(lambda v: (function(v), True))
  return results.ignore_errors().concatenate(
      tf.data.Dataset.from_tensors((fallback, False))).take(1).get_single_element()


def declared_size(contents: tf.Tensor, max_pixels: int, name='image') -> tf.Tensor:
  """The (height, width) an image's header declares, after checking it is acceptable.

  Raises (at run time) an InvalidArgument error naming `name` when `contents` is
  empty, is not a JPEG, PNG, BMP or GIF image, has a truncated or corrupt header,
  declares no pixels, or declares more than `max_pixels` pixels, checked in this
  order. Nothing is decoded.

  Args:
    contents: scalar tf.string, the encoded image.
    max_pixels: the largest height * width accepted.
    name: str or scalar tf.string naming the image in error messages
      (e.g. 'images[3]').

  Returns:
    int64 [2]: height, width.
  """
  length = tf.strings.length(contents)
  contents = require(contents, length > 0,
                     name, ' is empty: expected the bytes of an encoded image.')
  header = _header(contents)
  is_jpeg = _starts_with(header, b'\xff\xd8\xff')
  is_png = _starts_with(header, _PNG_SIGNATURE)
  is_gif = _starts_with(header, b'GIF8')
  is_bmp = _starts_with(header, b'BM')
  contents = require(contents, is_jpeg | is_png | is_gif | is_bmp,
                     name, ' is not a ' + SUPPORTED_FORMATS + ' image (its first bytes are ',
                     first_bytes(contents), ').')
  # Where the fixed-position fields end; JPEG's size sits in a marker anywhere in
  # the file, found (or not) by extract_jpeg_shape.
  header_end = tf.case([(is_png, lambda: tf.constant(24)), (is_gif, lambda: tf.constant(10)),
                        (is_bmp, lambda: tf.constant(26))], default=lambda: tf.constant(0))
  size, complete = tf.case([
      (is_jpeg, lambda: attempt(lambda c: tf.image.extract_jpeg_shape(c, tf.int64)[:2],
                                contents, tf.zeros([2], tf.int64))),
      (is_png, lambda: (tf.stack([_unsigned(header, 20, 4, True),
                                  _unsigned(header, 16, 4, True)]),
                        _starts_with(header[12:], b'IHDR'))),
      (is_gif, lambda: (tf.stack([_unsigned(header, 8, 2, False),
                                  _unsigned(header, 6, 2, False)]), tf.constant(True))),
  ], default=lambda: (tf.stack([_bmp_dimension(header, 22), _bmp_dimension(header, 18)]),
                      tf.constant(True)), exclusive=True)
  _, size = require((contents, size), complete & (length >= header_end),
                    name, ' has a truncated or corrupt image header (', length, ' bytes).')
  # height <= max_pixels // width is height * width <= max_pixels without the
  # overflow a forged 32-bit header could cause.
  return require(size,
                 (size[0] > 0) & (size[1] > 0) &
                 (size[0] <= max_pixels // tf.maximum(size[1], 1)),
                 name, ' declares ', size[0], 'x', size[1], ' pixels; accepted are 1 to ',
                 str(max_pixels), ' pixels (height x width) per image.')


def decode_rgb(contents: tf.Tensor, size: tf.Tensor, name='image') -> tf.Tensor:
  """Decodes a JPEG, PNG, BMP or GIF (first frame) image to uint8 RGB [H, W, 3].

  Grayscale is replicated to three channels and an alpha channel is dropped (the
  stored colours are kept, not blended with a background). Raises (at run time)
  an InvalidArgument error naming `name` when the image data is corrupt or
  truncated, or decodes to another size than `size`.

  Args:
    contents: scalar tf.string, the encoded image.
    size: int64 [2], the height and width `declared_size` returned for
      `contents`: the decoder, which allocates the full pixel buffer, runs only
      after that check.
    name: str or scalar tf.string naming the image in error messages.
  """
  with tf.control_dependencies([size]):
    contents = tf.identity(contents)
  image, decoded = attempt(
      lambda c: tf.io.decode_image(c, channels=3, dtype=tf.uint8, expand_animations=False),
      contents, tf.zeros([1, 1, 3], tf.uint8))
  image = require(image, decoded,
                  name, ' could not be decoded: its data is corrupt or truncated (',
                  tf.strings.length(contents), ' bytes; its first bytes are ',
                  first_bytes(contents), ').')
  shape = tf.shape(image, out_type=tf.int64)
  image = require(image, tf.reduce_all(shape[:2] == size),
                  name, ' decodes to ', shape[0], 'x', shape[1], ' pixels, not the ', size[0],
                  'x', size[1], ' its header declares.')
  image.set_shape([None, None, 3])
  return image
