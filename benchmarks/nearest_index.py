"""The `nearest` signature of the pushed model: is it right, what it adds to the model, how fast.

1. Right: every eval glyph of the pipeline's Examples goes to the server over REST as a PNG,
   its reconstruction (`reconstruct`) comes back as a PNG and goes to `nearest`, as the
   playground asks it; the share whose top-1 (top-5) is the glyph's own character is the
   Evaluator's identity figure (quality_metrics.identity_ranks), now answered by the server.
2. Size: the SavedModel on disk, and the part of it that is the reference glyphs.
3. Speed: `nearest` over REST for 1, 10 and 32 glyphs (p50, p99), and in-process the search
   on the floats the model stores against keeping uint8 glyphs and casting them on each call.

    scripts/env.sh run python benchmarks/nearest_index.py [--model-base-path outputs/serving]
        [--examples 'outputs/pipelines/cns-vaegan/PngExampleGen/examples/*/Split-eval/*']
        [--fragment nearest_index]
"""
import argparse
import base64
import glob
import http.client
import json
import os
import sys
import time

import numpy as np
import tensorflow as tf

import fragments  # pylint: disable=g-import-not-at-top  (benchmarks/ is on sys.path)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
# pylint: disable=wrong-import-position  (the server process helper lives with the tests)
import hostile_requests  # noqa: E402

from cns_vaegan.components import glyph_examples, glyph_figures  # noqa: E402
from cns_vaegan.serving.servables import available_versions  # noqa: E402

PIPELINE = 'outputs/pipelines/cns-vaegan'


def newest(pattern: str) -> str:
  """The match whose numeric artifact folder is the newest (TFX numbers them by execution)."""
  matches = glob.glob(pattern)
  if not matches:
    raise SystemExit(f'nearest_index: nothing matches {pattern}: run `make run` first')
  return max(matches, key=lambda path: [int(p) if p.isdigit() else -1 for p in path.split(os.sep)])


class Rest:
  """TF Serving's REST predict on one keep-alive connection, as the page's browser holds one."""

  def __init__(self, port: int):
    self.connection = http.client.HTTPConnection('127.0.0.1', port, timeout=60)

  def predict(self, signature: str, inputs: dict, outputs: list) -> dict:
    body = json.dumps({'signature_name': signature, 'inputs': inputs, 'output_filter': outputs})
    self.connection.request('POST', f'/v1/models/{hostile_requests.MODEL_NAME}:predict', body,
                            {'Content-Type': 'application/json'})
    response = self.connection.getresponse()
    payload = json.loads(response.read())
    if response.status != 200:
      raise RuntimeError(f'{signature}: HTTP {response.status}: {payload}')
    return payload['outputs'] if len(outputs) > 1 else {outputs[0]: payload['outputs']}


def b64(png: bytes) -> dict:
  return {'b64': base64.b64encode(png).decode('ascii')}


def served_identity(rest: Rest, pngs, characters, batch: int = 32):
  top1 = top5 = 0
  for start in range(0, len(pngs), batch):
    images = [b64(p) for p in pngs[start:start + batch]]
    rebuilt = rest.predict('reconstruct', {'images': images}, ['png_bytes'])['png_bytes']
    found = rest.predict('nearest', {'images': rebuilt, 'k': 5}, ['characters'])['characters']
    for own, listed in zip(characters[start:start + batch], found):
      top1 += listed[0] == own
      top5 += own in listed
  return top1 / len(pngs), top5 / len(pngs)


