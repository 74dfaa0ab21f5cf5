"""Bless or refuse: every threshold met, AND no regression beyond what noise explains.

Metrics are addressed by dotted paths into the evaluation report, e.g.
`candidate.reconstruction.ssim.mean` is written `reconstruction.ssim.mean`.

**Thresholds** (absolute quality; one or more bounds per metric):
  {"min": x}, {"max": y}            absolute bounds;
  {"above": "mean_glyph", "by": d}  more than that reference model's figure plus d
                                    (report["baselines"]["mean_glyph"]);
  {"max_over_floor": d}             value − floor at most d, where the floor is what other
                                    real glyphs score against the eval glyphs at the candidate's
                                    own size (report["sanity"]["floor"]): for FD, a squared
                                    distance, whose finite-sample bias adds to it;
  {"max_over_floor_in_quadrature": d}
                                    sqrt(value² − floor²) at most d: for SWD and ink W1,
                                    distances whose finite-sample error adds in quadrature.
  Measured on the built-in data (docs/gate.md), each form gives a trained model, and each
  reference model, the same figure at 200 eval glyphs as at 1,964, while the raw figures
  and the floor move by a factor of 2 to 10: the bounds hold at any eval size.

**Regression** against the latest blessed model (report["baseline"], measured in the same run
on the same glyphs), on every figure of REGRESSION_METRICS. Two things move a figure between
two models of the same code and data:
retraining (another initialisation, data order and noise: `retrain_sd`, measured across
retrains by benchmarks/gate_noise.py: retrain_noise.py) and measurement (which
eval glyphs, which samples: `difference_sd`, the paired bootstrap of this run,
paired_comparison.py). The candidate is refused on a metric when it is worse by more than

    margin = t · sqrt(2 · retrain_sd² + difference_sd²)

where t is Student's t quantile with (retrains − 1) degrees of freedom at 1 − rate / m, for
m metrics compared: a retrain of the same code is refused with probability at most `rate`
(the false-refusal rate, 1 % by default) if the noise is Gaussian; the t quantile pays for
knowing retrain_sd from few retrains. Ink W1 and diversity are guards against blank, blotted
or collapsed samples: they count only when, beyond that margin, they are also worse by a
tenth of the way from real glyphs to a broken model at this size (ink: from the floor to
uniform noise; diversity: from the floor to a collapse, 0). docs/gate.md has the figures.

Without a measured retrain spread (a noise file of fewer than MIN_RETRAINS retrains, such as
the one shipped until benchmarks/gate_noise.py has run on the data) the margin cannot say
what retraining alone moves, and a veto would refuse good retrains at random: the comparison
is then reported, with the estimator-noise margin, as a warning that does not refuse.
"""
import math
from typing import Any, Dict, Optional

import scipy.stats

from cns_vaegan.components.evaluator import retrain_noise as retrain_noise_file

# Defaults, measured on the built-in eval split (benchmarks/reference_models.py,
# benchmarks/gate_noise.py; docs/gate.md has the tables). Reconstruction: beat the mean glyph
# by about what a projection onto a quarter of the code size does (PCA-25: +1.9 dB, +0.36 SSIM)
# and name the character 95 % of the time (PCA-25: 65.9 %, PCA-50: 98.8 %). Samples: their
# distance above real glyphs at the same size stays below the linear generative model's
# (PCA-100 with Gaussian codes) and every broken reference's.
DEFAULT_THRESHOLDS = {
    'serving.all_ok': {'min': 1.0},
    'reconstruction.psnr.mean': {'above': 'mean_glyph', 'by': 1.5},
    'reconstruction.ssim.mean': {'above': 'mean_glyph', 'by': 0.35},
    'identity.top1': {'min': 0.95},
    'samples.swd.mean': {'max_over_floor_in_quadrature': 27.0},
    'samples.fd_pca': {'max_over_floor': 25.0},
    'samples.ink_w1': {'max_over_floor_in_quadrature': 0.03},
    'samples.diversity': {'min': 0.5},
}
# The figures compared with the latest blessed model, whatever the thresholds say.
REGRESSION_METRICS = ('reconstruction.psnr.mean', 'reconstruction.ssim.mean', 'identity.top1',
                      'samples.swd.mean', 'samples.fd_pca', 'samples.ink_w1', 'samples.diversity')
