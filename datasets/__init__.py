"""Dataset converters: one module per dataset, and `convert` (`deeplab.datasets.convert`)
as the one entry point that checks a dataset and writes its TFRecords.

`DATASETS` names the datasets `convert` takes without importing their converters,
which load TensorFlow, so deeplab-convert defines its flags without it.
"""

# Every dataset `convert` takes, with the function of this package (`module.function`)
# that lists its examples.
DATASETS = {
    'voc2012': 'voc2012.voc2012_source',
    'sbd': 'sbd.sbd_source',
    'train_aug': 'sbd.sbd_source',
    'cityscapes': 'cityscapes.cityscapes_source',
    'ade20k': 'ade20k.ade20k_source',
    'folder': 'folder.folder_source',
    'synthetic': 'synthetic.synthetic_source',
    'coco': 'coco.coco_source',
}
