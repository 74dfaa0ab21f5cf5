"""The training loop around VAEGAN.train_step: devices, checkpoints, summaries, progress.

Resumable: a CheckpointManager saves every `checkpoint_every_steps` into a directory
that outlives the run, and a restarted run restores the latest checkpoint and goes on
from its step. Observable: TensorBoard scalars (every loss term, D(x), D(x~), learning
rates, images/s, sample diversity), image grids (reconstructions, prior samples, an
interpolation strip, as the seed's figures), the latent projector at the end, and a
progress bar on stderr (step, ETA, images/s, each network's loss).
"""
import json
import os
import sys
import time
from typing import List, Optional

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from cns_vaegan.components import glyph_examples, glyph_figures
from cns_vaegan.components.evaluator import quality_metrics
from cns_vaegan.components.trainer import cluster, input_data
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN

# Below this share of the real glyphs' spread, prior samples are (close to) all alike.
COLLAPSE_DIVERSITY_RATIO = 0.2


def configure_devices(cpu_replicas: int) -> None:
  """Splits the CPU into `cpu_replicas` logical devices (only possible before TF uses devices)."""
  if cpu_replicas <= 1 or tf.config.list_physical_devices('GPU'):
    return
  cpu = tf.config.list_physical_devices('CPU')[0]
  wanted = [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
  try:
    tf.config.set_logical_device_configuration(cpu, wanted)
  except RuntimeError:  # devices already initialised in this process
    have = len(tf.config.list_logical_devices('CPU'))
    if have < cpu_replicas:
      logging.warning('cpu_replicas=%d asked for, but TensorFlow already initialised %d CPU '
                      'device(s) in this process; training on those', cpu_replicas, have)


def make_strategy(cpu_replicas: int = 0, role: Optional[cluster.Role] = None) -> tf.distribute.Strategy:
  """MirroredStrategy over every GPU; with none, over `cpu_replicas` logical CPUs (or the one CPU).

  In a cluster of several workers (TF_CONFIG, cluster.py), MultiWorkerMirroredStrategy over
  each worker's GPUs (or its one CPU): it must be made before this process runs any
  TensorFlow op, as a Trainer's own process does."""
  role = role or cluster.role()
  if role.num_workers > 1:
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(role.cluster), task_type=role.task_type, task_id=role.task_index,
        num_accelerators={'GPU': len(tf.config.list_physical_devices('GPU'))}, rpc_layer='grpc')
    return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
  configure_devices(cpu_replicas)
  gpus = tf.config.list_logical_devices('GPU')
  if gpus:
    return tf.distribute.MirroredStrategy([d.name for d in gpus])
  cpus = [d.name for d in tf.config.list_logical_devices('CPU')]
  return tf.distribute.MirroredStrategy(cpus[:max(cpu_replicas, 1)])


def wait_for_every_worker(strategy: tf.distribute.Strategy) -> None:
  """Returns once every worker has called it (a collective across them): called after the
  export, no worker ends before the chief has written the model, which TFX's executor
  checks for on every worker as it ends."""
  strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)


