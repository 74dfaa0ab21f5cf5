"""Training throughput (images/s) of the tf.function train step at the seed's size.

Seed size: 32x32x1, ch 64, z_dim 100, global batch 64, D + 2×G + E updates per step.
Runs on what the machine has: every GPU, else 1 CPU device and N logical CPUs.

    make benchmark-train                   # or: python benchmarks/train_throughput.py --steps 20
"""
import argparse
import os
import time

import numpy as np
import tensorflow as tf

from cns_vaegan.components.trainer import training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN


def measure(strategy, arch, config, steps, warmup=3) -> float:
  with strategy.scope():
    model = VAEGAN(arch, config, strategy)
  rng = np.random.default_rng(0)
  batch = {
      'image': rng.uniform(-1, 1, (config.batch_size,) + arch.image_shape).astype(np.float32),
      'eps': rng.standard_normal((config.batch_size, arch.z_dim)).astype(np.float32),
      'z_prior_eps': rng.standard_normal((config.batch_size, arch.z_dim)).astype(np.float32),
  }
  distributed = next(iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch))))
  for _ in range(warmup):
    model.train_step(distributed)
  start = time.perf_counter()
  for _ in range(steps):
    metrics = model.train_step(distributed)
  float(metrics['kl'])  # wait for the last step
  return steps * config.batch_size / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--steps', type=int, default=10)
  parser.add_argument('--cpu-replicas', type=int, default=2)
  args = parser.parse_args()
  training.configure_devices(args.cpu_replicas)
  arch, config = Architecture(), TrainingConfig()
  gpus = [d.name for d in tf.config.list_logical_devices('GPU')]
  cpus = [d.name for d in tf.config.list_logical_devices('CPU')]
  layouts = {f'{len(gpus)} GPU(s)': gpus} if gpus else {
      '1 CPU device': cpus[:1], f'{len(cpus)} logical CPUs': cpus}
  print(f'seed size: {arch.img_h}x{arch.img_w}x{arch.img_c}, ch {arch.ch}, z {arch.z_dim}, '
        f'global batch {config.batch_size}; cores: {os.cpu_count()}')
  for label, devices in layouts.items():
    rate = measure(tf.distribute.MirroredStrategy(devices), arch, config, args.steps)
    print(f'{label:>18}: {rate:8.1f} images/s  ({rate / config.batch_size:.2f} steps/s; '
          f'100 epochs of 20,920 glyphs ≈ {100 * 20920 / rate / 3600:.1f} h)')


if __name__ == '__main__':
  main()
