"""Training throughput of the train step, where its time goes, and the input pipeline alone.

Prints, for the seed's network (ch 64) and the CPU profile's (ch 32), at 32x32x1, z 100,
global batch 64, and each update schedule (`sequential`: the seed's D + 2×decoder +
encoder updates, each from its own forward pass; `one_pass`: one forward pass, three
gradients):
  - images/s of the compiled step (tf.function) and of the same step run eagerly, as a ratio,
    and the one-pass step's speed-up over the sequential one on the same network;
  - for the sequential step, the cost of each update, from steps with some updates gated off;
  - images/s of the tf.data input pipeline alone over the built-in glyphs (the trainer
    must not be input-bound), and the time of one epoch of the train split.

    make benchmark-train                    # ARGS="--steps 20 --cpu-replicas 2"
"""
import argparse
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from cns_vaegan.components import glyph_examples
from cns_vaegan.components.trainer import input_data, training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN
from cns_vaegan.pipeline import configs, local_runner

TRAIN_SPLIT = 18956  # glyphs in the built-in train split (90% of 20,920 by character hash)


def random_batch(arch, batch_size):
  rng = np.random.default_rng(0)
  return {'image': rng.uniform(-1, 1, (batch_size,) + arch.image_shape).astype(np.float32),
          'eps': rng.standard_normal((batch_size, arch.z_dim)).astype(np.float32),
          'z_prior_eps': rng.standard_normal((batch_size, arch.z_dim)).astype(np.float32)}


def rate(step, images_per_step, steps, warmup=2) -> float:
  for _ in range(warmup):
    step()
  start = time.perf_counter()
  for _ in range(steps):
    result = step()
  float(result['encoder_loss'])  # wait for the last step
  return steps * images_per_step / (time.perf_counter() - start)


def measure_network(arch, config, strategy, steps):
  with strategy.scope():
    model = VAEGAN(arch, config, strategy)
  batch = random_batch(arch, config.batch_size)
  distributed = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))
  n = config.batch_size
  compiled = rate(lambda: model.train_step(distributed), n, steps)
  breakdown = {}
  if config.update_schedule == 'sequential':
    seconds = {gates: n / rate(lambda g=gates: model.train_step(distributed, *g), n, steps)
               for gates in ((False, False), (True, False), (False, True))}
    encoder = seconds[(False, False)]
    breakdown = {'discriminator': seconds[(True, False)] - encoder,
                 f'decoder ×{config.decoder_steps_per_discriminator_step}': seconds[(False, True)] - encoder,
                 'encoder': encoder}
  eager_args = {k: tf.constant(v) for k, v in batch.items()}
  with tf.distribute.get_strategy().scope():
    eager_model = VAEGAN(arch, config, tf.distribute.get_strategy())
  eager = rate(lambda: eager_model._replica_step(eager_args, True, True), n, max(2, steps // 3), warmup=1)  # pylint: disable=protected-access
  return compiled, eager, breakdown


def input_rate(batch_size, batches=300) -> float:
  """tf.data images/s over the built-in glyphs (written to TFRecords as ingestion does)."""
  data_root = local_runner.ensure_builtin_dataset()
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'glyphs.gz')
    with tf.io.TFRecordWriter(path, options='GZIP') as writer:
      for name in sorted(os.listdir(data_root)):
        with open(os.path.join(data_root, name), 'rb') as f:
          glyph = glyph_examples.decode_glyph(name, f.read(), 32, 1)
        writer.write(glyph_examples.to_example(glyph).SerializeToString())
    dataset = input_data.training_batches([path], Architecture(), batch_size, 0, 25000)
    iterator = iter(dataset)
    for _ in range(batches):  # the first pass fills the cache, as the first epoch does
      next(iterator)
    start = time.perf_counter()
    for _ in range(batches):
      next(iterator)
    return batches * batch_size / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--cpu-replicas', type=int, default=0, help='also time N logical CPUs')
  args = parser.parse_args()
  training.configure_devices(args.cpu_replicas)
  gpus = [d.name for d in tf.config.list_logical_devices('GPU')]
  cpus = [d.name for d in tf.config.list_logical_devices('CPU')]
  print(f'32x32x1, z 100, global batch {TrainingConfig().batch_size}; '
        f'{len(gpus)} GPU(s), cores: {os.cpu_count()}')
  for profile in ('seed', 'cpu'):
    arch = Architecture.load(configs.PROFILES[profile]['architecture'])
    layouts = {f'{len(gpus)} GPU(s)': gpus} if gpus else {'1 CPU device': cpus[:1]}
    if args.cpu_replicas > 1 and not gpus:
      layouts[f'{len(cpus)} logical CPUs'] = cpus
    for label, devices in layouts.items():
      sequential = None
      for schedule in ('sequential', 'one_pass'):
        config = TrainingConfig(update_schedule=schedule)
        compiled, eager, breakdown = measure_network(
            arch, config, tf.distribute.MirroredStrategy(devices), args.steps)
        sequential = sequential or compiled
        epoch_min = TRAIN_SPLIT / compiled / 60
        print(f'ch {arch.ch:2d} ({profile} profile), {label}, {schedule:10s}: tf.function '
              f'{compiled:6.1f} images/s ({compiled / sequential:4.2f}x sequential), eager '
              f'{eager:6.1f} images/s, ratio {compiled / eager:4.1f}x; one epoch ({TRAIN_SPLIT} '
              f'glyphs) {epoch_min:5.1f} min')
        total = sum(breakdown.values())
        if breakdown:
          print('    time per step: ' + ', '.join(f'{k} {v * 1e3:.0f} ms ({v / total:.0%})'
                                                  for k, v in breakdown.items()))
  print(f'input pipeline alone: {input_rate(TrainingConfig().batch_size):8.0f} images/s')


if __name__ == '__main__':
  main()
