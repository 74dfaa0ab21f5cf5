"""The gate's reference models, measured by GlyphEvaluator's own code on an ingested dataset.

Prints one row per reference model: the same measures the Evaluator takes of a candidate
(reconstruction PSNR and SSIM, identity, sample SWD, FD, ink and diversity) and the
verdict of the default gate (blessing_rules.DEFAULT_THRESHOLDS). These rows are where the
default thresholds come from (README, "Evaluation and push"); trained models add their
own rows from their metrics.json (--reports).

  constant       the mean train glyph for every input and every sample
  one glyph      the first train glyph for everything
  all black, uniform noise
  pca_<k>        reconstructions through k principal components of the train glyphs;
                 samples: Gaussian codes with the train glyphs' variance per component,
                 decoded the same way (a linear generative model)

    python benchmarks/reference_models.py [--examples DIR] [--reports a/metrics.json ...]
"""
import argparse
import glob
import json
import os

import numpy as np

from cns_vaegan.components.evaluator import baselines, blessing_rules, executor, quality_metrics
from cns_vaegan.pipeline import configs

import recipe_ablation  # pylint: disable=g-import-not-at-top  (benchmarks/ is on sys.path)


class StandIn:
  """A 'model' given by its reconstruction and sampling functions, measured as a candidate."""

  def __init__(self, reconstruct, sample):
    self.reconstruct_pixels, self._sample = reconstruct, sample

  def sample(self, n, seed):
    return self._sample(n, np.random.default_rng(seed))


def reference_models(train: np.ndarray, z_dim: int) -> dict:
  shape = train.shape[1:]
  mean, first = train.mean(axis=0), train[0]
  constant = lambda image: (lambda x: np.broadcast_to(image, x.shape),
                            lambda n, rng: np.broadcast_to(image, (n,) + shape))
  models = {
      'constant: the mean glyph': StandIn(*constant(mean)),
      'one glyph for everything': StandIn(*constant(first)),
      'all black': StandIn(*constant(np.zeros(shape, np.float32))),
      'uniform noise': StandIn(lambda x: np.random.default_rng(1).uniform(0, 1, x.shape),
                               lambda n, rng: rng.uniform(0, 1, (n,) + shape)),
  }
  space = quality_metrics.PcaSpace(train, z_dim)
  spread = space.project(train).std(axis=0)
  for k in baselines.pca_components(z_dim):
    def sample(n, rng, k=k):
      codes = rng.standard_normal((n, k)) * spread[:k]
      flat = codes @ space.basis[:, :k].T + space.mean
      return np.clip(flat, 0, 1).astype(np.float32).reshape((n,) + shape)
    models[f'linear: PCA with {k} components'] = StandIn(lambda x, k=k: space.reconstruct(x, k), sample)
  return models


def row(name: str, report: dict) -> str:
  c, verdict = report['candidate'], blessing_rules.judge(report, blessing_rules.DEFAULT_THRESHOLDS)
  top1 = c.get('identity', {}).get('top1', float('nan'))
  return (f"| {name} | {c['reconstruction']['psnr']['mean']:.2f} | {c['reconstruction']['ssim']['mean']:.3f} | "
          f"{top1:.1%} | {c['samples']['swd']['mean']:.1f} | {c['samples']['fd_pca']:.1f} | "
          f"{c['samples']['ink_w1']:.3f} | {c['samples']['diversity']:.2f} | "
          f"{'blessed' if verdict['blessed'] else 'refused'} |")


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--examples', help='an Examples artifact folder (default: the newest of the '
                      'local pipeline)')
  parser.add_argument('--reports', nargs='*', default=[], help='metrics.json files of trained models')
  parser.add_argument('--z-dim', type=int, default=100)
  args = parser.parse_args()
  examples = args.examples or max(glob.glob(os.path.join(
      configs.pipeline_root(), 'PngExampleGen', 'examples', '*')), key=os.path.getmtime)
  glyphs = executor.read_glyph_sets(recipe_ablation.examples_artifact(examples), 32, 1, 2048)
  real = glyphs.measured
  space = quality_metrics.PcaSpace(real)
  measured_baselines = baselines.measure(glyphs, baselines.reconstructors(glyphs.train, args.z_dim))
  sanity = quality_metrics.sanity_range(real, glyphs.other_real(len(real)), space)
  print('| model | PSNR dB | SSIM | identity top-1 | SWD ×1e3 | FD (PCA) | ink W1 | diversity | verdict |')
  print('|---|---|---|---|---|---|---|---|---|')
  for path in args.reports:
    with open(path, encoding='utf-8') as f:
      report = json.load(f)
    print(row(path, report), flush=True)
  for name, model in reference_models(glyphs.train, args.z_dim).items():
    report = {'serving': {'all_ok': 1.0}, 'baselines': measured_baselines, 'sanity': sanity,
              'candidate': executor.measure(model, glyphs, space, len(real), 0)[0]}
    print(row(name, report), flush=True)


if __name__ == '__main__':
  main()
