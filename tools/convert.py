r"""Converts a segmentation dataset to sharded TFRecords (the official DeepLab format).

Every image and label is checked first (a "dataset doctor"): unreadable or
truncated files, missing image/label pairs, size mismatches, colour masks where
class ids were expected and ids outside [0, num_classes) other than the ignore
label are all listed by file name, and nothing is written unless every file is
good (or --skip_bad leaves the bad ones out). --check_only runs the checks alone.
The output directory gets `<split>-0000K-of-0000N.tfrecord` shards and a
`dataset_info.json` (classes, split sizes, class pixel counts).

Examples:
  deeplab-convert --dataset=voc2012 --data_dir=VOCdevkit/VOC2012 --output_dir=data/voc
  deeplab-convert --dataset=sbd --data_dir=VOCdevkit/VOC2012 \
      --sbd_dir=benchmark_RELEASE --output_dir=data/voc          # train_aug (10582)
  deeplab-convert --dataset=cityscapes --data_dir=cityscapes --output_dir=data/cityscapes
  deeplab-convert --dataset=cityscapes --data_dir=cityscapes --output_dir=data/cityscapes \
      --splits=train_coarse,trainval_coarse                    # gtCoarse labels only
  deeplab-convert --dataset=coco --data_dir=coco --skip_empty \
      --output_dir=data/coco                                   # VOC classes, pre-training
  deeplab-convert --dataset=ade20k --data_dir=ADEChallengeData2016 --output_dir=data/ade20k
  deeplab-convert --dataset=folder --data_dir=my_data --num_classes=3 \
      --colormap=pascal --output_dir=data/mine                   # RGB-coded masks
  deeplab-convert --dataset=synthetic --output_dir=demo_output/data
"""


from absl import flags

from deeplab.datasets import DATASETS
from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

flags.DEFINE_enum('dataset', None, list(DATASETS), 'Dataset to convert.')
flags.DEFINE_string('data_dir', '', 'Root of the dataset as downloaded: VOCdevkit/VOC2012 '
                    '(voc2012, sbd), the folder of leftImg8bit/ + gtFine/ or of their zips '
                    '(cityscapes; with gtCoarse/ and leftImg8bit/train_extra/ or their zips for '
                    'the coarse splits), ADEChallengeData2016 (ade20k), your folder of '
                    'images/ + masks/ (folder), the folder of train2017/, val2017/ and '
                    'annotations/ (coco); synthetic: where to generate (default '
                    '<output_dir>/raw).')
flags.DEFINE_string('output_dir', '', 'Where the TFRecords and dataset_info.json go.')
flags.DEFINE_list('splits', [], 'Splits to convert (default: all of the dataset\'s usual '
                  'ones, e.g. train,val,trainval for voc2012; train_fine,val_fine (and '
                  'train_fine_coarse with the coarse data) for cityscapes; train,val for '
                  'coco).')
flags.DEFINE_integer('num_shards', None, 'Shards per split (default: the official count: '
                     '4, 10 for cityscapes, 32 for coco).', lower_bound=1)
flags.DEFINE_integer('num_workers', None, 'Threads decoding and encoding (default: the '
                     'number of CPUs).', lower_bound=1)
flags.DEFINE_bool('check_only', False, 'Only check every file and report; write nothing.')
flags.DEFINE_bool('skip_bad', False, 'Write the good examples and list the bad ones '
                  'instead of failing.')
flags.DEFINE_string('sbd_dir', None, 'sbd: SBD benchmark_RELEASE (cls/*.mat) or a '
                    'SegmentationClassAug folder.')
flags.DEFINE_integer('num_classes', None, 'folder, synthetic: number of classes, '
                     'background included.')
flags.DEFINE_integer('ignore_label', None, 'folder: label of ignored pixels (default 255).')
flags.DEFINE_string('colormap', None, 'folder: read colour-coded RGB masks through this '
                    'colormap: pascal, cityscapes, ade20k, or a text file of "R G B" lines '
                    '(line i = class i).')
flags.DEFINE_list('class_names', None, 'folder: class names, one per class.')
flags.DEFINE_string('name', None, 'folder: dataset name (default: the folder name).')
flags.DEFINE_bool('skip_empty', False, 'coco: leave out the images without an instance of '
                  'a VOC class.')
flags.DEFINE_integer('seed', None, 'synthetic: generation seed (default 0).')
flags.DEFINE_list('num_examples', None, 'synthetic: images per split, e.g. '
                  'train=200,val=50.')
flags.mark_flag_as_required('dataset')

_OPTION_FLAGS = ('sbd_dir', 'num_classes', 'ignore_label', 'colormap', 'class_names', 'name',
                 'seed', 'num_examples', 'skip_empty')


def _options():
  """The dataset options the user set, e.g. {'sbd_dir': ...}."""
  values = flags.FLAGS
  options = {n: values[n].value for n in _OPTION_FLAGS if values[n].present}
  if 'num_examples' in options:
    try:
      options['num_examples'] = {k: int(v) for k, v in
                                 (item.split('=') for item in options['num_examples'])}
    except ValueError as e:
      raise ValueError('--num_examples must look like train=200,val=50.') from e
  from deeplab.datasets.convert import dataset_options
  allowed = dataset_options(values.dataset)
  for name in options:
    if name not in allowed:
      takes = ', '.join('--' + n for n in allowed) or 'no options'
      raise ValueError(f'--{name} does not apply to --dataset={values.dataset} (it takes: '
                       f'{takes}).')
  return options


def main(argv):
  del argv
  values = flags.FLAGS
  if not values.check_only and not values.output_dir:
    raise ValueError('--output_dir is required (or pass --check_only).')
  from deeplab.datasets.convert import convert
  info = convert(values.dataset, values.data_dir, None if values.check_only else
                 values.output_dir, splits=values.splits or None,
                 num_shards=values.num_shards, num_workers=values.num_workers,
                 skip_bad=values.skip_bad, **_options())
  action = 'Checked' if values.check_only else f'Wrote to {values.output_dir}'
  print(f'{action}: {info.name}, {info.num_classes} classes, ignore label {info.ignore_label}')
  for split, split_info in info.splits.items():
    skipped = f', {len(split_info.skipped)} skipped' if split_info.skipped else ''
    print(f'  {split}: {split_info.num_examples} examples{skipped}')
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
