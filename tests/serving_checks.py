"""Client checks shared by the embedded-server tests and the real-TF-Serving test."""
import numpy as np

from cns_vaegan.serving.client import GlyphClient

SIGNATURES = {'encode', 'encode_pixels', 'decode', 'reconstruct', 'arithmetic', 'interpolate',
              'sample', 'serving_default'}


def check_every_signature(client: GlyphClient, pngs, image_shape, z_dim):
  """Each signature answers with the documented shapes and dtypes; returns the outputs."""
  assert SIGNATURES <= set(client.signature_names())
  n = len(pngs)
  encoded = client.encode(pngs)
  assert encoded['z'].shape == (n, z_dim) and encoded['z'].dtype == np.float32
  decoded = client.decode(encoded['z'])
  assert decoded['images'].shape == (n,) + image_shape and decoded['png_bytes'].shape == (n,)
  reconstructed = client.reconstruct(pngs)
  assert reconstructed['images'].shape == (n,) + image_shape
  arithmetic = client.arithmetic(pngs[:1], pngs[1:2], pngs[2:3])
  assert arithmetic['images'].shape == (1, 5) + image_shape
  assert arithmetic['reconstructions_png_bytes'].shape == (1, 3)
  strip = client.interpolate(pngs[:1], pngs[1:2], steps=4)
  assert strip['images'].shape == (1, 6) + image_shape
  samples = client.sample(3, seed=1)
  assert samples['images'].shape == (3,) + image_shape
  statuses = client.model_status()
  assert any(s['state'] == 'AVAILABLE' for s in statuses)
  return {'encode': encoded, 'decode': decoded, 'reconstruct': reconstructed,
          'arithmetic': arithmetic, 'interpolate': strip, 'sample': samples}
