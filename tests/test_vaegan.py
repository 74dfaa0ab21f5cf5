"""The VAE-GAN: loss terms, which network each update moves, and the distributed step."""
import math

import numpy as np
import pytest
import tensorflow as tf

from cns_vaegan.components.trainer import losses
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN
from conftest import TINY_ARCHITECTURE

ARCH = Architecture(**TINY_ARCHITECTURE)
BATCH = 8


def make_batch(seed=0):
  rng = np.random.default_rng(seed)
  return {
      'image': rng.uniform(-1, 1, (BATCH,) + ARCH.image_shape).astype(np.float32),
      'eps': rng.standard_normal((BATCH, ARCH.z_dim)).astype(np.float32),
      'z_prior_eps': rng.standard_normal((BATCH, ARCH.z_dim)).astype(np.float32),
  }


def build(strategy=None, **config):
  strategy = strategy or tf.distribute.get_strategy()
  tf.keras.utils.set_random_seed(1)
  with strategy.scope():
    return VAEGAN(ARCH, TrainingConfig(batch_size=BATCH, **config), strategy)


def trainable(model):
  return {name: [v.numpy().copy() for v in net.trainable_variables]
          for name, net in model.networks.items()}


def changed(before, after):
  return {name for name in before
          if any(not np.array_equal(b, a) for b, a in zip(before[name], after[name]))}


# ------------------------------------------------------------------------ loss terms
def test_kl_of_the_standard_normal_is_zero_and_grows_with_the_mean():
  zeros = tf.zeros([3, 5])
  np.testing.assert_allclose(losses.kl_to_standard_normal(zeros, zeros), 0.0, atol=1e-7)
  np.testing.assert_allclose(losses.kl_to_standard_normal(tf.ones([3, 5]), zeros), 2.5, rtol=1e-6)
  assert float(losses.kl_to_standard_normal(zeros, tf.fill([1, 5], 1.0))[0]) > 0


def test_dis_l_is_minimal_when_the_features_match():
  features = tf.random.stateless_normal([4, 10], seed=[1, 2])
  floor = 0.5 * 10 * math.log(2 * math.pi)
  np.testing.assert_allclose(losses.dis_l(features, features), floor, rtol=1e-6)
  assert np.all(losses.dis_l(features, features + 0.1).numpy() > floor)
  np.testing.assert_allclose(losses.dis_l(features, features + 1.0), floor + 5.0, rtol=1e-6)


def test_bce_with_logits():
  np.testing.assert_allclose(losses.bce_with_logits(tf.zeros([2, 1]), 1.0), [math.log(2)] * 2, rtol=1e-6)
  assert float(losses.bce_with_logits(tf.constant([[10.0]]), 1.0)[0]) < 1e-4


# ------------------------------------------------------------------- the loss split
@pytest.mark.parametrize('network', ['discriminator', 'decoder', 'encoder'])
def test_each_sequential_update_moves_only_its_own_network(network):
  model = build()
  batch = make_batch()
  before = trainable(model)
  model._update(network, batch['image'], batch['eps'], batch['z_prior_eps'])  # pylint: disable=protected-access
  assert changed(before, trainable(model)) == {network}


@pytest.mark.parametrize('config', [{}, {'pixel_weight': 0.5, 'kl_weight': 0.3,
                                         'prior_samples_to_discriminator': True,
                                         'prior_samples_to_decoder': True}])
def test_one_pass_gives_each_network_the_gradient_of_its_own_loss_only(config):
  model = build(update_schedule='one_pass', **config)
  batch = make_batch()
  args = (tf.constant(batch['image']), tf.constant(batch['eps']), tf.constant(batch['z_prior_eps']))
  gradients, _ = model.one_pass_gradients(*args)
  # The same forward pass (batch norm uses batch statistics, so it is deterministic), each
  # loss differentiated on its own against every network.
  with tf.GradientTape(persistent=True) as tape:
    network_losses, _ = model._losses(model._forward(*args))  # pylint: disable=protected-access
  for network, net in model.networks.items():
    for loss_name, loss in network_losses.items():
      expected = tape.gradient(loss, net.trainable_variables)
      same = all(e is not None and np.allclose(g, e, rtol=1e-5, atol=1e-7)
                 for g, e in zip(gradients[network], expected))
      assert same == (loss_name == network), (network, loss_name)


@pytest.mark.parametrize('schedule', ['sequential', 'one_pass'])
def test_a_train_step_moves_every_network_and_gates_skip_theirs(schedule):
  model = build(update_schedule=schedule)
  before = trainable(model)
  model.train_step(make_batch())
  assert changed(before, trainable(model)) == {'encoder', 'decoder', 'discriminator'}
  before = trainable(model)
  model.train_step(make_batch(1), update_discriminator=False)
  assert changed(before, trainable(model)) == {'encoder', 'decoder'}
  before = trainable(model)
  model.train_step(make_batch(2), update_decoder=False)
  assert changed(before, trainable(model)) == {'encoder', 'discriminator'}
  assert int(model.step.numpy()) == 3


def test_the_decoder_is_trained_on_the_space_the_prior_samples_come_from():
  tanh_model, plain_model = build(latent_tanh=True), build(latent_tanh=False)
  eps = tf.constant([[3.0] * ARCH.z_dim])
  assert float(tf.reduce_max(tanh_model.prior(eps))) < 1.0
  z = tanh_model.latent(tf.constant([[2.0] * ARCH.z_dim]), tf.zeros([1, ARCH.z_dim]), eps)
  assert float(tf.reduce_max(tf.abs(z))) < 1.0
  np.testing.assert_allclose(plain_model.prior(eps), eps)


