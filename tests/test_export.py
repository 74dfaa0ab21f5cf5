"""The SavedModel contract: every signature against the Keras model in-process."""
import dataclasses
import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from cns_vaegan.components.evaluator import quality_metrics
from cns_vaegan.components.trainer import export, sampling
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN
from bad_glyph_files import png_with_header
from conftest import TEST_CHARACTERS, TINY_ARCHITECTURE, rendered_references

ARCH = Architecture(**TINY_ARCHITECTURE)
CHARS = '酪鉻鉸你'


@pytest.fixture(scope='module')
def exported(tmp_path_factory, glyph_dir):
  """(Keras-side VAEGAN, loaded SavedModel, {character: PNG bytes}, {character: pixels [0,1]})."""
  tf.keras.utils.set_random_seed(3)
  model = VAEGAN(ARCH, TrainingConfig(batch_size=4), tf.distribute.get_strategy())
  batch = np.random.default_rng(0).uniform(-1, 1, (4,) + ARCH.image_shape).astype(np.float32)
  noise = np.random.default_rng(1).standard_normal((4, ARCH.z_dim)).astype(np.float32)
  model.train_step({'image': batch, 'eps': noise, 'z_prior_eps': noise})  # non-trivial BN stats
  path = str(tmp_path_factory.mktemp('export') / 'model')
  # Correlated train codes, so that the explorer's directions are not the axes.
  codes = np.random.default_rng(4).standard_normal((200, ARCH.z_dim)) @ np.random.default_rng(
      5).standard_normal((ARCH.z_dim, ARCH.z_dim))
  export.export_saved_model(model, path, references=rendered_references(),
                            train_codes=sampling.SamplingDistribution.fitted_to(codes))
  pngs, pixels = {}, {}
  for ch in CHARS:
    with open(os.path.join(glyph_dir, f'U{ord(ch)}.png'), 'rb') as f:
      pngs[ch] = f.read()
    pixels[ch] = np.asarray(Image.open(io.BytesIO(pngs[ch])), np.float32)[..., None] / 255.0
  return model, tf.saved_model.load(path), pngs, pixels


def keras_codes(model, pixels):
  mean, log_variance = model.encoder(pixels * 2.0 - 1.0, training=False)
  return mean.numpy(), log_variance.numpy()


def keras_decode(model, z):
  return (model.decoder(z, training=False).numpy() + 1.0) / 2.0


def png_pixels(png_bytes):
  return np.asarray(Image.open(io.BytesIO(png_bytes)))


def test_the_model_exports_every_documented_signature(exported):
  _, loaded, _, _ = exported
  assert set(loaded.signatures) == {'encode', 'encode_pixels', 'decode', 'reconstruct', 'arithmetic',
                                    'interpolate', 'sample', 'nearest', 'explore',
                                    'serving_default'}


def test_encode_matches_the_encoder_for_png_and_raw_pixels(exported):
  model, loaded, pngs, pixels = exported
  batch = np.stack([pixels[c] for c in CHARS])
  out = loaded.signatures['encode'](images=tf.constant([pngs[c] for c in CHARS]))
  mean, log_variance = keras_codes(model, batch)
  np.testing.assert_allclose(out['mean'], mean, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out['log_variance'], log_variance, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out['z'], np.tanh(mean), rtol=1e-5, atol=1e-5)  # decoder's space
  raw = loaded.signatures['encode_pixels'](pixels=tf.constant(batch))
  np.testing.assert_allclose(raw['z'], out['z'], rtol=1e-5, atol=1e-6)


def test_decode_returns_floats_in_0_1_and_the_same_pixels_as_png(exported):
  model, loaded, _, _ = exported
  z = np.tanh(np.random.default_rng(2).standard_normal((3, ARCH.z_dim))).astype(np.float32)
  out = loaded.signatures['decode'](z=tf.constant(z))
  assert out['images'].shape == (3, 16, 16, 1) and out['images'].dtype == tf.float32
  assert out['png_bytes'].shape == (3,) and out['png_bytes'].dtype == tf.string
  np.testing.assert_allclose(out['images'], keras_decode(model, z), rtol=1e-5, atol=1e-5)
  for image, png in zip(out['images'].numpy(), out['png_bytes'].numpy()):
    np.testing.assert_array_equal(png_pixels(png), np.round(image[..., 0] * 255).astype(np.uint8))


