"""GlyphEvaluator's executor: measure the candidate SavedModel, compare, bless or refuse.

It evaluates the exported SavedModel itself, through its signatures, so what is
measured is exactly what TF Serving will serve. Outputs follow TFX's conventions so the
standard Pusher and LatestBlessedModelStrategy understand them: the ModelBlessing
artifact carries `blessed` (1/0), `current_model`/`current_model_id`, and a BLESSED or
NOT_BLESSED file; the ModelEvaluation artifact holds metrics.json and the figures.
"""
import json
import os
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from cns_vaegan.components import glyph_examples, glyph_figures
from cns_vaegan.components.evaluator import baselines, blessing_rules, paired_comparison, quality_metrics

EXAMPLES_KEY, MODEL_KEY, BASELINE_MODEL_KEY = 'examples', 'model', 'baseline_model'
EVALUATION_KEY, BLESSING_KEY = 'evaluation', 'blessing'
METRICS_FILE = 'metrics.json'
_BATCH = 256


REQUIRED_SIGNATURES = ('encode', 'encode_pixels', 'decode', 'reconstruct', 'arithmetic',
                       'interpolate', 'sample', 'nearest', 'explore', 'serving_default')


class ServedGlyphModel:
  """A SavedModel with the trainer's signatures, called batch by batch with numpy in and out."""

  def __init__(self, path: str):
    self.path = path
    self.signatures = tf.saved_model.load(path).signatures
    self.missing = [name for name in REQUIRED_SIGNATURES if name not in self.signatures]
    if 'decode' not in self.signatures or 'encode' not in self.signatures:
      raise ValueError(f'{path}: the SavedModel lacks the encode and decode signatures')
    _, self.height, self.width, self.channels = self.signatures['decode'].structured_outputs[
        'images'].shape
    self.z_dim = self.signatures['encode'].structured_outputs['z'].shape[1]

  def call(self, name: str, **inputs) -> Dict[str, np.ndarray]:
    outputs = self.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}

  def batched(self, name: str, output: str, **inputs: np.ndarray) -> np.ndarray:
    """One output of a signature over arrays of any length, called _BATCH rows at a time."""
    count = len(next(iter(inputs.values())))
    return np.concatenate([
        self.call(name, **{k: v[start:start + _BATCH] for k, v in inputs.items()})[output]
        for start in range(0, count, _BATCH)])

  def reconstruct_pixels(self, pixels: np.ndarray) -> np.ndarray:
    return self.batched('decode', 'images', z=self.batched('encode_pixels', 'z', pixels=pixels))

  def sample(self, n: int, seed: int) -> np.ndarray:
    return np.concatenate([self.call('sample', n=np.int32(min(_BATCH, n - s)), seed=np.int64(seed + s))
                           ['images'] for s in range(0, n, _BATCH)])


def serving_check(model: ServedGlyphModel, pngs: List[bytes]) -> Dict[str, Any]:
  """Every signature answers on eval glyphs with finite outputs of the documented shapes."""
  n, z = len(pngs), model.z_dim
  image = (model.height, model.width, model.channels)
  pixels = np.zeros((n,) + image, np.float32)
  calls = {
      'encode': (dict(images=np.array(pngs)), {'z': (n, z)}),
      'encode_pixels': (dict(pixels=pixels), {'z': (n, z)}),
      'decode': (dict(z=np.zeros((n, z), np.float32)), {'images': (n,) + image, 'png_bytes': (n,)}),
      'reconstruct': (dict(images=np.array(pngs)), {'images': (n,) + image}),
      'serving_default': (dict(images=np.array(pngs)), {'images': (n,) + image}),
      'arithmetic': (dict(a=np.array(pngs), b=np.array(pngs[::-1]), c=np.array(pngs),
                          coefficients=np.array([], np.float32)), {'images': (n, 5) + image}),
      'interpolate': (dict(start=np.array(pngs), end=np.array(pngs[::-1]), steps=np.int32(4)),
                      {'images': (n, 6) + image}),
      'sample': (dict(n=np.int32(n), seed=np.int64(0)), {'images': (n,) + image}),
      'nearest': (dict(images=np.array(pngs), k=np.int32(1)), {'characters': (n, 1)}),
      'explore': (dict(images=np.array(pngs), weights=np.eye(n, dtype=np.float32),
                       coordinates=np.ones((n, 2), np.float32)), {'images': (n,) + image}),
  }
  results = {name: 'missing' for name in model.missing}
  for name, (inputs, expected) in calls.items():
    if name in results:
      continue
    try:
      outputs = model.call(name, **inputs)
      problems = [f'{key} has shape {outputs[key].shape}, expected {shape}'
                  for key, shape in expected.items() if outputs[key].shape != shape]
      problems += [f'{key} is not finite' for key, value in outputs.items()
                   if value.dtype.kind == 'f' and not np.all(np.isfinite(value))]
      results[name] = 'ok' if not problems else '; '.join(problems)
    except Exception as error:  # pylint: disable=broad-except  (any failure is a finding)
      results[name] = f'error: {type(error).__name__}: {str(error).splitlines()[0][:300]}'
  return {'signatures': results, 'all_ok': float(all(v == 'ok' for v in results.values()))}


