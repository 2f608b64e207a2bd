import numpy as np
import pytest
import tensorflow as tf

from deeplab.data import colormaps


def test_pascal_colormap_matches_the_official_values():
  colormap = colormaps.get_colormap('pascal')
  assert colormap.shape == (256, 3) and colormap.dtype == np.uint8
  expected = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 3: (128, 128, 0), 4: (0, 0, 128),
              15: (192, 128, 128), 20: (0, 64, 128), 255: (224, 224, 192)}
  for index, color in expected.items():
    assert tuple(colormap[index]) == color
  assert len({tuple(c) for c in colormap}) == 256


def test_cityscapes_and_ade20k_colormaps():
  cityscapes = colormaps.get_colormap('cityscapes')
  assert cityscapes.shape == (256, 3)
  assert tuple(cityscapes[0]) == (128, 64, 128) and tuple(cityscapes[18]) == (119, 11, 32)
  assert not cityscapes[19:].any()
  ade20k = colormaps.get_colormap('ade20k')
  assert ade20k.shape == (151, 3)
  assert tuple(ade20k[0]) == (0, 0, 0) and tuple(ade20k[1]) == (120, 120, 120)
  assert tuple(ade20k[150]) == (92, 0, 255)


def test_unknown_colormap_names_the_choices():
  with pytest.raises(ValueError, match='pascal, cityscapes, ade20k'):
    colormaps.get_colormap('voc')


def test_colorize_maps_ids_and_rejects_ids_past_the_table():
  labels = np.array([[0, 1], [2, 150]])
  colors = colormaps.colorize(labels, 'ade20k')
  assert colors.shape == (2, 2, 3)
  assert tuple(colors[1, 1]) == (92, 0, 255)
  with pytest.raises(ValueError, match=r'\[0, 151\)'):
    colormaps.colorize(np.array([[151]]), 'ade20k')


@pytest.mark.parametrize('name,classes', [('1', {0, 1, 255}), ('23', {0, 17, 255}),
                                          ('114', {0, 3, 255})])
def test_real_colour_coded_voc_targets_invert_to_ids(shared, name, classes):
  data = shared('data', 'voc-samples-vainf', f'{name}_target.png').read_bytes()
  rgb = tf.io.decode_png(data, channels=3).numpy()
  ids = colormaps.labels_from_colors(rgb, colormaps.get_colormap('pascal'), 21, 255)
  assert set(np.unique(ids)) == classes
  np.testing.assert_array_equal(colormaps.colorize(ids, 'pascal'), rgb)


def test_colours_outside_the_colormap_are_listed():
  rgb = np.zeros([4, 4, 3], np.uint8)
  rgb[0, 0] = (1, 2, 3)
  with pytest.raises(ValueError, match=r'1 pixels .* \(1, 2, 3\)'):
    colormaps.labels_from_colors(rgb, colormaps.get_colormap('pascal'), 21, 255)


def test_black_means_ignore_for_cityscapes_colours():
  rgb = np.array([[[0, 0, 0], [128, 64, 128], [119, 11, 32]]], np.uint8)
  ids = colormaps.labels_from_colors(rgb, colormaps.get_colormap('cityscapes'), 19, 255)
  assert ids.tolist() == [[255, 0, 18]]


def test_colormap_files_and_their_errors(tmp_path):
  path = tmp_path / 'colors.txt'
  path.write_text('0 0 0\n#ff8000\n10, 20, 30\n')
  np.testing.assert_array_equal(colormaps.load_colormap(str(path)),
                                [[0, 0, 0], [255, 128, 0], [10, 20, 30]])
  path.write_text('0 0 0\n300 0 0\n')
  with pytest.raises(ValueError, match=r'colors.txt:2: expected'):
    colormaps.load_colormap(str(path))
  with pytest.raises(ValueError, match='neither a known name'):
    colormaps.load_colormap(str(tmp_path / 'absent.txt'))
