"""Installs the `deeplab` library and its command-line tools.

`tools/`, `datasets/` and `experiments/` live at the top of the repository, where
users look for them, but install as `deeplab.tools`, `deeplab.datasets` and
`deeplab.experiments`, so no generic top-level module name lands in site-packages.
"""

from setuptools import find_packages, setup

_TOOLS = {
    'deeplab-convert': 'convert',
    'deeplab-train': 'train',
    'deeplab-eval': 'evaluate',
    'deeplab-predict': 'predict',
    'deeplab-export': 'export',
    'deeplab-import-checkpoint': 'import_checkpoint',
    'deeplab-benchmark': 'benchmark',
    'deeplab-cost': 'cost',
}

setup(
    name='deeplab',
    version='0.1.0',
    description=('DeepLabV3+ semantic segmentation on TensorFlow 2 and tf-keras, '
                 'faithful to the official implementation.'),
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=(find_packages(include=['deeplab', 'deeplab.*']) +
              ['deeplab.tools', 'deeplab.datasets', 'deeplab.experiments']),
    package_dir={
        'deeplab.tools': 'tools',
        'deeplab.datasets': 'datasets',
        'deeplab.experiments': 'experiments',
    },
    package_data={'deeplab.experiments': ['*.yaml']},
    install_requires=[
        'tensorflow~=2.21.0',
        'tf-keras~=2.21.0',
        'tensorflow-datasets>=4.9.10',
        # tensorflow-datasets prepares datasets with it but declares it for Python < 3.9 only.
        'importlib_resources',
        'numpy>=1.26',
        'absl-py>=2.1',
        'pyyaml>=6.0',
    ],
    extras_require={
        # pytest-xdist: the suite runs on two processes, one per core of a small CI machine.
        'test': ['pytest>=8', 'pytest-xdist>=3.8', 'pycocotools>=2.0.7'],
        # Decoding COCO's polygons and RLE masks (deeplab-convert --dataset=coco).
        'coco': ['pycocotools>=2.0.7'],
        # TF Serving warm-up requests in exported SavedModels, and gRPC clients.
        'serving': ['tensorflow-serving-api~=2.21.0'],
        # deeplab-export --onnx: tf2onnx converts, ONNX Runtime runs the parity gate.
        'onnx': ['tf2onnx>=1.17', 'onnx>=1.16', 'onnxruntime>=1.20'],
        # OpenVINO runs model.onnx as it is (tests, deeplab-benchmark --measurements=runtimes).
        'openvino': ['openvino>=2025.0'],
    },
    entry_points={
        'console_scripts': [
            f'{command}=deeplab.tools.{module}:run' for command, module in _TOOLS.items()
        ],
    },
)
