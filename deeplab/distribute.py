"""Distribution strategies, and what follows from the number of replicas.

One code path serves every strategy: training and evaluation build their model,
optimizer and metrics under `strategy.scope()` and run their step with
`strategy.run`; only the construction of the strategy differs.

Example:
  >>> from deeplab.config import RuntimeConfig
  >>> strategy = build_strategy(RuntimeConfig())
  >>> strategy.num_replicas_in_sync
  1
"""

import dataclasses

import tensorflow as tf
from deeplab.config import ModelConfig, RuntimeConfig


def build_strategy(runtime: RuntimeConfig) -> tf.distribute.Strategy:
  """The `tf.distribute.Strategy` that `runtime.distribution_strategy` names.

  - 'default': the current (by default single-device) strategy.
  - 'mirrored': synchronous replicas on every local GPU, or on every logical CPU
    device when there is no GPU.
  - 'multi_worker': `MultiWorkerMirroredStrategy`; the cluster and this process's
    task come from the `TF_CONFIG` environment variable, as TensorFlow defines it.
  - 'tpu': `TPUStrategy` on the TPU `runtime.tpu` names ('' = the local TPU).
  """
  name = runtime.distribution_strategy
  if name == 'default':
    return tf.distribute.get_strategy()
  if name == 'mirrored':
    devices = tf.config.list_logical_devices('GPU') or tf.config.list_logical_devices('CPU')
    return tf.distribute.MirroredStrategy([d.name for d in devices])
  if name == 'multi_worker':
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == 'tpu':
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=runtime.tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f'runtime.distribution_strategy {name!r} is not one of default, mirrored, '
                   f'multi_worker, tpu.')


def resolve_model_config(config: ModelConfig, strategy: tf.distribute.Strategy) -> ModelConfig:
  """`config` with `sync_batch_norm=None` decided: on when there are several replicas.

  BatchNorm statistics over a per-replica batch of a few crops are too noisy to
  train with; synchronized BatchNorm computes them over the global batch.
  """
  if config.sync_batch_norm is not None:
    return config
  return dataclasses.replace(config, sync_batch_norm=strategy.num_replicas_in_sync > 1)


def per_replica_batch_size(global_batch_size: int, strategy: tf.distribute.Strategy,
                           field: str = 'train_data.batch_size') -> int:
  """The per-replica batch; raises ValueError naming `field` if it does not divide."""
  replicas = strategy.num_replicas_in_sync
  if global_batch_size % replicas:
    raise ValueError(f'{field} ({global_batch_size}) is the global batch and must be divisible '
                     f'by the number of replicas ({replicas}).')
  return global_batch_size // replicas


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """Whether this worker writes checkpoints, summaries and the config."""
  return strategy.extended.should_checkpoint


def worker_index(strategy: tf.distribute.Strategy) -> int:
  """This worker's index in the cluster (0 without a cluster)."""
  resolver = getattr(strategy, 'cluster_resolver', None)
  task_id = getattr(resolver, 'task_id', None) if resolver is not None else None
  return int(task_id or 0)


def describe(strategy: tf.distribute.Strategy) -> str:
  """One line naming the strategy, its replicas and this worker."""
  return (f'{type(strategy).__name__} with {strategy.num_replicas_in_sync} replica(s); '
          f'worker {worker_index(strategy)}{" (chief)" if is_chief(strategy) else ""}')
