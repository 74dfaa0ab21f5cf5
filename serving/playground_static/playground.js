// The glyph playground, served by the model server (serving/playground.py) on its REST port.
//
// Every glyph comes from the served model through TF Serving's REST API
// (POST /v1/models/NAME:predict with the signatures of components/trainer/export.py); typed
// characters are drawn with the dataset's font by GET /playground/api/glyph and /text. Each
// view's state is the page's URL (shareable; the back button walks through it). Plain
// JavaScript, no build step, nothing loaded from anywhere but this server.

const NEIGHBOURS = 5;        // real characters listed for the focused glyph
const NEAREST_BATCH = 32;    // glyphs a `nearest` request asks about (32·5 images: within the
                             // server's default --max-batch-size of 256)
const STRIP_STEPS = 8;       // decodings between the two ends of the interpolation strip
const DIRECTIONS = 8;        // principal directions the explorer has sliders for
const DEFAULTS = {
  arith: {a: '酪', b: '鉻', c: '鉸', k: '1'},
  interp: {a: '你', b: '妳', t: '0.5'},
  sample: {seed: '1', n: '16'},
  text: {text: '你好嗎'},
  explore: {c: '永', d: ''},
};

/** A message for the person using the page (bad input, no model, no server). `status`: the
 * server's HTTP status, when it answered. */
class ShownError extends Error {
  constructor(message, status = null) {
    super(message);
    this.status = status;
  }
}

const $ = (id) => document.getElementById(id);
let info = {model_name: 'cns_vaegan'};   // GET /playground/api/info, once loaded
// What scripts (tests, the latency benchmark) read: how long each update took to draw.
window.playground = {timings: []};

