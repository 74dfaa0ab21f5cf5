"""The exported SavedModel: the contract every client (Evaluator, TF Serving, CLI) relies on.

Self-contained: PNG decoding, grayscale/RGB conversion, padding to a square, resizing
to the model size and scaling to [-1, 1] happen inside the graph, and so do the way
back to [0, 1] floats and PNG strings, so a client needs only the TF Serving protos.
Every signature has a batch dimension (see docs/design.md, "Export signatures").

The latent arithmetic and interpolation are computed on the encoder means (pre-tanh,
the space whose prior is N(0, I)); the result passes through the same map the decoder
was trained on (tanh when latent_tanh), so the decoder only ever sees its own space.

Every request's work is bounded in the graph itself, so TF Serving running this model is
bounded too: each PNG's size is read from its IHDR and refused before any decoding, and
every signature's image count (N, N·K, N·(steps + 2), n, N·k, M + N) is checked before any
network runs, against ServingLimits recorded in the model (`loaded.limits`). A refusal is an
InvalidArgument "assertion failed: [<message naming the input>]".

Two signatures serve the playground (serving/playground_static/): `nearest` names the real
characters closest to a glyph, searching the ingested glyphs the model ships with
(reference_glyphs.py), and `explore` decodes any point of the code space given as a
weighted sum of characters' codes plus a move along the principal directions of the train
codes (also shipped: `loaded.explorer`).
"""
import dataclasses

import numpy as np
import tensorflow as tf

from cns_vaegan.components import glyph_examples
from cns_vaegan.components.trainer import sampling as sampling_distributions
from cns_vaegan.components.trainer.reference_glyphs import ReferenceGlyphs
from cns_vaegan.components.trainer.sampling import SamplingDistribution
from cns_vaegan.components.trainer.vaegan import VAEGAN

SEED_COEFFICIENTS = (0.25, 0.5, 1.0, 2.0, 3.0)  # the seed's a in a·(A − B + C)


@dataclasses.dataclass(frozen=True)
class ServingLimits:
  """The most work one request may ask of the exported model."""
  max_image_side: int = glyph_examples.MAX_IMAGE_SIDE  # PNG width and height (IHDR), each
  max_request_pixels: int = 16 * glyph_examples.MAX_IMAGE_SIDE ** 2  # all PNGs of a request
  max_images: int = 1024            # images in or out: N, N·K, N·(steps + 2), n, N·k, M + N
  max_interpolation_steps: int = 64
  max_neighbours: int = 64          # k of `nearest`


def _text(part) -> tf.Tensor:
  if isinstance(part, str):
    return tf.constant(part)
  return part if part.dtype == tf.string else tf.strings.as_string(part)


def _require(condition, *parts) -> tf.Operation:
  """Refuses the request unless `condition`, with the message `parts` (text and scalars).

  The whole message is the assertion's only datum, so clients read it as
  'assertion failed: [<message>]', intact.
  """
  return tf.debugging.Assert(condition, [tf.strings.join([_text(p) for p in parts])], summarize=1)


def _after(checks, tensor):
  """`tensor`, computed only once every check has passed (tf.function orders only stateful ops)."""
  with tf.control_dependencies(checks):
    return tf.identity(tensor)


def _shape_text(tensor) -> tf.Tensor:
  return tf.strings.join(['[', tf.strings.reduce_join(tf.strings.as_string(tf.shape(tensor)),
                                                      separator=', '), ']'])


def _checked_shape(tensor, shape, name):
  """`tensor` with its static shape set, after a check that names the input when it is wrong."""
  wanted = ', '.join('N' if d is None else str(d) for d in shape)
  check = _require(tf.reduce_all(tf.equal(tf.shape(tensor)[1:], tf.constant(shape[1:]))),
                   f'input {name} must have shape [{wanted}], got ', _shape_text(tensor))
  return tf.ensure_shape(_after([check], tensor), shape)


