"""The VAE-GAN and its train step (Larsen et al. 2016, with the seed's tanh on z).

The three networks' losses (Eq. 9; the bracketed terms are settings, off in the seed):

    discriminator:  BCE(D(x), 1) + BCE(D(x~), 0) [+ BCE(D(G(z_p)), 0)]
    decoder:        BCE(D(x~), 1) [+ BCE(D(G(z_p)), 1)] + gamma · Dis_l [+ w · |x - x~|]
    encoder:        kl_weight · KL(q(z|x) || N(0, I)) + Dis_l [+ w · |x - x~|]

where x~ = G(z), z = tanh(mean + sigma·eps). One step follows `update_schedule`:
'sequential' (the seed's train.py) updates the discriminator, then the decoder (twice
by default), then the encoder, each from a fresh forward pass; 'one_pass' (Larsen et
al.'s official code) takes one forward pass and applies each network the gradient of
its own loss, about twice as fast. The step runs under a tf.distribute
strategy: each replica takes its slice of the global batch and every loss is
averaged over the global batch, so N replicas update exactly as one device would.
Noise (eps, z_p) comes in with the batch, which keeps steps reproducible.
"""
import keras
import tensorflow as tf

from cns_vaegan.components.trainer import losses, networks
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig


# What each network's update reports in the 'sequential' schedule (its own loss terms).
_LOGGED_BY = {
    'discriminator': ('discriminator_loss', 'd_real_bce', 'd_fake_bce', 'd_real', 'd_fake'),
    'decoder': ('decoder_loss', 'decoder_gan', 'pixel_l1'),
    'encoder': ('encoder_loss', 'kl', 'dis_l', 'pixel_l1'),
}