def measure(model, glyphs: baselines.GlyphSets, space: quality_metrics.PcaSpace,
            num_samples: int, seed: int) -> Tuple[Dict[str, Any], paired_comparison.Measured]:
  """Reconstruction of the eval glyphs (quality and identity); the `sample` signature's glyphs
  against them. Returns the figures, and the per-glyph values the bootstrap resamples."""
  real = glyphs.measured
  reconstructed = model.reconstruct_pixels(real)
  per_image = quality_metrics.reconstruction_per_image(real, reconstructed)
  ranks = glyphs.identity_ranks(reconstructed)
  figures = {
      'reconstruction': quality_metrics.summarize_reconstruction(per_image),
      'identity': quality_metrics.identity(ranks),
      'samples': quality_metrics.sample_quality(model.sample(num_samples, seed), real[:num_samples],
                                                space, seed),
  }
  return figures, paired_comparison.Measured(model, paired_comparison.per_glyph_figures(per_image, ranks))


def read_glyph_sets(examples: types.Artifact, size: int, channels: int, max_examples: int
                    ) -> baselines.GlyphSets:
  """Every ingested glyph in [0, 1]: the first `max_examples` eval glyphs are the measured ones."""
  def split(name):
    pattern = [os.path.join(artifact_utils.get_split_uri([examples], name), '*')]
    images = [batch[glyph_examples.IMAGE] for batch in
              glyph_examples.read_examples(pattern, size, channels).batch(4096).as_numpy_iterator()]
    return (np.concatenate(images) + 1.0) / 2.0
  evaluation = split('eval')
  return baselines.GlyphSets(measured=evaluation[:max_examples], other_eval=evaluation[max_examples:],
                             train=split('train'))


def find_glyphs(patterns: List[str], size: int, channels: int, characters: set) -> Dict[str, np.ndarray]:
  """{character: image in [0, 1]} for the wanted characters present in the examples."""
  found = {}
  for example in glyph_examples.read_examples(patterns, size, channels).as_numpy_iterator():
    character = example[glyph_examples.CHARACTER].decode('utf-8')
    if character in characters and character not in found:
      found[character] = (example[glyph_examples.IMAGE] + 1.0) / 2.0
  return found


def write_figures(model: ServedGlyphModel, glyphs: baselines.GlyphSets,
                  pca: Callable[[np.ndarray], np.ndarray], examples: types.Artifact,
                  out_dir: str, tuples: List[List[str]], seed: int) -> Dict[str, str]:
  """The seed's figures from the candidate: reconstructions, samples, interpolation, arithmetic;
  and the candidate's reconstructions beside the PCA baseline's with the model's code size."""
  unit = glyph_figures.from_unit_range
  figures = {}
  real = glyphs.measured
  shown = real[:32]
  reconstructed = model.reconstruct_pixels(shown)
  pairs = np.stack([shown, reconstructed], 1).reshape((-1,) + shown.shape[1:])
  figures['reconstructions'] = glyph_figures.grid(unit(pairs), columns=16)
  rows = [unit(part[i:i + 16]) for i in range(0, len(shown), 16)
          for part in (shown, reconstructed, pca(shown))]
  figures[f'reconstructions_vs_pca_{model.z_dim}'] = glyph_figures.panel(rows)
  figures['samples'] = glyph_figures.grid(unit(model.sample(64, seed)), columns=8)
  pngs = [glyph_figures.png_bytes(unit(image)) for image in real[:2]]
  strip = model.call('interpolate', start=np.array(pngs[:1]), end=np.array(pngs[1:2]),
                     steps=np.int32(8))['images'][0]
  figures['interpolation'] = glyph_figures.grid(unit(strip), columns=len(strip))
  wanted = {c for t in tuples for c in t}
  patterns = [os.path.join(artifact_utils.get_split_uri([examples], split), '*')
              for split in artifact_utils.decode_split_names(examples.split_names)]
  glyphs = find_glyphs(patterns, model.height, model.channels, wanted) if wanted else {}
  for a, b, c in tuples:
    if not all(ch in glyphs for ch in (a, b, c)):
      logging.info('Arithmetic %s-%s+%s skipped: not every character is in the examples', a, b, c)
      continue
    inputs = [glyph_figures.png_bytes(unit(glyphs[ch])) for ch in (a, b, c)]
    out = model.call('arithmetic', a=np.array(inputs[:1]), b=np.array(inputs[1:2]),
                     c=np.array(inputs[2:]), coefficients=np.array([], np.float32))
    figures[f'arithmetic_{a}-{b}+{c}'] = glyph_figures.arithmetic_panel(
        np.stack([glyphs[ch] for ch in (a, b, c)]), out)
  paths = {}
  for name, image in figures.items():
    paths[name] = glyph_figures.save_png(image, os.path.join(out_dir, f'{name}.png'))
  return paths


