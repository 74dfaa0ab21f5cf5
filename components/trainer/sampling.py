"""Where the `sample` signature draws its codes: the prior, or a Gaussian fitted to the codes.

A VAE is trained so that its codes *cover* the prior N(0, I), not so that every region of
the prior decodes to a glyph: the encoder means of real glyphs fill an elongated,
correlated region, and prior draws that fall between them decode to blends. Fitting a
full-covariance Gaussian to the encoder means of the train split after training and
sampling from it instead is Ghosh et al. 2020's "ex-post density estimation" ("From
Variational to Deterministic Autoencoders", ICLR). It changes no weight: reconstruction,
interpolation and arithmetic are untouched, only where `sample` draws from.

Both distributions have the same form, mean + scale·eps in the encoder's (pre-tanh)
space, so the exported graph has one code path: the prior is mean 0, scale I.
docs/results.md, "Choosing the recipe", has the measured effect (TrainingConfig.sampling).
"""
import dataclasses
from typing import List, Optional

import numpy as np
import tensorflow as tf
from absl import logging

from cns_vaegan.components import glyph_examples
from cns_vaegan.components.trainer.vaegan import VAEGAN


@dataclasses.dataclass(frozen=True)
class SamplingDistribution:
  """z = mean + eps @ scale.T with eps ~ N(0, I), in the encoder's (pre-tanh) space."""
  mean: np.ndarray   # [z_dim]
  scale: np.ndarray  # [z_dim, z_dim], lower triangular (a Cholesky factor of the covariance)

  @classmethod
  def standard_normal(cls, z_dim: int) -> 'SamplingDistribution':
    """The prior N(0, I): the seed's sampling."""
    return cls(np.zeros(z_dim, np.float32), np.eye(z_dim, dtype=np.float32))

  def codes(self, eps: np.ndarray) -> np.ndarray:
    """mean + eps @ scale.T for eps [N, z_dim] (the exported `sample` computes the same in TF)."""
    return self.mean + eps @ self.scale.T

  def principal_axes(self):
    """(stddevs [z_dim], directions [z_dim, z_dim]): the covariance's eigenvectors as rows,
    largest variance first, each signed so that its largest component is positive."""
    covariance = np.asarray(self.scale, np.float64) @ np.asarray(self.scale, np.float64).T
    variances, vectors = np.linalg.eigh(covariance)
    order = np.argsort(variances)[::-1]
    directions = vectors[:, order].T
    signs = np.sign(directions[np.arange(len(directions)), np.argmax(np.abs(directions), axis=1)])
    return (np.sqrt(np.maximum(variances[order], 0.0)).astype(np.float32),
            (directions * signs[:, None]).astype(np.float32))

  @classmethod
  def fitted_to(cls, codes: np.ndarray) -> 'SamplingDistribution':
    """The maximum-likelihood Gaussian of `codes` [N, z_dim] (full covariance)."""
    codes = np.asarray(codes, np.float64)
    if codes.ndim != 2 or len(codes) < 2:
      raise ValueError(f'sampling: a Gaussian needs at least 2 codes [N, z_dim], '
                       f'got shape {codes.shape}')
    covariance = np.cov(codes, rowvar=False)
    # A little jitter keeps the factor defined when there are fewer codes than dimensions.
    jitter = 1e-6 * max(float(np.trace(covariance)) / len(covariance), 1e-12)
    scale = np.linalg.cholesky(covariance + jitter * np.eye(len(covariance)))
    return cls(codes.mean(axis=0).astype(np.float32), scale.astype(np.float32))


def encoder_means(model: VAEGAN, patterns: List[str], batch_size: int = 512) -> np.ndarray:
  """The encoder means (pre-tanh) of every glyph in the Example files `patterns`."""
  arch = model.arch
  images = glyph_examples.read_examples(patterns, arch.img_h, arch.img_c).map(
      lambda example: example[glyph_examples.IMAGE]).batch(batch_size)
  means = [model.encoder(batch, training=False)[0].numpy() for batch in images]
  if not means:
    raise ValueError(f'sampling: no glyphs in {patterns} to fit the sampling distribution to')
  return np.concatenate(means)


def fit_train_codes(model: VAEGAN, train_patterns: List[str]) -> SamplingDistribution:
  """The Gaussian of the encoder means of every glyph in `train_patterns`."""
  codes = encoder_means(model, train_patterns)
  logging.info('Fitted a Gaussian to the encoder means of %d train glyphs', len(codes))
  return SamplingDistribution.fitted_to(codes)


def distribution_for(model: VAEGAN, train_patterns: List[str],
                     train_codes: Optional[SamplingDistribution] = None) -> SamplingDistribution:
  """What TrainingConfig.sampling asks for, fitted on the train split where it is 'fitted_gaussian'
  (`train_codes`: that fit, when the caller has made it already)."""
  if model.config.sampling == 'standard_normal':
    return SamplingDistribution.standard_normal(model.arch.z_dim)
  return train_codes or fit_train_codes(model, train_patterns)
