"""Shared fixtures: a few dozen real glyphs rendered from the dataset's font, at 16 px."""
import os

import pytest

from cns_vaegan.data import render_glyphs

# The seed's arithmetic characters plus common ones, so tests touch real CNS glyphs.
TEST_CHARACTERS = '酪鉻鉸媽妳你湖沽估情清河一二三人大小山川日月木水火土金中國字學生'
TEST_SIZE = 16


@pytest.fixture(scope='session')
def font_path():
  if not os.path.isfile(render_glyphs.DEFAULT_FONT):
    pytest.fail(f'{render_glyphs.DEFAULT_FONT} missing: the environment installs '
                'fonts-cns11643-kai (scripts/env.sh setup)')
  return render_glyphs.DEFAULT_FONT


@pytest.fixture(scope='session')
def glyph_dir(tmp_path_factory, font_path):
  """A folder of TEST_SIZE px glyph PNGs, rendered once per session; treat as read-only."""
  out = str(tmp_path_factory.mktemp('glyphs') / 'png')
  render_glyphs.render_dataset(out, font_path, TEST_SIZE, characters=list(TEST_CHARACTERS),
                               progress=False)
  return out

