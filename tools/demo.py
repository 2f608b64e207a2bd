r"""The main job end to end on the generated synthetic dataset (`make demo`).

Runs the command-line tools exactly as a user would, one after the other, and
times each:
  1. deeplab-convert  generates the synthetic dataset (images + masks folders) and
                      converts it to TFRecords;
  2. deeplab-train    trains the registered `synthetic` experiment;
  3. deeplab-eval     evaluates it on the validation split (mIoU table, confusion matrix);
  4. deeplab-export   writes a TF Serving SavedModel, checked by the parity gate;
  5. deeplab-predict  runs the SavedModel on the held-out validation images and
                      writes label PNGs, colour overlays and panels.
Then prints a summary (mIoU, timings, where everything is) and writes it to
`<output_dir>/summary.json`, with a picture of a few predictions in
`<output_dir>/overview.png` and the trained model's card (what it is, its data,
training, results and limits) in `<output_dir>/MODEL_CARD.md`.

Rerunning reuses what exists: the dataset is not regenerated, training resumes
from its latest checkpoint (and does nothing once finished), and an export newer
than the latest checkpoint is kept.

  python -m deeplab.tools.demo --output_dir=demo_output
  python -m deeplab.tools.demo --output_dir=/tmp/quick --params_override=trainer.train_steps=20
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time

from absl import flags
import numpy as np

from deeplab.config import ExperimentConfig, load_experiment
from deeplab.files import atomic_write
from deeplab.tools import common

# Modules that load TensorFlow are imported in the functions that use them: --help
# and flag errors answer without it.
# pylint: disable=import-outside-toplevel

_OUTPUT_DIR = flags.DEFINE_string('output_dir', 'demo_output', 'Where everything goes.')
_PARAMS_OVERRIDE = flags.DEFINE_string(
    'params_override', '', 'Extra overrides of the synthetic experiment for train, eval and '
    'export, e.g. "trainer.train_steps=20" for a quick run.')
_NUM_EXAMPLES = flags.DEFINE_string('num_examples', 'train=200,val=50',
                                    'Images per split of the generated dataset.')
_OVERVIEW_IMAGES = flags.DEFINE_integer('overview_images', 4,
                                        'Prediction panels shown in overview.png.')

_EXPERIMENT = 'synthetic'


def _tool(name: str) -> str:
  """The console script `name` next to this Python (the virtual environment's)."""
  path = os.path.join(os.path.dirname(sys.executable), name)
  return path if os.path.exists(path) else shutil.which(name) or name


def _run(step: str, command, timings) -> None:
  print(f'\n=== {step}: {" ".join(command)}', flush=True)
  start = time.perf_counter()
  result = subprocess.run(command, check=False)
  timings[step] = round(time.perf_counter() - start, 1)
  if result.returncode != 0:
    print(f'error: {step} failed with exit status {result.returncode}.', file=sys.stderr)
    sys.exit(result.returncode)


def _latest_checkpoint_time(model_dir: str) -> float:
  indexes = glob.glob(os.path.join(model_dir, 'ckpt-*.index'))
  return max((os.path.getmtime(p) for p in indexes), default=0.0)


def _export_is_current(export_dir: str, model_dir: str) -> bool:
  versions = [p for p in glob.glob(os.path.join(export_dir, '*')) if
              os.path.basename(p).isdigit()]
  newest = max((os.path.getmtime(p) for p in versions), default=-1.0)
  return newest > _latest_checkpoint_time(model_dir)


def _overview(panels_dir: str, path: str, count: int) -> str:
  """Stacks the first `count` prediction panels into one picture."""
  from deeplab.visualization import encode_png, read_image
  panels = [read_image(p) for p in sorted(glob.glob(os.path.join(panels_dir, '*.png')))[:count]]
  if not panels:
    raise FileNotFoundError(f'deeplab-predict wrote no panels to {panels_dir}.')
  width = max(p.shape[1] for p in panels)
  gap = np.full([8, width, 3], 255, np.uint8)
  rows = []
  for panel in panels:
    padded = np.full([panel.shape[0], width, 3], 255, np.uint8)
    padded[:, :panel.shape[1]] = panel
    rows += [padded, gap]
  atomic_write(path, encode_png(np.concatenate(rows[:-1])))
  return path


def _model_card(experiment: ExperimentConfig, dataset_info, metrics, summary) -> str:
  """The Markdown model card of the demo's trained and exported model."""
  from deeplab.model import model_cost
  model, train, trainer = experiment.model, experiment.train_data, experiment.trainer
  size = 129
  cost = model_cost(model, size, size)
  splits = dataset_info['splits']
  classes = dataset_info['class_names']
  rows = '\n'.join(f'| {name} | {metrics["per_class_iou"].get(name, float("nan")):.4f} | '
                   f'{metrics["class_pixels"].get(name, 0)} |' for name in classes)
  rates = ', '.join(str(r) for r in model.resolved_atrous_rates) or 'none'
  outputs = summary['outputs']
  image_pooling = 'on' if model.add_image_level_feature else 'off'
  flips = 'on' if metrics['add_flipped_images'] else 'off'
  scales = ', '.join(str(s) for s in metrics['eval_scales'])
  lines = [
      f'# Model card: DeepLabV3+ {model.backbone} on the synthetic dataset',
      '',
      'Made by `make demo` (`python -m deeplab.tools.demo`); every number below comes from '
      f'that run (`summary.json`, and `metrics.json` in `{outputs["evaluation"]}`).',
      '',
      '## Model',
      '',
      f'- DeepLabV3+ (Chen et al., ECCV 2018): {model.backbone} backbone (depth multiplier '
      f'{model.depth_multiplier}), output stride {model.output_stride}, ASPP with '
      f'{model.aspp_convs_filters} filters, atrous rates {rates}, image pooling '
      f'{image_pooling}; decoder at stride {model.decoder_output_stride} with '
      f'{model.decoder_filters} filters.',
      f'- {cost.trainable_params:,} trainable parameters; {cost.multiply_adds / 1e9:.3f} '
      f'billion multiply-adds per {size}x{size} image.',
      f'- {model.num_classes} classes: {", ".join(classes)}; label '
      f'{dataset_info["ignore_label"]} is ignored.',
      f'- Exported for TF Serving to `{outputs["export"]}` (signatures `serving_default`: '
      'encoded images, `image_tensor`: uint8 pixels, `tf_example`; output: class ids per '
      "pixel), after its labels matched the Keras model's on the held-out images.",
      '',
      '## Intended use',
      '',
      'A check that the whole pipeline works on this machine, and a small example to start '
      'from. It knows only the synthetic shapes it was trained on: it is not a model of real '
      'photographs, and its scores say nothing about accuracy on PASCAL VOC, Cityscapes or '
      'ADE20K (see the README for those experiments and the official checkpoints).',
      '',
      '## Data',
      '',
      'Generated by `deeplab-convert --dataset=synthetic`: coloured, textured shapes on '
      'textured backgrounds, with thin ignore-label borders around objects as in PASCAL VOC. '
      f'{splits["train"]["num_examples"]} training and {splits["val"]["num_examples"]} '
      'validation images (the validation images are held out from training).',
      '',
      '## Training',
      '',
      f'{trainer.train_steps} steps of momentum SGD ({trainer.momentum}), batch '
      f'{train.batch_size}, {train.crop_size[0]}x{train.crop_size[1]} crops with random '
      f'scaling ({train.min_scale_factor}-{train.max_scale_factor}) and flips, poly learning '
      f'rate from {trainer.base_learning_rate} (power {trainer.learning_power}), BatchNorm '
      f'momentum {model.batch_norm_momentum}; {summary["seconds"].get("train", 0)} s on this '
      'machine (including start-up, or only what was left when resumed).',
      '',
      '## Evaluation',
      '',
      f'Validation split ({metrics["num_images"]} images), checkpoint step {metrics["step"]}, '
      f'scales {scales}, output stride {metrics["output_stride"]}, flips {flips}: mean IoU '
      f'**{metrics["mean_iou"]:.4f}**, pixel accuracy {metrics["pixel_accuracy"]:.4f}.',
      '',
      '| class | IoU | pixels |',
      '|---|---|---|',
      rows,
      '',
      '## Limitations',
      '',
      '- Synthetic shapes with clean edges are far easier than real scenes; a high mIoU here '
      'shows the pipeline works, not that the architecture is accurate on real data.',
      '- Trained briefly on one machine with a small batch; BatchNorm statistics come from '
      f'{splits["train"]["num_examples"]} images.',
      '- Predictions near object borders are the least reliable (the ignore-label borders '
      'are not scored).',
  ]
  return '\n'.join(lines) + '\n'


def main(argv):
  del argv
  out = os.path.abspath(_OUTPUT_DIR.value)
  paths = {
      'raw_data': os.path.join(out, 'raw'),
      'records': os.path.join(out, 'data'),
      'model_dir': os.path.join(out, 'train'),
      'evaluation': os.path.join(out, 'eval'),
      'export': os.path.join(out, 'export'),
      'predictions': os.path.join(out, 'predictions'),
  }
  overrides = ','.join(o for o in (
      f'train_data.dataset_dir={paths["records"]}',
      f'eval_data.dataset_dir={paths["records"]}', _PARAMS_OVERRIDE.value) if o)
  experiment = [f'--experiment={_EXPERIMENT}', f'--params_override={overrides}']
  timings = {}
  start = time.perf_counter()

  _run('convert', [_tool('deeplab-convert'), '--dataset=synthetic',
                   f'--data_dir={paths["raw_data"]}', f'--output_dir={paths["records"]}',
                   f'--num_examples={_NUM_EXAMPLES.value}'], timings)
  _run('train', [_tool('deeplab-train'), *experiment, f'--model_dir={paths["model_dir"]}'],
       timings)
  _run('evaluate', [_tool('deeplab-eval'), *experiment, f'--checkpoint={paths["model_dir"]}',
                    f'--output_dir={paths["evaluation"]}'], timings)
  held_out = os.path.join(paths['raw_data'], 'val')
  if _export_is_current(paths['export'], paths['model_dir']):
    print(f'\n=== export: {paths["export"]} is newer than the latest checkpoint; kept.')
    timings['export'] = 0.0
  else:
    _run('export', [_tool('deeplab-export'), *experiment,
                    f'--checkpoint={paths["model_dir"]}', f'--export_dir={paths["export"]}',
                    f'--sample_images={os.path.join(held_out, "images", "*")}'], timings)
  _run('predict', [_tool('deeplab-predict'), *experiment, f'--saved_model={paths["export"]}',
                   f'--images={os.path.join(held_out, "images")}',
                   f'--ground_truth={os.path.join(held_out, "masks")}',
                   f'--output_dir={paths["predictions"]}'], timings)

  with open(os.path.join(paths['evaluation'], 'metrics.json'), encoding='utf-8') as f:
    metrics = json.load(f)
  paths['overview'] = _overview(os.path.join(paths['predictions'], 'panels'),
                                os.path.join(out, 'overview.png'), _OVERVIEW_IMAGES.value)
  summary = {
      'experiment': _EXPERIMENT,
      'params_override': overrides,
      'validation_mean_iou': round(metrics['mean_iou'], 4),
      'validation_pixel_accuracy': round(metrics['pixel_accuracy'], 4),
      'seconds': {**timings, 'total': round(time.perf_counter() - start, 1)},
      'outputs': paths,
  }
  with open(os.path.join(paths['records'], 'dataset_info.json'), encoding='utf-8') as f:
    dataset_info = json.load(f)
  card = _model_card(load_experiment(_EXPERIMENT, params_override=overrides), dataset_info,
                     metrics, summary)
  summary['outputs']['model_card'] = os.path.join(out, 'MODEL_CARD.md')
  atomic_write(summary['outputs']['model_card'], card)
  atomic_write(os.path.join(out, 'summary.json'), json.dumps(summary, indent=1))
  print('\n=== summary')
  print(f'validation mIoU {summary["validation_mean_iou"]:.4f}, pixel accuracy '
        f'{summary["validation_pixel_accuracy"]:.4f}')
  print('seconds: ' + ', '.join(f'{k} {v}' for k, v in summary['seconds'].items()))
  for name, path in paths.items():
    print(f'  {name:12s} {path}')
  print(f'  {"summary":12s} {os.path.join(out, "summary.json")}')
  return 0


def run():
  common.run_tool(main)


if __name__ == '__main__':
  run()
