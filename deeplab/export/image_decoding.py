"""Encoded images to RGB pixels inside a serving graph, size-checked before decoding.

A request can carry any bytes. Each image's header is read first (JPEG through
`tf.image.extract_jpeg_shape`, PNG, BMP and GIF from their fixed header fields), so
bytes that are not an image, an empty string or a header declaring more pixels
than allowed fail with an InvalidArgument error before any pixel buffer is
allocated: a small file declaring 50000x50000 pixels (a decompression bomb) costs
nothing. Grayscale, palette and RGBA images decode to RGB.

One limit remains: TensorFlow's GIF decoder expands every frame of an animated GIF
before the first is kept, so the check bounds each frame (the GIF's screen size),
not the frame count.

Example:
  >>> png = tf.io.encode_png(tf.zeros([4, 6, 1], tf.uint8))
  >>> declared_size(png, max_pixels=100).numpy()
  array([4, 6])
  >>> decode_rgb(png).shape
  TensorShape([4, 6, 3])
"""

import tensorflow as tf

SUPPORTED_FORMATS = 'JPEG, PNG, BMP or GIF'

# Every field the size check reads lies in the first 26 bytes (BMP's height ends
# there); shorter inputs are zero-padded so the arithmetic never reads past the end.
_HEADER_BYTES = 32
_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


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


def error_message(*parts) -> tf.Tensor:
  """Joins strings, string tensors and number tensors into one error message."""
  return tf.strings.join([
      tf.strings.as_string(p) if isinstance(p, tf.Tensor) and p.dtype != tf.string else p
      for p in parts])


def require(tensor: tf.Tensor, condition: tf.Tensor, *message) -> tf.Tensor:
  """`tensor`, once `condition` holds; otherwise an InvalidArgument error `message`.

  Ops that consume the result run only after the check, which is what keeps a
  decoder from allocating before the size check.
  """
  check = tf.debugging.Assert(condition, [error_message(*message)])
  with tf.control_dependencies([check]):
    return tf.identity(tensor)


def declared_size(contents: tf.Tensor, max_pixels: int, name='image') -> tf.Tensor:
  """The (height, width) an image's header declares, after checking it is acceptable.

  Raises (at run time) an InvalidArgument error naming `name` when `contents` is
  empty, is not a JPEG, PNG, BMP or GIF image, has a truncated header, declares no
  pixels, or declares more than `max_pixels` pixels. Nothing is decoded.

  Args:
    contents: scalar tf.string, the encoded image.
    max_pixels: the largest height * width accepted.
    name: str or scalar tf.string naming the image in error messages
      (e.g. 'images[3]').

  Returns:
    int64 [2]: height, width.
  """
  length = tf.strings.length(contents)
  header = _header(contents)
  is_jpeg = _starts_with(header, b'\xff\xd8\xff')
  is_png = _starts_with(header, _PNG_SIGNATURE)
  is_gif = _starts_with(header, b'GIF8')
  is_bmp = _starts_with(header, b'BM')
  # Where the fixed-position fields end; JPEG's size sits in a marker anywhere in
  # the file, and extract_jpeg_shape reports truncation itself.
  header_end = tf.case([(is_png, lambda: tf.constant(24)), (is_gif, lambda: tf.constant(10)),
                        (is_bmp, lambda: tf.constant(26))], default=lambda: tf.constant(0))
  contents = require(contents, length > 0,
                     name, ' is empty: expected the bytes of an encoded image.')
  contents = require(contents, is_jpeg | is_png | is_gif | is_bmp,
                     name, ' is not a ' + SUPPORTED_FORMATS + ' image (its first bytes are ',
                     tf.strings.format('{}', tf.strings.substr(contents, 0, 8)), ').')
  contents = require(contents,
                     (length >= header_end) & (~is_png | _starts_with(header[12:], b'IHDR')),
                     name, ' has a truncated or corrupt image header (', length, ' bytes).')
  size = tf.case([
      (is_jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64)),
      (is_png, lambda: tf.stack([_unsigned(header, 20, 4, True),
                                 _unsigned(header, 16, 4, True)])),
      (is_gif, lambda: tf.stack([_unsigned(header, 8, 2, False),
                                 _unsigned(header, 6, 2, False)])),
  ], default=lambda: tf.stack([_bmp_dimension(header, 22), _bmp_dimension(header, 18)]),
                 exclusive=True)
  # height <= max_pixels // width is height * width <= max_pixels without the
  # overflow a forged 32-bit header could cause.
  return require(size,
                 (size[0] > 0) & (size[1] > 0) &
                 (size[0] <= max_pixels // tf.maximum(size[1], 1)),
                 name, ' declares ', size[0], 'x', size[1], ' pixels; accepted are 1 to ',
                 str(max_pixels), ' pixels (height x width) per image.')


def decode_rgb(contents: tf.Tensor) -> tf.Tensor:
  """Decodes a JPEG, PNG, BMP or GIF (first frame) image to uint8 RGB [H, W, 3].

  Grayscale is replicated to three channels and an alpha channel is dropped (the
  stored colours are kept, not blended with a background). Call `declared_size`
  first, and make the decode depend on its result: this allocates the full pixel
  buffer.
  """
  image = tf.io.decode_image(contents, channels=3, dtype=tf.uint8, expand_animations=False)
  image.set_shape([None, None, 3])
  return image
