"""Data: the TFRecord schema, label PNGs, colormaps, dataset descriptors, synthetic
data, augmentation and the input pipeline.

Example:
  >>> from deeplab.data import build_dataset, read_dataset_info  # doctest: +SKIP
  >>> info = read_dataset_info('demo_output/data')  # doctest: +SKIP
  >>> dataset = build_dataset('demo_output/data/train-*', training=True, batch_size=8,  # doctest: +SKIP
  ...                         crop_size=(129, 129), num_classes=info.num_classes)
"""

from deeplab.data.colormaps import colorize, get_colormap
from deeplab.data.info import (DatasetInfo, SplitInfo, get_dataset_info, read_dataset_info,
                               write_dataset_info)
from deeplab.data.pipeline import build_dataset, measure_throughput
from deeplab.data.png import decode_label_png, encode_palette_png
from deeplab.data.settings import resolve_dataset_settings

__all__ = [
    'DatasetInfo',
    'SplitInfo',
    'build_dataset',
    'colorize',
    'decode_label_png',
    'encode_palette_png',
    'get_colormap',
    'get_dataset_info',
    'measure_throughput',
    'read_dataset_info',
    'resolve_dataset_settings',
    'write_dataset_info',
]
