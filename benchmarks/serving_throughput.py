"""Serving throughput and latency of the embedded gRPC server on loopback.

For encode, decode and arithmetic at batch 1 and 32, with 1 and 8 concurrent clients:
requests/s, p50 and p99 latency, and the ratio to calling the same signature in-process
(the limit the server can approach). Each cell is bounded: at most --requests requests
and --seconds seconds. Server-side batching is not implemented in the embedded server
(TF Serving's --enable_batching is the production path), so no batching gain is shown.

    make benchmark-serving                 # the pushed model under outputs/serving, if any,
                                           # else an untrained model of the seed's size
"""
import argparse
import concurrent.futures
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

from cns_vaegan.components.trainer import export
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN
from cns_vaegan.data import render_glyphs
from cns_vaegan.pipeline import configs
from cns_vaegan.serving.client import GlyphClient
from cns_vaegan.serving.model_server import ModelServer
from cns_vaegan.serving.servables import available_versions


def requests_for(signature: str, batch: int, pngs, z_dim: int):
  images = np.array((pngs * batch)[:batch], dtype=object)
  if signature == 'encode':
    return {'images': images}
  if signature == 'decode':
    return {'z': np.tanh(np.random.default_rng(0).standard_normal((batch, z_dim))).astype(np.float32)}
  return {'a': images, 'b': images[::-1].copy(), 'c': images, 'coefficients': np.array([], np.float32)}


def run_cell(call, concurrency: int, max_requests: int, max_seconds: float):
  latencies, deadline = [], time.perf_counter() + max_seconds
  def worker():
    while len(latencies) < max_requests and time.perf_counter() < deadline:
      start = time.perf_counter()
      call()
      latencies.append(time.perf_counter() - start)
  start = time.perf_counter()
  with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    for future in [pool.submit(worker) for _ in range(concurrency)]:
      future.result()
  elapsed = time.perf_counter() - start
  return len(latencies) / elapsed, np.percentile(latencies, 50) * 1e3, np.percentile(latencies, 99) * 1e3


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model-base-path', default=os.path.join(configs.OUTPUT_DIR, 'serving'))
  parser.add_argument('--requests', type=int, default=100)
  parser.add_argument('--seconds', type=float, default=5.0)
  args = parser.parse_args()
  base, source = args.model_base_path, 'the pushed model'
  if not available_versions(os.path.join(base, configs.MODEL_NAME)):
    base, source = tempfile.mkdtemp(), 'an untrained model of the seed\'s size'
    model = VAEGAN(Architecture(), TrainingConfig(), tf.distribute.get_strategy())
    export.export_saved_model(model, os.path.join(base, configs.MODEL_NAME, '1'))
  server = ModelServer(base, configs.MODEL_NAME, port=0, rest_port=None)
  server.start(wait_for_model_seconds=60)
  servable = server.manager.current()
  renderer = render_glyphs.GlyphRenderer()
  pngs = [renderer.render_png(c) for c in '酪鉻鉸你妳如']
  z_dim = servable.signatures['encode'].structured_outputs['z'].shape[1]
  print(f'model: {source} (version {servable.version}); loopback gRPC; cores: {os.cpu_count()}')
  print(f'{"signature":>10} {"batch":>5} {"conc":>4} {"req/s":>8} {"p50 ms":>8} {"p99 ms":>8} '
        f'{"in-process req/s":>16} {"ratio":>6}')
  with GlyphClient(f'127.0.0.1:{server.port}', timeout=60) as client:
    for signature in ('encode', 'decode', 'arithmetic'):
      for batch in (1, 32):
        inputs = requests_for(signature, batch, pngs, z_dim)
        tensors = {k: tf.constant(v) for k, v in inputs.items()}
        local = lambda: servable.signatures[signature](**tensors)
        remote = lambda: client.predict(signature, inputs)
        local(), remote()  # warm up both paths
        limit, _, _ = run_cell(local, 1, args.requests, args.seconds)
        for concurrency in (1, 8):
          rate, p50, p99 = run_cell(remote, concurrency, args.requests, args.seconds)
          print(f'{signature:>10} {batch:>5} {concurrency:>4} {rate:8.1f} {p50:8.2f} {p99:8.2f} '
                f'{limit:16.1f} {rate / limit:6.2f}')
  server.stop()


if __name__ == '__main__':
  main()
