"""Serving throughput and latency of the embedded model server, batching off against on.

The server runs in its own process, as `make serve` runs it, twice on the same model: with
--no-batching and with batching (its defaults unless --batching-args says otherwise). The
clients are threads of this process, one gRPC channel each, each sending its next request
once the last is answered (loopback); each sends one prepared PredictRequest over and over,
so the load generator costs little beside the server. For encode, decode and arithmetic,
requests of 1 image at 1, 8 and 32 concurrent clients, and of 32 images at 1 and 8:
images/s, p50 and p99 latency, and the server's CPU time per image (its own process, so
other work on the machine does not count in it), off and on side by side, cell by cell;
and the same signature called in this process at the request's batch and at the largest
batch the cell's requests can form (images a request x min(clients, the server's --workers)),
images/s and CPU ms an image: once the unbatched server keeps every core busy, the ratio of
those two CPU costs bounds what batching can gain. Each cell is bounded: at most --requests
requests and --seconds seconds, after an unmeasured warm-up burst.

    make benchmark-serving                 # the pushed model under outputs/serving, if any,
                                           # else an untrained model of the cpu profile's size
    make benchmark-serving ARGS="--batching-args '--batching-parameters-file my.config'"
    make benchmark-serving ARGS="--fragment serving_throughput"   # also docs/generated/
    make benchmark-serving ARGS="--signatures encode --cells 1x1,1x8"   # a few cells only
"""
import argparse
import concurrent.futures
import os
import shlex
import sys
import tempfile
import time

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
# pylint: disable=wrong-import-position  (the server-in-a-process helper lives with the tests)
from hostile_requests import ServerProcess, predict_request  # noqa: E402

from cns_vaegan.components.trainer import export  # noqa: E402
from cns_vaegan.components.trainer.architecture import Architecture  # noqa: E402
from cns_vaegan.components.trainer.training_config import TrainingConfig  # noqa: E402
from cns_vaegan.components.trainer.vaegan import VAEGAN  # noqa: E402
from cns_vaegan.data import render_glyphs  # noqa: E402
from cns_vaegan.pipeline import configs  # noqa: E402
from cns_vaegan.serving import batching, model_server  # noqa: E402
from cns_vaegan.serving.servables import available_versions, load_servable  # noqa: E402

import fragments  # noqa: E402  pylint: disable=g-import-not-at-top  (benchmarks/ is on sys.path)

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
  """Each of `calls` (one per client) in a loop of its own; (requests, seconds, latencies)."""
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
  return len(latencies), time.perf_counter() - start, np.array(latencies)


def the_model(model_base_path: str):
  """(base path, words for it): the pushed model, else an untrained one of the cpu profile."""
  if available_versions(os.path.join(model_base_path, configs.MODEL_NAME)):
    return model_base_path, f'the pushed model under {model_base_path}'
  base = tempfile.mkdtemp()
  arch = Architecture.load(configs.PROFILES['cpu']['architecture'])
  model = VAEGAN(arch, TrainingConfig(), tf.distribute.get_strategy())
  export.export_saved_model(model, os.path.join(base, configs.MODEL_NAME, '1'))
  return base, (f'an untrained model of the cpu profile\'s architecture (ch {arch.ch}, '
                f'z {arch.z_dim}; it costs what a trained one does), none being pushed')


