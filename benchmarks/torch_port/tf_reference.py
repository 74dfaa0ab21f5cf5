"""The TF side of the port check (runs in the project environment, never on the GPU machine).

  scripts/env.sh run python benchmarks/torch_port/tf_reference.py /tmp/gp_check

  (an optional second argument names the parts: steps,grads,metrics; default all)

Writes <dir>/tf_grads.npz: each network's gradient of its own loss from one forward pass
(VAEGAN.one_pass_gradients) for two configurations, and Keras Adam's iterates on fixed gradients;
<dir>/tf_reference.npz: for each case, the project's initial weights, a training-mode and an
inference-mode forward pass, and the weights + logged losses after 3 train steps (VAEGAN.train_step
under the trainer's MirroredStrategy); and <dir>/tf_metrics.npz: test reconstructions with the
project's per-image metrics, identity and baselines. check_port.py compares the PyTorch port.
"""
import json
import os
import sys

import numpy as np
import tensorflow as tf

from cns_vaegan.components.evaluator import baselines, quality_metrics
from cns_vaegan.components.trainer import training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH, STEPS = 16, 3
CASES = {  # name: TrainingConfig overrides (total_steps = STEPS for the decay)
    'sequential_l4': {'update_schedule': 'sequential', 'dis_l_layer': 4},
    'one_pass_l3_decay_pixel': {'update_schedule': 'one_pass', 'dis_l_layer': 3,
                                'learning_rate_decay': 0.5, 'pixel_weight': 0.5},
    'sequential_l3': {'update_schedule': 'sequential', 'dis_l_layer': 3},
}


def weights(model):
  return {f'{net.name}/{layer.name}/{w.name}': w.numpy().copy()
          for net in model.networks.values() for layer in net.layers for w in layer.weights}


def make_batches(train, arch):
  rng = np.random.default_rng(5)
  return [{'image': train[i * BATCH:(i + 1) * BATCH],
           'eps': rng.standard_normal((BATCH, arch.z_dim)).astype(np.float32),
           'z_prior_eps': rng.standard_normal((BATCH, arch.z_dim)).astype(np.float32)}
          for i in range(STEPS + 1)]


def grads(out, train, arch):
  """Gradients of one forward pass (no optimizer: no Adam sign noise), and Adam on fixed gradients."""
  batch = make_batches(train, arch)[0]
  saved = {}
  for case, overrides in {'l4': {'dis_l_layer': 4}, 'l3_pixel': {'dis_l_layer': 3, 'pixel_weight': 0.5}}.items():
    tf.keras.utils.set_random_seed(1)
    model = VAEGAN(arch, TrainingConfig(batch_size=BATCH, **overrides), tf.distribute.get_strategy())
    for key, value in weights(model).items():
      saved[f'{case}/init/{key}'] = value
    gradients, logged = model.one_pass_gradients(batch['image'], batch['eps'], batch['z_prior_eps'])
    for name, net in model.networks.items():
      for variable, gradient in zip(net.trainable_variables, gradients[name]):
        saved[f'{case}/grad/{name}/{variable.path}'] = gradient.numpy()
    for key, value in logged.items():
      saved[f'{case}/logged/{key}'] = np.asarray(value)
  import keras  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(9)
  adam = keras.optimizers.Adam(2e-4, beta_1=0.5)
  variable = keras.Variable(rng.standard_normal(1000).astype(np.float32))
  saved['adam/initial'] = variable.numpy().copy()
  for step in range(6):
    gradient = (rng.standard_normal(1000) * 10.0 ** rng.uniform(-9, 1, 1000)).astype(np.float32)
    if step == 3:
      adam.learning_rate = 1e-4
    adam.apply_gradients([(tf.constant(gradient), variable)])
    saved[f'adam/grad{step}'] = gradient
    saved[f'adam/after{step}'] = variable.numpy().copy()
  np.savez(os.path.join(out, 'tf_grads.npz'), **saved)


def main(out, parts=('steps', 'grads', 'metrics')):
  os.makedirs(out, exist_ok=True)
  glyphs = np.load(os.path.join(HERE, 'glyphs.npz'))
  train = glyphs['train'].astype(np.float32) / 127.5 - 1.0
  arch = Architecture()  # ch 64, z 100: the real networks
  if 'grads' in parts:
    grads(out, train, arch)
  if 'steps' in parts:
    steps(out, train, arch)
  if 'metrics' in parts:
    metrics(out, glyphs, train, arch)