def test_reconstruct_is_decode_of_encode(exported):
  model, loaded, pngs, pixels = exported
  out = loaded.signatures['reconstruct'](images=tf.constant([pngs['酪']]))
  mean, _ = keras_codes(model, pixels['酪'][None])
  np.testing.assert_allclose(out['images'], keras_decode(model, np.tanh(mean)), rtol=1e-4, atol=1e-5)
  assert loaded.signatures['serving_default'](images=tf.constant([pngs['酪']]))['png_bytes'].shape == (1,)


def test_arithmetic_is_the_seeds_four_panels(exported):
  model, loaded, pngs, pixels = exported
  out = loaded.signatures['arithmetic'](
      a=tf.constant([pngs['酪']]), b=tf.constant([pngs['鉻']]), c=tf.constant([pngs['鉸']]),
      coefficients=tf.constant([], tf.float32))
  np.testing.assert_allclose(out['coefficients'], export.SEED_COEFFICIENTS)
  assert out['images'].shape == (1, 5, 16, 16, 1) and out['png_bytes'].shape == (1, 5)
  assert out['reconstructions'].shape == (1, 3, 16, 16, 1)
  means = [keras_codes(model, pixels[c][None])[0] for c in '酪鉻鉸']
  combined = means[0] - means[1] + means[2]
  for k, a in enumerate(export.SEED_COEFFICIENTS):
    np.testing.assert_allclose(out['images'][0, k], keras_decode(model, np.tanh(a * combined))[0],
                               rtol=1e-4, atol=1e-5)
  expected_input_domain = np.clip(pixels['酪'] - pixels['鉻'] + pixels['鉸'], 0, 1)
  np.testing.assert_allclose(out['input_domain'][0], expected_input_domain, atol=1e-6)
  custom = loaded.signatures['arithmetic'](
      a=tf.constant([pngs['酪']] * 2), b=tf.constant([pngs['鉻']] * 2),
      c=tf.constant([pngs['鉸']] * 2), coefficients=tf.constant([1.0, 2.0]))
  assert custom['png_bytes'].shape == (2, 2)


def test_interpolate_strip_has_inputs_at_the_ends_and_reconstructions_next_to_them(exported):
  model, loaded, pngs, pixels = exported
  out = loaded.signatures['interpolate'](start=tf.constant([pngs['你']]),
                                         end=tf.constant([pngs['酪']]), steps=tf.constant(6))
  strip = out['images'].numpy()[0]
  assert strip.shape == (8, 16, 16, 1) and out['png_bytes'].shape == (1, 8)
  np.testing.assert_allclose(strip[0], pixels['你'], atol=1e-6)
  np.testing.assert_allclose(strip[-1], pixels['酪'], atol=1e-6)
  recon = loaded.signatures['reconstruct'](images=tf.constant([pngs['你']]))['images'][0]
  np.testing.assert_allclose(strip[1], recon, rtol=1e-4, atol=1e-5)


def test_sample_is_reproducible_by_seed(exported):
  _, loaded, _, _ = exported
  first = loaded.signatures['sample'](n=tf.constant(5), seed=tf.constant(7, tf.int64))
  again = loaded.signatures['sample'](n=tf.constant(5), seed=tf.constant(7, tf.int64))
  other = loaded.signatures['sample'](n=tf.constant(5), seed=tf.constant(8, tf.int64))
  assert first['images'].shape == (5, 16, 16, 1) and first['z'].shape == (5, ARCH.z_dim)
  # By default `sample` draws from the prior: tanh(eps), the decoder's space.
  eps = tf.random.stateless_normal([5, ARCH.z_dim], seed=tf.constant([7, 0], tf.int64))
  np.testing.assert_allclose(first['z'], np.tanh(eps), rtol=1e-6)
  np.testing.assert_array_equal(first['images'], again['images'])
  assert not np.array_equal(first['images'], other['images'])


