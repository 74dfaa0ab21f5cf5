"""The exported SavedModel: the contract every client (Evaluator, TF Serving, CLI) relies on.

Self-contained: PNG decoding, grayscale/RGB conversion, padding to a square, resizing
to the model size and scaling to [-1, 1] happen inside the graph, and so do the way
back to [0, 1] floats and PNG strings, so a client needs only the TF Serving protos.
Every signature has a batch dimension (see README, "Serving signatures").

The latent arithmetic and interpolation are computed on the encoder means (pre-tanh,
the space whose prior is N(0, I)); the result passes through the same map the decoder
was trained on (tanh when latent_tanh), so the decoder only ever sees its own space.
"""
import tensorflow as tf

from cns_vaegan.components.trainer.vaegan import VAEGAN

SEED_COEFFICIENTS = (0.25, 0.5, 1.0, 2.0, 3.0)  # the seed's a in a·(A − B + C)
MAX_SAMPLES = 1024
MAX_INTERPOLATION_STEPS = 64


def _checked_shape(tensor, shape, name):
  """`tensor` with its static shape set, after a check that names the input when it is wrong."""
  wanted = ', '.join('N' if d is None else str(d) for d in shape)
  check = tf.debugging.assert_equal(
      tf.shape(tensor)[1:], tf.constant(shape[1:]),
      message=f"input {name} must have shape [{wanted}]")
  with tf.control_dependencies([check]):
    return tf.ensure_shape(tf.identity(tensor), shape)


class GlyphModel(tf.Module):
  """What gets saved: the encoder, the decoder, and the signatures."""

  def __init__(self, model: VAEGAN):
    super().__init__()
    self.encoder, self.decoder = model.encoder, model.decoder
    self.latent_tanh = model.config.latent_tanh
    self.arch = model.arch
    h, w, c = model.arch.image_shape
    self.height, self.width, self.channels = h, w, c
    self.z_dim = model.arch.z_dim

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

  def _pixels_from_png(self, pngs, name):
    tf.debugging.assert_rank(pngs, 1, message=f"input {name} must be a 1-D batch of PNG strings")
    return tf.map_fn(self._decode_png, pngs,
                     fn_output_signature=tf.TensorSpec([self.height, self.width, self.channels],
                                                       tf.float32))

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
    return self._encode_outputs(self._pixels_from_png(images, 'images'))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32, name='pixels')])
  def encode_pixels(self, pixels):
    """Float pixels [N, h, w, c] in [0, 1] at the model size -> z, mean, log_variance."""
    pixels = _checked_shape(pixels, [None, self.height, self.width, self.channels], 'pixels')
    return self._encode_outputs(pixels)

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.float32, name='z')])
  def decode(self, z):
    """z [N, z_dim] in the decoder's space -> images [N, h, w, c] in [0, 1], png_bytes [N]."""
    return self._image_outputs(self._decode_pixels(_checked_shape(z, [None, self.z_dim], 'z')))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name='images')])
  def reconstruct(self, images):
    """PNG strings [N] -> their reconstructions (images [N, h, w, c], png_bytes [N])."""
    encoded = self._encode_outputs(self._pixels_from_png(images, 'images'))
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
    n = tf.shape(a)[0]
    for name, value in (('b', b), ('c', c)):
      tf.debugging.assert_equal(tf.shape(value)[0], n,
                                message=f"inputs a and {name} must have the same batch size")
    pixels = [self._pixels_from_png(x, name) for x, name in ((a, 'a'), (b, 'b'), (c, 'c'))]
    means = [self._means(p)[0] for p in pixels]
    reconstructions = tf.stack([self._decode_pixels(self._to_decoder_space(m)) for m in means], 1)
    combined = means[0] - means[1] + means[2]                                   # [N, z]
    scaled = coefficients[None, :, None] * combined[:, None, :]                 # [N, K, z]
    decoded = self._decode_pixels(self._to_decoder_space(tf.reshape(scaled, [-1, self.z_dim])))
    images = tf.reshape(decoded, tf.concat([[n, tf.size(coefficients)],
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
    tf.debugging.assert_equal(tf.shape(end)[0], tf.shape(start)[0],
                              message="inputs start and end must have the same batch size")
    tf.debugging.assert_greater_equal(steps, 2, message="input steps must be at least 2")
    tf.debugging.assert_less_equal(steps, MAX_INTERPOLATION_STEPS,
                                   message=f"input steps must be at most {MAX_INTERPOLATION_STEPS}")
    first, last = self._pixels_from_png(start, 'start'), self._pixels_from_png(end, 'end')
    m0, m1 = self._means(first)[0], self._means(last)[0]
    weights = tf.linspace(0.0, 1.0, steps)[None, :, None]                       # [1, S, 1]
    line = (1.0 - weights) * m0[:, None, :] + weights * m1[:, None, :]          # [N, S, z]
    decoded = self._decode_pixels(self._to_decoder_space(tf.reshape(line, [-1, self.z_dim])))
    n = tf.shape(start)[0]
    decoded = tf.reshape(decoded, [n, steps, self.height, self.width, self.channels])
    strip = tf.concat([first[:, None], decoded, last[:, None]], axis=1)
    return self._image_outputs(strip)

  @tf.function(input_signature=[tf.TensorSpec([], tf.int32, name='n'),
                                tf.TensorSpec([], tf.int64, name='seed')])
  def sample(self, n, seed):
    """n glyphs from the prior (N(0, I), through tanh when latent_tanh), reproducible by seed."""
    tf.debugging.assert_greater_equal(n, 1, message="input n must be at least 1")
    tf.debugging.assert_less_equal(n, MAX_SAMPLES, message=f"input n must be at most {MAX_SAMPLES}")
    eps = tf.random.stateless_normal(tf.stack([n, self.z_dim]),
                                     seed=tf.stack([seed, tf.constant(0, tf.int64)]))
    z = self._to_decoder_space(eps)
    return dict(self._image_outputs(self._decode_pixels(z)), z=z)

  def signatures(self):
    return {
        'encode': self.encode, 'encode_pixels': self.encode_pixels, 'decode': self.decode,
        'reconstruct': self.reconstruct, 'arithmetic': self.arithmetic,
        'interpolate': self.interpolate, 'sample': self.sample,
        'serving_default': self.reconstruct,
    }


def export_saved_model(model: VAEGAN, export_dir: str) -> None:
  module = GlyphModel(model)
  tf.saved_model.save(module, export_dir, signatures=module.signatures())
