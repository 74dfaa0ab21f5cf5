"""tf.data input: gzipped Example TFRecords -> shuffled global batches with their noise.

Each batch carries the Gaussian noise its step uses (eps for the reparameterisation,
z_prior_eps for prior samples), drawn with a stateless RNG keyed by the batch number,
so a step is reproducible and a resumed run continues the sequence.

Under MultiWorkerMirroredStrategy every worker reads every file and keeps its own slice of
each global batch (tf.data's DATA auto-shard policy), so N workers take exactly the steps
one process would take on the same global batch. Sharding by file instead would give each
worker other files and its own shuffle: other batches, and no sharding at all with fewer
files than workers. Glyphs are small and cached, so reading them all costs little.
"""
from typing import List

import tensorflow as tf

from cns_vaegan.components import glyph_examples
from cns_vaegan.components.trainer.architecture import Architecture


def training_batches(patterns: List[str], arch: Architecture, batch_size: int, seed: int,
                     shuffle_buffer: int, first_batch: int = 0) -> tf.data.Dataset:
  """Endless shuffled batches of {'image', 'eps', 'z_prior_eps'}; the glyphs are cached in memory."""
  images = (glyph_examples.read_examples(patterns, arch.img_h, arch.img_c)
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

  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
  return (images.enumerate(start=first_batch).map(with_noise).prefetch(tf.data.AUTOTUNE)
          .with_options(options))
