"""Serving throughput and latency of the embedded model server, batching off against on.

The server runs in its own process, as `make serve` runs it, twice on the same model: with
--no-batching and with batching (its defaults, or --server-args); the clients are threads
of this process, one gRPC channel each, each sending its next request once the last is
answered (loopback). For encode, decode and arithmetic, requests of 1 image at 1, 8 and 32
concurrent clients, and of 32 images at 1 and 8: images/s, p50 and p99 latency, off and on
side by side (the two servers take turns, cell by cell), and the same signature called in
this process at batch 1 and 32, the rate the server can approach. Each cell is bounded:
at most --requests requests and --seconds seconds, after an unmeasured burst of warm-up.

    make benchmark-serving                 # the pushed model under outputs/serving, if any,
                                           # else an untrained model of the cpu profile's size
    make benchmark-serving ARGS="--server-args '--batching-parameters-file my.config'"
"""
import argparse
import concurrent.futures
import os
import shlex
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
# pylint: disable=wrong-import-position  (the server-in-a-process helper lives with the tests)
from hostile_requests import ServerProcess  # noqa: E402

from cns_vaegan.components.trainer import export  # noqa: E402
from cns_vaegan.components.trainer.architecture import Architecture  # noqa: E402
from cns_vaegan.components.trainer.training_config import TrainingConfig  # noqa: E402
from cns_vaegan.components.trainer.vaegan import VAEGAN  # noqa: E402
from cns_vaegan.data import render_glyphs  # noqa: E402
from cns_vaegan.pipeline import configs  # noqa: E402
from cns_vaegan.serving import batching  # noqa: E402
from cns_vaegan.serving.client import GlyphClient  # noqa: E402
from cns_vaegan.serving.servables import available_versions, load_servable  # noqa: E402

SIGNATURES = ('encode', 'decode', 'arithmetic')
CELLS = ((1, 1), (1, 8), (1, 32), (32, 1), (32, 8))  # (images a request, concurrent clients)


def requests_for(signature: str, batch: int, pngs, z_dim: int):
  images = np.array((pngs * batch)[:batch], dtype=object)
  if signature == 'encode':
    return {'images': images}
  if signature == 'decode':
    return {'z': np.tanh(np.random.default_rng(0).standard_normal((batch, z_dim))).astype(np.float32)}
  return {'a': images, 'b': images[::-1].copy(), 'c': images, 'coefficients': np.array([], np.float32)}


def run_cell(calls, max_requests: int, max_seconds: float):
  """Each of `calls` (one per client) in a loop of its own; (requests/s, p50 ms, p99 ms)."""
  latencies, deadline = [], time.perf_counter() + max_seconds

  def client(call):
    while len(latencies) < max_requests and time.perf_counter() < deadline:
      start = time.perf_counter()
      call()
      latencies.append(time.perf_counter() - start)

  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
    for future in [pool.submit(client, call) for call in calls]:
      future.result()
  elapsed = time.perf_counter() - start
  return len(latencies) / elapsed, np.percentile(latencies, 50) * 1e3, np.percentile(latencies, 99) * 1e3


def the_model(model_base_path: str):
  """(base path, words for it): the pushed model, else an untrained one of the cpu profile."""
  if available_versions(os.path.join(model_base_path, configs.MODEL_NAME)):
    return model_base_path, f'the pushed model under {model_base_path}'
  base = tempfile.mkdtemp()
  arch = Architecture.load(configs.PROFILES['cpu']['architecture'])
  model = VAEGAN(arch, TrainingConfig(), tf.distribute.get_strategy())
  export.export_saved_model(model, os.path.join(base, configs.MODEL_NAME, '1'))
  return base, (f'an untrained model of the cpu profile\'s architecture (ch {arch.ch}, '
                f'z {arch.z_dim}; the same cost as a trained one), none pushed')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model-base-path', default=os.path.join(configs.OUTPUT_DIR, 'serving'))
  parser.add_argument('--requests', type=int, default=3000, help='most requests a cell')
  parser.add_argument('--seconds', type=float, default=5.0, help='most seconds a cell')
  parser.add_argument('--server-args', default='', help='more flags for both servers')
  parser.add_argument('--batching-args', default='',
                      help='flags for the batching server only (default: its defaults)')
  args = parser.parse_args()
  base, source = the_model(args.model_base_path)
  extra = shlex.split(args.server_args)
  servers = {'off': ServerProcess(base, '--no-batching', *extra),
             'on': ServerProcess(base, *extra, *shlex.split(args.batching_args))}
  renderer = render_glyphs.GlyphRenderer()
  pngs = [renderer.render_png(c) for c in '酪鉻鉸你妳如']
  versions = available_versions(os.path.join(base, configs.MODEL_NAME))
  servable = load_servable(configs.MODEL_NAME, max(versions), versions[max(versions)])
  z_dim = servable.signatures['encode'].structured_outputs['z'].shape[1]
  clients = {mode: [GlyphClient(f'127.0.0.1:{server.port}', timeout=120) for _ in range(32)]
             for mode, server in servers.items()}
  defaults = ', '.join(batching.to_text(batching.DEFAULT_PARAMETERS).strip().splitlines())
  print(f'model: {source}\nservers: own processes, loopback gRPC, flags: {args.server_args or "defaults"}'
        f'; batching on: {args.batching_args or defaults}\nclients: threads of this process; '
        f'cores: {os.cpu_count()}; cells of at most {args.requests} requests and {args.seconds:g} s')
  print(f'{"signature":>10} {"batch":>5} {"clients":>7} | {"off img/s":>9} {"p50 ms":>7} {"p99 ms":>7} | '
        f'{"on img/s":>9} {"p50 ms":>7} {"p99 ms":>7} | {"on/off img/s":>12} {"on/off p99":>10}'
        f' | {"in-process img/s":>16}')
  in_process = {}  # (signature, batch) -> requests/s called in this process
  try:
    for signature in SIGNATURES:
      for batch, concurrency in CELLS:
        inputs = requests_for(signature, batch, pngs, z_dim)
        if (signature, batch) not in in_process:
          tensors = {k: tf.constant(v) for k, v in inputs.items()}
          local = lambda: servable.signatures[signature](**tensors)  # pylint: disable=cell-var-from-loop
          local()
          in_process[signature, batch] = run_cell([local], args.requests, args.seconds)[0]
        figures = {}
        for mode in ('off', 'on'):
          calls = [lambda c=c: c.predict(signature, inputs) for c in clients[mode][:concurrency]]  # pylint: disable=cell-var-from-loop
          run_cell(calls, 2 * concurrency, args.seconds)  # warm-up
          figures[mode] = run_cell(calls, args.requests, args.seconds)
        (off, off50, off99), (on, on50, on99) = figures['off'], figures['on']
        print(f'{signature:>10} {batch:>5} {concurrency:>7} | {off * batch:9.1f} {off50:7.2f} {off99:7.2f} | '
              f'{on * batch:9.1f} {on50:7.2f} {on99:7.2f} | {on / off:12.2f} {on99 / off99:10.2f} | '
              f'{in_process[signature, batch] * batch:16.1f}', flush=True)
  finally:
    for mode_clients in clients.values():
      for client in mode_clients:
        client.close()
    for server in servers.values():
      server.stop()


if __name__ == '__main__':
  main()
