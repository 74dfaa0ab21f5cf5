"""The exported SavedModel: encode and decode signatures over the trained networks."""
import tensorflow as tf

from cns_vaegan.components.trainer.vaegan import VAEGAN


class GlyphModel(tf.Module):
  """What gets saved: the encoder and decoder and the signatures clients call."""

  def __init__(self, model: VAEGAN):
    super().__init__()
    self.encoder, self.decoder = model.encoder, model.decoder
    self._model = model
    arch = model.arch
    self._image_spec = tf.TensorSpec([None, arch.img_h, arch.img_w, arch.img_c], tf.float32, 'images')
    self._z_spec = tf.TensorSpec([None, arch.z_dim], tf.float32, 'z')

  def signatures(self):
    encode = tf.function(self._encode).get_concrete_function(self._image_spec)
    decode = tf.function(self._decode).get_concrete_function(self._z_spec)
    return {'encode': encode, 'decode': decode, 'serving_default': encode}

  def _encode(self, images):
    """images in [0, 1] -> z (as the decoder takes it), mean, log_variance."""
    z, mean, log_variance = self._model.encode(images * 2.0 - 1.0)
    return {'z': z, 'mean': mean, 'log_variance': log_variance}

  def _decode(self, z):
    """z -> images in [0, 1]."""
    return {'images': (self._model.decode(z) + 1.0) / 2.0}


def export_saved_model(model: VAEGAN, export_dir: str) -> None:
  module = GlyphModel(model)
  tf.saved_model.save(module, export_dir, signatures=module.signatures())
