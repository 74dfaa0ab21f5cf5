"""What a model of these glyphs must beat, measured the same way on the same eval glyphs.

  mean_glyph  the mean train glyph whatever the input: a constant;
  pca_<k>     the input through the top k principal components of the train glyphs and
              back: the best linear autoencoder with k codes. k = the model's z_dim gives
              it the model's code size; z_dim/4 and z_dim/2 show how fast it gets there.

Both are fitted on the train split only. Identity (quality_metrics.identity) is measured
against every ingested glyph, train and eval, so a reconstruction must pick its own
character out of the whole set.
"""
import dataclasses
from typing import Callable, Dict, Sequence

import numpy as np

from cns_vaegan.components.evaluator import quality_metrics


@dataclasses.dataclass
class GlyphSets:
  """The glyphs an evaluation uses, in [0, 1]: `measured` are the first eval glyphs."""
  measured: np.ndarray
  train: np.ndarray
  other_eval: np.ndarray  # the eval glyphs beyond `measured`, only as identity references

  def __post_init__(self):
    # `measured` first, so glyph i is reference i.
    self.references = np.concatenate([self.measured, self.other_eval, self.train])

  def identity_ranks(self, reconstructions: np.ndarray) -> np.ndarray:
    """quality_metrics.identity_ranks of reconstructions of the measured glyphs, in order."""
    return quality_metrics.identity_ranks(reconstructions, np.arange(len(reconstructions)),
                                          self.references)

  def identity(self, reconstructions: np.ndarray) -> Dict[str, float]:
    return quality_metrics.identity(self.identity_ranks(reconstructions))

  def other_real(self, n: int, seed: int = 0) -> np.ndarray:
    """`n` real glyphs none of which is measured (a random draw of the train split): the
    sample measures' floor at the measured size."""
    pool = self.train if len(self.train) else self.other_eval
    return pool[np.random.default_rng(seed).permutation(len(pool))[:n]]


def pca_components(z_dim: int) -> Sequence[int]:
  return sorted({max(1, z_dim // 4), max(1, z_dim // 2), z_dim})


def reconstructors(train: np.ndarray, z_dim: int) -> Dict[str, Callable[[np.ndarray], np.ndarray]]:
  """{baseline name: images -> reconstructions}, fitted on `train`."""
  mean = train.mean(axis=0, dtype=np.float64).astype(np.float32)
  components = pca_components(z_dim)
  space = quality_metrics.PcaSpace(train, max(components))
  out = {'mean_glyph': lambda images: np.broadcast_to(mean, images.shape)}
  for k in components:
    out[f'pca_{k}'] = lambda images, k=k: space.reconstruct(images, k)
  return out


def measure(glyphs: GlyphSets, fitted: Dict[str, Callable[[np.ndarray], np.ndarray]]) -> Dict[str, Dict]:
  """Each baseline's reconstruction of the measured glyphs; identity too, but for the constant.
  `fitted`: reconstructors(glyphs.train, z_dim), fitted once by the caller (the Evaluator
  draws its figure with the same PCA)."""
  report = {}
  for name, reconstruct in fitted.items():
    reconstructed = reconstruct(glyphs.measured)
    report[name] = {'reconstruction': quality_metrics.reconstruction_summary(glyphs.measured,
                                                                             reconstructed)}
    if name != 'mean_glyph':  # one image for every input: its identity is chance
      report[name]['identity'] = glyphs.identity(reconstructed)
  return report
