"""The built-in dataset: rendering glyphs from the CNS font, file names, determinism."""
import hashlib
import json
import os

import numpy as np
import pytest
from PIL import Image

from cns_vaegan.data import arithmetic_tuples, glyph_names, render_glyphs
from conftest import TEST_CHARACTERS


def test_file_names_round_trip_the_seed_convention():
  assert glyph_names.filename_for('你') == 'U20320.png'
  assert glyph_names.character_from_filename('/x/U20320.png') == '你'
  assert glyph_names.character_from_filename('U+4F60.png') == '你'
  assert glyph_names.character_from_filename('uni4f60.png') == '你'
  assert glyph_names.character_from_filename('你.png') == '你'


@pytest.mark.parametrize('name', ['notes.png', 'U12x.png', 'U99999999.png', ''])
def test_file_names_that_name_no_character_are_refused_with_the_name(name):
  with pytest.raises(ValueError, match='does not name a character|beyond Unicode'):
    glyph_names.character_from_filename(name)


def test_the_cns_font_covers_the_documented_code_points(font_path):
  covered = render_glyphs.covered_characters(font_path)
  assert len(covered) == 20920  # of the 20,941 code points U+4E00..U+9FCC
  assert covered[0] == '\u4e00' and all('\u4e00' <= c <= '\u9fcc' for c in covered)
  assert {'酪', '鉻', '鉸'} <= set(covered)


def test_glyphs_are_white_on_black_grayscale_named_by_code_point(glyph_dir):
  path = os.path.join(glyph_dir, 'U37226.png')  # 酪
  with Image.open(path) as image:
    assert image.mode == 'L' and image.size == (16, 16)
    pixels = np.asarray(image)
  assert pixels.max() > 200          # a white glyph ...
  assert np.median(pixels) < 50      # ... on a black background
  assert len(os.listdir(glyph_dir)) == len(TEST_CHARACTERS)


def test_rendering_is_deterministic_and_records_the_font_hash(tmp_path, font_path):
  first = render_glyphs.render_dataset(str(tmp_path / 'a'), font_path, 16, list('酪鉻鉸'), progress=False)
  render_glyphs.render_dataset(str(tmp_path / 'b'), font_path, 16, list('酪鉻鉸'), progress=False)
  for name in os.listdir(tmp_path / 'a'):
    assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
  with open(font_path, 'rb') as f:
    assert first['font_sha256'] == hashlib.sha256(f.read()).hexdigest()
  manifest = json.loads((tmp_path / 'a.dataset.json').read_text(encoding='utf-8'))
  assert manifest['num_glyphs'] == 3 and manifest['font_sha256'] == first['font_sha256']


def test_cli_limit_and_chars_file(tmp_path, font_path):
  chars = tmp_path / 'chars.txt'
  chars.write_text('酪 鉻\n鉸 \U0001F600', encoding='utf-8')  # the emoji is not in the font
  assert render_glyphs.main(['--out', str(tmp_path / 'c'), '--chars', str(chars),
                             '--size', '24', '--no-progress']) == 0
  assert sorted(os.listdir(tmp_path / 'c')) == ['U37226.png', 'U37496.png', 'U37499.png']
  manifest = json.loads((tmp_path / 'c.dataset.json').read_text(encoding='utf-8'))
  assert manifest['requested_but_not_in_font'] == ['\U0001F600']
  assert render_glyphs.main(['--out', str(tmp_path / 'd'), '--limit', '5', '--no-progress']) == 0
  assert len(os.listdir(tmp_path / 'd')) == 5


def test_missing_font_is_a_clear_error(tmp_path, capsys):
  assert render_glyphs.main(['--out', str(tmp_path / 'x'), '--font', '/nope.ttf']) == 2
  assert 'font not found: /nope.ttf' in capsys.readouterr().err


def test_seed_arithmetic_tuples_ship_with_the_dataset(tmp_path):
  rows = arithmetic_tuples.read_tuples()
  assert len(rows) == 14 and rows[12] == ('酪', '鉻', '鉸')  # the seed's test-arith-12 figure
  seed_style = tmp_path / 'test.txt'
  seed_style.write_text('酪鉻鉸\n\n你 妳 如\n', encoding='utf-8')
  assert arithmetic_tuples.read_tuples(str(seed_style)) == [('酪', '鉻', '鉸'), ('你', '妳', '如')]
  seed_style.write_text('酪鉻\n', encoding='utf-8')
  with pytest.raises(ValueError, match='test.txt:1: expected three characters'):
    arithmetic_tuples.read_tuples(str(seed_style))
