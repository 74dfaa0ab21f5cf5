"""Quality measures of a glyph model, none of which uses a downloaded network.

All images are float arrays in [0, 1], shape (n, h, w, c).

Reconstruction (per image, then mean and worst decile):
  mse, psnr (dB, peak 1.0), ssim (tf.image.ssim, 11x11 Gaussian window).
Identity (does the reconstruction show the character it was given?):
  top1, top5 the share of reconstructions whose own glyph is among the 1 (5) glyphs
             nearest to them, by pixel L2 distance, among all ingested glyphs (train and
             eval): a space that no model under test shaped, the one a reader sees.
Sample quality (distribution against the eval glyphs):
  swd        multi-scale sliced Wasserstein distance of 7x7 Laplacian-pyramid patches
             (Karras et al. 2018, "Progressive growing of GANs", §5), ×1e3 as there.
             Hand-written: no installable library provides it.
  fd_pca     Fréchet distance between Gaussians fitted to the samples and to the eval
             glyphs in the space of the eval glyphs' top principal components: a
             feature space from the data, not from the model under test.
  ink_w1     1-D Wasserstein distance between the distributions of ink coverage (mean
             pixel value per glyph): catches blank or blotted samples that the others
             weigh lightly.
  diversity  mean pairwise L2 distance among samples over the same among real glyphs:
             ~1 for real glyphs, 0 when every sample is the same (mode collapse).
Sanity range, at the candidate's own size: the same measure between the eval glyphs and as
many other real glyphs is the floor (what real glyphs score), and between uniform noise and
the eval glyphs the ceiling.
"""
import concurrent.futures
import os
from typing import Dict

import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.stats
import tensorflow as tf

SWD_PATCH = 7
SWD_MIN_RESOLUTION = 16
SWD_DESCRIPTORS_PER_IMAGE = 64
SWD_DIRECTIONS = 128
SWD_REPEATS = 4
_SORT_THREADS = max(1, min(8, os.cpu_count() or 1))
PCA_COMPONENTS = 64

# ------------------------------------------------------------------ reconstruction


def reconstruction_per_image(real: np.ndarray, reconstructed: np.ndarray) -> Dict[str, np.ndarray]:
  """Per-image mse, psnr and ssim of reconstructions against their originals."""
  real = np.asarray(real, np.float32)
  reconstructed = np.asarray(reconstructed, np.float32)
  mse = np.mean((real - reconstructed) ** 2, axis=(1, 2, 3))
  psnr = 10.0 * np.log10(1.0 / np.maximum(mse, 1e-10))
  ssim = tf.image.ssim(tf.constant(real), tf.constant(reconstructed), max_val=1.0).numpy()
  return {'mse': mse, 'psnr': psnr, 'ssim': ssim}