def png_sizes(pngs) -> tuple:
  """(is_png [N] bool, width [N] int64, height [N] int64) from each string's first 24 bytes.

  The PNG signature, then the IHDR chunk (its length, its type, then width and height as
  big-endian uint32): read without decoding, so an image's size is known before it is.
  """
  head = tf.strings.substr(tf.strings.join([tf.strings.substr(pngs, 0, 24), b'\0' * 24]), 0, 24)
  raw = tf.reshape(tf.io.decode_raw(head, tf.uint8), [-1, 24])
  expected = tf.constant(list(glyph_examples.PNG_SIGNATURE + b'\0\0\0\x0dIHDR'), tf.uint8)
  is_png = tf.logical_and(tf.reduce_all(tf.equal(raw[:, :16], expected), axis=1),
                          tf.strings.length(pngs) >= 24)
  big_endian = tf.reshape(tf.cast(raw[:, 16:24], tf.int64), [-1, 2, 4])
  size = tf.reduce_sum(big_endian * tf.constant([1 << 24, 1 << 16, 1 << 8, 1], tf.int64), axis=2)
  return is_png, size[:, 0], size[:, 1]


def _first(mask) -> tf.Tensor:
  """Index of the first true element (0 when none or empty, so messages always build)."""
  return tf.argmax(tf.concat([tf.cast(mask, tf.int32), [1]], 0), output_type=tf.int32)


def _at(values, i) -> tf.Tensor:
  return tf.gather(tf.concat([values, tf.zeros([1], values.dtype)], 0), i)


