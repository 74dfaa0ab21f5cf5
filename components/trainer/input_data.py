"""tf.data input: gzipped Example TFRecords -> shuffled global batches with their noise.

Each batch carries the Gaussian noise its step uses (eps for the reparameterisation,
z_prior_eps for prior samples), drawn with a stateless RNG keyed by the batch number,
so a step is reproducible and a resumed run continues the sequence.
"""
from typing import List

import tensorflow as tf

from cns_vaegan.components import glyph_examples
from cns_vaegan.components.trainer.architecture import Architecture


def list_files(patterns: List[str]) -> List[str]:
  files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
  if not files:
    raise ValueError(f'no TFRecord files match {patterns}')
  return files


def read_images(patterns: List[str], arch: Architecture) -> tf.data.Dataset:
  """Parsed examples ({'image', 'character', ...}), in file order, read in parallel."""
  spec = glyph_examples.feature_spec(arch.img_h, arch.img_c)
  return (tf.data.TFRecordDataset(list_files(patterns), compression_type='GZIP',
                                  num_parallel_reads=tf.data.AUTOTUNE)
          .map(lambda record: tf.io.parse_single_example(record, spec),
               num_parallel_calls=tf.data.AUTOTUNE))


def training_batches(patterns: List[str], arch: Architecture, batch_size: int, seed: int,
                     shuffle_buffer: int, first_batch: int = 0) -> tf.data.Dataset:
  """Endless shuffled batches of {'image', 'eps', 'z_prior_eps'}; the glyphs are cached in memory."""
  images = (read_images(patterns, arch)
            .map(lambda example: example[glyph_examples.IMAGE], num_parallel_calls=tf.data.AUTOTUNE)
            .cache()
            .shuffle(shuffle_buffer, seed=seed + first_batch, reshuffle_each_iteration=True)
            .repeat()
            .batch(batch_size, drop_remainder=True))

  def with_noise(index, image_batch):
    shape = [batch_size, arch.z_dim]
    return {
        'image': image_batch,
        'eps': tf.random.stateless_normal(shape, seed=tf.stack([tf.cast(seed, tf.int64), index])),
        'z_prior_eps': tf.random.stateless_normal(
            shape, seed=tf.stack([tf.cast(seed + 1, tf.int64), index])),
    }

  return images.enumerate(start=first_batch).map(with_noise).prefetch(tf.data.AUTOTUNE)


def first_examples(patterns: List[str], arch: Architecture, n: int) -> dict:
  """The first n examples as numpy arrays ({'image', 'character', ...}), for figures and checks."""
  batch = next(iter(read_images(patterns, arch).batch(n)), None)
  if batch is None:
    raise ValueError(f'no examples in {patterns}')
  return {key: value.numpy() for key, value in batch.items()}
