"""The sampling distribution: its fit, and the exported `sample` signature drawing from it."""
import numpy as np
import pytest
import tensorflow as tf

from cns_vaegan.components.trainer import export, sampling
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN
from conftest import TINY_ARCHITECTURE

ARCH = Architecture(**TINY_ARCHITECTURE)


def tiny_model(strategy=None, **settings) -> VAEGAN:
  strategy = strategy or tf.distribute.get_strategy()
  tf.keras.utils.set_random_seed(5)
  with strategy.scope():
    return VAEGAN(ARCH, TrainingConfig(batch_size=4, **settings), strategy)


def draw(loaded, n, seed=0):
  return loaded.signatures['sample'](n=tf.constant(n), seed=tf.constant(seed, tf.int64))


def test_the_fit_recovers_the_mean_and_covariance_of_correlated_codes():
  rng = np.random.default_rng(0)
  mixing = rng.standard_normal((ARCH.z_dim, ARCH.z_dim))
  true_mean = rng.standard_normal(ARCH.z_dim)
  codes = true_mean + rng.standard_normal((200_000, ARCH.z_dim)) @ mixing.T
  fitted = sampling.SamplingDistribution.fitted_to(codes)
  np.testing.assert_allclose(fitted.mean, true_mean, atol=0.05)
  np.testing.assert_allclose(fitted.scale @ fitted.scale.T, mixing @ mixing.T, atol=0.1)
  assert np.allclose(fitted.scale, np.tril(fitted.scale))


def test_principal_axes_are_the_covariances_eigenvectors_largest_first():
  rotation, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((ARCH.z_dim, ARCH.z_dim)))
  variances = np.linspace(4.0, 0.5, ARCH.z_dim)
  covariance = rotation @ np.diag(variances) @ rotation.T
  distribution = sampling.SamplingDistribution(np.zeros(ARCH.z_dim, np.float32),
                                               np.linalg.cholesky(covariance).astype(np.float32))
  stddevs, directions = distribution.principal_axes()
  np.testing.assert_allclose(stddevs, np.sqrt(variances), rtol=1e-4)
  np.testing.assert_allclose(np.abs(directions @ rotation), np.eye(ARCH.z_dim), atol=1e-4)
  assert np.all(directions[np.arange(ARCH.z_dim), np.argmax(np.abs(directions), axis=1)] > 0)


def test_the_fit_is_defined_with_fewer_codes_than_dimensions_and_refuses_one_code():
  codes = np.random.default_rng(1).standard_normal((3, ARCH.z_dim))
  assert np.all(np.isfinite(sampling.SamplingDistribution.fitted_to(codes).scale))
  with pytest.raises(ValueError, match='at least 2 codes'):
    sampling.SamplingDistribution.fitted_to(codes[:1])


def test_the_seed_samples_the_prior_and_the_recipe_fits_the_train_codes(glyph_tfrecords):
  prior = sampling.distribution_for(tiny_model(), [glyph_tfrecords['train']])
  np.testing.assert_array_equal(prior.mean, np.zeros(ARCH.z_dim))
  np.testing.assert_array_equal(prior.scale, np.eye(ARCH.z_dim))

  model = tiny_model(sampling='fitted_gaussian')
  fitted = sampling.distribution_for(model, [glyph_tfrecords['train']])
  codes = sampling.encoder_means(model, [glyph_tfrecords['train']])
  assert len(codes) > 20  # every train glyph
  np.testing.assert_allclose(fitted.mean, codes.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_an_unknown_sampling_is_refused():
  with pytest.raises(ValueError, match='sampling'):
    TrainingConfig(sampling='uniform')


def test_sample_draws_mean_plus_scale_eps_through_tanh(tmp_path):
  # (test_export.py checks the prior's case: mean 0, scale I gives tanh(eps).)
  model = tiny_model()
  mean = np.linspace(-1.0, 1.0, ARCH.z_dim).astype(np.float32)
  scale = np.diag(np.full(ARCH.z_dim, 1e-3)).astype(np.float32)
  export.export_saved_model(model, str(tmp_path / 'fitted'),
                            sampling=sampling.SamplingDistribution(mean, scale))
  fitted = tf.saved_model.load(str(tmp_path / 'fitted'))
  eps = tf.random.stateless_normal([6, ARCH.z_dim], seed=tf.constant([2, 0], tf.int64))
  drawn = draw(fitted, 6, seed=2)
  np.testing.assert_allclose(drawn['z'], np.tanh(mean + 1e-3 * eps.numpy()), atol=1e-5)
  np.testing.assert_allclose(fitted.sampling['mean'].numpy(), mean)
  # The images are the decoder's, of those codes.
  decoded = fitted.signatures['decode'](z=drawn['z'])['images']
  np.testing.assert_allclose(drawn['images'], decoded, atol=1e-6)


def test_the_fit_reads_a_model_trained_under_mirrored_strategy(glyph_tfrecords):
  mirrored = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])  # conftest splits the CPU in two
  codes = sampling.encoder_means(tiny_model(mirrored), [glyph_tfrecords['train']])
  np.testing.assert_allclose(codes, sampling.encoder_means(tiny_model(), [glyph_tfrecords['train']]),
                             rtol=1e-4, atol=1e-5)  # the same initial weights, one device