class GlyphModel(tf.Module):
  """What gets saved: the encoder, the decoder, and the signatures."""

  def __init__(self, model: VAEGAN, limits: ServingLimits = ServingLimits(),
               sampling: SamplingDistribution = None, references: ReferenceGlyphs = None,
               train_codes: SamplingDistribution = None):
    super().__init__()
    sampling = sampling or SamplingDistribution.standard_normal(model.arch.z_dim)
    # Where `sample` draws codes (pre-tanh): mean + eps @ scale.T; readable as `loaded.sampling`.
    self.sampling = {'mean': tf.Variable(sampling.mean, trainable=False, name='sampling_mean'),
                     'scale': tf.Variable(sampling.scale, trainable=False, name='sampling_scale')}
    # The directions `explore` moves along, rows largest variance first, and their stddevs.
    stddevs, directions = (train_codes or sampling).principal_axes()
    self.explorer = {'stddevs': tf.Variable(stddevs, trainable=False, name='explorer_stddevs'),
                     'directions': tf.Variable(directions, trainable=False,
                                               name='explorer_directions')}
    self.encoder, self.decoder = model.encoder, model.decoder
    # Read by the graph and by whoever loads the model (`loaded.limits['max_images']`).
    self.limits = {name: tf.Variable(value, trainable=False, dtype=tf.int64, name=name)
                   for name, value in dataclasses.asdict(limits).items()}
    self.latent_tanh = model.config.latent_tanh
    self.arch = model.arch
    h, w, c = model.arch.image_shape
    self.height, self.width, self.channels = h, w, c
    self.z_dim = model.arch.z_dim
    references = references if references is not None else ReferenceGlyphs.empty(h, w, c)
    if references.pixels.shape[1:] != (h, w, c):
      raise ValueError(f'reference glyphs of shape {references.pixels.shape[1:]}; the model '
                       f'takes {(h, w, c)}')
    # What `nearest` searches: each glyph as [0, 1] floats, one column per glyph (stored as
    # floats: casting uint8 glyphs on every request costs 4-9x the search, docs/playground.md),
    # its squared norm (computed once, here) and its character.
    flat = references.pixels.reshape(len(references), h * w * c).astype(np.float32) / 255.0
    self.references = {
        'characters': tf.Variable(tf.constant(list(references.characters), tf.string, [len(references)]),
                                  trainable=False, name='reference_characters'),
        'columns': tf.Variable(flat.T, trainable=False, name='reference_columns'),
        'squared_norms': tf.Variable(np.sum(flat ** 2, axis=1), trainable=False,
                                     name='reference_squared_norms'),
    }

  # ------------------------------------------------------------ pre/post-processing
  def _decode_png(self, png):
    """One PNG string -> float [0, 1] (h, w, c): alpha over black, padded square, resized.

    Decoded at the PNG's own channel count, so a grayscale glyph keeps its exact values.
    """
    image = tf.image.convert_image_dtype(tf.io.decode_png(png, channels=0), tf.float32)
    channels = tf.shape(image)[-1]
    # 1: gray, 2: gray + alpha, 3: RGB, 4: RGBA -> colour over a black background.
    colour = tf.switch_case(channels - 1, [
        lambda: tf.image.grayscale_to_rgb(image[..., :1]),
        lambda: tf.image.grayscale_to_rgb(image[..., :1] * image[..., 1:2]),
        lambda: image[..., :3],
        lambda: image[..., :3] * image[..., 3:4],
    ])
    gray = tf.switch_case(channels - 1, [
        lambda: image[..., :1],
        lambda: image[..., :1] * image[..., 1:2],
        lambda: tf.image.rgb_to_grayscale(colour),
        lambda: tf.image.rgb_to_grayscale(colour),
    ])
    image = gray if self.channels == 1 else colour
    shape = tf.shape(image)
    return tf.cond(
        tf.logical_and(tf.equal(shape[0], self.height), tf.equal(shape[1], self.width)),
        lambda: image,
        lambda: tf.clip_by_value(tf.image.resize_with_pad(
            image, self.height, self.width, method='lanczos3'), 0.0, 1.0))

  def _limit(self, name):
    return self.limits[name].read_value()

  def _count_check(self, count, *what) -> tf.Operation:
    """Refuses a request that would take or make no image, or more than max_images."""
    limit, count = self._limit('max_images'), tf.cast(count, tf.int64)
    return _require(tf.logical_and(count >= 1, count <= limit), *what, ' = ', count,
                    ' images; the model takes 1 to ', limit, ' a request')

  def _png_checks(self, named_pngs, checks=()) -> list:
    """Signature, size and total pixels of every PNG input, each check after the previous one."""
    side, budget = self._limit('max_image_side'), self._limit('max_request_pixels')
    checks, total = list(checks), tf.constant(0, tf.int64)
    for pngs, name in named_pngs:
      is_png, width, height = png_sizes(pngs)
      with tf.control_dependencies(checks):
        checks.append(_require(tf.reduce_all(is_png), f'input {name}[', _first(~is_png),
                               '] is not a PNG image'))
      with tf.control_dependencies(checks):
        too_big = tf.logical_or(width > side, height > side)
        i = _first(too_big)
        checks.append(_require(~tf.reduce_any(too_big), f'input {name}[', i, '] is a ',
                               _at(width, i), 'x', _at(height, i),
                               ' PNG; the model takes at most ', side, ' px a side'))
      total += tf.reduce_sum(width * height)
    with tf.control_dependencies(checks):
      names = ' and '.join(name for _, name in named_pngs)
      checks.append(_require(total <= budget, f'the PNGs of {names} hold ', total,
                             ' pixels in all; the model takes at most ', budget, ' a request'))
    return checks

  def _pixels_from_png(self, pngs, name, checks):
    """Decodes a batch of PNGs once `checks` have passed."""
    return tf.map_fn(self._decode_png, _after(checks, pngs),
                     fn_output_signature=tf.TensorSpec([self.height, self.width, self.channels],
                                                       tf.float32))

  def _checked_pngs(self, images):
    """One batch of PNGs, counted and checked, then decoded."""
    count = self._count_check(tf.size(images), 'input images has N')
    return self._pixels_from_png(images, 'images', self._png_checks([(images, 'images')], [count]))

  def _to_png(self, images):
    """float [0, 1] (..., h, w, c) -> PNG strings (...)."""
    flat = tf.reshape(images, [-1, self.height, self.width, self.channels])
    encoded = tf.map_fn(
        lambda image: tf.io.encode_png(tf.cast(tf.round(image * 255.0), tf.uint8)), flat,
        fn_output_signature=tf.TensorSpec([], tf.string))
    return tf.reshape(encoded, tf.shape(images)[:-3])

  # ------------------------------------------------------------------ the networks
  def _means(self, pixels):
    mean, log_variance = self.encoder(pixels * 2.0 - 1.0, training=False)
    return mean, log_variance

  def _to_decoder_space(self, means):
    return tf.tanh(means) if self.latent_tanh else means

  def _decode_pixels(self, z):
    return (self.decoder(z, training=False) + 1.0) / 2.0

  def _encode_outputs(self, pixels):
    mean, log_variance = self._means(pixels)
    return {'z': self._to_decoder_space(mean), 'mean': mean, 'log_variance': log_variance}

  def _image_outputs(self, pixels):
    return {'images': pixels, 'png_bytes': self._to_png(pixels)}

  # ------------------------------------------------------------------- signatures
  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='images')])
  def encode(self, images):
    """PNG strings [N] -> z [N, z_dim] (the decoder's space), mean, log_variance."""
    return self._encode_outputs(self._checked_pngs(images))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name='pixels')])
  def encode_pixels(self, pixels):
    """Float pixels [N, h, w, c] in [0, 1] at the model size -> z, mean, log_variance."""
    pixels = _checked_shape(pixels, [None, self.height, self.width, self.channels], 'pixels')
    count = self._count_check(tf.shape(pixels)[0], 'input pixels has N')
    return self._encode_outputs(_after([count], pixels))

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name='z')])
  def decode(self, z):
    """z [N, z_dim] in the decoder's space -> images [N, h, w, c] in [0, 1], png_bytes [N]."""
    z = _checked_shape(z, [None, self.z_dim], 'z')
    count = self._count_check(tf.shape(z)[0], 'input z has N')
    return self._image_outputs(self._decode_pixels(_after([count], z)))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='images')])
  def reconstruct(self, images):
    """PNG strings [N] -> their reconstructions (images [N, h, w, c], png_bytes [N])."""
    encoded = self._encode_outputs(self._checked_pngs(images))
    return self._image_outputs(self._decode_pixels(encoded['z']))


  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name='a'), tf.TensorSpec([None], tf.string, name='b'),
      tf.TensorSpec([None], tf.string, name='c'),
      tf.TensorSpec([None], tf.float32, name='coefficients')])
  def arithmetic(self, a, b, c, coefficients):
    """The seed's four-panel experiment for N triples and K coefficients (empty: 0.25 … 3).

    Outputs: reconstructions [N, 3, h, w, c] (+ _png_bytes [N, 3]); images [N, K, h, w, c]
    (+ png_bytes [N, K]) decoded from a·(mean_A − mean_B + mean_C); input_domain [N, h, w, c]
    (+ _png_bytes [N]), the clipped pixel-space A − B + C. (PNG outputs end in _bytes, so TF
    Serving's REST API returns them base64-encoded.)
    """
    coefficients = tf.cond(tf.size(coefficients) > 0, lambda: coefficients,
                           lambda: tf.constant(SEED_COEFFICIENTS, tf.float32))
    n, k = tf.shape(a)[0], tf.size(coefficients)
    checks = [_require(tf.equal(tf.shape(value)[0], n), f'inputs a and {name} must have the same '
                       'batch size, got ', n, ' and ', tf.shape(value)[0])
              for name, value in (('b', b), ('c', c))]
    with tf.control_dependencies(checks):
      checks.append(self._count_check(tf.cast(n, tf.int64) * tf.cast(k, tf.int64),
                                      'inputs a and coefficients make N*K = ', n, '*', k))
    named = ((a, 'a'), (b, 'b'), (c, 'c'))
    checks = self._png_checks(named, checks)
    pixels = [self._pixels_from_png(x, name, checks) for x, name in named]
    means = [self._means(p)[0] for p in pixels]
    reconstructions = tf.stack([self._decode_pixels(self._to_decoder_space(m)) for m in means], 1)
    combined = means[0] - means[1] + means[2]                                   # [N, z]
    scaled = coefficients[None, :, None] * combined[:, None, :]                 # [N, K, z]
    decoded = self._decode_pixels(self._to_decoder_space(tf.reshape(scaled, [-1, self.z_dim])))
    images = tf.reshape(decoded, tf.concat([[n, k],
                                            [self.height, self.width, self.channels]], 0))
    input_domain = tf.clip_by_value(pixels[0] - pixels[1] + pixels[2], 0.0, 1.0)
    return {
        'reconstructions': reconstructions, 'reconstructions_png_bytes': self._to_png(reconstructions),
        'images': images, 'png_bytes': self._to_png(images),
        'input_domain': input_domain, 'input_domain_png_bytes': self._to_png(input_domain),
        'coefficients': coefficients,
    }

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name='start'), tf.TensorSpec([None], tf.string, name='end'),
      tf.TensorSpec([], tf.int32, name='steps')])
  def interpolate(self, start, end, steps):
    """The seed's strip for N pairs: start, steps decodings from its code to end's, end.

    images [N, steps + 2, h, w, c] and png_bytes [N, steps + 2]; the decodings at both ends are
    the reconstructions, since the line runs from one code to the other.
    """
    n, max_steps = tf.shape(start)[0], self._limit('max_interpolation_steps')
    checks = [_require(tf.equal(tf.shape(end)[0], n), 'inputs start and end must have the same '
                       'batch size, got ', n, ' and ', tf.shape(end)[0])]
    with tf.control_dependencies(checks):
      checks.append(_require(tf.logical_and(steps >= 2, tf.cast(steps, tf.int64) <= max_steps),
                             'input steps must be between 2 and ', max_steps, ', got ', steps))
    with tf.control_dependencies(checks):
      checks.append(self._count_check(tf.cast(n, tf.int64) * tf.cast(steps + 2, tf.int64),
                                      'inputs start and steps make N*(steps + 2) = ', n, '*(',
                                      steps, ' + 2)'))
    named = ((start, 'start'), (end, 'end'))
    checks = self._png_checks(named, checks)
    first, last = (self._pixels_from_png(x, name, checks) for x, name in named)
    m0, m1 = self._means(first)[0], self._means(last)[0]
    weights = tf.linspace(0.0, 1.0, steps)[None, :, None]                       # [1, S, 1]
    line = (1.0 - weights) * m0[:, None, :] + weights * m1[:, None, :]          # [N, S, z]
    decoded = self._decode_pixels(self._to_decoder_space(tf.reshape(line, [-1, self.z_dim])))
    decoded = tf.reshape(decoded, [n, steps, self.height, self.width, self.channels])
    strip = tf.concat([first[:, None], decoded, last[:, None]], axis=1)
    return self._image_outputs(strip)

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name='n'),
                                tf.TensorSpec([], tf.int64, name='seed')])
  def sample(self, n, seed):
    """n glyphs decoded from codes of the model's sampling distribution, reproducible by seed.

    The codes are mean + eps @ scale.T (the prior N(0, I), or a Gaussian fitted to the train
    codes: sampling.py), through tanh when latent_tanh; z is returned in the decoder's space.
    """
    limit = self._limit('max_images')
    check = _require(tf.logical_and(n >= 1, tf.cast(n, tf.int64) <= limit),
                     'input n must be between 1 and ', limit, ', got ', n)
    eps = tf.random.stateless_normal(tf.stack([_after([check], n), self.z_dim]),
                                     seed=tf.stack([seed, tf.constant(0, tf.int64)]))
    z = self._to_decoder_space(
        self.sampling['mean'] + tf.matmul(eps, self.sampling['scale'], transpose_b=True))
    return dict(self._image_outputs(self._decode_pixels(z)), z=z)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='images'),
                                tf.TensorSpec([], tf.int32, name='k')])
  def nearest(self, images, k):
    """The k real glyphs nearest to each of N PNGs, by pixel L2 over the reference glyphs.

    The Evaluator's identity measure (quality_metrics.identity_ranks), served: characters [N, k]
    (string), distances [N, k] (L2 of [0, 1] pixels, nearest first; equal distances in
    reference order), png_bytes [N, k] (the real glyphs).
    """
    n, count = tf.shape(images)[0], tf.shape(self.references['squared_norms'])[0]
    limit = tf.minimum(self._limit('max_neighbours'), tf.cast(count, tf.int64))
    checks = [_require(count > 0, 'the model holds no reference glyphs (it was exported without '
                       'them), so it cannot name the nearest real character')]
    with tf.control_dependencies(checks):
      checks.append(_require(tf.logical_and(k >= 1, tf.cast(k, tf.int64) <= limit),
                             'input k must be between 1 and ', limit, ', got ', k))
    with tf.control_dependencies(checks):
      checks.append(self._count_check(tf.cast(n, tf.int64) * tf.cast(k, tf.int64),
                                      'inputs images and k make N*k = ', n, '*', k))
    checks = self._png_checks([(images, 'images')], checks)
    queries = tf.reshape(self._pixels_from_png(images, 'images', checks), [n, -1])
    # |q - r|^2 = |q|^2 - 2 q.r + |r|^2, for every reference at once.
    squared = (tf.reduce_sum(queries ** 2, axis=1, keepdims=True)
               - 2.0 * tf.matmul(queries, self.references['columns'])
               + self.references['squared_norms'][None, :])
    negative, indices = tf.math.top_k(-squared, k)
    # The neighbours' own pixels: the stored floats are value / 255, so this is exact.
    glyphs = tf.transpose(tf.gather(self.references['columns'], tf.reshape(indices, [-1]), axis=1))
    return {'characters': tf.gather(self.references['characters'], indices),
            'distances': tf.sqrt(tf.maximum(-negative, 0.0)),
            'png_bytes': self._to_png(tf.reshape(glyphs, [n, k, self.height, self.width,
                                                          self.channels]))}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='images'),
                                tf.TensorSpec([None, None], tf.float32, name='weights'),
                                tf.TensorSpec([None, None], tf.float32, name='coordinates')])
  def explore(self, images, weights, coordinates):
    """N points of the code space, decoded: weights [N, M] of the M images' codes (encoder
    means, pre-tanh), plus coordinates [N, K] along the first K principal directions of the
    train codes, in standard deviations (K may be 0).

    An interpolation at t is weights [[1 - t, t]]; a character moved along the main
    directions is weights [[1]] and its coordinates. Outputs images [N, h, w, c], png_bytes [N],
    z [N, z_dim] (the decoder's space).
    """
    m, n, k = tf.shape(images)[0], tf.shape(weights)[0], tf.shape(coordinates)[1]
    limit = self._limit('max_images')
    checks = [_require(tf.equal(tf.shape(weights)[1], m), 'input weights must have one column '
                       'per image: images has M = ', m, ', weights has shape ', _shape_text(weights))]
    with tf.control_dependencies(checks):
      checks.append(_require(tf.equal(tf.shape(coordinates)[0], n), 'inputs weights and '
                             'coordinates must have the same number of rows, got ', n, ' and ',
                             tf.shape(coordinates)[0]))
    with tf.control_dependencies(checks):
      checks.append(_require(k <= self.z_dim, f'input coordinates may have at most {self.z_dim} '
                             'columns (the principal directions), got ', k))
    with tf.control_dependencies(checks):
      total = tf.cast(m, tf.int64) + tf.cast(n, tf.int64)
      checks.append(_require(tf.logical_and(tf.logical_and(m >= 1, n >= 1), total <= limit),
                             'inputs images and weights make M + N = ', m, ' + ', n,
                             ' images; the model takes 1 + 1 to ', limit, ' a request'))
    checks = self._png_checks([(images, 'images')], checks)
    means = self._means(self._pixels_from_png(images, 'images', checks))[0]     # [M, z]
    moves = self.explorer['stddevs'][:k, None] * self.explorer['directions'][:k]  # [K, z]
    point = tf.matmul(weights, means) + tf.matmul(coordinates, moves)          # [N, z]
    z = self._to_decoder_space(point)
    return dict(self._image_outputs(self._decode_pixels(z)), z=z)

  def signatures(self):
    return {
        'encode': self.encode, 'encode_pixels': self.encode_pixels, 'decode': self.decode,
        'reconstruct': self.reconstruct, 'arithmetic': self.arithmetic,
        'interpolate': self.interpolate, 'sample': self.sample, 'nearest': self.nearest,
        'explore': self.explore, 'serving_default': self.reconstruct,
    }


