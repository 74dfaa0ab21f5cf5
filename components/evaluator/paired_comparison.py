"""How much a measured figure moves when only the eval set and the sample draws change.

A figure measured on n eval glyphs and n samples is an estimate: other glyphs of the same
data, or another draw of samples from the same model, would give another value. The
bootstrap replays that (Efron & Tibshirani 1993): each replicate resamples the eval glyphs
with replacement and draws fresh samples from every model, and re-measures everything.

Models are measured on the same resampled glyphs, the same sample seeds and the same SWD
projections in each replicate (paired), so the spread of a *difference* between two models
is that of the difference itself, smaller than either figure's own spread when both models
get the same glyphs right or wrong. The blessing rule reads that spread (`difference_sd`)
to tell a real regression from measurement noise.
"""
import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np

from cns_vaegan.components.evaluator import quality_metrics

# Figures taken per glyph (their mean is the figure) and per set of samples.
PER_GLYPH = ('reconstruction.psnr.mean', 'reconstruction.ssim.mean', 'reconstruction.mse.mean',
             'identity.top1', 'identity.top5')
SAMPLE_SET = ('samples.swd.mean', 'samples.fd_pca', 'samples.ink_w1', 'samples.diversity')
DEFAULT_REPLICATES = 16  # the sd of an sd from 16 replicates is ~18 % of it; each costs a full SWD


@dataclasses.dataclass
class Measured:
  """A model's per-glyph figures on the measured eval glyphs, in their order, and the model
  itself (anything with `sample(n, seed)`), so that replicates can draw new samples."""
  model: object
  per_glyph: Dict[str, np.ndarray]  # path in PER_GLYPH -> [n] values whose mean is the figure


def per_glyph_figures(reconstruction: Dict[str, np.ndarray], identity_ranks: np.ndarray
                      ) -> Dict[str, np.ndarray]:
  """{path: per-glyph values} from quality_metrics.reconstruction_per_image and identity_ranks."""
  return {'reconstruction.psnr.mean': reconstruction['psnr'],
          'reconstruction.ssim.mean': reconstruction['ssim'],
          'reconstruction.mse.mean': reconstruction['mse'],
          'identity.top1': (identity_ranks < 1).astype(np.float64),
          'identity.top5': (identity_ranks < 5).astype(np.float64)}


def replicates(models: Sequence[Measured], real: np.ndarray, space: quality_metrics.PcaSpace,
               num_samples: int, seed: int, count: int = DEFAULT_REPLICATES) -> Dict[str, np.ndarray]:
  """{path: [count, len(models)] figures}: each row one bootstrap replicate, the models paired."""
  rng = np.random.default_rng(seed + 104729)
  out = {path: np.zeros((count, len(models))) for path in PER_GLYPH + SAMPLE_SET}
  for b in range(count):
    glyphs = rng.integers(0, len(real), len(real))
    for m, measured in enumerate(models):
      for path in PER_GLYPH:
        out[path][b, m] = float(np.mean(measured.per_glyph[path][glyphs]))
      samples = measured.model.sample(num_samples, seed + 1 + b)
      quality = quality_metrics.sample_quality(samples, real[glyphs][:num_samples], space, seed + 1 + b)
      for path in SAMPLE_SET:
        node = quality
        for key in path.split('.')[1:]:
          node = node[key]
        out[path][b, m] = float(node)
  return out


def spreads(candidate: Measured, real: np.ndarray, space: quality_metrics.PcaSpace, num_samples: int,
            seed: int, baseline: Optional[Measured] = None, count: int = DEFAULT_REPLICATES
            ) -> Dict[str, Dict[str, float]]:
  """{path: {'sd': the candidate figure's bootstrap sd[, 'difference_sd': that of candidate −
  baseline]}}: the estimator noise of each figure at this eval size, and of the difference."""
  models: List[Measured] = [candidate] + ([baseline] if baseline is not None else [])
  figures = replicates(models, real, space, num_samples, seed, count)
  out = {}
  for path, values in figures.items():
    out[path] = {'sd': float(np.std(values[:, 0], ddof=1))}
    if baseline is not None:
      out[path]['difference_sd'] = float(np.std(values[:, 0] - values[:, 1], ddof=1))
  return out
