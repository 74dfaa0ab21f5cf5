"""How much each gated figure moves when the same code is trained again on the same data.

Measured by training several models that differ only in their seed (benchmarks/gate_noise.py
on the built-in data; run it on your own data and pass its file with --retrain-noise). A
figure's spread across those models (measured_sd) holds two parts: what retraining moves,
and the estimator noise of measuring on a finite eval set (estimator_sd, the bootstrap of
paired_comparison.py, averaged over the models). What retraining alone moves is

    retrain_sd = sqrt(max(measured_sd² − estimator_sd², 0))

which is what blessing_rules adds to a run's own estimator noise when it compares two models.
"""
import json
import os
from typing import Any, Dict, Iterable, Tuple

import numpy as np

DEFAULT_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'retrain_noise.json')
# The figures whose spread is measured: every figure the default gate reads, and MSE.
METRICS = ('reconstruction.psnr.mean', 'reconstruction.ssim.mean', 'reconstruction.mse.mean',
           'identity.top1', 'samples.swd.mean', 'samples.fd_pca', 'samples.ink_w1', 'samples.diversity')


def load(path: str = DEFAULT_FILE) -> Dict[str, Any]:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def _figure(figures: Dict[str, Any], path: str) -> float:
  node = figures
  for key in path.split('.'):
    node = node[key]
  return float(node)


def measure(models: Iterable[Tuple[Dict[str, Any], Dict[str, Dict[str, float]]]],
            **about: Any) -> Dict[str, Any]:
  """The retrain noise of models trained alike: `models` yields, per model, its figures (a
  report's 'candidate') and its estimator noise (a report's 'estimator_noise': {path: {'sd'}}).
  `about` is recorded beside the figures (the command, the recipe...)."""
  models = list(models)
  if len(models) < 2:
    raise ValueError('retrain noise: the spread across retrains needs at least 2 models')
  metrics = {}
  for path in METRICS:
    values = [_figure(figures, path) for figures, _ in models]
    measured_sd = float(np.std(values, ddof=1))
    estimator_sd = float(np.sqrt(np.mean([noise[path]['sd'] ** 2 for _, noise in models])))
    metrics[path] = {'values': values, 'mean': float(np.mean(values)), 'measured_sd': measured_sd,
                     'estimator_sd': estimator_sd,
                     'retrain_sd': float(np.sqrt(max(measured_sd ** 2 - estimator_sd ** 2, 0.0)))}
  return dict(about, retrains=len(models), metrics=metrics)
