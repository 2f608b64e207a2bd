"""Shared test set-up: quiet TensorFlow, the shared data, and the short MobileNetV2 of
the tiny models (short_mobilenet_v2.py)."""

import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pytest  # noqa: E402

import short_mobilenet_v2  # noqa: E402

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent
# Real samples and official reference outputs live outside the repository; tests
# that need them find them here (or through DEEPLAB_SHARED_DIR) and skip otherwise.
SHARED_DIR = pathlib.Path(os.environ.get('DEEPLAB_SHARED_DIR', REPO_ROOT.parent / 'shared'))


def shared_path(*parts) -> pathlib.Path:
  """Path under the shared directory, or a pytest skip naming what is missing."""
  path = SHARED_DIR.joinpath(*parts)
  if not path.exists():
    pytest.skip(f'{path} is absent (set DEEPLAB_SHARED_DIR to the folder holding '
                f'reference/ and data/ to run this test).')
  return path


def write_tf1_checkpoint(prefix, variables) -> str:
  """Writes a name-based checkpoint as a TF1 Saver does (SaveV2 of named tensors)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  names = list(variables)
  tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[''] * len(names),
                    tensors=[variables[name] for name in names])
  return str(prefix)


def write_official_checkpoint(model, folder, name='model.ckpt') -> str:
  """Writes `model`'s weights under their official names, with a `global_step`, as a
  model-zoo tarball holds them: `<folder>/<name>.{index,data-*}`. Returns `folder`."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  from deeplab.checkpoints import official_weight_names  # pylint: disable=import-outside-toplevel
  variables = {name: v.numpy() for name, v in official_weight_names(model).items()}
  pathlib.Path(folder).mkdir(parents=True, exist_ok=True)
  write_tf1_checkpoint(pathlib.Path(folder) / name, {**variables, 'global_step': np.int64(30000)})
  return str(folder)


@pytest.fixture
def shared():
  return shared_path


@pytest.fixture(scope='module')
def tiny_model():
  """A tiny DeepLabV3+ (MobileNetV2 x0.25, decoder, 4 classes) whose predictions vary
  over the image.

  Freshly initialized, the network's logits are almost equal everywhere (every
  argmax is a tie broken by rounding); smaller BatchNorm variances, unit-scale
  logits weights and centred biases give every class clear margins.
  """
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tf_keras  # pylint: disable=import-outside-toplevel
  from deeplab import ModelConfig, build_model  # pylint: disable=import-outside-toplevel
  from deeplab.predict import predict_logits  # pylint: disable=import-outside-toplevel
  tf_keras.utils.set_random_seed(0)
  model = build_model(ModelConfig(backbone='mobilenet_v2', num_classes=4,
                                  depth_multiplier=0.25, aspp_convs_filters=16,
                                  decoder_filters=16))
  rng = np.random.default_rng(0)
  for weight in model.weights:
    if 'moving_variance' in weight.name:
      weight.assign(rng.uniform(0.1, 0.4, weight.shape))
  kernel, bias = model.get_layer('logits/semantic').weights
  kernel.assign(rng.normal(0, 1, kernel.shape))
  images = rng.uniform(0, 255, [1, 65, 81, 3]).astype(np.float32)
  bias.assign(-predict_logits(model, images).numpy().mean(axis=(0, 1, 2)))
  return model


@pytest.fixture(scope='module', autouse=True)
def _short_mobilenet_v2(request):
  """Modules marked `short_mobilenet_v2` build the eight-unit MobileNetV2 of
  short_mobilenet_v2.py; yields the full unit table there, None elsewhere."""
  if request.node.get_closest_marker('short_mobilenet_v2') is None:
    yield None
    return
  from deeplab.backbones import mobilenet_v2  # pylint: disable=import-outside-toplevel
  with pytest.MonkeyPatch.context() as patch:
    full = mobilenet_v2.MOBILENET_V2_UNITS
    patch.setattr(mobilenet_v2, 'MOBILENET_V2_UNITS', short_mobilenet_v2.UNITS)
    yield full


@pytest.fixture(autouse=True)
def _full_mobilenet_v2(request, _short_mobilenet_v2):
  """Tests marked `full_mobilenet_v2` in a `short_mobilenet_v2` module build the full
  MobileNetV2 (module-scoped fixtures, set up before this, keep the short one)."""
  if _short_mobilenet_v2 is None or request.node.get_closest_marker('full_mobilenet_v2') is None:
    yield
    return
  from deeplab.backbones import mobilenet_v2  # pylint: disable=import-outside-toplevel
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(mobilenet_v2, 'MOBILENET_V2_UNITS', _short_mobilenet_v2)
    yield


@pytest.fixture(scope='session')
def synthetic_dir(tmp_path_factory):
  """A small synthetic dataset converted to TFRecords, as deeplab-convert writes it."""
  from deeplab.datasets.convert import convert  # pylint: disable=import-outside-toplevel
  root = tmp_path_factory.mktemp('synthetic')
  convert('synthetic', str(root / 'raw'), str(root / 'records'),
          num_examples={'train': 48, 'val': 8})
  return str(root / 'records')


@pytest.fixture(autouse=True)
def _fresh_layer_names():
  """Each test names the layers it builds from the start (conv2d, conv2d_1, ...)."""
  yield
  import tf_keras  # pylint: disable=import-outside-toplevel
  tf_keras.backend.reset_uids()


@pytest.fixture(scope='module', autouse=True)
def _fresh_keras_session():
  """Frees the models a test file built, so a long run does not accumulate them.

  Once per file, not per test: clearing the session also empties TensorFlow's kernel
  cache, which holds every function made ready to run, so each test would prepare the
  functions of the file's shared fixtures (loaded SavedModels, compiled predictors)
  again: a second or more each.
  """
  yield
  import tf_keras  # pylint: disable=import-outside-toplevel
  tf_keras.backend.clear_session()


# The costliest files, costliest first (measured on two cores). `make test` gives
# whole files to two processes in collection order (--dist loadfile
# --no-loadscope-reorder), so these start first and the many short files fill in
# around them, instead of one long file running alone at the end.
COSTLIEST_FILES_FIRST = (
    'test_training_distributed.py', 'test_platforms.py', 'test_demo.py', 'test_benchmark.py',
    'test_checkpoints.py', 'test_cost.py', 'test_model.py', 'test_export_cli.py',
    'test_training.py', 'test_gpu_check.py', 'test_evaluation.py', 'test_training_step.py',
    'test_export.py', 'test_docstrings.py', 'test_predict_cli.py', 'test_readme.py',
    'test_export_fuzz.py', 'test_recipe.py')


def pytest_collection_modifyitems(items):
  rank = {name: index for index, name in enumerate(COSTLIEST_FILES_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
