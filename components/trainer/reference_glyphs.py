"""The real glyphs a generated one is compared with: what the exported `nearest` signature searches.

Every ingested glyph, train and eval, as the Evaluator's identity measure takes them
(quality_metrics.identity_ranks: pixel L2 over every ingested glyph), so the served answer to
"which real character is this closest to?" is the one the Evaluator measured. They ship
inside the SavedModel (export.py keeps them as value / 255 floats, exact, since the examples
hold value / 127.5 - 1), so TF Serving answers it too; docs/playground.md weighs this against
a server-side index, with its measured cost.
"""
import dataclasses
from typing import List, Sequence

import numpy as np

from cns_vaegan.components import glyph_examples


@dataclasses.dataclass(frozen=True)
class ReferenceGlyphs:
  """Glyph pixels and the character each one is."""
  pixels: np.ndarray            # uint8 [R, h, w, c]
  characters: Sequence[str]     # [R]

  def __post_init__(self):
    if self.pixels.dtype != np.uint8 or self.pixels.ndim != 4:
      raise ValueError(f'reference glyphs: pixels must be uint8 [R, h, w, c], got '
                       f'{self.pixels.dtype} {self.pixels.shape}')
    if len(self.characters) != len(self.pixels):
      raise ValueError(f'reference glyphs: {len(self.pixels)} glyphs but '
                       f'{len(self.characters)} characters')

  def __len__(self) -> int:
    return len(self.pixels)

  @classmethod
  def empty(cls, height: int, width: int, channels: int) -> 'ReferenceGlyphs':
    """No glyphs: a model exported without them refuses `nearest` with a message saying so."""
    return cls(np.zeros((0, height, width, channels), np.uint8), ())

  @classmethod
  def from_examples(cls, patterns: List[str], size: int, channels: int,
                    batch_size: int = 4096) -> 'ReferenceGlyphs':
    """Every glyph in the Example files `patterns` (the ingestion component's TFRecords)."""
    pixels, characters = [], []
    for batch in glyph_examples.read_examples(patterns, size, channels).batch(
        batch_size).as_numpy_iterator():
      pixels.append(glyph_examples.denormalize(batch[glyph_examples.IMAGE]))
      characters += [c.decode('utf-8') for c in batch[glyph_examples.CHARACTER]]
    if not pixels:
      raise ValueError(f'reference glyphs: no examples in {patterns}')
    return cls(np.concatenate(pixels), tuple(characters))
