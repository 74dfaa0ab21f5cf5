"""The VAE-GAN and its train step (Larsen et al. 2016, with the seed's tanh on z).

One train step, as the seed's train.py: update the discriminator, then the decoder
(twice by default), then the encoder, each from a fresh forward pass:

    discriminator:  BCE(D(x), 1) + BCE(D(x~), 0) [+ BCE(D(G(z_p)), 0)]
    decoder:        BCE(D(x~), 1) [+ BCE(D(G(z_p)), 1)] + gamma · Dis_l
    encoder:        KL(q(z|x) || N(0, I)) + Dis_l

where x~ = G(z), z = tanh(mean + sigma·eps). The step runs under a tf.distribute
strategy: each replica takes its slice of the global batch and every loss is
averaged over the global batch, so N replicas update exactly as one device would.
Noise (eps, z_p) comes in with the batch, which keeps steps reproducible.
"""
import keras
import tensorflow as tf

from cns_vaegan.components.trainer import losses, networks
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig


class VAEGAN:
  """Networks, optimizers and the distributed train step. Build it inside strategy.scope()."""

  def __init__(self, arch: Architecture, config: TrainingConfig, strategy: tf.distribute.Strategy):
    self.arch, self.config, self.strategy = arch, config, strategy
    self.encoder = networks.build_encoder(arch)
    self.decoder = networks.build_decoder(arch)
    self.discriminator = networks.build_discriminator(arch)
    self.optimizers = {name: self._adam() for name in ('encoder', 'decoder', 'discriminator')}
    for name, net in self.networks.items():
      self.optimizers[name].build(net.trainable_variables)
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')

  @property
  def networks(self):
    return {'encoder': self.encoder, 'decoder': self.decoder, 'discriminator': self.discriminator}

  def _adam(self):
    adam = keras.optimizers.Adam(self.config.learning_rate, beta_1=self.config.beta1)
    return keras.optimizers.LossScaleOptimizer(adam) if self.config.mixed_precision else adam

  # ------------------------------------------------------------------ the latent space
  def latent(self, mean, log_variance, eps):
    """z as the decoder is trained on it: mean + sigma·eps, through tanh when latent_tanh."""
    z = mean + tf.exp(0.5 * log_variance) * eps
    return tf.tanh(z) if self.config.latent_tanh else z

  def latent_of_mean(self, mean):
    """The deterministic code of an image (the seed's arithmetic takes the encoder means)."""
    return tf.tanh(mean) if self.config.latent_tanh else mean

  def prior(self, eps):
    """Samples of the prior in the decoder's space: N(0, I), through tanh when latent_tanh."""
    return tf.tanh(eps) if self.config.latent_tanh else eps

  # --------------------------------------------------------------------- forward pass
  def _forward(self, images, eps, z_prior_eps):
    mean, log_variance = self.encoder(images, training=True)
    reconstructions = self.decoder(self.latent(mean, log_variance, eps), training=True)
    real_logit, real_features = self.discriminator(images, training=True)
    fake_logit, fake_features = self.discriminator(reconstructions, training=True)
    layer = self.config.dis_l_layer - 1
    out = {
        'mean': mean, 'log_variance': log_variance,
        'real_logit': real_logit, 'fake_logit': fake_logit,
        'dis_l': losses.dis_l(real_features[layer], fake_features[layer]),
    }
    if self.config.prior_samples_to_discriminator or self.config.prior_samples_to_decoder:
      prior_images = self.decoder(self.prior(z_prior_eps), training=True)
      out['prior_logit'], _ = self.discriminator(prior_images, training=True)
    return out

  def _average(self, per_example):
    return tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)

  def _scaled(self, name, loss):
    """The loss to differentiate: loss-scaled under mixed precision (call inside the tape)."""
    return self.optimizers[name].scale_loss(loss) if self.config.mixed_precision else loss

  def _apply(self, name, tape, differentiated_loss):
    optimizer, variables = self.optimizers[name], self.networks[name].trainable_variables
    optimizer.apply_gradients(zip(tape.gradient(differentiated_loss, variables), variables))

  # ---------------------------------------------------------------- the three updates
  def _discriminator_update(self, images, eps, z_prior_eps):
    with tf.GradientTape() as tape:
      f = self._forward(images, eps, z_prior_eps)
      real_bce = self._average(losses.bce_with_logits(f['real_logit'], 1.0))
      fake_bce = self._average(losses.bce_with_logits(f['fake_logit'], 0.0))
      loss = real_bce + fake_bce
      if self.config.prior_samples_to_discriminator:
        loss += self._average(losses.bce_with_logits(f['prior_logit'], 0.0))
      scaled = self._scaled('discriminator', loss)
    self._apply('discriminator', tape, scaled)
    return {'discriminator_loss': loss, 'd_real_bce': real_bce, 'd_fake_bce': fake_bce,
            'd_real': self._average(tf.sigmoid(tf.reshape(f['real_logit'], [-1]))),
            'd_fake': self._average(tf.sigmoid(tf.reshape(f['fake_logit'], [-1])))}

  def _decoder_update(self, images, eps, z_prior_eps):
    with tf.GradientTape() as tape:
      f = self._forward(images, eps, z_prior_eps)
      gan = self._average(losses.bce_with_logits(f['fake_logit'], 1.0))
      if self.config.prior_samples_to_decoder:
        gan += self._average(losses.bce_with_logits(f['prior_logit'], 1.0))
      dis_l = self._average(f['dis_l'])
      loss = gan + self.config.gamma * dis_l
      scaled = self._scaled('decoder', loss)
    self._apply('decoder', tape, scaled)
    return {'decoder_loss': loss, 'decoder_gan': gan}

  def _encoder_update(self, images, eps, z_prior_eps):
    with tf.GradientTape() as tape:
      f = self._forward(images, eps, z_prior_eps)
      kl = self._average(losses.kl_to_standard_normal(f['mean'], f['log_variance']))
      dis_l = self._average(f['dis_l'])
      loss = kl + dis_l
      scaled = self._scaled('encoder', loss)
    self._apply('encoder', tape, scaled)
    return {'encoder_loss': loss, 'kl': kl, 'dis_l': dis_l}

  def _replica_step(self, batch, update_discriminator, update_decoder):
    args = (batch['image'], batch['eps'], batch['z_prior_eps'])
    metrics = {}
    if update_discriminator:
      metrics.update(self._discriminator_update(*args))
    if update_decoder:
      for _ in range(self.config.decoder_steps_per_discriminator_step):
        metrics.update(self._decoder_update(*args))
    metrics.update(self._encoder_update(*args))
    return metrics

  @tf.function
  def _distributed_step(self, batch, update_discriminator: bool, update_decoder: bool):
    per_replica = self.strategy.run(self._replica_step,
                                    args=(batch, update_discriminator, update_decoder))
    # Each replica's losses are already divided by the global batch: their sum is the mean.
    return {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in per_replica.items()}

  def train_step(self, batch, update_discriminator: bool = True, update_decoder: bool = True):
    """One step on a (distributed) global batch; returns the global mean of each loss term."""
    metrics = self._distributed_step(batch, bool(update_discriminator), bool(update_decoder))
    self.step.assign_add(1)
    return metrics

  def equilibrium_gates(self, previous: dict):
    """(update_discriminator, update_decoder) from the last step's BCEs (Larsen's official code)."""
    if not self.config.equilibrium_gating or 'd_real_bce' not in previous:
      return True, True
    low = self.config.equilibrium - self.config.equilibrium_margin
    high = self.config.equilibrium + self.config.equilibrium_margin
    real, fake = float(previous['d_real_bce']), float(previous['d_fake_bce'])
    update_discriminator = not (real < low or fake < low)
    update_decoder = not (real > high or fake > high)
    if not (update_discriminator or update_decoder):
      return True, True
    return update_discriminator, update_decoder

  # ------------------------------------------------------------------ inference helpers
  def encode(self, images):
    mean, log_variance = self.encoder(images, training=False)
    return self.latent_of_mean(mean), mean, log_variance

  def decode(self, z):
    return self.decoder(z, training=False)

  def reconstruct(self, images):
    return self.decode(self.encode(images)[0])