def steps(out, train, arch):
  strategy = training.make_strategy(0)
  saved = {}
  batches = make_batches(train, arch)
  for i, batch in enumerate(batches):
    for key in ('image', 'eps'):
      saved[f'batch{i}/{key}'] = batch[key]
  for case, overrides in CASES.items():
    tf.keras.utils.set_random_seed(1)
    with strategy.scope():
      model = VAEGAN(arch, TrainingConfig(batch_size=BATCH, **overrides), strategy, total_steps=STEPS)
    for key, value in weights(model).items():
      saved[f'{case}/init/{key}'] = value
    if case == 'sequential_l4':  # forward passes, as _forward calls them (training mode), then inference
      x, eps = batches[-1]['image'], batches[-1]['eps']
      mean, log_variance = model.encoder(x, training=True)
      z = model.latent(mean, log_variance, eps)
      reconstruction = model.decoder(z, training=True)
      real_logit, real_features = model.discriminator(x, training=True)
      fake_logit, fake_features = model.discriminator(reconstruction, training=True)
      fwd = {'mean': mean, 'log_variance': log_variance, 'reconstruction': reconstruction,
             'real_logit': real_logit, 'fake_logit': fake_logit}
      fwd.update({f'real_features{i + 1}': f for i, f in enumerate(real_features)})
      fwd.update({f'fake_features{i + 1}': f for i, f in enumerate(fake_features)})
      fwd['eval_reconstruction'] = model.reconstruct(x)
      fwd['eval_real_logit'] = model.discriminator(x, training=False)[0]
      for key, value in fwd.items():
        saved[f'forward/{key}'] = np.asarray(value)
      for key, value in weights(model).items():
        saved[f'forward/after/{key}'] = value
      with strategy.scope():  # a fresh model for the train steps (forward passes moved BN stats)
        tf.keras.utils.set_random_seed(1)
        model = VAEGAN(arch, TrainingConfig(batch_size=BATCH, **overrides), strategy, total_steps=STEPS)
      for key, value in weights(model).items():
        saved[f'{case}/init/{key}'] = value
    for step in range(STEPS):
      logged = model.train_step(batches[step])
      for key, value in logged.items():
        saved[f'{case}/step{step}/{key}'] = np.asarray(value)
    for key, value in weights(model).items():
      saved[f'{case}/trained/{key}'] = value
    saved[f'{case}/trained_reconstruction'] = np.asarray(model.reconstruct(batches[-1]['image']))
  np.savez(os.path.join(out, 'tf_reference.npz'), **saved)


def metrics(out, glyphs, train, arch):
  """The project's metric functions on test reconstructions and its baselines."""
  eval01 = (glyphs['eval'].astype(np.float32) / 127.5 - 1.0 + 1.0) / 2.0
  train01 = (train + 1.0) / 2.0
  sets = baselines.GlyphSets(measured=eval01, other_eval=eval01[:0], train=train01)
  fitted = baselines.reconstructors(train01, arch.z_dim)
  report = {'baselines': baselines.measure(sets, fitted)}
  noise = np.random.default_rng(0)
  pca25 = fitted['pca_25'](eval01)
  tests = {'noisy': np.clip(eval01 + noise.normal(0, 0.25, eval01.shape), 0, 1).astype(np.float32),
           'pca25_shifted': np.roll(pca25, 1, axis=2)}
  arrays = {}
  for name, images in tests.items():
    arrays[name] = images
    per_image = quality_metrics.reconstruction_per_image(eval01, images)
    for key, value in per_image.items():
      arrays[f'{name}/{key}'] = value
    report[name] = {'reconstruction': quality_metrics.reconstruction_summary(eval01, images),
                    'identity': sets.identity(images),
                    'diversity': quality_metrics.mean_pairwise_distance(images[:512])
                                 / quality_metrics.mean_pairwise_distance(eval01[:512])}
  np.savez_compressed(os.path.join(out, 'tf_metrics.npz'), **arrays)
  with open(os.path.join(out, 'tf_metrics.json'), 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=1)
  print(json.dumps(report, indent=1))


if __name__ == '__main__':
  main(sys.argv[1], *(sys.argv[2:3] and [sys.argv[2].split(',')]))