LOWER_IS_BETTER = frozenset({'samples.swd.mean', 'samples.fd_pca', 'samples.ink_w1',
                             'reconstruction.mse.mean'})
# Guards: count in the regression check only beyond a practical margin (see the docstring).
GUARDS = {'samples.ink_w1': 'ceiling', 'samples.diversity': 'collapse'}
GUARD_SHARE = 0.1
DEFAULT_FALSE_REFUSAL_RATE = 0.01



def merged_thresholds(overrides: Optional[Dict[str, Any]]) -> Dict[str, Dict[str, float]]:
  """The defaults with `overrides` on top, metric by metric; a metric mapped to null is dropped."""
  merged = dict(DEFAULT_THRESHOLDS)
  for path, bounds in (overrides or {}).items():
    if bounds is None:
      merged.pop(path, None)
    elif not isinstance(bounds, dict):
      raise ValueError(f'thresholds: {path} must map to bounds such as {{"min": 0.5}}, got {bounds!r}')
    else:
      merged[path] = bounds
  return merged


def lookup(report: Dict[str, Any], path: str, model: str = 'candidate') -> Optional[float]:
  """The value at `path` for `model` (a dotted path: 'candidate', 'baseline',
  'baselines.mean_glyph', 'sanity.floor'); serving.* is top-level."""
  node: Any = report
  for key in ([] if path.startswith('serving.') else model.split('.')) + path.split('.'):
    if not isinstance(node, dict) or key not in node:
      return None
    node = node[key]
  return float(node)


def _finite(value: Optional[float]) -> bool:
  return value is not None and math.isfinite(value)


def _bound_failures(report, path, value, bounds):
  reasons = []
  if 'min' in bounds and value < bounds['min']:
    reasons.append(f'{path} = {value:.4g} is below the threshold {bounds["min"]:g}')
  if 'max' in bounds and value > bounds['max']:
    reasons.append(f'{path} = {value:.4g} is above the threshold {bounds["max"]:g}')
  if 'above' in bounds:
    reference = lookup(report, path, f'baselines.{bounds["above"]}')
    by = bounds.get('by', 0.0)
    if not _finite(reference):
      reasons.append(f'{path}: the {bounds["above"]} baseline could not be measured ({reference})')
    elif not value > reference + by:
      reasons.append(f'{path} = {value:.4g} does not beat the {bounds["above"]} baseline '
                     f'({reference:.4g}) by more than {by:g}')
  for kind in ('max_over_floor', 'max_over_floor_in_quadrature'):
    if kind not in bounds:
      continue
    floor = lookup(report, path, 'sanity.floor')
    if not _finite(floor):
      reasons.append(f'{path}: the real-glyph floor could not be measured ({floor})')
      continue
    over = over_floor(value, floor, quadrature=kind.endswith('quadrature'))
    if over > bounds[kind]:
      reasons.append(f'{path} = {value:.4g} is {over:.4g} beyond what other real glyphs score at this '
                     f'size ({floor:.4g}){" in quadrature" if kind.endswith("quadrature") else ""}, more '
                     f'than {bounds[kind]:g}')
  return reasons


def over_floor(value: float, floor: float, quadrature: bool) -> float:
  """How far `value` is beyond the real-glyph floor: value − floor, or sqrt(value² − floor²)."""
  if quadrature:
    return math.sqrt(max(value ** 2 - floor ** 2, 0.0))
  return value - floor


def _guard_margin(report, path) -> float:
  """A tenth of the way from real glyphs to a broken model at this eval size."""
  floor = lookup(report, path, 'sanity.floor')
  broken = lookup(report, path, 'sanity.ceiling') if GUARDS[path] == 'ceiling' else 0.0
  if not (_finite(floor) and _finite(broken)):
    return 0.0
  return GUARD_SHARE * abs(broken - floor)


