"""Loss terms of Larsen et al. 2016, Eq. 9, each per example (the caller averages).

Per-example values let MirroredStrategy average over the global batch with
tf.nn.compute_average_loss, whatever the number of replicas.
"""
import math

import tensorflow as tf


def kl_to_standard_normal(mean, log_variance):
  """KL(N(mean, exp(log_variance)) || N(0, I)), summed over latent dimensions."""
  return 0.5 * tf.reduce_sum(tf.exp(log_variance) + tf.square(mean) - 1.0 - log_variance, axis=-1)


def dis_l(real_features, reconstructed_features):
  """Gaussian negative log-likelihood of D_l(x) given D_l(x~) with unit variance (the seed's 'Dis').

  Minimal, at 0.5·d·log(2π), when the features match.
  """
  squared = tf.square(real_features - reconstructed_features)
  return 0.5 * tf.reduce_sum(squared + math.log(2 * math.pi), axis=-1)


def bce_with_logits(logits, label: float):
  """Binary cross-entropy of sigmoid(logits) against a constant label, per example."""
  logits = tf.reshape(logits, [-1])
  return tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.fill(tf.shape(logits), label),
                                                 logits=logits)


def pixel_l1(images, reconstructions):
  """Sum of absolute pixel differences per example: a pixel-space reconstruction term."""
  difference = tf.abs(tf.cast(images, tf.float32) - tf.cast(reconstructions, tf.float32))
  return tf.reduce_sum(tf.reshape(difference, [tf.shape(difference)[0], -1]), axis=-1)
