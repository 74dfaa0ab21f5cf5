"""How live the glyph playground feels: the round trip of each interaction, in the real page.

The model server runs in its own process, as `make serve` runs it, on the pushed model;
headless Chromium (tests/playground_browser.py) opens the page over loopback and does each
interaction the way a person does (a slider step, a typed character, a new seed). The page
itself records each update (window.playground.timings): from the input event to the glyphs
drawn, and to their nearest real characters listed (a second request, `nearest`). Every
update waits for the previous one, so none is merged into another. The first updates of each
kind are a warm-up, not counted (a signature's first call builds it). The server's CPU time
per update (its user + system time over the updates, from /proc) is printed beside: unlike
the round trip, it hardly depends on what else the machine is running.

    scripts/env.sh run python benchmarks/playground_latency.py [--model-base-path outputs/serving]
        [--updates 200] [--screenshots docs/figures] [--fragment playground_latency]

--screenshots also writes a full-page screenshot of each view (playground_<view>.png, the
states of SCREENSHOTS), as README and docs/playground.md show them; with --updates 0 that is
all it does.
"""
import argparse
import os
import sys
import time

import numpy as np

import fragments  # pylint: disable=g-import-not-at-top  (benchmarks/ is on sys.path)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
# pylint: disable=wrong-import-position  (the browser helpers live with the tests)
import hostile_requests  # noqa: E402
from playground_browser import PlaygroundPage, chromium  # noqa: E402

SCREENSHOTS = {
    'arith': '?view=arith&a=酪&b=鉻&c=鉸&k=1',
    'interp': '?view=interp&a=你&b=妳&t=0.5',
    'sample': '?view=sample&seed=1&n=16',
    'text': '?view=text&text=漢字的形狀😀',
    'explore': '?view=explore&c=永&d=2,-1.5,0,1,0,0,0,0',
}


def interactions(page: PlaygroundPage, rng: np.random.Generator, characters: str):
  """{name: (view query, one update)}: each call makes one update of the page and waits for it."""
  def character():
    return characters[rng.integers(len(characters))]

  def text():
    page.type('text-input', ''.join(character() for _ in range(8)))

  def new_seed():
    page.page.click('#sample-draw')
    page.wait_idle()

  def explorer_step():
    page.slide(f'explore-d{rng.integers(1, 9)}', round(float(rng.uniform(-3, 3)), 1), release=False)

  return {
      'A − B + C: a coefficient slider step': (
          '?view=arith', lambda: page.slide('arith-coefficient', round(float(rng.uniform(-1, 4)), 2),
                                            release=False)),
      'A − B + C: a character typed into A': ('?view=arith', lambda: page.type('arith-a', character())),
      'interpolation: a drag step (one frame)': (
          '?view=interp', lambda: page.slide('interp-t', round(float(rng.uniform(0, 1)), 2),
                                             release=False)),
      'interpolation: a new end character (strip and frame)': (
          '?view=interp', lambda: page.type('interp-b', character())),
      'explorer: a direction slider step': ('?view=explore', explorer_step),
      'samples: a new seed (16 glyphs)': ('?view=sample&n=16', new_seed),
      'text: 8 characters typed at once': ('?view=text', text),
  }


def cpu_seconds(pid: int) -> float:
  """User + system CPU time of a process, all its threads (/proc/PID/stat, in clock ticks)."""
  with open(f'/proc/{pid}/stat', encoding='ascii') as f:
    fields = f.read().rsplit(')', 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def percentiles(values):
  return np.percentile(values, 50), np.percentile(values, 99)


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model-base-path', default='outputs/serving')
  parser.add_argument('--updates', type=int, default=200, help='counted updates per interaction')
  parser.add_argument('--warm-up', type=int, default=10, help='uncounted updates first')
  parser.add_argument('--only', default='', help='run the interactions whose name starts so')
  parser.add_argument('--screenshots', help='folder for playground_<view>.png (e.g. docs/figures)')
  parser.add_argument('--fragment', help='also write the table to docs/generated/<FRAGMENT>.md')
  args = parser.parse_args()
  model_dir = os.path.join(args.model_base_path, hostile_requests.MODEL_NAME)
  if not os.path.isdir(model_dir):
    print(f'playground_latency: no model under {model_dir}: run `make run` first', file=sys.stderr)
    return 2
  server = hostile_requests.ServerProcess(args.model_base_path)
  try:
    with chromium() as browser:
      page = PlaygroundPage(browser, f'http://127.0.0.1:{server.rest_port}')
      if args.screenshots:
        os.makedirs(args.screenshots, exist_ok=True)
        for view, query in SCREENSHOTS.items():
          page.open(query)
          print(page.screenshot(os.path.join(args.screenshots, f'playground_{view}.png')))
      if not args.updates:
        return 0
      out = fragments.Fragment(args.fragment)
      page.open()
      characters = page.page.evaluate('fetch("/playground/api/info").then(r => r.json())')[
          'characters']
      status = page.page.inner_text('#model-status')
      out.print(f'{status}; load average {os.getloadavg()[0]:.1f} (1 min); {args.updates} updates '
                f'each after {args.warm_up} of warm-up.', '',
                '| interaction | drawn p50 ms | drawn p99 ms | with nearest p50 ms | with nearest p99 '
                'ms | server CPU ms an update |', '|---|---|---|---|---|---|')
      rng = np.random.default_rng(0)
      for name, (query, update) in interactions(page, rng, characters).items():
        if args.only and not name.startswith(args.only):
          continue
        page.open(query)
        for _ in range(args.warm_up):
          update()
        before = len(page.timings())
        started, cpu = time.monotonic(), cpu_seconds(server.process.pid)
        for _ in range(args.updates):
          update()
        cpu = (cpu_seconds(server.process.pid) - cpu) / args.updates * 1e3
        timings = page.timings()[before:]
        errors = page.error(query.split('=')[1].split('&')[0])
        if errors or len(timings) != args.updates:
          out.print(f'| {name} | failed: {errors or f"{len(timings)} updates recorded"} | | | | |')
          continue
        drawn = percentiles([t['drawn_ms'] for t in timings])
        listed = percentiles([t['nearest_ms'] for t in timings])
        out.print(f'| {name} | {drawn[0]:.1f} | {drawn[1]:.1f} | {listed[0]:.1f} | {listed[1]:.1f} '
                  f'| {cpu:.1f} |')
        print(f'  ({name}: {time.monotonic() - started:.0f} s)', file=sys.stderr)
      out.print('', f'Load average at the end: {os.getloadavg()[0]:.1f} (1 min).')
      out.close()
      page.close()
  finally:
    server.stop()
  return 0


if __name__ == '__main__':
  sys.exit(main())
