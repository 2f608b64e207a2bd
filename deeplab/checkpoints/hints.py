"""Advice for a checkpoint that does not fit the model: which setting to change.

Each hint reads what the checkpoint holds (official names and shapes) and names
the `ModelConfig` field (in `--params_override` syntax) or loading option that
would make it fit; for an official checkpoint of a whole network, the last hint
is `config_from_checkpoint`, which reads every setting from it.
"""

from typing import List, Optional

from deeplab.backbones import get_backbone_spec
from deeplab.checkpoints.architecture import (
    ASPP_1X1, ASPP_PLAIN, ASPP_SEPARABLE, DECODER_PLAIN, DECODER_PROJECTION, DECODER_SEPARABLE,
    IMAGE_POOLING, MOBILENET_LAST_PROJECTION, config_from_variables, depth_multiplier,
    separable_or_plain)
from deeplab.checkpoints.names import backbones_in_checkpoint
from deeplab.checkpoints.sources import OFFICIAL, CheckpointSource
from deeplab.config import SUPPORTED_DECODER_OUTPUT_STRIDES, ModelConfig

_DECODER_OUTPUT = 'decoder/decoder_conv1_pointwise/weights'
# Official variables whose width gives a setting: (name, field, the setting's value
# read from the checkpoint's shapes).
_WIDTH_SETTINGS = (
    (MOBILENET_LAST_PROJECTION, 'depth_multiplier', depth_multiplier),
    (ASPP_1X1, 'aspp_convs_filters', lambda shapes: shapes[ASPP_1X1][-1]),
    (_DECODER_OUTPUT, 'decoder_filters', lambda shapes: shapes[_DECODER_OUTPUT][-1]),
)
_LOGITS_BIASES = 'logits/semantic/biases'
# The layer after the ASPP branches: its input width counts them.
_ASPP_PROJECTION = 'concat_projection/weights'


def fix_hints(config: ModelConfig, source: CheckpointSource, report, backbone_only: bool,
              strict: bool) -> List[str]:
  """What to change so that the checkpoint `source` fits `config`.

  Args:
    config: the model's config.
    source: the checkpoint.
    report: the `ImportReport` of the refused load.
    backbone_only: whether only the backbone was to be loaded.
    strict: whether weights missing from the checkpoint are an error (otherwise
      parts the checkpoint lacks need no advice).
  """
  shapes = source.shapes
  names = set(shapes)
  mismatched = {name: (theirs, ours) for name, theirs, ours in report.shape_mismatches}
  backbone_scope = get_backbone_spec(config.backbone).scope + '/'
  hints = _backbone_hints(config, names)
  if report.unexpected and not source.by_name:
    hints.append('a TF2 checkpoint pairs variables by their place in the model, not by name: '
                 'build the model with the ModelConfig it was saved from (e.g. the same '
                 'backbone, ASPP branches and decoder)')
  if _LOGITS_BIASES in mismatched:
    classes = shapes[_LOGITS_BIASES][0]
    hints.append(f'the checkpoint\'s logits have {classes} classes: set '
                 f'model.num_classes={classes}, or pass initialize_last_layer=False (or '
                 f'"auto") to start new logits for {config.num_classes} classes')
  for name, field, value in _WIDTH_SETTINGS:
    theirs, ours = mismatched.get(name, ((), ()))
    if theirs[-1:] != ours[-1:]:
      hints.append(f'{name} is {list(theirs)} in the checkpoint: set '
                   f'model.{field}={value(shapes):g}')
  backbone_fits = not any(name.startswith(backbone_scope) for name in mismatched)
  if DECODER_PROJECTION in mismatched and backbone_fits:
    others = [s for s in SUPPORTED_DECODER_OUTPUT_STRIDES if s != config.decoder_output_stride]
    hints.append(f'the decoder\'s low-level features have another width in the checkpoint: '
                 f'it was trained with another decoder_output_stride (set '
                 f'model.decoder_output_stride={others[0]})')
  if ASPP_1X1 in names and not backbone_only:
    hints += _head_hints(config, shapes, mismatched, strict)
    if source.format == OFFICIAL:
      hints += _whole_network_hint(source)
  elif not backbone_only and any(name.startswith(backbone_scope) for name in names):
    hints.append('the checkpoint holds no ASPP, decoder or logits (like an ImageNet-pretrained '
                 'backbone): pass backbone_only=True')
  return hints


def _backbone_hints(config: ModelConfig, names) -> List[str]:
  found = backbones_in_checkpoint(names)
  if not found or config.backbone in found:
    return []
  scope = get_backbone_spec(found[0]).scope
  return [f'the checkpoint holds {scope}/... variables: set model.backbone={found[0]}']


def _head_hints(config: ModelConfig, shapes, mismatched, strict: bool) -> List[str]:
  """Hints about the ASPP and decoder structure (branches present or absent)."""
  hints = []
  image_pooling = IMAGE_POOLING in shapes
  if image_pooling != config.add_image_level_feature:
    hints.append(f'the checkpoint\'s ASPP {"has" if image_pooling else "has no"} image-pooling '
                 f'branch: set model.add_image_level_feature={str(image_pooling).lower()}')
  hints += _part_hints(
      'ASPP atrous branches', separable_or_plain(shapes, ASPP_SEPARABLE, ASPP_PLAIN),
      _kind_of(bool(config.resolved_atrous_rates), config.aspp_with_separable_conv),
      present='model.atrous_rates=null', absent='model.atrous_rates=[]',
      separable_field='aspp_with_separable_conv', strict=strict,
      shapes_follow=_ASPP_PROJECTION in mismatched)
  hints += _part_hints(
      'decoder', separable_or_plain(shapes, DECODER_SEPARABLE, DECODER_PLAIN),
      _kind_of(config.decoder_output_stride is not None, config.decoder_use_separable_conv),
      present='model.decoder_output_stride=4', absent='model.decoder_output_stride=null',
      separable_field='decoder_use_separable_conv', strict=strict, shapes_follow=False)
  return hints


def _whole_network_hint(source: CheckpointSource) -> List[str]:
  try:
    config_from_variables(source.shapes, source.path)
  except ValueError:
    return []
  return [f'or take every setting from the checkpoint: '
          f'deeplab.config_from_checkpoint({source.path!r}) (the tools do so for an official '
          f'--checkpoint given without --experiment)']


def _kind_of(present: bool, separable: bool) -> Optional[str]:
  if not present:
    return None
  return 'separable' if separable else 'plain'


def _part_hints(part: str, in_checkpoint: Optional[str], in_model: Optional[str], present: str,
                absent: str, separable_field: str, strict: bool,
                shapes_follow: bool) -> List[str]:
  """Hints for a part (ASPP atrous branches, decoder) that is separable, plain or absent.

  `shapes_follow`: the layer after the part has another shape in the checkpoint
  (its input counts the part), so the part cannot just be trained from scratch.
  """
  if in_checkpoint == in_model:
    return []
  if in_checkpoint is None:
    if shapes_follow:
      return [f'the checkpoint has no {part}: set {absent} (the layer after them has '
              f'another shape, so they cannot be trained from scratch)']
    if strict:
      return [f'the checkpoint has no {part}: set {absent}, or load with strict=False to '
              f'train the {part} from scratch']
    return []
  separable = f'model.{separable_field}={str(in_checkpoint == "separable").lower()}'
  if in_model is None:
    return [f'the checkpoint includes the {part} ({in_checkpoint} convolutions): set '
            f'{present},{separable}']
  return [f'the checkpoint holds {in_checkpoint} convolutions in the {part}: set {separable}']