def request_images(signature_name: str, inputs) -> int:
  """The images a request asks of a signature (what max_images bounds), from its numpy inputs.

  For servers, to refuse a request before running it: N for the batch signatures, N·K for
  arithmetic (K = 5 when no coefficients are sent), N·(steps + 2) for interpolate, n for sample,
  N·k for nearest, M + N for explore.
  """
  def batch(alias):
    return len(inputs[alias]) if np.ndim(inputs.get(alias, 0)) else 0
  if signature_name == 'arithmetic':
    return batch('a') * (batch('coefficients') or len(SEED_COEFFICIENTS))
  if signature_name == 'interpolate' and np.ndim(inputs.get('steps', 0)) == 0:
    return batch('start') * (int(inputs['steps']) + 2)
  if signature_name == 'sample' and np.ndim(inputs.get('n', 0)) == 0:
    return int(inputs['n'])
  if signature_name == 'nearest' and np.ndim(inputs.get('k', 0)) == 0:
    return batch('images') * int(inputs['k'])
  if signature_name == 'explore':
    return batch('images') + batch('weights')
  return max((len(v) for v in inputs.values() if np.ndim(v)), default=0)


def export_saved_model(model: VAEGAN, export_dir: str, limits: ServingLimits = ServingLimits(),
                       sampling: SamplingDistribution = None, references: ReferenceGlyphs = None,
                       train_codes: SamplingDistribution = None) -> None:
  """Saves the signatures; `sample` draws from `sampling` (default: the prior N(0, I)),
  `nearest` searches `references` (default: none, and it refuses), `explore` moves along the
  principal directions of `train_codes` (default: those of `sampling`)."""
  module = GlyphModel(model, limits, sampling, references, train_codes)
  tf.saved_model.save(module, export_dir, signatures=module.signatures())


def export_trained(model: VAEGAN, export_dir: str, train_patterns, eval_patterns) -> None:
  """A trained model exported as the Trainer exports it: `sample` draws where its recipe says
  (the prior, or the Gaussian of the train codes), `explore` moves along the train codes'
  principal directions, `nearest` searches every glyph of both splits."""
  train_codes = sampling_distributions.fit_train_codes(model, train_patterns)
  references = ReferenceGlyphs.from_examples(list(train_patterns) + list(eval_patterns),
                                             model.arch.img_h, model.arch.img_c)
  export_saved_model(model, export_dir,
                     sampling=sampling_distributions.distribution_for(model, train_patterns, train_codes),
                     references=references, train_codes=train_codes)
