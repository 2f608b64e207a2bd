"""Colour tables of the known datasets: label ids -> RGB, and RGB masks -> label ids.

The tables are the official DeepLab ones (`get_dataset_colormap.py`): PASCAL's
bit-shift palette (also the palette inside VOC's label PNGs), the Cityscapes trainId
colours and ADE20K's 151 colours.

Example:
  >>> import numpy as np
  >>> colormap = get_colormap('pascal')
  >>> colorize(np.array([[0, 1], [15, 255]], np.uint8), colormap)[1]
  array([[192, 128, 128],
         [224, 224, 192]], dtype=uint8)
"""

import os
from typing import Optional, Union

import numpy as np

COLORMAP_NAMES = ('pascal', 'cityscapes', 'ade20k')

_CITYSCAPES_COLORS = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
    (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
    (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
    (0, 80, 100), (0, 0, 230), (119, 11, 32))

_ADE20K_HEX = (
    '000000 787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff '
    'ebff07 96053d 787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 '
    '0b66ff ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff 08ffd6 07ffe0 ffb806 0aff47 ff290a '
    '07ffff e0ff08 6608ff ff3d06 ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 '
    '00a3ff 8c8c8c fa0a0f 14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff '
    '1f00ff 0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00 008fff '
    '33ff00 0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff ff00f5 ff0066 ffad00 '
    'ff0014 ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52 000aff 0070ff 3300ff 00c2ff '
    '007aff 00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c '
    'b800ff ff001f 00b8ff 00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 '
    'ff00a3 ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00 00ccff '
    '1400ff ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8 '
    '005cff b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff')


def _pascal_colormap(num_entries: int = 256) -> np.ndarray:
  """The PASCAL palette: the bits of the index spread over R, G and B, high bit first."""
  colormap = np.zeros([num_entries, 3], np.uint8)
  index = np.arange(num_entries)
  for shift in range(7, -1, -1):
    for channel in range(3):
      colormap[:, channel] |= (((index >> channel) & 1) << shift).astype(np.uint8)
    index = index >> 3
  return colormap


def get_colormap(name: str) -> np.ndarray:
  """The colour table of a known dataset, uint8 [N, 3] with row i = colour of id i.

  Args:
    name: 'pascal' (256 entries, id 255 = (224, 224, 192)), 'cityscapes' (256
      entries: trainIds 0..18, black above) or 'ade20k' (151 entries, 0 = black).

  Example:
    >>> get_colormap('pascal')[[1, 20]].tolist()
    [[128, 0, 0], [0, 64, 128]]
  """
  if name == 'pascal':
    return _pascal_colormap()
  if name == 'cityscapes':
    colormap = np.zeros([256, 3], np.uint8)
    colormap[:len(_CITYSCAPES_COLORS)] = _CITYSCAPES_COLORS
    return colormap
  if name == 'ade20k':
    return np.array([[int(h[i:i + 2], 16) for i in (0, 2, 4)] for h in _ADE20K_HEX.split()],
                    np.uint8)
  raise ValueError(f'Unknown colormap {name!r}; expected one of {", ".join(COLORMAP_NAMES)}.')


def read_colormap_file(path: str) -> np.ndarray:
  """A colour table from a text file: one colour per line, line i = class id i.

  Each line is `R G B` (0..255, separated by spaces or commas) or `#rrggbb`. There
  are no comment or blank lines: every line is a class, so ids cannot shift.

  Returns:
    uint8 [N, 3].
  """
  with open(path, encoding='utf-8') as f:
    lines = f.read().splitlines()
  while lines and not lines[-1].strip():
    lines.pop()
  colors = []
  for number, line in enumerate(lines, 1):
    text = line.strip()
    try:
      if text.startswith('#') and len(text) == 7:
        color = [int(text[i:i + 2], 16) for i in (1, 3, 5)]
      else:
        color = [int(v) for v in text.replace(',', ' ').split()]
    except ValueError:
      color = []
    if len(color) != 3 or not all(0 <= v <= 255 for v in color):
      raise ValueError(f'{path}:{number}: expected "R G B" (0..255) or "#rrggbb"; '
                       f'got {line!r}.')
    colors.append(color)
  if not colors:
    raise ValueError(f'{path}: the colour table is empty.')
  return np.array(colors, np.uint8)


def load_colormap(name_or_path: str) -> np.ndarray:
  """`get_colormap(name)` for a known name, else `read_colormap_file(path)`."""
  if name_or_path in COLORMAP_NAMES:
    return get_colormap(name_or_path)
  if not os.path.isfile(name_or_path):
    raise ValueError(f'Colormap {name_or_path!r} is neither a known name '
                     f'({", ".join(COLORMAP_NAMES)}) nor an existing file.')
  return read_colormap_file(name_or_path)


def colorize(labels, colormap: Union[str, np.ndarray]) -> np.ndarray:
  """Colours label ids for display.

  Args:
    labels: integer [..., H, W] class ids (numpy array or eager tensor).
    colormap: a colormap name or a uint8 [N, 3] table.

  Returns:
    uint8 [..., H, W, 3].

  Example:
    >>> colorize(np.zeros([2, 3], np.int32), 'cityscapes').shape
    (2, 3, 3)
  """
  table = get_colormap(colormap) if isinstance(colormap, str) else np.asarray(colormap)
  labels = np.asarray(labels)
  if labels.size and (labels.min() < 0 or labels.max() >= len(table)):
    raise ValueError(f'Label ids must be in [0, {len(table)}) to be coloured; got values '
                     f'from {labels.min()} to {labels.max()}.')
  return table[labels]


def labels_from_colors(rgb: np.ndarray, colormap: np.ndarray, num_classes: int,
                       ignore_label: Optional[int] = None) -> np.ndarray:
  """Inverts a colour-coded mask: the id of each pixel's colour.

  Only ids 0..num_classes-1 and `ignore_label` are candidates (a table may repeat a
  colour beyond them, e.g. Cityscapes' black rows); where a colour repeats, the
  smallest id wins.

  Args:
    rgb: uint8 [H, W, 3] colour-coded mask.
    colormap: uint8 [N, 3] table.
    num_classes: number of class ids.
    ignore_label: id whose colour (`colormap[ignore_label]`, when the table has
      that row) marks ignored pixels.

  Returns:
    uint8 [H, W] ids.

  Raises:
    ValueError: a colour of the mask is not in the table; the message lists up to
      five such colours.
  """
  ids = list(range(min(num_classes, len(colormap))))
  if ignore_label is not None and ignore_label < len(colormap) and ignore_label not in ids:
    ids.append(ignore_label)
  table = np.asarray(colormap, np.int64)[ids]
  keys = (table[:, 0] << 16) | (table[:, 1] << 8) | table[:, 2]
  unique_keys, first = np.unique(keys, return_index=True)
  pixels = np.asarray(rgb, np.int64)
  pixel_keys = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
  positions = np.clip(np.searchsorted(unique_keys, pixel_keys), 0, len(unique_keys) - 1)
  known = unique_keys[positions] == pixel_keys
  if not known.all():
    unknown = np.unique(pixel_keys[~known])[:5]
    colors = ', '.join(f'({k >> 16}, {(k >> 8) & 255}, {k & 255})' for k in unknown)
    raise ValueError(f'{int((~known).sum())} pixels have colours outside the colormap, '
                     f'e.g. {colors}.')
  return np.asarray(ids, np.uint8)[first[positions]]
