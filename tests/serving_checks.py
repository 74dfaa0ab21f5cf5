"""Client checks shared by the embedded-server tests and the real-TF-Serving test."""
import concurrent.futures
import os
import shutil
import threading
import time
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from cns_vaegan.components.trainer import export
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN
from cns_vaegan.serving.client import GlyphClient
from conftest import TINY_ARCHITECTURE, rendered_references

SIGNATURES = {'encode', 'encode_pixels', 'decode', 'reconstruct', 'arithmetic', 'interpolate',
              'sample', 'serving_default'}


def export_tiny_version(model_dir, version: int, seed: int) -> str:
  """An untrained tiny model (TINY_ARCHITECTURE) as <model_dir>/<version>, staged then renamed
  so it appears whole, as the Pusher's does; `nearest` searches the test characters. Returns
  its path."""
  tf.keras.utils.set_random_seed(seed)
  model = VAEGAN(Architecture(**TINY_ARCHITECTURE), TrainingConfig(batch_size=4),
                 tf.distribute.get_strategy())
  staging = os.path.join(model_dir, f'.staging-{version}')
  export.export_saved_model(model, staging, references=rendered_references())
  os.rename(staging, os.path.join(model_dir, str(version)))
  return os.path.join(model_dir, str(version))


def copy_version(path, model_dir, version: int) -> str:
  """A copy of an exported version as <model_dir>/<version>, appearing whole; its path."""
  staging = os.path.join(model_dir, f'.staging-{version}')
  shutil.copytree(path, staging)
  os.rename(staging, os.path.join(model_dir, str(version)))
  return os.path.join(model_dir, str(version))


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


def run_clients_across_a_swap(clients: Sequence[Callable[[], None]], stop: threading.Event,
                              swap: Callable[[], object], swapped: Callable[[], bool],
                              settle_seconds: float = 1.0):
  """Runs `clients` (each loops until `stop` is set) while `swap()` exports a new version;
  stops them `settle_seconds` after `swapped()` holds (at most 60 s). Returns swap()'s value."""
  with concurrent.futures.ThreadPoolExecutor(len(clients)) as pool:
    running = [pool.submit(client) for client in clients]
    time.sleep(1.0)
    swapped_in = swap()
    deadline = time.monotonic() + 60
    while not swapped() and time.monotonic() < deadline:
      time.sleep(0.2)
    time.sleep(settle_seconds)
    stop.set()
    for client in running:
      client.result()
  return swapped_in
