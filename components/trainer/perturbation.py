"""A trained model with known damage: every trained weight moved by Gaussian noise.

What a gate must refuse, made to measure: a test or a benchmark perturbs a trained model
by a stated fraction of each variable's own spread, exports it, and asks whether the gate
refuses it (tests/test_gate.py, benchmarks/gate_noise.py). Batch norm's moving statistics
are left alone: they are not trained weights.
"""
import contextlib

import numpy as np


@contextlib.contextmanager
def perturbed_weights(model, scale: float, seed: int = 0):
  """Within the block, each trainable variable of `model.networks` is moved by noise of
  `scale` × its standard deviation (at least scale × 1e-3, so constant biases move too);
  the trained values come back on exit."""
  rng = np.random.default_rng(seed)
  variables = [v for net in model.networks.values() for v in net.trainable_variables]
  saved = [v.numpy() for v in variables]
  try:
    for variable, value in zip(variables, saved):
      noise = rng.normal(0, scale * (value.std() + 1e-3), value.shape)
      variable.assign(value + noise.astype(value.dtype))
    yield model
  finally:
    for variable, value in zip(variables, saved):
      variable.assign(value)
