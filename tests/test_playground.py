"""The glyph playground in a real browser (headless Chromium): what each view draws is what the
served signatures answer, every state is a URL, bad input is explained, nothing is fetched from
elsewhere."""
import base64
import concurrent.futures
import json
import os
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf

from cns_vaegan.data import render_glyphs
from cns_vaegan.serving import playground
from cns_vaegan.serving.model_server import ModelServer
from cns_vaegan.serving.prediction import RequestLimits
from cns_vaegan.serving.rest import RestServer
from cns_vaegan.serving.servables import ServableManager
import serving_checks
from conftest import TEST_SIZE
from playground_browser import PlaygroundPage, chromium, require_browser

NOT_IN_FONT = '😀'  # U+1F600: the CNS font has no emoji


@pytest.fixture(scope='module')
def served(tmp_path_factory, tiny_model_path):
  base = tmp_path_factory.mktemp('playground')
  os.makedirs(base / 'cns_vaegan')
  path = serving_checks.copy_version(tiny_model_path, base / 'cns_vaegan', 1)
  server = ModelServer(str(base), 'cns_vaegan', port=0, rest_port=0, poll_seconds=0.2)
  server.start(wait_for_model_seconds=30)
  yield {'url': f'http://127.0.0.1:{server.rest_port}', 'model': tf.saved_model.load(path)}
  server.stop(grace=0)


@pytest.fixture(scope='module')
def browser():
  require_browser()
  with chromium() as launched:
    yield launched


@pytest.fixture
def page(browser, served):
  tab = PlaygroundPage(browser, served['url'])
  yield tab
  tab.close()


def local(served, signature, **inputs):
  """The signature's answer in-process, from the same SavedModel the server serves."""
  return {k: v.numpy() for k, v in served['model'].signatures[signature](
      **{k: tf.constant(v) for k, v in inputs.items()}).items()}


def rendered(character: str) -> bytes:
  return render_glyphs.GlyphRenderer(size=TEST_SIZE).render_png(character)


def sent(page: PlaygroundPage, signature: str) -> list:
  """The inputs of each of the page's requests to `signature`, b64 strings decoded."""
  bodies = [json.loads(r['body']) for r in page.responses
            if r['method'] == 'POST' and r['url'].endswith(':predict')]
  decode = lambda v: (base64.b64decode(v['b64']) if isinstance(v, dict) else  # noqa: E731
                      [decode(x) for x in v] if isinstance(v, list) else v)
  return [{alias: decode(value) for alias, value in b['inputs'].items()}
          for b in bodies if b['signature_name'] == signature]


def statuses(page: PlaygroundPage, path_part: str) -> list:
  return [r['status'] for r in page.responses if path_part in r['url']]


# ------------------------------------------------------------------------ the views
def test_the_page_loads_nothing_from_elsewhere_and_names_the_model(page, served):
  page.open()
  assert page.requests and all(url.startswith(served['url'] + '/') for url in page.requests), (
      [url for url in page.requests if not url.startswith(served['url'])])
  assert 'cns_vaegan version 1' in page.page.inner_text('#model-status')
  with urllib.request.urlopen(served['url'] + '/', timeout=10) as response:
    policy = response.headers['Content-Security-Policy']
  assert "default-src 'none'" in policy and "connect-src 'self'" in policy
  assert page.page.evaluate("getComputedStyle(document.querySelector('#arith .focus-glyph'))"
                            ".imageRendering") == 'pixelated'


