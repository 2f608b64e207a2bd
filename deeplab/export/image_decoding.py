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
5. GIF frames: a frame reaches outside the logical screen, or the frames
   together hold more pixels than allowed (the decoder expands them all), read
   from the image descriptors without decoding;
6. decode: the pixel data is corrupt or truncated;
7. decoded size: the pixels decoded are not the size the header declares.

Messages are plain ASCII whatever the request holds: TF Serving carries them in
a gRPC status or a JSON body, and clients decode them as UTF-8. TensorFlow's own
parser and decoder errors name no image (and the tf.Example parser's embeds the
raw bytes), so they are caught (`attempt`) and replaced by these messages.
Grayscale, palette and RGBA images decode to RGB.

TensorFlow's GIF decoder sizes its output by the largest frame and expands
every frame before the first is kept: the frame check bounds both, walking the
GIF's blocks (one loop step per data sub-block of at most 255 bytes).

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


def _gif_frames(contents: tf.Tensor, screen: tf.Tensor) -> tf.Tensor:
  """A GIF's frame count and its first frame outside the logical screen, undecoded.

  Walks the block structure (the header, colour tables, extensions, image
  descriptors and the length-prefixed data sub-blocks, whose bytes are skipped),
  one block or sub-block per step: what the decoder will allocate is known before
  it runs. Unknown block types and the end of the bytes stop the walk; the
  decoder rejects such files itself, after the frames before them.

  Args:
    contents: scalar tf.string, a GIF.
    screen: int64 [2], the logical screen's height and width.

  Returns:
    int64 [6]: the number of frames, then the first frame outside the screen as
    (index, top, left, height, width), or -1s when every frame fits.
  """
  # Descriptor fields are read up to 10 bytes past a block's start.
  data = tf.cast(tf.io.decode_raw(contents + b'\0' * 10, tf.uint8), tf.int64)
  length = tf.cast(tf.strings.length(contents), tf.int64)
  # 13 bytes of header and screen descriptor, then the global colour table if any.
  packed = data[10]
  start = 13 + tf.where(packed >= 128, 3 * 2**(packed % 8 + 1), 0)
  initial = (start, tf.constant(False), tf.constant(0, tf.int64), tf.constant(False),
             tf.fill([5], tf.constant(-1, tf.int64)))

  def step(position, in_sub_blocks, frames, done, outside):
    value = data[position]

    def sub_block():
      # A length byte, then that many bytes; length 0 ends the sub-blocks.
      return position + 1 + value, value > 0, frames, done, outside

    def image_descriptor():
      top, left = _unsigned(data, position + 3, 2, False), _unsigned(data, position + 1, 2, False)
      height = _unsigned(data, position + 7, 2, False)
      width = _unsigned(data, position + 5, 2, False)
      local_table = data[position + 9]
      table_bytes = tf.where(local_table >= 128, 3 * 2**(local_table % 8 + 1), 0)
      fits = (top + height <= screen[0]) & (left + width <= screen[1])
      first_outside = (outside[0] < 0) & ~fits
      # 10 descriptor bytes, the colour table, the LZW minimum code size byte.
      return (position + 11 + table_bytes, tf.constant(True), frames + 1, done,
              tf.where(first_outside, tf.stack([frames, top, left, height, width]), outside))

    def extension():
      # The introducer and the label, then sub-blocks.
      return position + 2, tf.constant(True), frames, done, outside

    def end():
      return position, in_sub_blocks, frames, tf.constant(True), outside

    return tf.case([(in_sub_blocks, sub_block), (value == 0x2c, image_descriptor),
                    (value == 0x21, extension)], default=end)

  _, _, frames, _, outside = tf.while_loop(
      lambda position, _, __, done, ___: ~done & (position < length), step, initial)
  return tf.concat([frames[tf.newaxis], outside], axis=0)


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
  # Not converted by AutoGraph: `function` calls TensorFlow's parsers and decoders,
  # and converting costs tracing time.
  results = tf.data.Dataset.from_tensors(value).map(
      tf.autograph.experimental.do_not_convert(lambda v: (function(v), True)))
  return results.ignore_errors().concatenate(
      tf.data.Dataset.from_tensors((fallback, False))).take(1).get_single_element()


def declared_size(contents: tf.Tensor, max_pixels: int, name='image') -> tf.Tensor:
  """The (height, width) an image's header declares, after checking it is acceptable.

  Raises (at run time) an InvalidArgument error naming `name` when `contents` is
  empty, is not a JPEG, PNG, BMP or GIF image, has a truncated or corrupt header,
  declares no pixels, declares more than `max_pixels` pixels, or is a GIF with a
  frame outside its screen or more than `max_pixels` pixels in all its frames,
  checked in this order. Nothing is decoded.

  Args:
    contents: scalar tf.string, the encoded image.
    max_pixels: the largest height * width accepted (height * width * frames
      for a GIF).
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
  contents, size = require((contents, size),
                           (size[0] > 0) & (size[1] > 0) &
                           (size[0] <= max_pixels // tf.maximum(size[1], 1)),
                           name, ' declares ', size[0], 'x', size[1], ' pixels; accepted are 1 '
                           'to ', str(max_pixels), ' pixels (height x width) per image.')
  frames = tf.cond(is_gif, lambda: _gif_frames(contents, size),
                   lambda: tf.constant([1, -1, -1, -1, -1, -1], tf.int64))
  size = require(size, frames[1] < 0,
                 name, ' has a GIF frame outside its ', size[0], 'x', size[1], ' logical '
                 'screen (frame ', frames[1], ': ', frames[4], 'x', frames[5], ' pixels at top ',
                 frames[2], ', left ', frames[3], ').')
  # The decoder expands every frame, each to the screen's size, before keeping one.
  return require(size, frames[0] <= max_pixels // (size[0] * size[1]),
                 name, ' has ', frames[0], ' GIF frames of ', size[0], 'x', size[1],
                 ' pixels; accepted are at most ', str(max_pixels), ' pixels (height x width '
                 'x frames) per image.')


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