def test_nearest_ranks_every_reference_glyph_by_pixel_l2_as_the_evaluators_identity(exported):
  _, loaded, pngs, _ = exported
  references = rendered_references()
  flat = references.pixels.reshape(len(references), -1) / 255.0
  rebuilt = loaded.signatures['reconstruct'](images=tf.constant([pngs[c] for c in CHARS]))
  queries = [pngs[c] for c in CHARS] + list(rebuilt['png_bytes'].numpy())
  out = loaded.signatures['nearest'](images=tf.constant(queries), k=tf.constant(5))
  assert {key: value.shape for key, value in out.items()} == {
      'characters': (8, 5), 'distances': (8, 5), 'png_bytes': (8, 5)}
  for i, png in enumerate(queries):
    distances = np.sqrt(np.sum((flat - png_pixels(png).reshape(-1) / 255.0) ** 2, axis=1))
    order = np.argsort(distances, kind='stable')[:5]
    assert [c.decode() for c in out['characters'][i].numpy()] == [references.characters[j] for j in order]
    np.testing.assert_allclose(out['distances'][i], distances[order], atol=1e-2)
    for j, neighbour in zip(order, out['png_bytes'][i].numpy()):
      np.testing.assert_array_equal(png_pixels(neighbour), references.pixels[j][..., 0])
  # A real glyph is its own nearest; the reconstructions' top-1 is the Evaluator's identity.
  assert [c.decode() for c in out['characters'][:4, 0].numpy()] == list(CHARS)
  own = np.array([references.characters.index(c) for c in CHARS])
  identity = quality_metrics.identity(quality_metrics.identity_ranks(
      np.stack([png_pixels(p) for p in queries[4:]]) / 255.0, own, references.pixels[..., 0] / 255.0))
  served = np.mean([c.decode() == own_c for c, own_c in zip(out['characters'][4:, 0].numpy(), CHARS)])
  assert served == identity['top1']


def test_explore_decodes_weighted_codes_moved_along_the_train_codes_directions(exported):
  model, loaded, pngs, pixels = exported
  stddevs, directions = (loaded.explorer[name].numpy() for name in ('stddevs', 'directions'))
  np.testing.assert_allclose(directions @ directions.T, np.eye(ARCH.z_dim), atol=1e-5)
  assert np.all(np.diff(stddevs) <= 0) and stddevs[0] > stddevs[-1]
  means = np.concatenate([keras_codes(model, pixels[c][None])[0] for c in '你酪'])
  weights = np.array([[1, 0], [0.7, 0.3], [1, 0]], np.float32)
  coordinates = np.array([[0, 0], [0, 0], [1.5, -2.0]], np.float32)
  out = loaded.signatures['explore'](images=tf.constant([pngs['你'], pngs['酪']]),
                                     weights=tf.constant(weights), coordinates=tf.constant(coordinates))
  points = weights @ means + coordinates @ (stddevs[:2, None] * directions[:2])
  np.testing.assert_allclose(out['z'], np.tanh(points), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out['images'], keras_decode(model, np.tanh(points)), rtol=1e-4, atol=1e-5)
  # Weight 1 on one character and no move: its reconstruction.
  rebuilt = loaded.signatures['reconstruct'](images=tf.constant([pngs['你']]))['images'][0]
  np.testing.assert_allclose(out['images'][0], rebuilt, rtol=1e-4, atol=1e-5)
  assert out['png_bytes'].shape == (3,)


def test_larger_and_rgba_pngs_are_converted_to_the_model_layout_in_the_graph(exported):
  _, loaded, pngs, pixels = exported
  big = Image.open(io.BytesIO(pngs['你'])).resize((48, 48), Image.Resampling.NEAREST).convert('RGBA')
  buffer = io.BytesIO()
  big.save(buffer, format='PNG')
  out = loaded.signatures['encode'](images=tf.constant([buffer.getvalue()]))
  assert out['z'].shape == (1, ARCH.z_dim)


