"""Bless or refuse: absolute thresholds AND no regression against the last blessed model.

Metrics are addressed by dotted paths into the evaluation report, e.g.
`candidate.reconstruction.ssim.mean` is written `reconstruction.ssim.mean`. A threshold
holds one or more bounds: {"min": x} and {"max": y} are absolute; {"above": "mean_glyph",
"by": d} asks for more than the same metric of that reference model
(report["baselines"]["mean_glyph"]) plus d. The regression check compares the same paths
of the candidate and the latest blessed model (report["baseline"]); the direction comes
from the threshold (min, above: higher is better; max: lower is better) and `tolerance`
is relative (0.05 = 5% worse allowed).
"""
import math
from typing import Any, Dict, Optional

# Defaults, set from measurements on the built-in eval split (1,964 glyphs; README
# "Evaluation and push", printed by benchmarks/reference_models.py and recipe_ablation.py).
# Reconstruction: a model must beat the mean glyph by about what a linear projection onto a
# quarter of its code size does (PCA-25: +1.9 dB, +0.36 SSIM) and name the character it was
# given 95% of the time (PCA-25: 65.9%, PCA-50: 98.8%; the old default model: 49.7%).
# Samples: between real glyphs (the floor) and the reference models, trained models
# (recipe ablation: SWD 16.6-27.5, FD 4.0-6.1, diversity 0.79-0.95) well inside:
#                                      swd  fd_pca  ink_w1  diversity
#   real vs real                       7.7     1.6   0.003       1.00
#   linear: PCA-100, Gaussian codes   39.6     3.4   0.019       0.69    blurred averages
#   600 steps, ch 64                  55.0    56.8   0.032       0.34    texture, not glyphs
#   constant: the mean glyph           157    52.0   0.022       0.00
#   one glyph for all                 91.2    92.7   0.023       0.00
#   all black                          750     105   0.189       0.00
#   uniform noise                      146    60.0   0.311       0.98
# SWD <= 30 refuses the linear generative model's samples; FD-PCA cannot (a Gaussian in the
# principal components' space is what it measures), so it only refuses the broken ones.
DEFAULT_THRESHOLDS = {
    'serving.all_ok': {'min': 1.0},
    'reconstruction.psnr.mean': {'above': 'mean_glyph', 'by': 1.5},
    'reconstruction.ssim.mean': {'above': 'mean_glyph', 'by': 0.35},
    'identity.top1': {'min': 0.95},
    'samples.swd.mean': {'max': 30.0},
    'samples.fd_pca': {'max': 25.0},
    'samples.ink_w1': {'max': 0.05},
    'samples.diversity': {'min': 0.5},
}
DEFAULT_REGRESSION_TOLERANCE = 0.05


def lookup(report: Dict[str, Any], path: str, model: str = 'candidate') -> Optional[float]:
  """The value at `path` for `model` (a dotted path: 'candidate', 'baseline',
  'baselines.mean_glyph'); serving.* is top-level."""
  node: Any = report
  for key in ([] if path.startswith('serving.') else model.split('.')) + path.split('.'):
    if not isinstance(node, dict) or key not in node:
      return None
    node = node[key]
  return float(node)


def _bound_failures(report, path, value, bounds):
  reasons = []
  if 'min' in bounds and value < bounds['min']:
    reasons.append(f'{path} = {value:.4g} is below the threshold {bounds["min"]:g}')
  if 'max' in bounds and value > bounds['max']:
    reasons.append(f'{path} = {value:.4g} is above the threshold {bounds["max"]:g}')
  if 'above' in bounds:
    reference = lookup(report, path, f'baselines.{bounds["above"]}')
    by = bounds.get('by', 0.0)
    if reference is None or not math.isfinite(reference):
      reasons.append(f'{path}: the {bounds["above"]} baseline could not be measured ({reference})')
    elif not value > reference + by:
      reasons.append(f'{path} = {value:.4g} does not beat the {bounds["above"]} baseline '
                     f'({reference:.4g}) by more than {by:g}')
  return reasons


def judge(report: Dict[str, Any], thresholds: Dict[str, Dict[str, float]], tolerance: float) -> Dict:
  reasons = []
  for path, bounds in thresholds.items():
    value = lookup(report, path)
    if value is None or not math.isfinite(value):  # NaN would pass every comparison
      reasons.append(f'{path} could not be measured ({value})')
      continue
    reasons += _bound_failures(report, path, value, bounds)
  compared = {}
  if 'baseline' in report:
    for path, bounds in thresholds.items():
      if path.startswith('serving.'):
        continue
      new, old = lookup(report, path), lookup(report, path, 'baseline')
      if new is None or old is None or not (math.isfinite(new) and math.isfinite(old)):
        continue
      higher_is_better = 'max' not in bounds
      worse_by = (old - new) if higher_is_better else (new - old)
      allowed = tolerance * abs(old)
      compared[path] = {'candidate': new, 'baseline': old, 'worse_by': worse_by, 'allowed': allowed}
      if worse_by > allowed:
        reasons.append(f'{path} regressed: {new:.4g} vs {old:.4g} for the blessed baseline '
                       f'(tolerance {tolerance:.0%})')
  return {'blessed': not reasons, 'reasons': reasons, 'regression': compared,
          'thresholds': thresholds, 'tolerance': tolerance}
