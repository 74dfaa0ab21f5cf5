"""Glyph PNG decoding and conversion to the model's layout; every bad-input case."""
import io
import os

import time

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from cns_vaegan.components import glyph_examples
from bad_glyph_files import png_bomb, png_with_header, write_bad_glyph_files


def _png(image: Image.Image) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format='PNG')
  return buffer.getvalue()


def test_a_rendered_glyph_decodes_to_its_exact_pixels(glyph_dir):
  path = os.path.join(glyph_dir, 'U20320.png')
  with open(path, 'rb') as f:
    glyph = glyph_examples.decode_glyph(path, f.read(), size=16, channels=1)
  assert glyph.character == '你' and glyph.source_file == path
  assert glyph.pixels.shape == (16, 16, 1) and glyph.pixels.dtype == np.uint8
  np.testing.assert_array_equal(glyph.pixels[..., 0], np.asarray(Image.open(path)))


def test_normalize_is_exactly_invertible():
  pixels = np.arange(256, dtype=np.uint8)
  values = glyph_examples.normalize(pixels)
  assert values.min() == -1.0 and values.max() == 1.0
  np.testing.assert_array_equal(glyph_examples.denormalize(values), pixels)


@pytest.mark.parametrize('mode', ['1', 'L', 'LA', 'P', 'RGB', 'RGBA'])
def test_every_accepted_mode_converts_to_the_model_layout(mode):
  image = Image.new(mode, (20, 10), 1 if mode == '1' else 200)
  glyph = glyph_examples.decode_glyph('U20320.png', _png(image), size=8, channels=1)
  assert glyph.pixels.shape == (8, 8, 1)
  rgb = glyph_examples.decode_glyph('U20320.png', _png(image), size=8, channels=3)
  assert rgb.pixels.shape == (8, 8, 3)


def test_transparent_pixels_become_black_background():
  image = Image.new('LA', (8, 8), (255, 0))  # white but fully transparent
  glyph = glyph_examples.decode_glyph('U20320.png', _png(image), size=8, channels=1)
  assert glyph.pixels.max() == 0


def test_non_square_images_are_padded_not_stretched():
  image = Image.new('L', (16, 8), 255)  # a white bar, twice as wide as tall
  pixels = glyph_examples.decode_glyph('U20320.png', _png(image), 16, 1).pixels[..., 0]
  assert pixels[0].max() == 0 and pixels[-1].max() == 0  # black padding above and below
  assert pixels[8].min() == 255


def test_every_bad_input_names_the_file_and_the_reason(tmp_path):
  expected = write_bad_glyph_files(tmp_path)
  for name, reason in expected.items():
    path = str(tmp_path / name)
    with pytest.raises(glyph_examples.BadGlyphFile) as error:
      glyph_examples.decode_glyph(path, open(path, 'rb').read(), 16, 1)
    assert str(error.value).startswith(name) and reason in str(error.value), str(error.value)


def test_example_parses_back_with_the_shared_feature_spec(glyph_dir):
  import tensorflow as tf
  path = os.path.join(glyph_dir, 'U37226.png')
  glyph = glyph_examples.decode_glyph(path, open(path, 'rb').read(), 16, 1)
  serialized = glyph_examples.to_example(glyph).SerializeToString()
  parsed = tf.io.parse_single_example(serialized, glyph_examples.feature_spec(16, 1))
  assert parsed['character'].numpy().decode() == '酪'
  assert parsed['code_point'].numpy() == ord('酪')
  assert parsed['source_file'].numpy().decode() == path
  np.testing.assert_array_equal(glyph_examples.denormalize(parsed['image'].numpy()), glyph.pixels)


def test_an_oversized_png_is_refused_from_its_header_without_decoding():
  bomb = png_bomb(16000)  # 249 KB of zlib for 256 M pixels
  start = time.perf_counter()
  with pytest.raises(glyph_examples.BadGlyphFile, match=r'^U20320.png: 16000x16000 px PNG, over '
                     r'the 2048 px a side limit \(read from its header, not decoded\)$'):
    glyph_examples.decode_glyph('U20320.png', bomb, 16, 1)
  assert time.perf_counter() - start < 0.5
  assert glyph_examples.png_size(bomb) == (16000, 16000)
  assert glyph_examples.png_size(b'GIF89a' + bomb[6:]) is None
  with pytest.raises(glyph_examples.BadGlyphFile, match='9x8 px PNG, over the 8 px'):
    glyph_examples.decode_glyph('U20320.png', png_with_header(9, 8), 16, 1, max_side=8)


def test_any_decoder_failure_is_a_bad_file_whatever_its_type():
  # Without our limit PIL itself refuses the bomb, with DecompressionBombError (no OSError).
  with pytest.raises(glyph_examples.BadGlyphFile, match='unreadable image .DecompressionBombError'):
    glyph_examples.decode_glyph('U20320.png', png_bomb(16000), 16, 1, max_side=10 ** 6)


def _good_png(side=16) -> bytes:
  return _png(Image.new('L', (side, side), 255))


png_like = st.one_of(
    st.binary(max_size=64),                                                  # random bytes
    st.integers(0, 120).map(lambda n: _good_png()[:n]),                     # truncated glyphs
    st.builds(png_with_header, st.integers(0, 2 ** 32 - 1), st.integers(0, 2 ** 32 - 1),
              st.binary(max_size=64), st.sampled_from([1, 2, 4, 8, 16, 3]),
              st.sampled_from([0, 2, 3, 4, 6, 5])),                          # any header, any data
    st.builds(lambda side, cut: png_bomb(side)[:cut], st.sampled_from([1, 64, 3000]),
              st.integers(30, 10 ** 6)),                                     # real images, cut or not
)
file_names = st.one_of(st.just('U20320.png'), st.text(min_size=1, max_size=30).filter(
    lambda n: '/' not in n and '\0' not in n and n not in ('.', '..')))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(name=file_names, data=png_like)
def test_any_file_either_decodes_to_the_model_layout_or_is_a_bad_file_naming_itself(name, data):
  try:
    glyph = glyph_examples.decode_glyph(name, data, 16, 1)
  except glyph_examples.BadGlyphFile as error:
    assert str(error).startswith(name), str(error)
    return
  assert glyph.pixels.shape == (16, 16, 1) and glyph.pixels.dtype == np.uint8
  assert max(glyph_examples.png_size(data)) <= glyph_examples.MAX_IMAGE_SIDE