def test_prior_samples_reach_the_discriminator_when_asked():
  batch = make_batch()
  args = (tf.constant(batch['image']), tf.constant(batch['eps']), tf.constant(batch['z_prior_eps']))
  plain, prior = build(), build(prior_samples_to_discriminator=True, prior_samples_to_decoder=True)
  plain_losses, _ = plain._losses(plain._forward(*args))  # pylint: disable=protected-access
  prior_losses, _ = prior._losses(prior._forward(*args))  # pylint: disable=protected-access
  # Same seed, same weights: D's and G's losses gain a BCE term on G(z_p); E's is unchanged.
  for name in ('discriminator', 'decoder'):
    assert float(prior_losses[name]) > float(plain_losses[name]) + 0.3, name
  np.testing.assert_allclose(float(prior_losses['encoder']), float(plain_losses['encoder']), rtol=1e-5)


def test_the_pixel_term_and_kl_weight_enter_the_losses_they_name():
  batch = make_batch()
  plain, weighted = build(), build(pixel_weight=0.5, kl_weight=0.0)
  args = (tf.constant(batch['image']), tf.constant(batch['eps']), tf.constant(batch['z_prior_eps']))
  _, base = plain._losses(plain._forward(*args))  # pylint: disable=protected-access
  _, logged = weighted._losses(weighted._forward(*args))  # pylint: disable=protected-access
  pixel = float(logged['pixel_l1'])
  assert pixel > 0 and 'pixel_l1' not in base
  # Same seed, same weights: only the named terms differ.
  np.testing.assert_allclose(float(logged['decoder_loss']), float(base['decoder_loss']) + 0.5 * pixel,
                             rtol=1e-5)
  np.testing.assert_allclose(float(logged['encoder_loss']),
                             float(base['encoder_loss']) - float(base['kl']) + 0.5 * pixel, rtol=1e-5)
  np.testing.assert_allclose(float(logged['discriminator_loss']), float(base['discriminator_loss']),
                             rtol=1e-6)


def test_the_learning_rate_is_constant_then_falls_linearly_to_zero():
  tf.keras.utils.set_random_seed(1)
  model = VAEGAN(ARCH, TrainingConfig(batch_size=BATCH, learning_rate_decay=0.5),
                 tf.distribute.get_strategy(), total_steps=10)
  assert [model.learning_rate_at(s) for s in (0, 4, 5, 6, 8, 10)] == pytest.approx(
      [2e-4, 2e-4, 2e-4, 1.6e-4, 0.8e-4, 0.0])
  model.step.assign(8)
  model.train_step(make_batch())
  for optimizer in model.optimizers.values():
    assert float(optimizer.learning_rate) == pytest.approx(0.8e-4)
  assert build().learning_rate_at(10**6) == 2e-4  # no decay by default


def test_equilibrium_gates_follow_the_official_thresholds():
  model = build(equilibrium_gating=True)
  assert model.equilibrium_gates({}) == (True, True)
  assert model.equilibrium_gates({'d_real_bce': 0.2, 'd_fake_bce': 0.6}) == (False, True)
  assert model.equilibrium_gates({'d_real_bce': 1.2, 'd_fake_bce': 0.6}) == (True, False)
  assert model.equilibrium_gates({'d_real_bce': 0.2, 'd_fake_bce': 1.2}) == (True, True)
  assert build().equilibrium_gates({'d_real_bce': 0.2, 'd_fake_bce': 0.6}) == (True, True)


# ------------------------------------------------------------------- distribution
@pytest.fixture(scope='module')
def strategies():
  """One and two replicas, made once for the module: with a fresh 2-replica strategy per
  test, the second test's step failed with mismatched collective instances (TF 2.21);
  a training process makes one strategy."""
  assert len(tf.config.list_logical_devices('CPU')) >= 2, 'conftest splits the CPU in two'
  return tf.distribute.MirroredStrategy(['/cpu:0']), tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])


@pytest.mark.parametrize('schedule', ['sequential', 'one_pass'])
def test_two_replicas_update_exactly_as_one_device_on_the_same_global_batch(schedule, strategies):
  one, two = strategies
  # One decoder update per step: the same schedule with one pass fewer to trace.
  settings = dict(update_schedule=schedule, decoder_steps_per_discriminator_step=1)
  single, double = build(one, **settings), build(two, **settings)
  for name, net in single.networks.items():
    double.networks[name].set_weights(net.get_weights())
  batch = make_batch()
  results = []
  for strategy, model in ((one, single), (two, double)):
    distributed = next(iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(batch))))
    results.append({k: float(v) for k, v in model.train_step(distributed).items()})
  assert two.num_replicas_in_sync == 2
  for name in results[0]:
    assert results[1][name] == pytest.approx(results[0][name], rel=1e-4, abs=1e-5), name
  for name, net in single.networks.items():
    for a, b in zip(net.get_weights(), double.networks[name].get_weights()):
      np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_the_loss_scaled_mixed_precision_path_takes_a_step():
  # On CPU the float32 policy stays; the LossScaleOptimizer path is what runs on GPUs.
  model = build(mixed_precision=True)
  before = trainable(model)
  metrics = model.train_step(make_batch())
  assert np.isfinite(float(metrics['encoder_loss']))
  assert changed(before, trainable(model)) == {'encoder', 'decoder', 'discriminator'}
