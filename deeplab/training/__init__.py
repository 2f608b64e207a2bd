"""Training DeepLab on any `tf.distribute` strategy: `train(config, model_dir)`.

- `loop.train`: the resumable run (checkpoints, summaries, evaluation, preemption).
- `step.TrainStep` / `build_train_step`: the distributed train step of an
  experiment, usable on its own (benchmarks).
- `distribution`: strategies and what follows from the number of replicas.
- `checkpointing`: the model directory's config and checkpoints.
"""

from deeplab.training.checkpointing import TrainingCheckpoints, prepare_model_dir
from deeplab.distribute import build_strategy, resolve_model_config
from deeplab.training.loop import (TrainingDivergedError, TrainResult, check_experiment,
                                   resolve_training_settings, train)
from deeplab.training.step import TrainStep, build_train_step

__all__ = [
    'TrainResult',
    'TrainStep',
    'TrainingCheckpoints',
    'TrainingDivergedError',
    'build_strategy',
    'build_train_step',
    'check_experiment',
    'prepare_model_dir',
    'resolve_model_config',
    'resolve_training_settings',
    'train',
]
