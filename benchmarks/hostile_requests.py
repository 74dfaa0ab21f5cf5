"""Issue 10's table of hostile requests against the embedded model server, measured.

For each row: the answer (gRPC code or HTTP status), seconds to it, the server's peak RSS
growth during it (the kernel's VmHWM after clear_refs), its thread count, and whether a
valid gRPC and REST request right after still succeed. The server runs in its own process
(as `make serve` runs it) on a tiny untrained model (tests/conftest.py's TINY_ARCHITECTURE),
warmed by one valid call of each signature, as a serving server is: the rows cost what the
requests cost.

    scripts/env.sh run python benchmarks/hostile_requests.py [--rows encode,sample] [--cold]
        [--server-args "--max-batch-size 100000"]
"""
import argparse
import os
import sys
import tempfile

import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
# pylint: disable=wrong-import-position  (the shared hostile requests live with the tests)
import hostile_requests  # noqa: E402
from conftest import TINY_ARCHITECTURE  # noqa: E402

from cns_vaegan.components.trainer import export  # noqa: E402
from cns_vaegan.components.trainer.architecture import Architecture  # noqa: E402
from cns_vaegan.components.trainer.training_config import TrainingConfig  # noqa: E402
from cns_vaegan.components.trainer.vaegan import VAEGAN  # noqa: E402
from cns_vaegan.data import render_glyphs  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--rows', default='', help='comma-separated prefixes of the rows to run')
  parser.add_argument('--server-args', default='',
                      help='extra model_server flags, e.g. "--max-batch-size 100000" to see the '
                           'model\'s own limits answer (what TF Serving running it would)')
  parser.add_argument('--cold', action='store_true',
                      help='no warm-up call of each signature first (a first call builds it, ~1 s)')
  args = parser.parse_args()
  base = tempfile.mkdtemp()
  tf.keras.utils.set_random_seed(0)
  model = VAEGAN(Architecture(**TINY_ARCHITECTURE), TrainingConfig(batch_size=4),
                 tf.distribute.get_strategy())
  export.export_saved_model(model, os.path.join(base, hostile_requests.MODEL_NAME, '1'))
  renderer = render_glyphs.GlyphRenderer(size=TINY_ARCHITECTURE['img_h'])
  pngs = [renderer.render_png(c) for c in '酪鉻鉸你']
  server = hostile_requests.ServerProcess(base, *args.server_args.split())
  if not args.cold:
    hostile_requests.warm_up(server, pngs, TINY_ARCHITECTURE['z_dim'])
  wanted = [p.strip() for p in args.rows.split(',') if p.strip()]
  print(f'model: tiny {TINY_ARCHITECTURE}; server pid {server.process.pid}, '
        f'idle RSS {server.rss_mb():.0f} MB, {server.threads()} threads; cores: {os.cpu_count()}')
  print(f'| request | answer | seconds | peak RSS growth MB | threads | still serving | detail |')
  print('|---|---|---|---|---|---|---|')
  try:
    for name, call in hostile_requests.issue_table_rows(pngs).items():
      if wanted and not any(name.startswith(p) for p in wanted):
        continue
      o = hostile_requests.run_row(server, name, call, pngs)
      print(f'| {o.row} | {o.status} | {o.seconds:.2f} | {o.rss_growth_mb:.0f} | {o.threads} | '
            f'{"yes" if o.still_serving else "NO"} | {o.detail.replace("|", "/")[:120]} |', flush=True)
  finally:
    server.stop()


if __name__ == '__main__':
  main()