def formed_batch(signature: str, batch: int, requests: int, pngs, z_dim: int) -> int:
  """Rows `requests` requests of `batch` rows can share a run in: a batch's images stay within
  the server's per-request image budget (arithmetic makes K images a row)."""
  per_row = export.request_images(signature, requests_for(signature, 1, pngs, z_dim))
  return min(batch * requests, batching.DEFAULT_PARAMETERS.max_batch_size,
             max(batch, model_server.ServerOptions().max_batch_size // per_row))


def server_workers(server_args) -> int:
  """The threads the server runs requests on (--workers): at most that many requests share a batch."""
  parser = argparse.ArgumentParser(add_help=False)
  parser.add_argument('--workers', type=int, default=model_server.ServerOptions().workers)
  return parser.parse_known_args(server_args)[0].workers


def measure(server: ServerProcess, channels, request, batch: int, args):
  """(images/s, p50 ms, p99 ms, server CPU ms an image) of one cell against one server."""
  stubs = [prediction_service_pb2_grpc.PredictionServiceStub(channel) for channel in channels]
  calls = [lambda stub=stub: stub.Predict(request, timeout=120) for stub in stubs]
  run_cell(calls, 2 * len(calls), args.seconds)  # warm-up
  cpu = server.cpu_seconds()
  count, seconds, latencies = run_cell(calls, args.requests, args.seconds)
  cpu = server.cpu_seconds() - cpu
  return (count * batch / seconds, np.percentile(latencies, 50) * 1e3,
          np.percentile(latencies, 99) * 1e3, cpu * 1e3 / (count * batch))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model-base-path', default=os.path.join(configs.OUTPUT_DIR, 'serving'))
  parser.add_argument('--requests', type=int, default=5000, help='most requests a cell')
  parser.add_argument('--seconds', type=float, default=5.0, help='most seconds a cell')
  parser.add_argument('--signatures', default=','.join(SIGNATURES), help='comma-separated')
  parser.add_argument('--cells', default=','.join(f'{b}x{c}' for b, c in CELLS),
                      help='comma-separated IMAGESxCLIENTS cells (default %(default)s)')
  parser.add_argument('--server-args', default='', help='more flags for both servers')
  parser.add_argument('--batching-args', default='',
                      help='flags for the batching server only (default: its defaults)')
  parser.add_argument('--fragment', help='also write the table to docs/generated/<FRAGMENT>.md')
  args = parser.parse_args()
  cells = [tuple(int(n) for n in cell.split('x')) for cell in args.cells.split(',')]
  out = fragments.Fragment(args.fragment)
  base, source = the_model(args.model_base_path)
  extra = shlex.split(args.server_args)
  servers = {'off': ServerProcess(base, '--no-batching', *extra),
             'on': ServerProcess(base, *extra, *shlex.split(args.batching_args))}
  channels = {mode: [grpc.insecure_channel(f'127.0.0.1:{server.port}')
                     for _ in range(max(clients for _, clients in cells))]
              for mode, server in servers.items()}
  renderer = render_glyphs.GlyphRenderer()
  pngs = [renderer.render_png(c) for c in '酪鉻鉸你妳如']
  versions = available_versions(os.path.join(base, configs.MODEL_NAME))
  servable = load_servable(configs.MODEL_NAME, max(versions), versions[max(versions)])
  z_dim = servable.signatures['encode'].structured_outputs['z'].shape[1]
  defaults = ', '.join(batching.to_text(batching.DEFAULT_PARAMETERS).strip().splitlines())
  out.print(f'model: {source}; servers: their own processes, loopback gRPC, flags: '
            f'{args.server_args or "defaults"}; batching on: {args.batching_args or defaults}; '
            f'clients: threads of this process; load average before: {os.getloadavg()[0]:.1f}; '
            f'cells of at most {args.requests} requests and {args.seconds:g} s.', '')
  head = ' | '.join(f'{mode} {name}' for mode in ('off', 'on')
                    for name in ('img/s', 'p50 ms', 'p99 ms', 'cpu ms/img'))
  workers = server_workers(extra)
  out.print(f'| signature | images a request | clients | {head} | on/off img/s | on/off p99 | '
            'in-process img/s | in-process cpu ms/img | formed batch | its in-process img/s | '
            'its in-process cpu ms/img | cpu ms/img ratio |', '|---' * 20 + '|')
  in_process = {}  # (signature, batch) -> (images/s, CPU ms an image) of a call in this process
  floors = []  # what 3x the unbatched rate would cost at most, against the model's own cost

  def called_here(signature: str, batch: int):
    if (signature, batch) not in in_process:
      tensors = {k: tf.constant(v) for k, v in requests_for(signature, batch, pngs, z_dim).items()}
      local = lambda: servable.signatures[signature](**tensors)
      local()
      cpu = time.process_time()
      count, seconds, _ = run_cell([local], args.requests, args.seconds)
      in_process[signature, batch] = (count * batch / seconds,
                                      (time.process_time() - cpu) * 1e3 / (count * batch))
    return in_process[signature, batch]

  try:
    for signature in args.signatures.split(','):
      for batch, concurrency in cells:
        request = predict_request(signature, requests_for(signature, batch, pngs, z_dim))
        figures = {mode: measure(servers[mode], channels[mode][:concurrency], request, batch, args)
                   for mode in ('off', 'on')}
        columns = ' | '.join(f'{rate:.1f} | {p50:.2f} | {p99:.2f} | {cpu:.2f}'
                             for rate, p50, p99, cpu in (figures['off'], figures['on']))
        (off, _, off99, _), (on, _, on99, _) = figures['off'], figures['on']
        formed = formed_batch(signature, batch, min(concurrency, workers), pngs, z_dim)
        (alone, alone_cpu), (together, together_cpu) = called_here(signature, batch), called_here(signature, formed)
        out.print(f'| {signature} | {batch} | {concurrency} | {columns} | **{on / off:.2f}** | '
                  f'{on99 / off99:.2f} | {alone:.1f} | {alone_cpu:.2f} | {formed} | {together:.1f} | '
                  f'{together_cpu:.2f} | {alone_cpu / together_cpu:.2f} |')
        if batch == 1 and concurrency > 1:
          floors.append(f'{signature} at {concurrency} clients needs at most '
                        f'{figures["off"][3] / 3:.2f} server CPU ms an image for 3× the unbatched '
                        f'rate, the model alone costs {together_cpu:.2f} at batch {formed}')
  finally:
    for mode_channels in channels.values():
      for channel in mode_channels:
        channel.close()
    for server in servers.values():
      server.stop()
    if floors:
      out.print('', 'Where every core is busy either way, images/s go as 1 / (server CPU an image): '
                + '; '.join(floors) + '.')
    out.print('', f'Load average at the end: {os.getloadavg()[0]:.1f} (1 min).')
    out.close()


if __name__ == '__main__':
  main()