MIN_RETRAINS = 2  # a spread needs two retrains; the t quantile pays for having few


def retrain_noise_measured(retrain_noise: Dict[str, Any]) -> bool:
  """Whether the noise file holds a spread measured across retrains (it then vetoes)."""
  return int(retrain_noise.get('retrains', 0)) >= MIN_RETRAINS and bool(retrain_noise.get('metrics'))


def regression_margins(report: Dict[str, Any], retrain_noise: Dict[str, Any],
                       false_refusal_rate: float) -> Dict[str, Dict[str, float]]:
  """{path: {candidate, baseline, worse_by, margin, ...}} of REGRESSION_METRICS both models have."""
  compared = {}
  measurable = [p for p in REGRESSION_METRICS
                if _finite(lookup(report, p)) and _finite(lookup(report, p, 'baseline'))]
  if not measurable:
    return compared
  retrains = int(retrain_noise.get('retrains', 0))
  per_metric = false_refusal_rate / len(measurable)
  quantile = (float(scipy.stats.t.ppf(1.0 - per_metric, retrains - 1)) if retrain_noise_measured(retrain_noise)
              else float(scipy.stats.norm.ppf(1.0 - per_metric)))
  for path in measurable:
    new, old = lookup(report, path), lookup(report, path, 'baseline')
    worse_by = (new - old) if path in LOWER_IS_BETTER else (old - new)
    retrain_sd = float(retrain_noise.get('metrics', {}).get(path, {}).get('retrain_sd', 0.0))
    difference_sd = (report.get('estimator_noise', {}).get(path) or {}).get('difference_sd', 0.0)
    margin = quantile * math.sqrt(2.0 * retrain_sd ** 2 + difference_sd ** 2)
    entry = {'candidate': new, 'baseline': old, 'worse_by': worse_by, 'retrain_sd': retrain_sd,
             'difference_sd': difference_sd, 't': quantile, 'noise_margin': margin}
    if path in GUARDS:
      entry['guard_margin'] = _guard_margin(report, path)
      margin = max(margin, entry['guard_margin'])
    entry['margin'] = margin
    entry['regressed'] = worse_by > margin
    compared[path] = entry
  return compared


def judge(report: Dict[str, Any], thresholds: Dict[str, Dict[str, float]],
          retrain_noise: Optional[Dict[str, Any]] = None,
          false_refusal_rate: float = DEFAULT_FALSE_REFUSAL_RATE) -> Dict:
  """The verdict on report['candidate']: {'blessed', 'reasons', 'regression', ...}."""
  reasons = []
  for path, bounds in thresholds.items():
    value = lookup(report, path)
    if not _finite(value):  # NaN would pass every comparison
      reasons.append(f'{path} could not be measured ({value})')
      continue
    reasons += _bound_failures(report, path, value, bounds)
  compared, warnings, vetoes = {}, [], True
  if 'baseline' in report:
    noise = retrain_noise_file.load() if retrain_noise is None else retrain_noise
    vetoes = retrain_noise_measured(noise)
    compared = regression_margins(report, noise, false_refusal_rate)
    for path, entry in compared.items():
      if entry['regressed']:
        text = (f'{path} regressed: {entry["candidate"]:.4g} vs {entry["baseline"]:.4g} for the '
                f'last blessed model, worse by {entry["worse_by"]:.3g}, more than the noise '
                f'margin {entry["margin"]:.3g}')
        if vetoes:
          reasons.append(text)
        else:
          warnings.append(text + ' (not a refusal: the retrain spread is not measured; '
                          'benchmarks/gate_noise.py measures it)')
  return {'blessed': not reasons, 'reasons': reasons, 'warnings': warnings, 'regression': compared,
          'regression_vetoes': vetoes, 'thresholds': thresholds,
          'false_refusal_rate': false_refusal_rate}
