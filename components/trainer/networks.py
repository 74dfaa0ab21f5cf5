"""Encoder, decoder (generator) and discriminator, as the seed's model/vaegan.py.

All convolutions are 5x5 with stride 2. As in the seed (slim layers with a
normalizer_fn), a layer followed by batch norm has no bias: batch norm's own offset
replaces it, and a bias there would get only rounding noise as gradient. Batch norm
is synchronized across replicas, so a MirroredStrategy step normalizes over the
global batch exactly as one device would.
"""
import keras
from keras import layers

from cns_vaegan.components.trainer.architecture import Architecture


def _batch_norm(arch: Architecture, name: str):
  return layers.BatchNormalization(
      momentum=arch.batch_norm_momentum, epsilon=arch.batch_norm_epsilon,
      synchronized=True, name=name)


def _conv_block(x, channels, arch, name, batch_norm=True):
  x = layers.Conv2D(channels, 5, strides=2, padding='same', use_bias=not batch_norm,
                    name=f'{name}_conv')(x)
  if batch_norm:
    x = _batch_norm(arch, f'{name}_bn')(x)
  return layers.LeakyReLU(negative_slope=arch.leaky_relu_slope, name=f'{name}_lrelu')(x)


def build_encoder(arch: Architecture) -> keras.Model:
  """x -> (mean, log_variance) of q(z|x): 4 convs with ch·2^i channels, two dense heads."""
  images = keras.Input(arch.image_shape, name='images')
  x = images
  for i in range(4):
    x = _conv_block(x, arch.ch * 2 ** i, arch, f'enc{i + 1}')
  x = layers.Flatten()(x)
  mean = layers.Dense(arch.z_dim, name='mean', dtype='float32')(x)
  log_variance = layers.Dense(arch.z_dim, name='log_variance', dtype='float32')(x)
  return keras.Model(images, [mean, log_variance], name='encoder')


def build_decoder(arch: Architecture) -> keras.Model:
  """z -> image in [-1, 1]: dense to (h/16, w/16, 8ch), transposed convs to 4ch, 2ch, ch, img_c."""
  z = keras.Input((arch.z_dim,), name='z')
  h, w = arch.img_h // 16, arch.img_w // 16
  x = layers.Dense(h * w * arch.ch * 8, use_bias=False, name='dec_dense')(z)
  x = _batch_norm(arch, 'dec_dense_bn')(x)
  x = layers.ReLU()(x)
  x = layers.Reshape((h, w, arch.ch * 8))(x)
  for i, multiple in enumerate((4, 2, 1)):
    x = layers.Conv2DTranspose(arch.ch * multiple, 5, strides=2, padding='same', use_bias=False,
                               name=f'dec{i + 1}_deconv')(x)
    x = _batch_norm(arch, f'dec{i + 1}_bn')(x)
    x = layers.ReLU()(x)
  x = layers.Conv2DTranspose(arch.img_c, 5, strides=2, padding='same', name='dec_out')(x)
  images = layers.Activation('tanh', dtype='float32', name='images')(x)  # no batch norm here
  return keras.Model(z, images, name='decoder')


def build_discriminator(arch: Architecture) -> keras.Model:
  """x -> (logit, [features of conv 1..4]); the features are the learned similarity (Dis_l)."""
  images = keras.Input(arch.image_shape, name='images')
  x = images
  features = []
  for i, multiple in enumerate((1, 2, 4, 8)):
    x = _conv_block(x, arch.ch * multiple, arch, f'dis{i + 1}', batch_norm=i > 0)
    features.append(layers.Flatten(name=f'dis{i + 1}_features', dtype='float32')(x))
  logit = layers.Dense(1, name='logit', dtype='float32')(features[-1])
  return keras.Model(images, [logit, features], name='discriminator')