def cpu_has_bf16() -> bool:
  """Whether this CPU has bfloat16 instructions (Linux's flags for AVX512_BF16 and AMX-BF16),
  which oneDNN uses for TensorFlow's bfloat16 kernels; without them bfloat16 is emulated, slower."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      flags = next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), [])
  except OSError:
    return False
  return 'avx512_bf16' in flags or 'amx_bf16' in flags


def onednn_enabled() -> bool:
  """Whether TensorFlow runs its oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS, read when it loads)."""
  from tensorflow.python.util import _pywrap_util_port  # pylint: disable=import-outside-toplevel
  return bool(_pywrap_util_port.IsMklEnabled())


def compute_policy(config: TrainingConfig) -> str:
  """The Keras dtype policy a run trains under: with `mixed_precision`, float16 on a GPU,
  bfloat16 on a CPU with BF16 instructions, else (and without it) float32."""
  if not config.mixed_precision:
    return 'float32'
  if tf.config.list_physical_devices('GPU'):
    return 'mixed_float16'
  return 'mixed_bfloat16' if cpu_has_bf16() else 'float32'


def interpolation_strip(model: VAEGAN, first, second, steps: int = 8) -> np.ndarray:
  """The seed's strip: first, its reconstruction, the interpolations, the other's, other."""
  z, _, _ = model.encode(np.stack([first, second]))
  weights = tf.reshape(tf.linspace(0.0, 1.0, steps), [-1, 1])
  between = model.decode((1.0 - weights) * z[0] + weights * z[1]).numpy()
  return np.concatenate([first[None], between[:1], between, between[-1:], second[None]])


class _Progress:
  """The progress bar, and images/s over the last logging interval."""

  # The bar's losses: each network's own.
  LOSSES = {'enc': 'encoder_loss', 'dec': 'decoder_loss', 'dis': 'discriminator_loss'}

  def __init__(self, step: int, num_steps: int):
    self.step, self.time = step, time.perf_counter()
    # A terminal redraws it every second; a log file (a pod's) gets it every 30 s.
    self.bar = tqdm(total=num_steps, initial=step, desc='Training', unit='step', dynamic_ncols=True,
                    mininterval=1.0 if sys.stderr.isatty() else 30.0)

  def advance(self, step: int) -> None:
    self.bar.update(step - self.bar.n)

  def rate(self, step: int, batch_size: int, metrics) -> float:
    now = time.perf_counter()
    rate = (step - self.step) * batch_size / max(now - self.time, 1e-9)
    self.step, self.time = step, now
    losses = ' '.join(f'{short}={float(metrics[name]):.3f}' for short, name in self.LOSSES.items())
    self.bar.set_postfix_str(f'{rate:.0f} images/s {losses}', refresh=False)
    return rate


def write_image_summaries(model: VAEGAN, real, prior_eps, step: int) -> float:
  """Reconstruction grid, prior samples, interpolation strip; returns the sample diversity ratio."""
  reconstructions = model.reconstruct(real).numpy()
  samples = model.decode(model.prior(prior_eps)).numpy()
  pairs = np.concatenate([real[:, None], reconstructions[:, None]], axis=1).reshape(
      (-1,) + real.shape[1:])
  to_uint8 = glyph_figures.from_model_range
  figures = {
      'reconstructions': glyph_figures.grid(to_uint8(pairs), columns=16),
      'samples': glyph_figures.grid(to_uint8(samples), columns=8),
      'interpolation': glyph_figures.grid(
          to_uint8(interpolation_strip(model, real[0], real[1])), columns=12),
  }
  for name, image in figures.items():
    tf.summary.image(name, image[None], step=step)
  ratio = (quality_metrics.mean_pairwise_distance(samples)
           / max(quality_metrics.mean_pairwise_distance(real), 1e-9))
  tf.summary.scalar('diversity/samples_over_real', ratio, step=step)
  if ratio < COLLAPSE_DIVERSITY_RATIO:
    logging.warning('step %d: prior samples are nearly identical (diversity %.3f of the real '
                    'glyphs\'): the GAN may be collapsing', step, ratio)
  return ratio


def reconstruction_quality(model: VAEGAN, real, log_dir: str, step: int) -> dict:
  """Eval-glyph reconstruction MSE and SSIM now, with the grid as a PNG in the run's output.

  Written before the first step and after the last, so every run shows its before/after
  (reconstruction_quality.json, reconstructions_step<N>.png).
  """
  reconstructions = model.reconstruct(real).numpy()
  per_image = quality_metrics.reconstruction_per_image((real + 1.0) / 2.0, (reconstructions + 1.0) / 2.0)
  pairs = np.stack([real, reconstructions], 1).reshape((-1,) + real.shape[1:])
  glyph_figures.save_png(glyph_figures.grid(glyph_figures.from_model_range(pairs[:64]), columns=16),
                         os.path.join(log_dir, f'reconstructions_step{step}.png'))
  return {'step': step, 'mse': float(per_image['mse'].mean()), 'ssim': float(per_image['ssim'].mean()),
          'num_glyphs': len(real)}


def write_projector(model: VAEGAN, eval_patterns: List[str], arch: Architecture, log_dir: str,
                    n: int) -> str:
  """The seed's embedding viewer: encoder means of eval glyphs, with sprite and characters.

  Written where TensorBoard's projector looks for a run's embeddings, its plugin-asset
  folder <run>/plugins/org_tensorflow_tensorboard_projector/, so `tensorboard --logdir`
  on the folder above the run lists the run. The means are a TSV file beside the config
  (tensor_path), so the folder is self-contained and can be copied. Returns the folder.
  """
  from tensorboard.plugins import projector  # pylint: disable=g-import-not-at-top
  from tensorboard.plugins.projector import metadata as projector_metadata  # pylint: disable=g-import-not-at-top
  examples = glyph_examples.first_examples(eval_patterns, arch.img_h, arch.img_c, n)
  images = examples['image']
  _, mean, _ = model.encode(images)
  folder = os.path.join(log_dir, projector_metadata.PLUGINS_DIR, projector_metadata.PLUGIN_ASSETS_NAME)
  tf.io.gfile.makedirs(folder)
  with tf.io.gfile.GFile(os.path.join(folder, 'metadata.tsv'), 'w') as f:
    f.write('character\tcode_point\n')
    for character, code_point in zip(examples['character'], examples['code_point']):
      f.write(f'{character.decode("utf-8")}\tU+{code_point:04X}\n')
  with tf.io.gfile.GFile(os.path.join(folder, 'latent_means.tsv'), 'w') as f:
    f.write(''.join('\t'.join(f'{v:.6g}' for v in row) + '\n' for row in np.asarray(mean, np.float32)))
  columns = int(np.ceil(np.sqrt(len(images))))
  sprite = glyph_figures.grid(glyph_figures.from_model_range(images), columns=columns, padding=0)
  with tf.io.gfile.GFile(os.path.join(folder, 'sprite.png'), 'wb') as f:
    f.write(glyph_figures.png_bytes(sprite))
  config = projector.ProjectorConfig()
  entry = config.embeddings.add()
  entry.tensor_name = 'latent_means'
  entry.tensor_path = 'latent_means.tsv'
  entry.tensor_shape.extend(np.shape(mean))
  entry.metadata_path = 'metadata.tsv'
  entry.sprite.image_path = 'sprite.png'
  entry.sprite.single_image_dim.extend([arch.img_w, arch.img_h])
  projector.visualize_embeddings(folder, config)
  return folder


def train(train_patterns: List[str], eval_patterns: List[str], arch: Architecture,
          config: TrainingConfig, num_steps: int, log_dir: str, checkpoint_dir: str,
          strategy: Optional[tf.distribute.Strategy] = None,
          role: Optional[cluster.Role] = None) -> VAEGAN:
  """Trains to `num_steps` global steps, resuming from checkpoint_dir if it has a checkpoint.

  In a cluster (`role`, default: TF_CONFIG's), every worker resumes from the chief's
  checkpoint_dir, and only the chief writes there and to log_dir (cluster.writable).
  Returns the model with float32 networks, whatever precision it trained in."""
  role = role or cluster.role()
  previous_policy = tf.keras.mixed_precision.global_policy()
  tf.keras.mixed_precision.set_global_policy(compute_policy(config))
  try:
    with cluster.writable(log_dir, role) as own_log_dir, \
        cluster.writable(checkpoint_dir, role) as own_checkpoint_dir:
      return _train(train_patterns, eval_patterns, arch, config, num_steps, own_log_dir,
                    checkpoint_dir, own_checkpoint_dir, role,
                    strategy or make_strategy(config.cpu_replicas, role))
  finally:
    tf.keras.mixed_precision.set_global_policy(previous_policy)


def _train(train_patterns, eval_patterns, arch, config, num_steps, log_dir, checkpoint_dir,
           own_checkpoint_dir, role, strategy) -> VAEGAN:
  if config.batch_size % strategy.num_replicas_in_sync:
    raise ValueError(f'batch_size {config.batch_size} does not split evenly over '
                     f'{strategy.num_replicas_in_sync} replicas')
  tf.keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    model = VAEGAN(arch, config, strategy, total_steps=num_steps)
    checkpoint = tf.train.Checkpoint(step=model.step, **model.networks,
                                     **{f'{k}_optimizer': v for k, v in model.optimizers.items()})
  manager = tf.train.CheckpointManager(checkpoint, own_checkpoint_dir, max_to_keep=3)
  latest = tf.train.latest_checkpoint(checkpoint_dir)  # the chief's, for every worker
  if latest:
    checkpoint.restore(latest).assert_existing_objects_matched()
    logging.info('Resumed from %s at step %d', latest, int(model.step.numpy()))
  step = int(model.step.numpy())
  logging.info('Training %d -> %d steps on %d replica(s) (%s), global batch %d, %s',
               step, num_steps, strategy.num_replicas_in_sync,
               ', '.join(strategy.extended.worker_devices), config.batch_size,
               tf.keras.mixed_precision.global_policy().name)
  if role.num_workers > 1:
    logging.info('%s of %d workers (chief: %s); it writes checkpoints to %s and logs to %s',
                 role.name, role.num_workers, role.is_chief, own_checkpoint_dir, log_dir)

  batches = strategy.experimental_distribute_dataset(input_data.training_batches(
      train_patterns, arch, config.batch_size, config.seed, config.shuffle_buffer, first_batch=step))
  quality_set = glyph_examples.first_examples(eval_patterns, arch.img_h, arch.img_c, 512)['image']
  real = quality_set[:32]
  prior_eps = tf.random.stateless_normal([64, arch.z_dim], seed=[config.seed, 7])
  tf.io.gfile.makedirs(log_dir)
  quality = {'before': reconstruction_quality(model, quality_set, log_dir, step)}
  writer = tf.summary.create_file_writer(log_dir)
  progress, metrics = _Progress(step, num_steps), {}
  with writer.as_default(), progress.bar:
    for batch in batches:
      if step >= num_steps:
        break
      update_discriminator, update_decoder = model.equilibrium_gates(metrics)
      metrics = model.train_step(batch, update_discriminator, update_decoder)
      step += 1  # model.step counts on the device; reading it back would wait for the step
      progress.advance(step)
      if step % config.summary_every_steps == 0 or step == num_steps:
        for name, value in metrics.items():
          tf.summary.scalar(f'loss/{name}', value, step=step)
        for name, optimizer in model.optimizers.items():
          tf.summary.scalar(f'learning_rate/{name}', tf.convert_to_tensor(optimizer.learning_rate), step=step)
        tf.summary.scalar('gates/update_discriminator', float(update_discriminator), step=step)
        tf.summary.scalar('gates/update_decoder', float(update_decoder), step=step)
      if step % config.log_every_steps == 0 or step == num_steps:
        rate = progress.rate(step, config.batch_size, metrics)
        tf.summary.scalar('throughput/images_per_second', rate, step=step)
        logging.info('step %d/%d  %s  %.0f images/s', step, num_steps,
                     '  '.join(f'{k}={float(v):.3f}' for k, v in sorted(metrics.items())), rate)
      if step % config.image_summary_every_steps == 0 or step == num_steps:
        write_image_summaries(model, real, prior_eps, step)
      if step % config.checkpoint_every_steps == 0:
        manager.save(checkpoint_number=step)
  if step % config.checkpoint_every_steps:
    manager.save(checkpoint_number=step)  # the last step, when it falls between two intervals
  if tf.keras.mixed_precision.global_policy().name != 'float32':
    model.use_float32_networks()
  quality['after'] = reconstruction_quality(model, quality_set, log_dir, step)
  with tf.io.gfile.GFile(os.path.join(log_dir, 'reconstruction_quality.json'), 'w') as f:
    f.write(json.dumps(quality, indent=2))
  logging.info('Eval reconstruction MSE %.4f -> %.4f, SSIM %.3f -> %.3f (steps %d -> %d)',
               quality['before']['mse'], quality['after']['mse'], quality['before']['ssim'],
               quality['after']['ssim'], quality['before']['step'], quality['after']['step'])
  if config.projector_samples:
    write_projector(model, eval_patterns, arch, log_dir, config.projector_samples)
  return model