def test_arithmetic_draws_the_signatures_answer_and_its_nearest_characters(page, served):
  page.open('?view=arith')
  page.type('arith-a', '清')
  page.slide('arith-coefficient', 2.5)
  requests = sent(page, 'arithmetic')  # the seed's panels once for 清, and a = 2.5 alone
  panels = [r for r in requests if not r['coefficients']][-1]
  chosen = requests[-1]
  assert chosen['coefficients'] == [2.5]
  assert [chosen[x][0] for x in 'abc'] == [rendered(c) for c in '清鉻鉸']
  assert all(panels[x] == chosen[x] for x in 'abc')
  one = local(served, 'arithmetic', a=chosen['a'], b=chosen['b'], c=chosen['c'],
              coefficients=np.array([2.5], np.float32))
  assert page.images('#arith .focus figure:first-child') == [one['png_bytes'][0, 0]]
  expected = local(served, 'arithmetic', a=chosen['a'], b=chosen['b'], c=chosen['c'],
                   coefficients=np.array([], np.float32))
  assert page.images('#arith-seed') == list(expected['png_bytes'][0])
  assert page.images('#arith-reconstructions') == list(expected['reconstructions_png_bytes'][0])
  assert page.images('#arith-pixels') == [expected['input_domain_png_bytes'][0]]
  assert page.images('#arith-inputs') == [rendered(c) for c in '清鉻鉸']
  nearest = local(served, 'nearest', images=[one['png_bytes'][0, 0]], k=np.int32(5))
  listed = page.nearest('arith')
  assert [c for c, _ in listed] == [c.decode() for c in nearest['characters'][0]]
  np.testing.assert_allclose([d for _, d in listed], nearest['distances'][0], rtol=1e-6)
  assert page.images('#arith .focus ol.nearest') == list(nearest['png_bytes'][0])
  assert 'a=%E6%B8%85' in page.page.url and 'k=2.5' in page.page.url


def test_interpolation_follows_a_drag_of_the_slider(page, served):
  page.open('?view=interp&a=你&b=酪&t=0')
  box = page.page.locator('#interp-t').bounding_box()
  y = box['y'] + box['height'] / 2
  page.page.mouse.move(box['x'] + 2, y)
  page.page.mouse.down()
  for fraction in (0.2, 0.4, 0.6, 0.7):
    page.page.mouse.move(box['x'] + fraction * box['width'], y)
  page.page.mouse.up()
  page.wait_idle()
  t = float(page.page.input_value('#interp-t'))
  assert 0.5 < t < 0.9
  ends = [rendered('你'), rendered('酪')]
  frame = local(served, 'explore', images=ends, weights=np.array([[1 - t, t]], np.float32),
                coordinates=np.zeros((1, 0), np.float32))['png_bytes'][0]
  assert page.images('#interp .focus figure:first-child') == [frame]
  strip = local(served, 'interpolate', start=ends[:1], end=ends[1:], steps=np.int32(8))
  assert page.images('#interp-strip') == list(strip['png_bytes'][0])
  assert f't={page.page.input_value("#interp-t")}' in page.page.url  # the drag's end, in the URL


def test_samples_are_reproducible_by_url_and_back_returns_to_them(page, served):
  page.open('?view=sample&seed=7&n=4')
  drawn = local(served, 'sample', n=np.int32(4), seed=np.int64(7))['png_bytes']
  assert page.images('#sample-grid') == list(drawn)
  page.page.click('#sample-draw')
  page.wait_idle()
  seed = page.page.input_value('#sample-seed')
  assert seed != '7' and f'seed={seed}' in page.page.url
  assert page.images('#sample-grid') != list(drawn)
  page.page.go_back()
  page.wait_idle()
  assert page.page.input_value('#sample-seed') == '7'
  assert page.images('#sample-grid') == list(drawn)


def test_text_is_reconstructed_beside_the_originals_and_a_missing_character_is_said_so(page, served):
  page.open(f'?view=text&text=你好{NOT_IN_FONT}中')
  rebuilt = local(served, 'reconstruct', images=[rendered(c) for c in '你好中'])['png_bytes']
  for character, png in zip('你好中', rebuilt):
    assert page.images(f'#text-pairs .pair[data-character="{character}"]') == [rendered(character), png]
  missing = page.page.locator(f'#text-pairs figure.missing[data-character="{NOT_IN_FONT}"]')
  assert missing.inner_text() == f'{NOT_IN_FONT} is not in the font'
  assert not page.page.locator(f'#text-pairs .pair[data-character="{NOT_IN_FONT}"]').count()


def test_the_explorer_redraws_the_glyph_as_a_direction_slider_moves(page, served):
  page.open('?view=explore&c=水')
  page.slide('explore-d2', -1.5)
  coordinates = np.zeros((2, 8), np.float32)
  coordinates[1, 1] = -1.5
  out = local(served, 'explore', images=[rendered('水')], weights=np.ones((2, 1), np.float32),
              coordinates=coordinates)['png_bytes']
  assert page.images('#explore .focus figure:first-child') == [out[1]]
  assert page.images('#explore-start') == [rendered('水'), out[0]]
  assert 'd=0%2C-1.5%2C0' in page.page.url


