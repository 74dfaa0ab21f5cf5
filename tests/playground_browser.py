"""Headless Chromium on the glyph playground: shared by its tests, the screenshots and the latency
benchmark.

Debian's chromium (scripts/env.sh installs it), driven by Playwright from PyPI through
executable_path: Playwright's own browser download is never used. Where the browser is
missing, the tests skip, saying so, except with CNS_REQUIRE_BROWSER=1 (CI), where they fail.
"""
import base64
import contextlib
import os
from typing import Dict, Iterator, List

import pytest

CHROMIUM = '/usr/bin/chromium'
# Flags that keep a headless Chromium off the network but for the page's own server.
LAUNCH_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                '--disable-background-networking', '--disable-component-update', '--disable-sync']
# The page counts its updates in progress in body[data-busy] (a selector: the page's
# Content-Security-Policy forbids the string evaluation a wait_for_function would need).
IDLE = 'body[data-busy="0"]'


def require_browser() -> None:
  """Skips (or, with CNS_REQUIRE_BROWSER=1, fails) when Chromium or Playwright is missing."""
  problem = None
  if not os.path.exists(CHROMIUM):
    problem = f'{CHROMIUM} missing (apt-get install chromium; scripts/env.sh setup does)'
  else:
    try:
      import playwright  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
      problem = 'playwright missing (pip install -r requirements.lock)'
  if problem:
    if os.environ.get('CNS_REQUIRE_BROWSER') == '1':
      pytest.fail(f'CNS_REQUIRE_BROWSER=1 but {problem}')
    pytest.skip(f'NOT RUN: the browser tests need headless Chromium: {problem}')


@contextlib.contextmanager
def chromium() -> Iterator[object]:
  """A Playwright Browser on Debian's Chromium, with a fresh profile (Playwright makes one)."""
  from playwright.sync_api import sync_playwright  # pylint: disable=import-outside-toplevel
  with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_FLAGS)
    try:
      yield browser
    finally:
      browser.close()


class PlaygroundPage:
  """One tab on the playground, recording every request it makes and every answer it gets."""

  def __init__(self, browser, base_url: str, width: int = 1280, height: int = 900):
    self.base_url = base_url.rstrip('/')
    self.context = browser.new_context(viewport={'width': width, 'height': height})
    self.page = self.context.new_page()
    self.requests: List[str] = []
    self.responses: List[Dict[str, object]] = []
    self.page.on('request', lambda request: self.requests.append(request.url))
    self.page.on('response', lambda response: self.responses.append(
        {'url': response.url, 'status': response.status, 'method': response.request.method,
         'body': response.request.post_data}))

  def close(self) -> None:
    self.context.close()

  def open(self, query: str = '') -> None:
    self.page.goto(f'{self.base_url}/{query}')
    self.wait_idle()

  def wait_idle(self, timeout_ms: float = 30_000) -> None:
    """Until no update is running (the page counts them in body[data-busy])."""
    self.page.wait_for_selector(IDLE, state='attached', timeout=timeout_ms)

  def view(self, name: str) -> None:
    self.page.click(f'nav a[data-view="{name}"]')
    self.wait_idle()

  def type(self, field_id: str, text: str) -> None:
    self.page.fill(f'#{field_id}', text)
    self.wait_idle()

  def slide(self, slider_id: str, value: float, release: bool = True) -> None:
    """Moves a slider as a drag step does ('input'), and lets go ('change') if `release`."""
    self.page.eval_on_selector(f'#{slider_id}', """(slider, [value, release]) => {
        slider.value = String(value);
        slider.dispatchEvent(new Event('input', {bubbles: true}));
        if (release) slider.dispatchEvent(new Event('change', {bubbles: true}));
      }""", [value, release])
    self.wait_idle()

  def images(self, selector: str) -> List[bytes]:
    """The PNG bytes of every <img> under `selector`, as drawn."""
    sources = self.page.eval_on_selector_all(f'{selector} img', 'images => images.map(i => i.src)')
    return [base64.b64decode(src.split(',', 1)[1]) for src in sources]

  def nearest(self, view: str) -> List[tuple]:
    """(character, distance) of the focused glyph's nearest list, as listed."""
    return [(c, float(d)) for c, d in self.page.eval_on_selector_all(
        f'#{view} .focus ol.nearest li',
        'items => items.map(i => [i.dataset.character, i.dataset.distance])')]

  def error(self, view: str) -> str:
    box = self.page.locator(f'#{view} .error')
    return box.inner_text() if box.is_visible() else ''

  def timings(self) -> List[Dict[str, float]]:
    return self.page.evaluate('window.playground.timings')

  def screenshot(self, path: str) -> str:
    self.page.screenshot(path=path, full_page=True)
    return path
