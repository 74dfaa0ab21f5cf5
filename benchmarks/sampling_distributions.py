"""Where a trained model's samples lose quality: the decoder, or where the codes come from.

For one exported model and its Examples artifact, prints the Evaluator's sample measures
(SWD, FD, ink, diversity against the eval glyphs, as the Evaluator computes them) of
images decoded from codes drawn five ways:

  reconstructions    the eval glyphs' own codes (what the decoder can do)
  train codes        the codes of as many train glyphs (real codes, other glyphs)
  standard normal    the prior N(0, I), the seed's sampling
  diagonal Gaussian  fitted to the train codes, independent dimensions
  fitted Gaussian    fitted to the train codes, full covariance (TrainingConfig.sampling)

and, for the drawn ones, how far each sample is from its nearest train glyph (pixel RMS
distance; the eval glyphs' own distance is the reference for "new, not a copy").

    python benchmarks/sampling_distributions.py --model outputs/serving/cns_vaegan/<version> \
        --examples outputs/pipelines/cns-vaegan/PngExampleGen/examples/<id>
"""
import argparse

import numpy as np

from cns_vaegan.components.evaluator import executor, quality_metrics
from cns_vaegan.components.trainer.sampling import SamplingDistribution

import recipe_ablation  # pylint: disable=g-import-not-at-top  (benchmarks/ is on sys.path)


def nearest_distance(images: np.ndarray, references: np.ndarray) -> np.ndarray:
  """Pixel RMS distance of each image to its nearest reference."""
  a, b = images.reshape(len(images), -1), references.reshape(len(references), -1)
  squared = (a * a).sum(1)[:, None] - 2.0 * a @ b.T + (b * b).sum(1)[None]
  return np.sqrt(np.maximum(squared.min(axis=1), 0.0) / a.shape[1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model', required=True, help='a SavedModel folder (with saved_model.pb)')
  parser.add_argument('--examples', required=True, help='an Examples artifact (Split-train, Split-eval)')
  parser.add_argument('--examples-count', type=int, default=2048, help='eval glyphs measured')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()

  model = executor.ServedGlyphModel(args.model)
  glyphs = executor.read_glyph_sets(recipe_ablation.examples_artifact(args.examples), model.height,
                                    model.channels, args.examples_count)
  real, train = glyphs.measured, glyphs.train
  n, space = len(real), quality_metrics.PcaSpace(real)
  tanh = lambda codes: np.tanh(codes).astype(np.float32)  # the decoder's space (latent_tanh)
  means = model.batched('encode_pixels', 'mean', pixels=train)
  rng = np.random.default_rng(args.seed)
  eps = rng.standard_normal((n, model.z_dim))
  codes = {
      'reconstructions': model.batched('encode_pixels', 'z', pixels=real),
      'train codes': tanh(means[rng.choice(len(means), n, replace=False)]),
      'standard normal': tanh(eps),
      'diagonal Gaussian': tanh(SamplingDistribution(means.mean(0), np.diag(means.std(0))).codes(eps)),
      'fitted Gaussian': tanh(SamplingDistribution.fitted_to(means).codes(eps)),
  }
  own = np.median(nearest_distance(real[:1000], train))
  print(f'{n} eval glyphs, {len(train)} train codes; an eval glyph\'s median distance to its '
        f'nearest train glyph: {own:.3f}')
  print('| codes | SWD ×1e3 | FD (PCA) | ink W1 | diversity | nearest train glyph, median |')
  print('|---|---|---|---|---|---|')
  for name, z in codes.items():
    images = model.batched('decode', 'images', z=z)
    measured = quality_metrics.sample_quality(images, real, space, args.seed)
    nearest = ('' if name == 'reconstructions' else
               f'{np.median(nearest_distance(images[:1000], train)):.3f}')
    print(f"| {name} | {measured['swd']['mean']:.1f} | {measured['fd_pca']:.1f} | "
          f"{measured['ink_w1']:.4f} | {measured['diversity']:.2f} | {nearest} |", flush=True)


if __name__ == '__main__':
  main()
