"""Shared fixtures: a few dozen real glyphs rendered from the dataset's font, at 16 px."""
import os

import pytest

from cns_vaegan.data import render_glyphs

# Tiny model for tests: 16 px glyphs, 4 base channels, 8 latent dimensions.
TINY_ARCHITECTURE = dict(img_h=16, img_w=16, img_c=1, ch=4, z_dim=8)


def pytest_configure(config):
  """Two logical CPUs before TensorFlow touches a device, so MirroredStrategy has 2 replicas."""
  del config
  import tensorflow as tf
  cpu = tf.config.list_physical_devices('CPU')[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

# The seed's arithmetic characters plus common ones, so tests touch real CNS glyphs.
TEST_CHARACTERS = '酪鉻鉸媽妳你湖沽估情清河一二三人大小山川日月木水火土金中國字學生'
TEST_SIZE = 16


def rendered_references(characters: str = TEST_CHARACTERS, size: int = TEST_SIZE):
  """The test characters as `nearest` searches them (ReferenceGlyphs), drawn as glyph_dir's are."""
  import numpy as np
  from cns_vaegan.components.trainer.reference_glyphs import ReferenceGlyphs
  renderer = render_glyphs.GlyphRenderer(render_glyphs.DEFAULT_FONT, size)
  return ReferenceGlyphs(np.stack([np.asarray(renderer.render(c))[..., None] for c in characters]),
                         tuple(characters))


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



@pytest.fixture(scope='session')
def tiny_model_path(tmp_path_factory):
  """An untrained tiny model (TINY_ARCHITECTURE, seed 1) exported once per session: tests
  serve copies of it (serving_checks.copy_version); treat as read-only."""
  import serving_checks  # pylint: disable=import-outside-toplevel  (TensorFlow, only when used)
  return serving_checks.export_tiny_version(str(tmp_path_factory.mktemp('tiny_model')), 1, seed=1)


@pytest.fixture(scope='session')
def glyph_tfrecords(glyph_dir, tmp_path_factory):
  """{'train': pattern, 'eval': pattern}: the glyphs as the ingestion component writes them."""
  import tensorflow as tf
  from cns_vaegan.components import glyph_examples
  out = tmp_path_factory.mktemp('tfrecords')
  names = sorted(os.listdir(glyph_dir))
  splits = {'train': names[4:], 'eval': names[:4] + names[-8:]}
  for split, files in splits.items():
    os.makedirs(out / f'Split-{split}')
    with tf.io.TFRecordWriter(str(out / f'Split-{split}' / 'data.gz'), options='GZIP') as writer:
      for name in files:
        path = os.path.join(glyph_dir, name)
        with open(path, 'rb') as f:
          glyph = glyph_examples.decode_glyph(path, f.read(), TEST_SIZE, 1)
        writer.write(glyph_examples.to_example(glyph).SerializeToString())
  return {split: str(out / f'Split-{split}' / '*') for split in splits}