def test_every_state_is_a_url_and_the_back_button_walks_through_them(page, served):
  page.open('?view=arith&a=一&b=二&c=三&k=1')
  first = page.images('#arith .focus figure:first-child')
  page.type('arith-c', '山')
  after = page.images('#arith .focus figure:first-child')
  page.view('text')
  assert 'view=text' in page.page.url
  page.page.go_back()
  page.wait_idle()
  assert page.page.input_value('#arith-c') == '山' and page.page.is_visible('#arith')
  assert page.images('#arith .focus figure:first-child') == after
  page.page.go_back()
  page.wait_idle()
  assert page.page.input_value('#arith-c') == '三'
  assert page.images('#arith .focus figure:first-child') == first
  tab = PlaygroundPage(page.page.context.browser, served['url'])  # the URL, shared
  try:
    tab.open(page.page.url.split('/', 3)[3])
    assert tab.images('#arith .focus figure:first-child') == first
  finally:
    tab.close()


# ----------------------------------------------------------------------- bad input
@pytest.mark.parametrize('field, text, message, status', [
    ('arith-b', '', 'B: no character given: type one', 400),
    ('arith-b', '你好', 'B: "你好" is 2 characters; one is expected', 400),
    ('arith-b', NOT_IN_FONT, f'B: the font (TW-Kai-98_1.ttf) has no glyph for {NOT_IN_FONT} '
                             '(U+1F600)', 404),
])
def test_bad_characters_get_a_message_on_the_page_and_a_4xx(page, field, text, message, status):
  page.open('?view=arith')
  page.type(field, text)
  assert page.error('arith') == message
  assert statuses(page, '/playground/api/glyph')[-1] == status
  assert not page.images('#arith .focus')  # no glyph drawn for it, no box
  page.type(field, '鉻')
  assert page.error('arith') == '' and page.images('#arith .focus')


def test_a_refused_request_is_explained_with_the_models_words(page):
  page.open('?view=sample&seed=1&n=0')
  assert page.error('sample') == 'input n must be between 1 and 1024, got 0'
  assert statuses(page, ':predict')[-1] == 400


def test_no_model_yet_and_a_server_gone_away_are_said_so(page, tmp_path):
  # A REST front end over a base path with no version yet (ModelServer opens its ports only
  # once one loads; the page must still say what a missing model means).
  pool = concurrent.futures.ThreadPoolExecutor(2)
  rest = RestServer(ServableManager(str(tmp_path), 'cns_vaegan'), '127.0.0.1', 0, pool,
                    RequestLimits(), 1 << 20, 10.0, 8)
  port = rest.start()
  try:
    empty = PlaygroundPage(page.page.context.browser, f'http://127.0.0.1:{port}')
    empty.open('?view=sample')
    assert empty.page.inner_text('#model-status').startswith('No model is loaded yet')
    assert empty.error('sample').startswith('No model is loaded yet')
    assert statuses(empty, ':predict')[-1] == 404
    rest.stop(grace=0)
    empty.view('interp')
    assert empty.error('interp').startswith('The model server does not answer')
    empty.close()
  finally:
    rest.stop(grace=0)
    pool.shutdown()


def test_the_playground_endpoints_answer_4xx_without_a_browser(served):
  def get(path):
    try:
      with urllib.request.urlopen(served['url'] + path, timeout=10) as response:
        return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
      return error.code, json.loads(error.read())
  status, body = get('/playground/api/glyph?text=' + urllib.request.quote('你'))
  assert status == 200 and base64.b64decode(body['png']) == rendered('你')
  assert get('/playground/api/glyph?text=')[0] == 400
  status, body = get('/playground/api/text?text=' + urllib.request.quote('一' * (playground.MAX_TEXT + 1)))
  assert status == 400 and 'at most 64' in body['error']
  assert get('/playground/../etc/passwd')[0] == 404
  assert get('/playground/nope.js')[0] == 404
  status, body = get('/playground/api/info')
  assert status == 200 and body['glyph_size'] == TEST_SIZE and '你' in body['characters']
  assert len(body['characters']) == len(render_glyphs.covered_characters(render_glyphs.DEFAULT_FONT))
  assert os.path.basename(render_glyphs.DEFAULT_FONT) == body['font']