@pytest.mark.parametrize('signature, inputs, message', [
    ('encode', dict(images=tf.constant([b'not a png'])), 'PNG|png|image'),
    ('encode_pixels', dict(pixels=tf.zeros([1, 8, 8, 1])), "input pixels must have shape"),
    ('decode', dict(z=tf.zeros([1, 3])), "input z must have shape"),
    ('interpolate', dict(start=tf.constant([b'x']), end=tf.constant([b'x', b'y']),
                         steps=tf.constant(4)), 'same batch size'),
    ('sample', dict(n=tf.constant(0), seed=tf.constant(1, tf.int64)),
     r"input n must be between 1 and 1024, got 0"),
])
def test_bad_inputs_fail_at_the_signature_with_the_input_named(exported, signature, inputs, message):
  _, loaded, _, _ = exported
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    loaded.signatures[signature](**inputs)


def test_wrong_dtypes_are_refused_at_the_signature_boundary(exported):
  _, loaded, _, _ = exported
  with pytest.raises((TypeError, tf.errors.InvalidArgumentError), match='float'):
    loaded.signatures['decode'](z=tf.zeros([1, ARCH.z_dim], tf.int32))


# ------------------------------------------------------------------ bounded work
def refusal(signature, **inputs) -> str:
  """The model's message for a refused call, as a server passes it on."""
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    signature(**{k: tf.constant(v) for k, v in inputs.items()})
  [line] = [l for l in error.value.message.splitlines() if l.startswith('assertion failed: [')]
  return line[len('assertion failed: ['):-1]


def test_the_limits_are_recorded_in_the_model(exported):
  _, loaded, _, _ = exported
  recorded = {name: int(value.numpy()) for name, value in loaded.limits.items()}
  assert recorded == dataclasses.asdict(export.ServingLimits())
  assert recorded['max_image_side'] == 2048


def test_png_sizes_are_read_from_the_header_and_refused_before_decoding(exported):
  _, loaded, pngs, _ = exported
  encode = loaded.signatures['encode']
  # The IHDR says 16000 x 9000 and no pixel data follows: decoding would fail differently.
  huge = png_with_header(16000, 9000)
  assert refusal(encode, images=[pngs['你'], huge]) == (
      'input images[1] is a 16000x9000 PNG; the model takes at most 2048 px a side')
  assert refusal(encode, images=[pngs['你'], b'GIF89a', huge]) == 'input images[1] is not a PNG image'
  assert refusal(loaded.signatures['arithmetic'], a=[pngs['你']], b=[pngs['你']], c=[huge],
                 coefficients=np.ones(1, np.float32)) == (
      'input c[0] is a 16000x9000 PNG; the model takes at most 2048 px a side')
  many = [png_with_header(2048, 2048)] * 17  # each within the side, together over 2^26 pixels
  assert refusal(encode, images=many) == (
      'the PNGs of images hold 71303168 pixels in all; the model takes at most 67108864 a request')
  sizes = export.png_sizes(tf.constant([pngs['你'], huge, b'', b'\x89PNG']))
  assert [list(x.numpy()) for x in sizes] == [[True, True, False, False], [16, 16000, 0, 0],
                                              [16, 9000, 0, 0]]


