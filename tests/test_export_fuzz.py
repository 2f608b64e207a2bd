"""Malformed requests to every exported signature: each serves or fails cleanly.

Over 500 deterministic requests (random bytes; valid JPEG, PNG, BMP and GIF images
with flipped bits, truncated, or with altered size fields; tf.Examples without or
with garbage in `image/encoded`; degenerate pixel tensors) are sent to the loaded
SavedModel. Each one either serves (labels of the right shape) or fails with an
InvalidArgumentError whose message names the bad input; a message that is not
valid UTF-8 fails the test, as the client cannot even read it. Afterwards a real
photo still serves the same labels, and resident memory has not grown.
"""

import collections
import glob
import os
import pathlib
import re
import struct
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import SHARED_DIR
from deeplab.config import ExportConfig, TilingConfig
from deeplab.export import PADDED_LABEL, ServingModule
from deeplab.export.saved_model import write_saved_model
from test_export import CONFIG, NUM_CLASSES, scene, seeded_model
from test_export_decoding import encode_bmp, encode_gif

# Tiny models with the short MobileNetV2 (short_mobilenet_v2.py); tests that compare
# with official weights, or whose model a full-backbone process reads, build the full one.
pytestmark = pytest.mark.short_mobilenet_v2

SEED = 0
HEIGHT, WIDTH = 16, 20
# Small, so that no forged header decodes into a large image: every request costs
# milliseconds, and memory measures leaks, not the largest image served.
MAX_PIXELS = 64 * 96
# Where each format stores its height and width: offset, struct format.
SIZE_FIELDS = {
    'png': ((20, '>I'), (16, '>I')),
    'bmp': ((22, '<i'), (18, '<i')),
    'gif': ((8, '<H'), (6, '<H')),
}
MAX_RSS_GROWTH_MB = 100
BIN = pathlib.Path(sys.executable).parent


@pytest.fixture(scope='module')
def saved_model(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('fuzz') / 'saved_model')
  # Every request is under the tiling budget, so the tiled path is left out of the
  # graph (test_export.py serves a tiled image).
  module = ServingModule(seeded_model(CONFIG, seed=1), ExportConfig(
      max_image_pixels=MAX_PIXELS, tiling=TilingConfig(max_whole_image_pixels=0)))
  write_saved_model(module, path)
  return path


@pytest.fixture(scope='module')
def photo():
  """A real photo as JPEG, scaled down to at most MAX_PIXELS (a generated scene without one)."""
  paths = sorted(glob.glob(str(SHARED_DIR / 'data' / 'cc0-images-ibm-max' / '*.jpg')))
  pixels = tf.io.decode_jpeg(tf.io.read_file(paths[0])) if paths else scene(480, 640, seed=7)
  scale = (MAX_PIXELS / (pixels.shape[0] * pixels.shape[1]))**0.5
  size = [int(pixels.shape[0] * scale), int(pixels.shape[1] * scale)]
  return tf.io.encode_jpeg(tf.cast(tf.image.resize(pixels, size, antialias=True), tf.uint8)).numpy()


@pytest.fixture(scope='module')
def signatures(saved_model):
  loaded = tf.saved_model.load(saved_model)
  yield loaded.signatures
  del loaded


def encoded_images(rng):
  """One valid 16x20 image per format, keyed by format."""
  pixels = scene(HEIGHT, WIDTH, seed=int(rng.integers(1 << 30)))
  indices = rng.integers(0, 128, [HEIGHT, WIDTH], dtype=np.uint8)
  palette = rng.integers(0, 256, [128, 3], dtype=np.uint8)
  return {
      'jpeg': tf.io.encode_jpeg(pixels).numpy(),
      'png': tf.io.encode_png(pixels).numpy(),
      'bmp': encode_bmp(pixels),
      'gif': encode_gif(indices, palette),
  }


def size_fields(image_format, contents):
  """(offset, struct format) of the height and width fields in `contents`."""
  if image_format != 'jpeg':
    return SIZE_FIELDS[image_format]
  frame = contents.index(b'\xff\xc0')  # baseline frame header: length, precision, H, W
  return (frame + 5, '>H'), (frame + 7, '>H')