// ---------------------------------------------------------------------- the server
async function call(path, body) {
  let response;
  try {
    response = await fetch(path, body === undefined ? {cache: 'no-store'} : {
      method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  } catch (error) {
    throw new ShownError('The model server does not answer: it has stopped or cannot be ' +
                         'reached. Start it again (make serve), then retry.');
  }
  let payload = null;
  try {
    payload = await response.json();
  } catch (error) { /* not JSON: said below by its status */ }
  if (!response.ok) {
    const message = (payload && payload.error) || `HTTP ${response.status} ${response.statusText}`;
    if (response.status === 404 && message.startsWith('Servable not found')) {
      throw new ShownError(`No model is loaded yet: the server has no version of ` +
                           `${info.model_name} to answer with (it says: ${message}).`, 404);
    }
    throw new ShownError(message, response.status);
  }
  return payload;
}

/** A signature over TF Serving's REST API (columnar); {alias: value} of the outputs asked for. */
async function predict(signature, inputs, outputs) {
  const answer = await call(`/v1/models/${encodeURIComponent(info.model_name)}:predict`,
                            {signature_name: signature, inputs, output_filter: outputs});
  return outputs.length === 1 ? {[outputs[0]]: answer.outputs} : answer.outputs;
}
const b64 = (png) => ({b64: png});   // TF Serving's JSON for binary strings
const unwrap = (value) => value.b64;

const typedGlyphs = new Map();  // field text -> base64 PNG, drawn by the server
/** The PNG of one typed character; the server refuses empty, several or unknown characters. */
async function typed(text, label) {
  if (!typedGlyphs.has(text)) {
    try {
      typedGlyphs.set(text, (await call(`/playground/api/glyph?text=${encodeURIComponent(text)}`)).png);
    } catch (error) {
      // The server's verdict on this field is said with the field's name.
      const refused = error instanceof ShownError && error.status !== null && error.status < 500;
      throw refused ? new ShownError(`${label}: ${error.message}`, error.status) : error;
    }
  }
  return typedGlyphs.get(text);
}

/** Every field's glyph, or one error naming each field that is wrong. */
async function typedAll(fields) {
  const settled = await Promise.allSettled(fields.map(([text, label]) => typed(text, label)));
  const failed = settled.filter((s) => s.status === 'rejected').map((s) => s.reason);
  if (failed.length) {
    const hidden = failed.find((error) => !(error instanceof ShownError));
    throw hidden || new ShownError([...new Set(failed.map((error) => error.message))].join(' · '));
  }
  return settled.map((s) => s.value);
}

const neighbours = new Map();  // base64 PNG -> [{character, distance, png}], nearest first
/** The nearest real characters of each glyph (the `nearest` signature), cached by PNG. */
async function nearestOf(pngs) {
  const unknown = [...new Set(pngs.filter((png) => !neighbours.has(png)))];
  if (neighbours.size + unknown.length > 4000) neighbours.clear();
  for (let start = 0; start < unknown.length; start += NEAREST_BATCH) {
    const batch = unknown.slice(start, start + NEAREST_BATCH);
    const out = await predict('nearest', {images: batch.map(b64), k: NEIGHBOURS},
                              ['characters', 'distances', 'png_bytes']);
    batch.forEach((png, i) => neighbours.set(png, out.characters[i].map((character, j) => (
      {character, distance: out.distances[i][j], png: unwrap(out.png_bytes[i][j])}))));
  }
  return pngs.map((png) => neighbours.get(png) || []);
}

// ------------------------------------------------------------------------ drawing
function element(tag, attributes = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === 'text') node.textContent = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function glyphImage(png, alt, extraClass = '') {
  return element('img', {class: `glyph ${extraClass}`.trim(), alt,
                         src: `data:image/png;base64,${png}`});
}

/** A figure for a real (typed) glyph: no nearest list, it is one. */
function realGlyph(png, label) {
  return element('figure', {class: 'real', 'data-label': label},
                 [glyphImage(png, label), element('figcaption', {text: label})]);
}

/** A generated glyph: clickable, captioned with its nearest real character once known. */
function makeTile(png, label) {
  const best = element('span', {class: 'best'});
  const figure = element('figure', {class: 'tile', 'data-label': label, title: label}, [
    glyphImage(png, label), element('figcaption', {}, [element('span', {text: label}), best])]);
  return {png, label, figure, best, neighbours: null};
}

function formatDistance(distance) {
  return distance.toFixed(2);
}

// ------------------------------------------------------------------------- views
let busy = 1;  // the page itself is loading until main() is done (body[data-busy] says 1)
function setBusy(delta) {
  busy += delta;
  document.body.dataset.busy = String(busy);
}

/** Runs a view's update; while one runs, further requests collapse into one more run. */
class Updater {
  constructor(view) {
    this.view = view;
    this.running = false;
    this.pending = null;  // when the earliest unanswered request was made (performance.now())
  }

  request() {
    if (this.pending === null) this.pending = performance.now();
    if (!this.running) this.loop();
  }

  async loop() {
    this.running = true;
    setBusy(1);
    try {
      while (this.pending !== null) {
        const started = this.pending;
        this.pending = null;
        await this.view.update(started);
      }
    } finally {
      this.running = false;
      setBusy(-1);
    }
  }
}

class View {
  constructor(id) {
    this.id = id;
    this.section = $(id);
    this.errorBox = this.section.querySelector('.error');
    this.focusBox = this.section.querySelector('.focus');
    this.updater = new Updater(this);
    this.tiles = [];
  }

  // params() -> {key: string}; set(params); run() -> {tiles, focus}: overridden per view.

  async update(started) {
    let tiles;
    try {
      ({tiles} = await this.drawn());
    } catch (error) {
      this.clear();
      this.showError(error);
      return;
    }
    const drawn = performance.now();
    try {  // the glyphs stay drawn if this fails
      const lists = await nearestOf(tiles.map((t) => t.png));
      tiles.forEach((t, i) => {
        t.neighbours = lists[i];
        const best = lists[i][0];
        if (best) t.best.textContent = `≈ ${best.character} ${formatDistance(best.distance)}`;
      });
      this.focus(this.focused);
      window.playground.timings.push({view: this.id, drawn_ms: drawn - started,
                                      nearest_ms: performance.now() - started});
    } catch (error) {
      this.showError(error);
    }
  }

  /** run(), then its glyphs shown, the focused one large. */
  async drawn() {
    const {tiles, focus} = await this.run();
    this.showError(null);
    this.tiles = tiles;
    tiles.forEach((t) => t.figure.addEventListener('click', () => this.focus(t)));
    this.focus(focus);
    return {tiles};
  }

  clear() {
    this.tiles = [];
    this.focused = null;
    this.focusBox.replaceChildren();
    this.section.querySelectorAll('.panels .row').forEach((row) => row.replaceChildren());
  }

  showError(error) {
    if (!error) {
      this.errorBox.hidden = true;
      this.errorBox.textContent = '';
      return;
    }
    this.errorBox.textContent = error instanceof ShownError ? error.message
                                                             : `Unexpected error: ${error}`;
    this.errorBox.hidden = false;
  }

  /** The focus panel: the glyph drawn large and the real characters nearest to it. */
  focus(tile) {
    this.focused = tile;
    this.tiles.forEach((t) => t.figure.classList.toggle('focused', t === tile));
    if (!tile) {
      this.focusBox.replaceChildren();
      return;
    }
    const list = element('ol', {class: 'nearest'});
    for (const n of tile.neighbours || []) {
      list.append(element('li', {'data-character': n.character, 'data-distance': String(n.distance)}, [
        glyphImage(n.png, n.character), element('span', {class: 'character', text: n.character}),
        element('span', {class: 'distance', text: `distance ${formatDistance(n.distance)}`})]));
    }
    this.focusBox.replaceChildren(
        element('figure', {}, [glyphImage(tile.png, tile.label, 'focus-glyph'),
                               element('figcaption', {text: tile.label})]),
        element('h3', {text: tile.neighbours ? 'nearest real characters (pixel L2)'
                                             : 'finding the nearest real characters…'}),
        list);
  }
}

/** A one-character text field: updates as it is typed (not mid-composition), into the URL. */
function watchCharacters(view, inputs) {
  for (const input of inputs) {
    input.addEventListener('input', (event) => {
      if (event.isComposing) return;
      view.updater.request();
      commit();
    });
    input.addEventListener('compositionend', () => {
      view.updater.request();
      commit();
    });
  }
}

/** A slider: redraws as it moves, into the URL when let go. */
function watchSlider(view, input, label, digits = 2) {
  input.addEventListener('input', () => {
    label.value = Number(input.value).toFixed(digits);
    view.updater.request();
  });
  input.addEventListener('change', commit);
}

// A − B + C ------------------------------------------------------------------------
class Arithmetic extends View {
  constructor() {
    super('arith');
    this.fields = ['a', 'b', 'c'].map((name) => $(`arith-${name}`));
    this.slider = $('arith-coefficient');
    this.panels = new Map();  // the three PNGs -> the seed's panels (they do not move with a)
    watchCharacters(this, this.fields);
    watchSlider(this, this.slider, $('arith-coefficient-value'));
  }

  params() {
    const [a, b, c] = this.fields.map((f) => f.value);
    return {a, b, c, k: this.slider.value};
  }

  set(p) {
    this.fields.forEach((f, i) => { f.value = [p.a, p.b, p.c][i]; });
    this.slider.value = p.k;
    $('arith-coefficient-value').value = Number(this.slider.value).toFixed(2);
  }

  /** The seed's four panels, once per three characters: no coefficients sent is the seed's. */
  async seedPanels(inputs) {
    const key = `${inputs.a[0].b64} ${inputs.b[0].b64} ${inputs.c[0].b64}`;
    if (!this.panels.has(key)) {
      if (this.panels.size > 50) this.panels.clear();
      this.panels.set(key, await predict('arithmetic', {...inputs, coefficients: []}, [
        'png_bytes', 'reconstructions_png_bytes', 'input_domain_png_bytes', 'coefficients']));
    }
    return this.panels.get(key);
  }

  async run() {
    const labels = ['A', 'B', 'C'];
    const pngs = await typedAll(this.fields.map((f, i) => [f.value, labels[i]]));
    const coefficient = Number(this.slider.value);
    const inputs = {a: [b64(pngs[0])], b: [b64(pngs[1])], c: [b64(pngs[2])]};
    // A slider step asks for its one coefficient only: the panels come from the cache.
    const [panels, chosenOut] = await Promise.all([
      this.seedPanels(inputs),
      predict('arithmetic', {...inputs, coefficients: [coefficient]}, ['png_bytes']),
    ]);
    const reconstructions = panels.reconstructions_png_bytes[0].map(unwrap).map(
        (png, i) => makeTile(png, `${labels[i]} rebuilt`));
    const seed = panels.png_bytes[0].map(unwrap).map(
        (png, i) => makeTile(png, `a = ${panels.coefficients[i]}`));
    const pixels = makeTile(unwrap(panels.input_domain_png_bytes[0]), 'pixels');
    const chosen = makeTile(unwrap(chosenOut.png_bytes[0][0]), `a = ${coefficient.toFixed(2)}`);
    $('arith-inputs').replaceChildren(...pngs.map(
        (png, i) => realGlyph(png, `${labels[i]} ${this.fields[i].value.trim()}`)));
    $('arith-reconstructions').replaceChildren(...reconstructions.map((t) => t.figure));
    $('arith-seed').replaceChildren(...seed.map((t) => t.figure));
    $('arith-pixels').replaceChildren(pixels.figure);
    return {tiles: [chosen, ...reconstructions, ...seed, pixels], focus: chosen};
  }
}

// Interpolation ---------------------------------------------------------------------
class Interpolation extends View {
  constructor() {
    super('interp');
    this.fields = [$('interp-a'), $('interp-b')];
    this.slider = $('interp-t');
    this.strips = new Map();  // "start end" PNGs -> the strip's PNGs
    watchCharacters(this, this.fields);
    watchSlider(this, this.slider, $('interp-t-value'));
  }

  params() {
    return {a: this.fields[0].value, b: this.fields[1].value, t: this.slider.value};
  }

  set(p) {
    this.fields[0].value = p.a;
    this.fields[1].value = p.b;
    this.slider.value = p.t;
    $('interp-t-value').value = Number(this.slider.value).toFixed(2);
  }

  async strip(start, end) {
    const key = `${start} ${end}`;
    if (!this.strips.has(key)) {
      const out = await predict('interpolate', {start: [b64(start)], end: [b64(end)],
                                                steps: STRIP_STEPS}, ['png_bytes']);
      if (this.strips.size > 50) this.strips.clear();
      this.strips.set(key, out.png_bytes[0].map(unwrap));
    }
    return this.strips.get(key);
  }

  async run() {
    const [start, end] = await typedAll([[this.fields[0].value, 'from'],
                                         [this.fields[1].value, 'to']]);
    const t = Number(this.slider.value);
    const [strip, out] = await Promise.all([
      this.strip(start, end),
      predict('explore', {images: [b64(start), b64(end)], weights: [[1 - t, t]],
                          coordinates: [[]]}, ['png_bytes']),
    ]);
    const last = strip.length - 1;
    const tiles = strip.map((png, i) => makeTile(
        png, i === 0 ? 'start' : i === last ? 'end' : `t = ${((i - 1) / (STRIP_STEPS - 1)).toFixed(2)}`));
    tiles[0] = realTile(tiles[0]);
    tiles[last] = realTile(tiles[last]);
    $('interp-strip').replaceChildren(...tiles.map((tile) => tile.figure));
    this.placeMarker(tiles, t);
    const here = makeTile(unwrap(out.png_bytes[0]), `t = ${t.toFixed(2)}`);
    return {tiles: [here, ...tiles.slice(1, last)], focus: here};
  }

  placeMarker(tiles, t) {
    const first = tiles[1].figure;
    const last = tiles[tiles.length - 2].figure;
    const x0 = first.offsetLeft + first.offsetWidth / 2;
    const x1 = last.offsetLeft + last.offsetWidth / 2;
    $('interp-marker').style.left = `${x0 + t * (x1 - x0)}px`;
  }
}

/** The strip's ends are the typed glyphs themselves: shown, not searched. */
function realTile(tile) {
  const figure = realGlyph(tile.png, tile.label);
  return {...tile, figure};
}

// Samples ---------------------------------------------------------------------------
class Samples extends View {
  constructor() {
    super('sample');
    this.seed = $('sample-seed');
    this.count = $('sample-n');
    for (const input of [this.seed, this.count]) {
      input.addEventListener('input', () => this.updater.request());
      input.addEventListener('change', commit);
    }
    $('sample-draw').addEventListener('click', () => {
      this.seed.value = String(Math.floor(Math.random() * 1e9));
      this.updater.request();
      commit();
    });
  }

  params() {
    return {seed: this.seed.value, n: this.count.value};
  }

  set(p) {
    this.seed.value = p.seed;
    this.count.value = p.n;
  }

  async run() {
    const seed = this.seed.value.trim();
    const n = this.count.value.trim();
    if (!/^\d+$/.test(seed)) throw new ShownError('seed: type a whole number (0 or more)');
    if (!/^\d+$/.test(n)) throw new ShownError('how many: type a whole number from 1 to 64');
    if (Number(n) > 64) throw new ShownError(`how many: the page draws at most 64, got ${n}`);
    const out = await predict('sample', {n: Number(n), seed: Number(seed)}, ['png_bytes']);
    const tiles = out.png_bytes.map(unwrap).map((png, i) => makeTile(png, `#${i + 1}`));
    $('sample-grid').replaceChildren(...tiles.map((t) => t.figure));
    return {tiles, focus: tiles[0]};
  }
}

// Text ------------------------------------------------------------------------------
class Text extends View {
  constructor() {
    super('text');
    this.input = $('text-input');
    watchCharacters(this, [this.input]);
  }

  params() {
    return {text: this.input.value};
  }

  set(p) {
    this.input.value = p.text;
  }

  async run() {
    const {glyphs} = await call(`/playground/api/text?text=${encodeURIComponent(this.input.value)}`);
    const drawn = glyphs.filter((g) => g.png);
    let rebuilt = [];
    if (drawn.length) {
      const out = await predict('reconstruct', {images: drawn.map((g) => b64(g.png))}, ['png_bytes']);
      rebuilt = out.png_bytes.map(unwrap);
    }
    const tiles = [];
    const pairs = glyphs.map((g) => {
      if (!g.png) {
        return element('figure', {class: 'missing', 'data-character': g.character, title: g.error},
                       [element('span', {text: `${g.character} is not in the font`})]);
      }
      const tile = makeTile(rebuilt[tiles.length], `${g.character} rebuilt`);
      tiles.push(tile);
      return element('div', {class: 'pair', 'data-character': g.character},
                     [realGlyph(g.png, g.character), tile.figure]);
    });
    $('text-pairs').replaceChildren(...pairs);
    return {tiles, focus: tiles[0] || null};
  }
}

// The latent explorer ---------------------------------------------------------------
class Explorer extends View {
  constructor() {
    super('explore');
    this.field = $('explore-char');
    this.sliders = [];
    for (let i = 0; i < DIRECTIONS; i++) {
      const slider = element('input', {type: 'range', min: '-3', max: '3', step: '0.1', value: '0',
                                       id: `explore-d${i + 1}`});
      const label = element('output', {text: '0.0'});
      watchSlider(this, slider, label, 1);
      this.sliders.push({slider, label});
      $('explore-sliders').append(element('label', {}, [`direction ${i + 1}`, slider, label]));
    }
    watchCharacters(this, [this.field]);
    $('explore-reset').addEventListener('click', () => {
      this.set({c: this.field.value, d: ''});
      this.updater.request();
      commit();
    });
  }

  coordinates() {
    return this.sliders.map(({slider}) => Number(slider.value));
  }

  params() {
    return {c: this.field.value, d: this.coordinates().join(',')};
  }

  set(p) {
    this.field.value = p.c;
    const values = p.d ? p.d.split(',').map(Number) : [];
    this.sliders.forEach(({slider, label}, i) => {
      slider.value = String(Number.isFinite(values[i]) ? values[i] : 0);
      label.value = Number(slider.value).toFixed(1);
    });
  }

  async run() {
    const [png] = await typedAll([[this.field.value, 'start']]);
    // Two points in one request: the start's own code (its reconstruction) and the moved one.
    const out = await predict('explore', {
      images: [b64(png)], weights: [[1], [1]],
      coordinates: [new Array(DIRECTIONS).fill(0), this.coordinates()],
    }, ['png_bytes']);
    const [start, moved] = out.png_bytes.map(unwrap);
    const rebuilt = makeTile(start, 'rebuilt');
    const here = makeTile(moved, 'moved');
    $('explore-start').replaceChildren(realGlyph(png, this.field.value.trim()), rebuilt.figure);
    return {tiles: [here, rebuilt], focus: here};
  }
}

// ------------------------------------------------------------------ views and URLs
const views = {};
let current = null;

function urlFor(view) {
  return `?${new URLSearchParams({view: view.id, ...view.params()})}`;
}

/** The current state becomes a history entry (a no-op when the URL says it already). */
function commit() {
  const url = urlFor(current);
  if (url !== location.search) history.pushState(null, '', url);
}

function show(view) {
  current = view;
  for (const v of Object.values(views)) v.section.hidden = v !== view;
  document.querySelectorAll('nav a').forEach((a) => {
    if (a.dataset.view === view.id) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  });
}

/** The state the URL names: its view, with the URL's values over the defaults. */
function loadUrl() {
  const params = new URLSearchParams(location.search);
  const id = views[params.get('view')] ? params.get('view') : 'arith';
  const values = {...DEFAULTS[id]};
  for (const key of Object.keys(values)) {
    if (params.has(key)) values[key] = params.get(key);
  }
  views[id].set(values);
  show(views[id]);
  views[id].updater.request();
}

async function loadInfo() {
  const status = $('model-status');
  try {
    info = await call('/playground/api/info');
  } catch (error) {
    status.textContent = error.message;
    status.classList.add('down');
    return;
  }
  status.classList.toggle('down', info.model_version === null);
  status.textContent = info.model_version === null
      ? `No model is loaded yet: the server has no version of ${info.model_name}.`
      : `${info.model_name} version ${info.model_version} · ${info.glyph_size} px glyphs · ` +
        `typed characters drawn with ${info.font || 'no font (the server has none)'}`;
}

async function main() {
  try {
    for (const View of [Arithmetic, Interpolation, Samples, Text, Explorer]) {
      const view = new View();
      views[view.id] = view;
      view.set(DEFAULTS[view.id]);
    }
    document.querySelectorAll('nav a').forEach((a) => a.addEventListener('click', (event) => {
      event.preventDefault();
      show(views[a.dataset.view]);
      commit();
      current.updater.request();
    }));
    window.addEventListener('popstate', loadUrl);
    await loadInfo();
    loadUrl();
    history.replaceState(null, '', urlFor(current));
  } finally {
    setBusy(-1);
  }
}

main();
