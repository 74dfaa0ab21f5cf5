"""Bless or refuse: absolute thresholds AND no regression against the last blessed model.

Metrics are addressed by dotted paths into the evaluation report, e.g.
`candidate.reconstruction.ssim.mean` is written `reconstruction.ssim.mean`. A threshold
is {"min": x} or {"max": y}. The regression check compares the same paths of the
candidate and the baseline; the direction comes from the threshold (min: higher is
better, max: lower is better) and `tolerance` is relative (0.05 = 5% worse allowed).
"""
import math
from typing import Any, Dict, Optional

# Defaults, set from measurements on the built-in eval split (1,964 glyphs; README
# "Evaluation"). Eval-split figures of reference models:
#                       psnr   ssim   swd    fd_pca  ink_w1  diversity
#   cpu profile (3,000)  10.3   0.375  16.1   9.9     0.008   0.92    blessed
#   600 steps, ch 64      9.6   0.166  55.0  56.8     0.032   0.34    refused: texture, not glyphs
#   one glyph for all     7.7   0.027  69.5  98.3     0.024   0.00    refused
#   all black             8.4   0.010 750   105       0.189   0.00    refused
#   uniform noise         5.4   0.005 146    60       0.311   0.98    refused
#   real vs real (floor)   -      -     7.7   1.6     0.003   1.00
DEFAULT_THRESHOLDS = {
    'serving.all_ok': {'min': 1.0},
    'reconstruction.psnr.mean': {'min': 9.0},
    'reconstruction.ssim.mean': {'min': 0.25},
    'samples.swd.mean': {'max': 40.0},
    'samples.fd_pca': {'max': 25.0},
    'samples.ink_w1': {'max': 0.05},
    'samples.diversity': {'min': 0.5},
}
DEFAULT_REGRESSION_TOLERANCE = 0.05


def lookup(report: Dict[str, Any], path: str, model: str = 'candidate') -> Optional[float]:
  """The value at `path` for `model` ('candidate' or 'baseline'); serving.* is top-level."""
  node: Any = report if path.startswith('serving.') else report.get(model, {})
  for key in path.split('.'):
    if not isinstance(node, dict) or key not in node:
      return None
    node = node[key]
  return float(node)


def judge(report: Dict[str, Any], thresholds: Dict[str, Dict[str, float]], tolerance: float) -> Dict:
  reasons = []
  for path, bounds in thresholds.items():
    value = lookup(report, path)
    if value is None or not math.isfinite(value):  # NaN would pass every comparison
      reasons.append(f'{path} could not be measured ({value})')
      continue
    if 'min' in bounds and value < bounds['min']:
      reasons.append(f'{path} = {value:.4g} is below the threshold {bounds["min"]:g}')
    if 'max' in bounds and value > bounds['max']:
      reasons.append(f'{path} = {value:.4g} is above the threshold {bounds["max"]:g}')
  compared = {}
  if 'baseline' in report:
    for path, bounds in thresholds.items():
      if path.startswith('serving.'):
        continue
      new, old = lookup(report, path), lookup(report, path, 'baseline')
      if new is None or old is None or not (math.isfinite(new) and math.isfinite(old)):
        continue
      higher_is_better = 'min' in bounds
      worse_by = (old - new) if higher_is_better else (new - old)
      allowed = tolerance * abs(old)
      compared[path] = {'candidate': new, 'baseline': old, 'worse_by': worse_by, 'allowed': allowed}
      if worse_by > allowed:
        reasons.append(f'{path} regressed: {new:.4g} vs {old:.4g} for the blessed baseline '
                       f'(tolerance {tolerance:.0%})')
  return {'blessed': not reasons, 'reasons': reasons, 'regression': compared,
          'thresholds': thresholds, 'tolerance': tolerance}