def flip_bits(rng, contents):
  """`contents` with 1 to 8 bits flipped, in the first 64 bytes (the header) half the time."""
  data = bytearray(contents)
  end = min(64, len(data)) if rng.random() < 0.5 else len(data)
  for position in rng.integers(0, end * 8, rng.integers(1, 9)):
    data[position // 8] ^= 1 << (position % 8)
  return bytes(data)


def alter_size(rng, image_format, contents):
  """`contents` with its height or width set to 0, the largest signed or unsigned
  value, a random value, or a small wrong one (that the pixel data does not fill)."""
  data = bytearray(contents)
  offset, field = size_fields(image_format, contents)[rng.integers(2)]
  bits = 8 * struct.calcsize(field)
  value = rng.choice([0, 2**(bits - 1) - 1, 2**bits - 1, int(rng.integers(2**bits)),
                      int(rng.integers(1, 65))])
  struct.pack_into(field[0] + field[1].upper(), data, offset, value)
  return bytes(data)


def image_requests(rng, count_per_kind):
  """(category, contents) of encoded images, a few of them valid."""
  requests = []
  signatures = [b'\xff\xd8\xff', b'\x89PNG\r\n\x1a\n', b'GIF89a', b'BM']
  for _ in range(count_per_kind):
    requests.append(('random bytes', rng.bytes(rng.integers(0, 2000))))
    prefix = signatures[rng.integers(len(signatures))]
    requests.append(('signature + random bytes', prefix + rng.bytes(rng.integers(0, 200))))
    for image_format, contents in encoded_images(rng).items():
      requests.append((f'{image_format} bits flipped', flip_bits(rng, contents)))
      requests.append((f'{image_format} truncated', contents[:rng.integers(len(contents))]))
      requests.append((f'{image_format} size altered', alter_size(rng, image_format, contents)))
  requests += [(f'{f} valid', c) for f, c in encoded_images(rng).items()]
  return requests


def example(**features):
  """A serialized tf.Example of `features`: name -> list of bytes, int or float."""
  def feature(values):
    if isinstance(values[0], bytes):
      return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
    if isinstance(values[0], int):
      return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))
  return tf.train.Example(features=tf.train.Features(
      feature={name.replace('__', '/'): feature(values) for name, values in features.items()}
  )).SerializeToString()


def example_requests(rng, count_per_kind):
  """(category, serialized tf.Example) with missing, wrongly typed or garbage images."""
  requests = []
  for _ in range(count_per_kind):
    image = rng.choice(list(encoded_images(rng).values()))
    garbage = rng.bytes(rng.integers(0, 300))
    requests += [
        ('random bytes', rng.bytes(rng.integers(0, 300))),
        ('no image/encoded', example(image__format=[b'png'], image__height=[HEIGHT])),
        ('image/encoded garbage', example(image__encoded=[garbage])),
        ('image/encoded not bytes', example(image__encoded=[len(garbage)])),
        ('image/encoded two images', example(image__encoded=[image, image])),
        ('image/encoded bits flipped', example(image__encoded=[flip_bits(rng, image)])),
        ('example bits flipped', flip_bits(rng, example(image__encoded=[image]))),
    ]
  requests += [('valid', example(image__encoded=[image]))] * 2
  return requests


def pixel_requests(rng, count):
  """(category, uint8 [N, H, W, 3]) of any shape the signature accepts."""
  requests = []
  for _ in range(count):
    shape = [rng.integers(0, 3), rng.choice([0, 1, rng.integers(1, 25)]),
             rng.choice([0, 1, rng.integers(1, 25)]), 3]
    requests.append(('any shape', rng.integers(0, 256, shape, dtype=np.uint8)))
  wide = [1, 1, MAX_PIXELS + 1, 3]
  return requests + [('too many pixels', np.zeros(wide, np.uint8))]


def send(signature, name, values):
  """'served' or 'rejected', after checking the outputs or the error names `name`."""
  try:
    outputs = signature(**{name: tf.constant(values)})
  except tf.errors.InvalidArgumentError as error:
    # The client decoded the message as UTF-8 to get here.
    assert name in error.message, error.message
    return 'rejected', error.message
  labels = outputs['labels'].numpy()
  if 'heights' in outputs:
    heights, widths = outputs['heights'].numpy(), outputs['widths'].numpy()
    assert labels.shape == (len(values), heights.max(), widths.max())
  else:
    assert labels.shape == np.shape(values)[:3]
  assert PADDED_LABEL <= labels.min() and labels.max() < NUM_CLASSES
  return 'served', ''


