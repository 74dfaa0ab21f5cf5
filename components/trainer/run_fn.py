"""TFX Trainer glue: run_fn(fn_args) reads the Examples, trains the VAE-GAN, exports it.

The pipeline passes `custom_config = {'architecture': {...}, 'training': {...}}`; the
number of steps comes from the Trainer's train_args. Checkpoints go to a directory that
outlives a single Trainer execution (`custom_config['checkpoint_dir']`, or one under the
Trainer's model_run folder named by a hash of the inputs and configuration), so a
Trainer killed mid-run and started again with the same inputs resumes, while any change
of data or configuration starts afresh.

Under TF_CONFIG naming several workers (a Vertex AI job's worker pools, a Kubeflow TFJob,
the local runner's --workers) every worker runs run_fn; training.py trains them as one
(MultiWorkerMirroredStrategy) and only the chief writes the checkpoints, the TensorBoard
logs and the SavedModel, so the model is exported once (cluster.py).
"""
import hashlib
import json
import os

from absl import logging
from tfx.components.trainer.fn_args_utils import FnArgs

from cns_vaegan.components.trainer import cluster, export, training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig


def checkpoint_dir_for(fn_args: FnArgs, custom_config: dict) -> str:
  if custom_config.get('checkpoint_dir'):
    return custom_config['checkpoint_dir']
  identity = json.dumps({
      'train_files': sorted(fn_args.train_files), 'eval_files': sorted(fn_args.eval_files),
      'architecture': custom_config.get('architecture'), 'training': custom_config.get('training'),
      'train_steps': fn_args.train_steps,
  }, sort_keys=True)
  digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
  # model_run_dir is <pipeline_root>/Trainer/model_run/<execution id>: use its parent.
  return os.path.join(os.path.dirname(fn_args.model_run_dir.rstrip('/')), 'checkpoints', digest)


def train_and_export(fn_args: FnArgs):
  """run_fn's work; returns the trained model (every worker's, in a cluster)."""
  custom_config = fn_args.custom_config or {}
  arch = Architecture.from_dict(custom_config.get('architecture') or Architecture().to_dict())
  config = TrainingConfig.from_dict(custom_config.get('training') or {})
  if not fn_args.train_steps:
    raise ValueError('Trainer: train_args.num_steps must be set (the number of global steps)')
  role = cluster.role()
  checkpoint_dir = checkpoint_dir_for(fn_args, custom_config)
  logging.info('Checkpoints in %s; TensorBoard logs in %s', checkpoint_dir, fn_args.model_run_dir)
  model = training.train(fn_args.train_files, fn_args.eval_files, arch, config,
                         fn_args.train_steps, fn_args.model_run_dir, checkpoint_dir, role=role)
  # Every worker exports (its variables' reads may be collective), only the chief where it counts.
  with cluster.writable(fn_args.serving_model_dir, role) as export_dir:
    export.export_trained(model, export_dir, fn_args.train_files, fn_args.eval_files)
  training.wait_for_every_worker(model.strategy)
  logging.info('Exported the SavedModel to %s', export_dir)
  return model


def run_fn(fn_args: FnArgs) -> None:
  train_and_export(fn_args)