def milliseconds(call, repeats: int):
  times = []
  for _ in range(repeats):
    started = time.perf_counter()
    call()
    times.append((time.perf_counter() - started) * 1e3)
  return np.percentile(times, 50), np.percentile(times, 99)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model-base-path', default='outputs/serving')
  parser.add_argument('--examples', default=f'{PIPELINE}/PngExampleGen/examples/*/Split-eval/*')
  parser.add_argument('--requests', type=int, default=200, help='timed requests per size')
  parser.add_argument('--fragment', help='also write the figures to docs/generated/<FRAGMENT>.md')
  args = parser.parse_args()
  versions = available_versions(os.path.join(args.model_base_path, hostile_requests.MODEL_NAME))
  if not versions:
    raise SystemExit(f'nearest_index: no model under {args.model_base_path}: run `make run` first')
  model_path = versions[max(versions)]
  loaded = tf.saved_model.load(model_path)
  size = int(loaded.signatures['decode'].structured_outputs['images'].shape[1])
  eval_dir = os.path.dirname(newest(args.examples))
  examples = glyph_examples.read_examples([os.path.join(eval_dir, '*')], size, 1)
  pngs, characters = [], []
  for example in examples.as_numpy_iterator():
    pngs.append(glyph_figures.png_bytes(glyph_examples.denormalize(example[glyph_examples.IMAGE])))
    characters.append(example[glyph_examples.CHARACTER].decode('utf-8'))

  on_disk = sum(os.path.getsize(os.path.join(root, name))
                for root, _, names in os.walk(model_path) for name in names)
  references = {name: variable.numpy() for name, variable in loaded.references.items()}
  reference_bytes = sum(v.nbytes if v.dtype != object else sum(len(s) for s in v)
                        for v in references.values())
  count = len(references['characters'])
  out = fragments.Fragment(args.fragment)
  out.print(f'Model {model_path}: {on_disk / 1e6:.1f} MB on disk, of which the {count} reference '
        f'glyphs {reference_bytes / 1e6:.1f} MB (as uint8 they would take '
        f'{references["columns"].size / 1e6:.1f} MB).', '')

  server = hostile_requests.ServerProcess(args.model_base_path)
  try:
    rest = Rest(server.rest_port)
    started = time.monotonic()
    top1, top5 = served_identity(rest, pngs, characters)
    out.print(f'Served identity on {len(pngs)} eval glyphs ({os.path.relpath(eval_dir)}): top-1 '
              f'{top1:.2%}, top-5 {top5:.2%} ({time.monotonic() - started:.0f} s).', '')
    evaluations = glob.glob(f'{PIPELINE}/GlyphEvaluator/evaluation/*/metrics.json')
    if evaluations:
      with open(newest(f'{PIPELINE}/GlyphEvaluator/evaluation/*/metrics.json'), encoding='utf-8') as f:
        report = json.load(f)
      identity = report.get('candidate', {}).get('identity', {})
      out.print(f'The Evaluator\'s identity (its last run, {report["num_eval_examples"]} glyphs): '
                f'top-1 {identity.get("top1", float("nan")):.2%}, top-5 '
                f'{identity.get("top5", float("nan")):.2%}.', '')
    out.print(f'Load average {os.getloadavg()[0]:.1f} (1 min).', '',
              '| glyphs asked about | REST p50 ms | REST p99 ms | in-process, stored floats p50 ms | '
              'in-process, uint8 cast each call p50 ms |', '|---|---|---|---|---|')
    pixels = tf.constant(np.round(references['columns'].T * 255).astype(np.uint8))
    columns, norms = loaded.references['columns'], loaded.references['squared_norms']

    @tf.function
    def from_float(queries):  # the ranking `nearest` computes (|q|^2 is the same for each row)
      return tf.math.top_k(2.0 * tf.matmul(queries, columns) - norms, 5)

    @tf.function
    def from_uint8(queries):
      glyphs = tf.cast(pixels, tf.float32) / 255.0
      return tf.math.top_k(2.0 * tf.matmul(queries, glyphs, transpose_b=True) - norms, 5)

    for n in (1, 10, 32):
      images = [b64(p) for p in pngs[:n]]
      rest.predict('nearest', {'images': images, 'k': 5}, ['characters'])  # warm
      p50, p99 = milliseconds(
          lambda: rest.predict('nearest', {'images': images, 'k': 5},
                               ['characters', 'distances', 'png_bytes']), args.requests)
      queries = tf.random.uniform([n, pixels.shape[1]])
      from_float(queries), from_uint8(queries)  # trace
      stored, _ = milliseconds(lambda: from_float(queries)[0].numpy(), 50)
      cast, _ = milliseconds(lambda: from_uint8(queries)[0].numpy(), 50)
      out.print(f'| {n} | {p50:.1f} | {p99:.1f} | {stored:.1f} | {cast:.1f} |')
    out.close()
  finally:
    server.stop()
  return 0


if __name__ == '__main__':
  sys.exit(main())
