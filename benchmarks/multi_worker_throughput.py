"""Multi-worker training on one machine: images/s of 1 and 2 loopback workers, and what
their communication costs per step, so the cost is known before paying for a cluster.

Each configuration runs as real worker processes with their TF_CONFIG (the local runner's
--workers does the same), training the train step (one_pass schedule) on a fixed random
global batch. Per step it reports the time of the whole step, and the time of the all-reduce
alone: a collective over every worker of a float32 vector the size of the three networks'
parameters, which the step all-reduces (as gradients) once per step. On one machine the
workers share its cores, so 2 workers are not expected to be faster than 1; across machines
the compute splits and the all-reduce's share is what is left to pay.

    python benchmarks/multi_worker_throughput.py                       # the CPU profile's network
    python benchmarks/multi_worker_throughput.py --architecture tiny --steps 20 --no-fragment
"""
import argparse
import json
import os
import sys
import tempfile
import time

from fragments import Fragment

TINY = {'img_h': 16, 'img_w': 16, 'img_c': 1, 'ch': 4, 'z_dim': 8}  # tests/conftest.py's


def worker(args) -> None:
  """One worker: time the step and the all-reduce; the chief writes the figures to args.result."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer import cluster, training  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer.architecture import Architecture  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer.training_config import TrainingConfig  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer.vaegan import VAEGAN  # pylint: disable=import-outside-toplevel
  role = cluster.role()
  strategy = training.make_strategy(0, role)
  arch = Architecture(**TINY) if args.architecture == 'tiny' else Architecture.load(args.architecture)
  config = TrainingConfig(batch_size=args.batch_size, update_schedule='one_pass')
  with strategy.scope():
    model = VAEGAN(arch, config, strategy)
  rng = np.random.default_rng(0)
  batch = {'image': rng.uniform(-1, 1, (args.batch_size,) + arch.image_shape).astype(np.float32),
           'eps': rng.standard_normal((args.batch_size, arch.z_dim)).astype(np.float32),
           'z_prior_eps': rng.standard_normal((args.batch_size, arch.z_dim)).astype(np.float32)}
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  batches = iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch).repeat().with_options(options)))
  parameters = sum(int(np.prod(v.shape)) for net in model.networks.values() for v in net.trainable_variables)

  @tf.function
  def all_reduce():
    vector = strategy.run(lambda: tf.ones([parameters], tf.float32))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, vector, axis=None)[0]

  def seconds_per_call(call, steps):
    for _ in range(2):  # trace, warm up
      result = call()
    start = time.perf_counter()
    for _ in range(steps):
      result = call()
    float(result['encoder_loss'] if isinstance(result, dict) else result)
    return (time.perf_counter() - start) / steps

  step = seconds_per_call(lambda: model.train_step(next(batches)), args.steps)
  reduce = seconds_per_call(all_reduce, args.steps)
  # The collectives the step's graph holds (all-reduces of gradients, synchronized batch norm
  # statistics and losses): each a round trip between the workers.
  graph = model._distributed_step.get_concrete_function(  # pylint: disable=protected-access
      next(batches), True, True).graph.as_graph_def()
  nodes = list(graph.node) + [node for function in graph.library.function for node in function.node_def]
  collectives = sum(node.op.startswith('Collective') for node in nodes)
  if role.is_chief:
    with open(args.result, 'w', encoding='utf-8') as f:
      json.dump({'workers': role.num_workers, 'replicas': strategy.num_replicas_in_sync, 'step_s': step,
                 'all_reduce_s': reduce, 'parameters': parameters, 'collectives': collectives}, f)


def measure(args, workers: int) -> dict:
  from cns_vaegan.components.trainer import local_cluster  # pylint: disable=import-outside-toplevel
  with tempfile.TemporaryDirectory() as folder:
    result = os.path.join(folder, 'result.json')
    command = [sys.executable, os.path.abspath(__file__), '--worker', '--result', result,
               '--architecture', args.architecture, '--batch-size', str(args.batch_size),
               '--steps', str(args.steps)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    logs = [open(os.path.join(folder, f'worker-{i}.log'), 'w', encoding='utf-8') for i in range(workers)]
    try:
      local_cluster.wait(local_cluster.start(command, workers, logs, env), timeout=1800)
    except (RuntimeError, TimeoutError):
      with open(os.path.join(folder, 'worker-0.log'), encoding='utf-8') as f:
        print(f.read()[-4000:], file=sys.stderr)
      raise
    finally:
      for log in logs:
        log.close()
    with open(result, encoding='utf-8') as f:
      return json.load(f)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument('--architecture', default=None,
                      help='network JSON, or "tiny" (the tests\' network); default: the CPU profile\'s')
  parser.add_argument('--batch-size', type=int, default=64, help='global batch (default: %(default)s)')
  parser.add_argument('--steps', type=int, default=50, help='timed steps (default: %(default)s)')
  parser.add_argument('--no-fragment', action='store_true', help='do not write docs/generated/multi_worker.md')
  parser.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  parser.add_argument('--result', help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.architecture is None:
    from cns_vaegan.pipeline import configs  # pylint: disable=import-outside-toplevel
    args.architecture = configs.PROFILES['cpu']['architecture']
  if args.worker:
    worker(args)
    return
  rows = [measure(args, workers) for workers in (1, 2)]
  out = Fragment(None if args.no_fragment else 'multi_worker')
  name = 'tiny (16 px, ch 4, z 8)' if args.architecture == 'tiny' else os.path.basename(args.architecture)
  out.print(f'Network {name}, {rows[0]["parameters"]:,} parameters ({rows[0]["parameters"] * 4 / 2**20:.1f} MiB '
            f'of float32 gradients a step), global batch {args.batch_size}, one_pass schedule, '
            f'{args.steps} timed steps, workers on one machine over loopback.', '',
            '| workers | images/s | ms/step | collective ops in the step | one all-reduce of all gradients alone, ms | its share of the step |',
            '|---:|---:|---:|---:|---:|---:|')
  for row in rows:
    out.print(f'| {row["workers"]} | {args.batch_size / row["step_s"]:,.0f} | {row["step_s"] * 1e3:.1f} | '
              f'{row["collectives"]} | {row["all_reduce_s"] * 1e3:.2f} | {row["all_reduce_s"] / row["step_s"]:.0%} |')
  extra = rows[1]['step_s'] - rows[0]['step_s']
  out.print('', f'2 workers take {rows[1]["step_s"] / rows[0]["step_s"]:.2f}× the time of 1 per step, '
            f'{extra * 1e3:.0f} ms more: each computes half the batch, but they share one machine\'s '
            f'{os.cpu_count()} cores, and every collective of the step is a round trip between them. '
            f'One worker alone runs none.')
  out.close()


if __name__ == '__main__':
  main()