@pytest.mark.parametrize('signature, inputs, message', [
    ('encode', dict(images=[b'x'] * 1025),
     'input images has N = 1025 images; the model takes 1 to 1024 a request'),
    ('decode', dict(z=np.zeros((1025, ARCH.z_dim), np.float32)),
     'input z has N = 1025 images; the model takes 1 to 1024 a request'),
    ('encode_pixels', dict(pixels=np.zeros((0, 16, 16, 1), np.float32)),
     'input pixels has N = 0 images; the model takes 1 to 1024 a request'),
    ('arithmetic', dict(a=[b'x'] * 300, b=[b'x'] * 300, c=[b'x'] * 300,
                        coefficients=np.zeros(0, np.float32)),
     'inputs a and coefficients make N*K = 300*5 = 1500 images; the model takes 1 to 1024 a request'),
    ('interpolate', dict(start=[b'x'] * 100, end=[b'x'] * 100, steps=np.int32(64)),
     'inputs start and steps make N*(steps + 2) = 100*(64 + 2) = 6600 images; the model takes 1 '
     'to 1024 a request'),
    ('interpolate', dict(start=[b'x'], end=[b'x'], steps=np.int32(65)),
     'input steps must be between 2 and 64, got 65'),
    ('sample', dict(n=np.int32(5000), seed=np.int64(0)),
     'input n must be between 1 and 1024, got 5000'),
    ('nearest', dict(images=[b'x'] * 300, k=np.int32(5)),
     'inputs images and k make N*k = 300*5 = 1500 images; the model takes 1 to 1024 a request'),
    ('nearest', dict(images=[b'x'], k=np.int32(0)),
     f'input k must be between 1 and {len(TEST_CHARACTERS)}, got 0'),
    ('explore', dict(images=[b'x'], weights=np.ones((1, 2), np.float32),
                     coordinates=np.zeros((1, 0), np.float32)),
     'input weights must have one column per image: images has M = 1, weights has shape [1, 2]'),
    ('explore', dict(images=[b'x'], weights=np.ones((2, 1), np.float32),
                     coordinates=np.zeros((1, 0), np.float32)),
     'inputs weights and coordinates must have the same number of rows, got 2 and 1'),
    ('explore', dict(images=[b'x'], weights=np.ones((1, 1), np.float32),
                     coordinates=np.zeros((1, 9), np.float32)),
     'input coordinates may have at most 8 columns (the principal directions), got 9'),
    ('explore', dict(images=[b'x'] * 1000, weights=np.ones((30, 1000), np.float32),
                     coordinates=np.zeros((30, 0), np.float32)),
     'inputs images and weights make M + N = 1000 + 30 images; the model takes 1 + 1 to 1024 a '
     'request'),
])
def test_every_signature_refuses_more_images_than_the_limit_before_any_work(
    exported, signature, inputs, message):
  _, loaded, _, _ = exported
  assert refusal(loaded.signatures[signature], **inputs) == message


def test_limits_given_at_export_are_the_ones_enforced(tmp_path):
  tf.keras.utils.set_random_seed(4)
  model = VAEGAN(ARCH, TrainingConfig(batch_size=4), tf.distribute.get_strategy())
  limits = export.ServingLimits(max_image_side=8, max_request_pixels=100, max_images=4,
                                max_interpolation_steps=3)
  export.export_saved_model(model, str(tmp_path / 'model'), limits)
  loaded = tf.saved_model.load(str(tmp_path / 'model'))
  assert {k: int(v.numpy()) for k, v in loaded.limits.items()} == dataclasses.asdict(limits)
  assert refusal(loaded.signatures['sample'], n=np.int32(5), seed=np.int64(0)) == (
      'input n must be between 1 and 4, got 5')
  assert refusal(loaded.signatures['encode'], images=[png_with_header(9, 8)]) == (
      'input images[0] is a 9x8 PNG; the model takes at most 8 px a side')
  assert refusal(loaded.signatures['encode'], images=[png_with_header(8, 8)] * 2) == (
      'the PNGs of images hold 128 pixels in all; the model takes at most 100 a request')
  assert loaded.signatures['sample'](n=tf.constant(4), seed=tf.constant(0, tf.int64))[
      'images'].shape == (4, 16, 16, 1)
  assert refusal(loaded.signatures['nearest'], images=[png_with_header(8, 8)], k=np.int32(1)) == (
      'the model holds no reference glyphs (it was exported without them), so it cannot name the '
      'nearest real character')


def test_request_images_counts_what_the_model_bounds():
  pngs = np.array([b'x'] * 3, dtype=object)
  assert export.request_images('arithmetic', dict(a=pngs, coefficients=np.zeros(0))) == 15
  assert export.request_images('arithmetic', dict(a=pngs, coefficients=np.zeros(7))) == 21
  assert export.request_images('interpolate', dict(start=pngs, steps=np.int32(8))) == 30
  assert export.request_images('sample', dict(n=np.int32(9), seed=np.int64(0))) == 9
  assert export.request_images('reconstruct', dict(images=pngs)) == 3
  assert export.request_images('nearest', dict(images=pngs, k=np.int32(5))) == 15
  assert export.request_images('explore', dict(images=pngs, weights=np.zeros((4, 3)),
                                               coordinates=np.zeros((4, 0)))) == 7