class Executor(base_executor.BaseExecutor):
  """Measures the candidate (and the baseline, if any), writes the evaluation, blesses or not."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
    model_artifact = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
    blessed_models = input_dict.get(BASELINE_MODEL_KEY) or []
    baseline_artifact: Optional[types.Artifact] = blessed_models[0] if blessed_models else None
    evaluation = artifact_utils.get_single_instance(output_dict[EVALUATION_KEY])
    blessing = artifact_utils.get_single_instance(output_dict[BLESSING_KEY])
    thresholds = json.loads(exec_properties['thresholds'])
    regression = json.loads(exec_properties.get('regression') or '{}')
    tuples = json.loads(exec_properties.get('arithmetic_tuples') or '[]')
    seed, num_samples = int(exec_properties['seed']), int(exec_properties['num_samples'])

    model = ServedGlyphModel(path_utils.serving_model_path(model_artifact.uri))
    glyphs = read_glyph_sets(examples, model.height, model.channels,
                             int(exec_properties['max_examples']))
    real = glyphs.measured
    num_samples = min(num_samples, len(real))
    space = quality_metrics.PcaSpace(real)
    pngs = [glyph_figures.png_bytes(glyph_figures.from_unit_range(x)) for x in real[:4]]

    report = {'num_eval_examples': int(len(real)), 'num_samples': num_samples,
              'num_identity_references': int(len(glyphs.references)),
              'serving': serving_check(model, pngs)}
    candidate = baseline = None
    if report['serving']['all_ok']:
      report['candidate'], candidate = measure(model, glyphs, space, num_samples, seed)
    fitted = baselines.reconstructors(glyphs.train, model.z_dim)  # PCA fitted once, on train
    report['baselines'] = baselines.measure(glyphs, fitted)
    report['sanity'] = quality_metrics.sanity_range(real[:num_samples], glyphs.other_real(num_samples, seed),
                                                    space, seed)
    if candidate and baseline_artifact is not None and baseline_artifact.id != model_artifact.id:
      baseline_model = ServedGlyphModel(path_utils.serving_model_path(baseline_artifact.uri))
      report['baseline'], baseline = measure(baseline_model, glyphs, space, num_samples, seed)
      report['baseline_model'] = baseline_artifact.uri
    if candidate:
      replicates = int(regression.get('bootstrap_replicates', paired_comparison.DEFAULT_REPLICATES))
      report['estimator_noise'] = paired_comparison.spreads(candidate, real, space, num_samples, seed,
                                                            baseline, replicates)
      report['estimator_noise_replicates'] = replicates
    decision = blessing_rules.judge(
        report, thresholds, regression.get('retrain_noise'),
        float(regression.get('false_refusal_rate', blessing_rules.DEFAULT_FALSE_REFUSAL_RATE)))
    report['blessing'] = decision
    if report['serving']['all_ok']:
      report['figures'] = write_figures(model, glyphs, fitted[f'pca_{model.z_dim}'], examples,
                                        evaluation.uri, tuples, seed)
    io_utils.write_string_file(os.path.join(evaluation.uri, METRICS_FILE),
                               json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True))

    blessed = decision['blessed']
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                     constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE)
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY,
                                        model_artifact.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY,
                                     model_artifact.id)
    if 'baseline' in report:
      blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                          baseline_artifact.uri)
      blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY,
                                       baseline_artifact.id)
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY,
                                        '; '.join(decision['reasons'])[:1000] or 'all checks passed')
    io_utils.write_string_file(os.path.join(
        blessing.uri, constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME), '')
    logging.info('GlyphEvaluator: %s (%s)', 'BLESSED' if blessed else 'NOT BLESSED',
                 '; '.join(decision['reasons']) or 'all checks passed')
    for warning in decision.get('warnings', []):
      logging.warning('GlyphEvaluator: %s', warning)
