"""TensorFlow's CPU kernels, oneDNN off and on: the train step and the served signatures.

TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512 VNNI/BF16 or
AMX; elsewhere (every AVX2-only CPU) it runs its Eigen kernels unless TF_ENABLE_ONEDNN_OPTS=1.
The variable is read once, when TensorFlow loads, so each setting runs in its own process:
the cpu profile's train step (one forward pass, three gradients, batch 64, the profile's
compute dtype) and the model's encode and decode at batch 1 and 32, in alternating rounds
(off, on, off, on, ...) so a machine's drift falls on both. scripts/env.sh and the image
set TF_ENABLE_ONEDNN_OPTS=1 from these figures.

    python benchmarks/cpu_kernels.py --rounds 2 --steps 20 --fragment cpu_kernels
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BENCHMARKS = os.path.dirname(os.path.abspath(__file__))


def child(steps: int) -> dict:
  """Images/s in this process, under whatever TF_ENABLE_ONEDNN_OPTS it was started with."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer import training  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer.architecture import Architecture  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer.training_config import TrainingConfig  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer.vaegan import VAEGAN  # pylint: disable=import-outside-toplevel
  from cns_vaegan.pipeline import configs  # pylint: disable=import-outside-toplevel
  sys.path.insert(0, BENCHMARKS)
  import train_throughput  # pylint: disable=import-outside-toplevel

  profile = configs.PROFILES['cpu']
  arch = Architecture.load(profile['architecture'])
  config = TrainingConfig.from_dict(dict(profile['training']))
  tf.keras.mixed_precision.set_global_policy(training.compute_policy(config))
  strategy = tf.distribute.MirroredStrategy(['/cpu:0'])
  with strategy.scope():
    model = VAEGAN(arch, config, strategy)
  batch = train_throughput.random_batch(arch, config.batch_size)
  distributed = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(batch))))
  figures = {'onednn': training.onednn_enabled(), 'dtype': training.compute_policy(config),
             'train step, batch 64': train_throughput.rate(lambda: model.train_step(distributed),
                                                           config.batch_size, steps)}
  encode = tf.function(lambda x: model.encode(x)[0])
  decode = tf.function(model.decode)
  rng = np.random.default_rng(0)
  for size in (1, 32):
    images = tf.constant(rng.uniform(-1, 1, (size,) + arch.image_shape).astype(np.float32))
    codes = tf.constant(np.tanh(rng.standard_normal((size, arch.z_dim))).astype(np.float32))
    for name, call, argument in (('encode', encode, images), ('decode', decode, codes)):
      for _ in range(3):
        call(argument)
      calls = max(20, 2000 // size)
      start = time.perf_counter()
      for _ in range(calls):
        result = call(argument)
      np.asarray(result)
      figures[f'{name}, batch {size}'] = calls * size / (time.perf_counter() - start)
  return figures


def run_child(setting: str, steps: int) -> dict:
  env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=setting, TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', '--steps', str(steps)],
                       env=env, check=True, capture_output=True, text=True)
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n', maxsplit=1)[0])
  parser.add_argument('--rounds', type=int, default=2, help='off/on pairs, alternating')
  parser.add_argument('--steps', type=int, default=20, help='timed train steps per process')
  parser.add_argument('--fragment', help='also write the table to docs/generated/<FRAGMENT>.md')
  parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print(json.dumps(child(args.steps)))
    return
  sys.path.insert(0, BENCHMARKS)
  import fragments  # pylint: disable=import-outside-toplevel
  runs = {'0': [], '1': []}
  for index in range(args.rounds):
    for setting in ('0', '1'):
      runs[setting].append(run_child(setting, args.steps))
      print(f'round {index + 1}, TF_ENABLE_ONEDNN_OPTS={setting}: {runs[setting][-1]}', file=sys.stderr, flush=True)
  out = fragments.Fragment(args.fragment)
  off, on = runs['0'][0], runs['1'][0]
  out.print(f"cpu profile ({on['dtype']}), images/s, median of {args.rounds} process(es) per setting "
            f"(oneDNN reported {'on' if on['onednn'] else 'off'} / {'on' if off['onednn'] else 'off'} "
            f"with TF_ENABLE_ONEDNN_OPTS=1 / 0):", '',
            '| measure | TF_ENABLE_ONEDNN_OPTS=0 | TF_ENABLE_ONEDNN_OPTS=1 | ratio |', '|---|---|---|---|')
  for measure in [k for k in on if k not in ('onednn', 'dtype')]:
    a = statistics.median(r[measure] for r in runs['0'])
    b = statistics.median(r[measure] for r in runs['1'])
    out.print(f'| {measure} | {a:,.0f} | {b:,.0f} | {b / a:.2f}x |')
  out.close()


if __name__ == '__main__':
  main()