class VAEGAN:
  """Networks, optimizers and the distributed train step. Build it inside strategy.scope()."""

  def __init__(self, arch: Architecture, config: TrainingConfig, strategy: tf.distribute.Strategy,
               total_steps: int = 0):
    """`total_steps`: where a learning_rate_decay ends (0: the learning rate stays constant)."""
    self.arch, self.config, self.strategy = arch, config, strategy
    self.total_steps = total_steps
    # float16 needs its losses scaled (its range is narrow); bfloat16 has float32's range.
    self.loss_scaling = keras.mixed_precision.global_policy().name == 'mixed_float16'
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

  def learning_rate_at(self, step: int) -> float:
    """Constant, then (learning_rate_decay > 0) linear to 0 over that last share of total_steps."""
    decay_steps = self.config.learning_rate_decay * self.total_steps
    if decay_steps <= 0:
      return self.config.learning_rate
    remaining = max(self.total_steps - step, 0)
    return self.config.learning_rate * min(1.0, remaining / decay_steps)

  def _set_learning_rate(self) -> None:
    """learning_rate_at(step) computed on the device from the step variable (inside the compiled
    step), so the loop never reads the step back to Python to set it."""
    decay_steps = self.config.learning_rate_decay * self.total_steps
    if decay_steps <= 0:
      return
    remaining = tf.maximum(tf.cast(self.total_steps - self.step, tf.float32), 0.0)
    rate = self.config.learning_rate * tf.minimum(1.0, remaining / decay_steps)
    for optimizer in self.optimizers.values():
      optimizer.learning_rate = rate

  def _adam(self):
    adam = keras.optimizers.Adam(self.config.learning_rate, beta_1=self.config.beta1)
    return keras.optimizers.LossScaleOptimizer(adam) if self.loss_scaling else adam

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
    if self.config.pixel_weight:
      out['pixel_l1'] = losses.pixel_l1(images, reconstructions)
    if self.config.prior_samples_to_discriminator or self.config.prior_samples_to_decoder:
      prior_images = self.decoder(self.prior(z_prior_eps), training=True)
      out['prior_logit'], _ = self.discriminator(prior_images, training=True)
    return out

  def _average(self, per_example):
    return tf.nn.compute_average_loss(per_example, global_batch_size=self.config.batch_size)

  def _scaled(self, name, loss):
    """The loss to differentiate: loss-scaled under float16 (call inside the tape)."""
    return self.optimizers[name].scale_loss(loss) if self.loss_scaling else loss

  def _apply(self, name, gradients):
    variables = self.networks[name].trainable_variables
    self.optimizers[name].apply_gradients(zip(gradients, variables))

  # ------------------------------------------------------------------- the three losses
  def _losses(self, f):
    """Each network's loss (Eq. 9, plus the optional terms) from one forward pass, and what to log."""
    average = self._average
    real_bce = average(losses.bce_with_logits(f['real_logit'], 1.0))
    fake_bce = average(losses.bce_with_logits(f['fake_logit'], 0.0))
    discriminator = real_bce + fake_bce
    gan = average(losses.bce_with_logits(f['fake_logit'], 1.0))
    if self.config.prior_samples_to_discriminator:
      discriminator += average(losses.bce_with_logits(f['prior_logit'], 0.0))
    if self.config.prior_samples_to_decoder:
      gan += average(losses.bce_with_logits(f['prior_logit'], 1.0))
    dis_l = average(f['dis_l'])
    kl = average(losses.kl_to_standard_normal(f['mean'], f['log_variance']))
    decoder = gan + self.config.gamma * dis_l
    encoder = self.config.kl_weight * kl + dis_l
    logged = {'discriminator_loss': discriminator, 'd_real_bce': real_bce, 'd_fake_bce': fake_bce,
              'd_real': average(tf.sigmoid(tf.reshape(f['real_logit'], [-1]))),
              'd_fake': average(tf.sigmoid(tf.reshape(f['fake_logit'], [-1]))),
              'decoder_gan': gan, 'kl': kl, 'dis_l': dis_l}
    if self.config.pixel_weight:
      pixel = average(f['pixel_l1'])
      decoder += self.config.pixel_weight * pixel
      encoder += self.config.pixel_weight * pixel
      logged['pixel_l1'] = pixel
    logged.update(decoder_loss=decoder, encoder_loss=encoder)
    return {'discriminator': discriminator, 'decoder': decoder, 'encoder': encoder}, logged

  # ------------------------------------------------- 'sequential': the seed's three passes
  def _update(self, name, images, eps, z_prior_eps):
    """One network's update from a fresh forward pass (the seed's train.py)."""
    with tf.GradientTape() as tape:
      network_losses, logged = self._losses(self._forward(images, eps, z_prior_eps))
      scaled = self._scaled(name, network_losses[name])
    self._apply(name, tape.gradient(scaled, self.networks[name].trainable_variables))
    return {key: value for key, value in logged.items() if key in _LOGGED_BY[name]}

  def _sequential_step(self, images, eps, z_prior_eps, update_discriminator, update_decoder):
    metrics = {}
    if update_discriminator:
      metrics.update(self._update('discriminator', images, eps, z_prior_eps))
    if update_decoder:
      for _ in range(self.config.decoder_steps_per_discriminator_step):
        metrics.update(self._update('decoder', images, eps, z_prior_eps))
    metrics.update(self._update('encoder', images, eps, z_prior_eps))
    return metrics

  # ------------------------------------------ 'one_pass': Larsen et al.'s official schedule
  def one_pass_gradients(self, images, eps, z_prior_eps):
    """Each network's gradient of its own loss, all from one forward pass; and what to log."""
    with tf.GradientTape(persistent=True) as tape:
      network_losses, logged = self._losses(self._forward(images, eps, z_prior_eps))
      scaled = {name: self._scaled(name, loss) for name, loss in network_losses.items()}
    gradients = {name: tape.gradient(scaled[name], net.trainable_variables)
                 for name, net in self.networks.items()}
    del tape
    return gradients, logged

  def _one_pass_step(self, images, eps, z_prior_eps, update_discriminator, update_decoder):
    gradients, logged = self.one_pass_gradients(images, eps, z_prior_eps)
    for name, update in (('discriminator', update_discriminator), ('decoder', update_decoder),
                         ('encoder', True)):
      if update:
        self._apply(name, gradients[name])
    return logged

  def _replica_step(self, batch, update_discriminator, update_decoder):
    step = self._one_pass_step if self.config.update_schedule == 'one_pass' else self._sequential_step
    return step(batch['image'], batch['eps'], batch['z_prior_eps'], update_discriminator, update_decoder)

  @tf.function
  def _distributed_step(self, batch, update_discriminator: bool, update_decoder: bool):
    self._set_learning_rate()
    per_replica = self.strategy.run(self._replica_step,
                                    args=(batch, update_discriminator, update_decoder))
    self.step.assign_add(1)
    # Each replica's losses are already divided by the global batch: their sum is the mean.
    return {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
            for name, value in per_replica.items()}

  def train_step(self, batch, update_discriminator: bool = True, update_decoder: bool = True):
    """One step on a (distributed) global batch; returns the global mean of each loss term.

    Everything the step needs (learning rate, step count) lives on the device: nothing is
    read back to Python, so the host never waits for a step to finish before queuing the next.
    """
    return self._distributed_step(batch, bool(update_discriminator), bool(update_decoder))

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

  def use_float32_networks(self) -> None:
    """Swaps in float32 copies of the networks (same weights): what is exported and measured
    after a mixed-precision run computes in float32 on any device, as the Evaluator measures it."""
    policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy('float32')
    try:
      for name, build in (('encoder', networks.build_encoder), ('decoder', networks.build_decoder),
                          ('discriminator', networks.build_discriminator)):
        copy = build(self.arch)
        copy.set_weights(self.networks[name].get_weights())
        setattr(self, name, copy)
    finally:
      keras.mixed_precision.set_global_policy(policy)

  # ------------------------------------------------------------------ inference helpers
  def encode(self, images):
    mean, log_variance = self.encoder(images, training=False)
    return self.latent_of_mean(mean), mean, log_variance

  def decode(self, z):
    return self.decoder(z, training=False)

  def reconstruct(self, images):
    return self.decode(self.encode(images)[0])
