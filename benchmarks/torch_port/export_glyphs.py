"""Exports an ingested train/eval split as uint8 arrays for the PyTorch port (runs in the project env).

  scripts/env.sh run python benchmarks/torch_port/export_glyphs.py EXAMPLES_DIR OUT.npz
"""
import sys
import numpy as np
from cns_vaegan.components import glyph_examples

ROOT = sys.argv[1]  # a PngExampleGen Examples artifact folder (Split-train, Split-eval)


def split(name):
  images, chars = [], []
  for batch in glyph_examples.read_examples([f'{ROOT}/Split-{name}/*'], 32, 1).batch(4096).as_numpy_iterator():
    images.append(batch['image'])
    chars.extend(c.decode('utf-8') for c in batch['character'])
  images = np.concatenate(images)
  u8 = glyph_examples.denormalize(images)
  assert np.array_equal(glyph_examples.normalize(u8), images), 'uint8 round trip is not exact'
  return u8, np.array(chars)


train, train_chars = split('train')
evaluation, eval_chars = split('eval')
print('train', train.shape, 'eval', evaluation.shape)
np.savez_compressed(sys.argv[2], train=train, eval=evaluation, train_chars=train_chars, eval_chars=eval_chars)