def all_requests():
  """(signature, input name, category, values, expected name) of every request."""
  rng = np.random.default_rng(SEED)
  anchor = encoded_images(rng)['png']
  requests = []
  for number, (category, contents) in enumerate(image_requests(rng, 25)):
    # Every third request carries a valid image first, so the bad one is images[1].
    batch = [anchor, contents] if number % 3 == 0 else [contents]
    requests.append(('serving_default', 'images', category, batch,
                     f'images[{len(batch) - 1}] '))
  for category, serialized in example_requests(rng, 16):
    requests.append(('tf_example', 'serialized_examples', category, [serialized],
                     'serialized_examples[0]'))
  for category, pixels in pixel_requests(rng, 40):
    requests.append(('image_tensor', 'images', category, pixels, 'images '))
  return requests


def resident_mb():
  with open('/proc/self/status') as status:
    return int(re.search(r'VmRSS:\s+(\d+) kB', status.read()).group(1)) / 1024


def test_every_request_serves_or_fails_naming_its_input_and_the_model_keeps_serving(
    signatures, photo):
  serve = signatures['serving_default']
  photo_labels = serve(images=tf.constant([photo]))['labels'].numpy()
  requests = all_requests()
  assert len(requests) >= 500
  # Each signature's first call and the first few requests allocate what every
  # later request reuses.
  first_of_each = {request[0]: request for request in reversed(requests)}.values()
  for signature, name, _, values, _ in [*first_of_each, *requests[:20]]:
    send(signatures[signature], name, values)
  warm = resident_mb()

  outcomes = collections.defaultdict(collections.Counter)
  for signature, name, category, values, expected_name in requests:
    outcome, message = send(signatures[signature], name, values)
    assert outcome == 'served' or expected_name in message, (category, message)
    outcomes[signature, category][outcome] += 1

  growth = resident_mb() - warm
  assert growth < MAX_RSS_GROWTH_MB, f'resident memory grew by {growth:.0f} MB'
  np.testing.assert_array_equal(serve(images=tf.constant([photo]))['labels'], photo_labels)
  assert photo_labels.shape == (1, *tf.image.extract_jpeg_shape(photo).numpy()[:2])
  for key in [key for key in outcomes if key[1].endswith('valid')]:
    assert outcomes[key] == {'served': outcomes[key].total()}, (key, outcomes[key])
  for key in [('serving_default', 'random bytes'), ('tf_example', 'no image/encoded'),
              ('tf_example', 'image/encoded not bytes'), ('tf_example', 'random bytes'),
              ('image_tensor', 'too many pixels')]:
    assert outcomes[key] == {'rejected': outcomes[key].total()}, (key, outcomes[key])


def test_saved_model_cli_fails_cleanly_on_garbage(saved_model):
  runs = {
      'serving_default': ("images=[b'\\xff\\xfe\\x00garbage', b'']",
                          'images[0] is not a JPEG, PNG, BMP or GIF image (its first bytes '
                          'are ff fe 00 67 61 72 62 61 67 65 |...garbage|)'),
      'tf_example': ("serialized_examples=[b'\\x0a\\xff\\xff']",
                     'serialized_examples[0] is not a serialized tf.Example with '
                     'image/encoded as a bytes feature (3 bytes; its first bytes are '
                     '0a ff ff |...|)'),
  }
  processes = {
      signature: subprocess.Popen(
          [str(BIN / 'saved_model_cli'), 'run', '--dir', saved_model, '--tag_set', 'serve',
           '--signature_def', signature, '--input_exprs', expression],
          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
          env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2'})
      for signature, (expression, _) in runs.items()}
  for signature, process in processes.items():
    _, stderr = process.communicate()
    error = stderr.decode('utf-8')  # raises where the message is not UTF-8
    assert process.returncode != 0 and 'InvalidArgumentError' in error, error
    assert runs[signature][1] in error, error