def mean_and_worst_decile(values: np.ndarray, higher_is_better: bool) -> Dict[str, float]:
  """Mean, and mean of the worst 10% (at least one image)."""
  ordered = np.sort(np.asarray(values, np.float64))
  if higher_is_better:
    ordered = ordered[::-1]
  worst = ordered[-max(1, len(ordered) // 10):]
  return {'mean': float(np.mean(ordered)), 'worst_decile': float(np.mean(worst))}


def reconstruction_summary(real: np.ndarray, reconstructed: np.ndarray) -> Dict[str, Dict[str, float]]:
  """{mse, psnr, ssim: {mean, worst_decile}} of reconstructions against their originals."""
  return summarize_reconstruction(reconstruction_per_image(real, reconstructed))


def summarize_reconstruction(per_image: Dict[str, np.ndarray]) -> Dict[str, Dict[str, float]]:
  """{mse, psnr, ssim: {mean, worst_decile}} from reconstruction_per_image's values."""
  return {'mse': mean_and_worst_decile(per_image['mse'], higher_is_better=False),
          'psnr': mean_and_worst_decile(per_image['psnr'], higher_is_better=True),
          'ssim': mean_and_worst_decile(per_image['ssim'], higher_is_better=True)}


# ------------------------------------------------------------------------ identity
def identity_ranks(reconstructions: np.ndarray, own: np.ndarray, references: np.ndarray,
                   batch: int = 256) -> np.ndarray:
  """Per reconstruction, how many reference glyphs are strictly nearer to it than its own
  (references[own[i]]): 0 means it is recognised as itself.

  Pixel L2 over every reference glyph; a tie with the own glyph counts for it (two
  characters drawn alike are not told apart by any model).
  """
  refs = np.asarray(references, np.float64).reshape(len(references), -1)
  squared = np.sum(refs ** 2, axis=1)
  rank_of_own = []
  for start in range(0, len(reconstructions), batch):
    queries = np.asarray(reconstructions[start:start + batch], np.float64).reshape(-1, refs.shape[1])
    # |q - r|^2 up to |q|^2, which is the same for every reference of a query.
    distances = squared[None, :] - 2.0 * queries @ refs.T
    own_distance = distances[np.arange(len(queries)), own[start:start + batch]]
    rank_of_own.append(np.sum(distances < own_distance[:, None], axis=1))
  return np.concatenate(rank_of_own) if rank_of_own else np.zeros(0, np.int64)


def identity(ranks: np.ndarray, top=(1, 5)) -> Dict[str, float]:
  """{'top1': share of ranks below 1, 'top5': below 5} from identity_ranks."""
  return {f'top{k}': float(np.mean(np.asarray(ranks) < k)) for k in top}


# ----------------------------------------------------------- sliced Wasserstein (SWD)
_GAUSSIAN = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float32) / 256.0


def _blur(images):
  kernel = _GAUSSIAN[None, :, :, None]
  return scipy.ndimage.convolve(images, kernel, mode='mirror')


def laplacian_pyramid(images: np.ndarray, min_resolution: int = SWD_MIN_RESOLUTION):
  """Band-pass levels from full resolution down to min_resolution (the last is low-pass)."""
  levels, current = [], np.asarray(images, np.float32)
  while current.shape[1] // 2 >= min_resolution:
    down = _blur(current)[:, ::2, ::2]
    up = np.zeros_like(current)
    up[:, ::2, ::2] = down
    levels.append(current - _blur(up) * 4.0)
    current = down
  levels.append(current)
  return levels


def _descriptors(level: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
  """The 7x7 patches centred at (ys, xs) of each image (reflect-padded), flattened."""
  n, _, _, c = level.shape
  half = SWD_PATCH // 2
  padded = np.pad(level, ((0, 0), (half, half), (half, half), (0, 0)), mode='reflect')
  offsets = np.arange(SWD_PATCH)
  rows = ys[..., None, None] + offsets[:, None]
  cols = xs[..., None, None] + offsets[None, :]
  patches = padded[np.arange(n)[:, None, None, None], rows, cols]  # (n, d, 7, 7, c)
  return patches.reshape(-1, SWD_PATCH * SWD_PATCH, c)


def _normalize(descriptors: np.ndarray) -> np.ndarray:
  """Per colour channel, over all pixels of all patches (as Karras et al.), then flattened."""
  mean = descriptors.mean(axis=(0, 1), keepdims=True)
  std = descriptors.std(axis=(0, 1), keepdims=True)
  return ((descriptors - mean) / (std + 1e-8)).reshape(len(descriptors), -1)


def _sorted_rows(values: np.ndarray) -> np.ndarray:
  """Each row sorted, rows shared among threads (NumPy's sort releases the GIL): the sorts are
  most of SWD's time. One row per direction keeps each sort in contiguous memory, and float32
  halves it (the distance agrees with float64 to ~1e-6 of its value)."""
  values = np.ascontiguousarray(values, np.float32)
  chunks = np.array_split(np.arange(len(values)), _SORT_THREADS)
  def sort(rows):
    values[rows] = np.sort(values[rows], axis=1)
  with concurrent.futures.ThreadPoolExecutor(_SORT_THREADS) as pool:
    list(pool.map(sort, chunks))
  return values


def _sliced_wasserstein(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> float:
  distances = []
  for _ in range(SWD_REPEATS):
    directions = rng.standard_normal((a.shape[1], SWD_DIRECTIONS))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    directions = directions.astype(np.float32)
    projected_a = _sorted_rows(directions.T @ a.T)
    projected_b = _sorted_rows(directions.T @ b.T)
    distances.append(np.mean(np.abs(projected_a - projected_b), dtype=np.float64))
  return float(np.mean(distances))


def swd(a: np.ndarray, b: np.ndarray, seed: int = 0) -> Dict[str, float]:
  """Multi-scale SWD (×1e3) between image sets of equal size; 'mean' averages the levels.

  Both sets are cut at the same random patch positions, so identical sets score 0.
  """
  n = min(len(a), len(b))
  rng = np.random.default_rng(seed)
  result = {}
  for level_a, level_b in zip(laplacian_pyramid(a[:n]), laplacian_pyramid(b[:n])):
    h, w = level_a.shape[1:3]
    ys = rng.integers(0, h, (n, SWD_DESCRIPTORS_PER_IMAGE))
    xs = rng.integers(0, w, (n, SWD_DESCRIPTORS_PER_IMAGE))
    desc_a = _descriptors(level_a, ys, xs)
    desc_b = _descriptors(level_b, ys, xs)
    result[f'{level_a.shape[1]}px'] = 1e3 * _sliced_wasserstein(_normalize(desc_a), _normalize(desc_b), rng)
  result['mean'] = float(np.mean(list(result.values())))
  return result


# --------------------------------------------------------- Fréchet distance in PCA space
class PcaSpace:
  """The top principal components of a reference set of glyphs."""

  def __init__(self, reference: np.ndarray, components: int = PCA_COMPONENTS):
    flat = np.asarray(reference, np.float64).reshape(len(reference), -1)
    self.mean = flat.mean(axis=0)
    centred = flat - self.mean
    # Eigenvectors of the pixel scatter matrix (pixels x pixels), largest first: the same
    # components as an SVD of the glyphs, several times faster with many more glyphs than pixels.
    _, vectors = np.linalg.eigh(centred.T @ centred)
    # No more components than half the glyphs, so the covariances stay well estimated.
    self.basis = vectors[:, ::-1][:, :max(1, min(components, len(flat) // 2))]

  def project(self, images: np.ndarray) -> np.ndarray:
    return (np.asarray(images, np.float64).reshape(len(images), -1) - self.mean) @ self.basis

  def reconstruct(self, images: np.ndarray, components: int = 0) -> np.ndarray:
    """The images through the top `components` (0: all) and back, clipped to [0, 1]:
    the best linear autoencoder with that many codes."""
    basis = self.basis[:, :components] if components else self.basis
    flat = (np.asarray(images, np.float64).reshape(len(images), -1) - self.mean) @ basis @ basis.T
    return np.clip(flat + self.mean, 0.0, 1.0).astype(np.float32).reshape(np.shape(images))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  mu_a, mu_b = features_a.mean(axis=0), features_b.mean(axis=0)
  cov_a = np.atleast_2d(np.cov(features_a, rowvar=False))
  cov_b = np.atleast_2d(np.cov(features_b, rowvar=False))
  root = np.real(scipy.linalg.sqrtm(cov_a @ cov_b))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2.0 * root))


def ink_w1(a: np.ndarray, b: np.ndarray) -> float:
  coverage = lambda images: np.asarray(images, np.float64).reshape(len(images), -1).mean(axis=1)
  return float(scipy.stats.wasserstein_distance(coverage(a), coverage(b)))


def mean_pairwise_distance(images: np.ndarray) -> float:
  """Mean L2 distance between the images of a set: the spread that collapse destroys."""
  flat = np.asarray(images, np.float64).reshape(len(images), -1)
  squared = np.sum(flat ** 2, axis=1)
  distances = np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * flat @ flat.T, 0))
  n = len(flat)
  return float(distances.sum() / max(n * (n - 1), 1))


DIVERSITY_SET = 512  # pairwise distances are quadratic: a subset measures the spread well


def sample_quality(samples: np.ndarray, real: np.ndarray, space: PcaSpace, seed: int = 0) -> Dict:
  """swd, fd_pca, ink_w1 and diversity of a set of images against real glyphs."""
  spread = mean_pairwise_distance(real[:DIVERSITY_SET])
  return {
      'swd': swd(samples, real, seed),
      'fd_pca': frechet_distance(space.project(samples), space.project(real)),
      'ink_w1': ink_w1(samples, real),
      'diversity': mean_pairwise_distance(samples[:DIVERSITY_SET]) / max(spread, 1e-12),
  }


def sanity_range(real: np.ndarray, other_real: np.ndarray, space: PcaSpace, seed: int = 0
                 ) -> Dict[str, Dict]:
  """What the sample measures give, at the size of `real`, for other real glyphs (the floor:
  `other_real`, as many, none of them in `real`) and for uniform noise (the ceiling). SWD, FD
  and ink W1 of two finite sets are above 0 even when both are real glyphs, and the more so
  the fewer glyphs they hold, so a candidate is read against the floor at its own size."""
  n = min(len(real), len(other_real))
  noise = np.random.default_rng(seed).uniform(0, 1, real[:n].shape).astype(np.float32)
  return {
      'size': n,
      'floor': {'samples': sample_quality(other_real[:n], real[:n], space, seed)},
      'ceiling': {'samples': sample_quality(noise, real[:n], space, seed)},
  }
