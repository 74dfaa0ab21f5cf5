"""The glyph playground: a web page on the model server's REST port, and the endpoints it needs.

    GET /                              the page (serving/playground_static/index.html)
    GET /playground/<file>             its script and style sheet (the files of that folder only)
    GET /playground/api/info           the served model's name and version, its glyph size, the
                                       font and the characters it covers in the dataset's range
    GET /playground/api/glyph?text=X   one typed character drawn with the dataset's font, as a
                                       PNG (base64): 400 when empty or several characters, 404
                                       when the font has no glyph for it
    GET /playground/api/text?text=...  each character of a text (whitespace skipped, at most
                                       MAX_TEXT) drawn, or said to be missing from the font

Everything else the page does goes through TF Serving's REST API on the same port
(/v1/models/NAME:predict), so it works against the signatures alone. Every answer carries a
Content-Security-Policy that lets the page load from and connect to this server only:
nothing is fetched from elsewhere (no CDN, no web font), so it works offline.
Typed characters are drawn as the built-in dataset was (data/render_glyphs.py) at the
served model's size, so a typed character is the very glyph the model was trained on.
"""
import base64
import functools
import os
import threading
from typing import Awaitable, Callable, Dict, List

from aiohttp import web

from cns_vaegan.data import render_glyphs
from cns_vaegan.serving.servables import ServableManager

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'playground_static')
MAX_TEXT = 64  # characters of the text view: a request renders at most this many glyphs
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")
HEADERS = {'Content-Security-Policy': CONTENT_SECURITY_POLICY,
           'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer',
           'Cache-Control': 'no-cache'}
_CONTENT_TYPES = {'.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css'}


class BadRequest(Exception):
  """A request the page should explain to its user: the HTTP status and the message."""

  def __init__(self, status: int, message: str):
    super().__init__(message)
    self.status, self.message = status, message


def _json(status: int, payload) -> web.Response:
  return web.json_response(payload, status=status, headers=HEADERS)


def _characters(text: str) -> str:
  return ''.join(text.split())


def _code_point(character: str) -> str:
  return f'U+{ord(character):04X}'


class Playground:
  """The page's static files and its glyph endpoints; blocking work goes to `run_blocking`."""

  def __init__(self, manager: ServableManager, font_path: str,
               run_blocking: Callable[..., Awaitable]):
    self.manager, self.font_path, self.run_blocking = manager, font_path, run_blocking
    self.static = {}
    for name in sorted(os.listdir(STATIC_DIR)):
      extension = os.path.splitext(name)[1]
      if extension in _CONTENT_TYPES:
        with open(os.path.join(STATIC_DIR, name), 'rb') as f:
          self.static[name] = (f.read(), _CONTENT_TYPES[extension])
    self._lock = threading.Lock()
    self._renderers: Dict[int, render_glyphs.GlyphRenderer] = {}

  def routes(self) -> List[web.RouteDef]:
    return [web.get('/', self.page), web.get('/playground/api/info', self.info),
            web.get('/playground/api/glyph', self.glyph), web.get('/playground/api/text', self.text),
            web.get('/playground/{name}', self.file)]

  # ------------------------------------------------------------------------ files
  async def page(self, request: web.Request) -> web.Response:
    del request
    return self._file('index.html')

  async def file(self, request: web.Request) -> web.Response:
    return self._file(request.match_info['name'])

  def _file(self, name: str) -> web.Response:
    if name not in self.static:
      return _json(404, {'error': f'no file {name!r} in the playground'})
    body, content_type = self.static[name]
    return web.Response(body=body, content_type=content_type, charset='utf-8', headers=HEADERS)

  # --------------------------------------------------------------------- the font
  @functools.cached_property
  def _covered(self) -> frozenset:
    """Every character the font has a glyph for (any range)."""
    return frozenset(render_glyphs.covered_characters(self.font_path, 0, 0x10FFFF))

  def _check_font(self) -> None:
    if not os.path.isfile(self.font_path):
      raise BadRequest(503, f'the server has no font at {self.font_path} to draw typed '
                            'characters with: apt-get install fonts-cns11643-kai, or start it '
                            'with --font')

  def glyph_size(self) -> int:
    """The served model's image side (its `decode` output), else the built-in dataset's."""
    servable = self.manager.current()
    signature = servable.signature_defs.get('decode') if servable else None
    if signature is not None and 'images' in signature.outputs:
      dims = signature.outputs['images'].tensor_shape.dim
      if len(dims) == 4 and dims[1].size > 0:
        return dims[1].size
    return render_glyphs.DEFAULT_SIZE

  def _renderer(self, size: int) -> render_glyphs.GlyphRenderer:
    with self._lock:
      if size not in self._renderers:
        self._renderers[size] = render_glyphs.GlyphRenderer(self.font_path, size)
      return self._renderers[size]

  def _drawn(self, character: str, size: int) -> Dict[str, str]:
    png = self._renderer(size).render_png(character)
    return {'character': character, 'code_point': _code_point(character),
            'png': base64.b64encode(png).decode('ascii')}

  def _missing_message(self, character: str) -> str:
    return (f'the font ({os.path.basename(self.font_path)}) has no glyph for {character} '
            f'({_code_point(character)})')

  # -------------------------------------------------------------------- endpoints
  def _info(self) -> Dict:
    servable = self.manager.current()
    font = os.path.isfile(self.font_path)
    first, last = render_glyphs.CJK_FIRST, render_glyphs.CJK_LAST
    return {'model_name': self.manager.model_name,
            'model_version': servable.version if servable else None,
            'glyph_size': self.glyph_size(),
            'font': os.path.basename(self.font_path) if font else None,
            'characters': ''.join(sorted(c for c in self._covered if first <= ord(c) <= last))
                          if font else ''}

  def _one_glyph(self, text: str) -> Dict[str, str]:
    characters = _characters(text)
    if not characters:
      raise BadRequest(400, 'no character given: type one')
    if len(characters) > 1:
      raise BadRequest(400, f'"{characters}" is {len(characters)} characters; one is expected')
    self._check_font()
    if characters not in self._covered:
      raise BadRequest(404, self._missing_message(characters))
    return self._drawn(characters, self.glyph_size())

  def _text_glyphs(self, text: str) -> Dict[str, List[Dict[str, str]]]:
    characters = _characters(text)
    if not characters:
      raise BadRequest(400, 'no text given: type some characters')
    if len(characters) > MAX_TEXT:
      raise BadRequest(400, f'the text has {len(characters)} characters; the playground takes '
                            f'at most {MAX_TEXT}')
    self._check_font()
    size = self.glyph_size()
    return {'glyphs': [self._drawn(c, size) if c in self._covered else
                       {'character': c, 'code_point': _code_point(c),
                        'error': self._missing_message(c)} for c in characters]}

  async def _answer(self, work: Callable, *args) -> web.Response:
    try:
      return _json(200, await self.run_blocking(work, *args))
    except BadRequest as error:
      return _json(error.status, {'error': error.message})

  async def info(self, request: web.Request) -> web.Response:
    del request
    return await self._answer(self._info)

  async def glyph(self, request: web.Request) -> web.Response:
    return await self._answer(self._one_glyph, request.query.get('text', ''))

  async def text(self, request: web.Request) -> web.Response:
    return await self._answer(self._text_glyphs, request.query.get('text', ''))

