"""GlyphEvaluator: metrics on hand-made cases, blessing, refusal, and the standard Pusher."""
import json
import os

import numpy as np
import pytest
import scipy.stats
import tensorflow as tf
from tfx.components.pusher import executor as pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from cns_vaegan.components.evaluator import baselines, blessing_rules, executor, quality_metrics
from cns_vaegan.components.trainer import export
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN
from conftest import TINY_ARCHITECTURE, rendered_references


@pytest.fixture(scope='module')
def glyphs(font_path):
  """256 glyphs at 16 px in [0, 1]: distribution measures need more than a few dozen."""
  from cns_vaegan.data import render_glyphs
  renderer = render_glyphs.GlyphRenderer(font_path, 16)
  characters = render_glyphs.covered_characters(font_path)[::80][:256]
  return np.stack([np.asarray(renderer.render(c), np.float32)[..., None] / 255.0 for c in characters])


# ------------------------------------------------------------------ the measures
def test_identical_sets_score_perfectly(glyphs):
  per_image = quality_metrics.reconstruction_per_image(glyphs, glyphs)
  np.testing.assert_allclose(per_image['ssim'], 1.0, atol=1e-6)
  np.testing.assert_allclose(per_image['mse'], 0.0)
  space = quality_metrics.PcaSpace(glyphs)
  same = quality_metrics.sample_quality(glyphs, glyphs, space)
  assert same['swd']['mean'] == pytest.approx(0.0, abs=1e-9)
  assert same['fd_pca'] == pytest.approx(0.0, abs=1e-6)
  assert same['ink_w1'] == 0.0
  assert same['diversity'] == pytest.approx(1.0)


def test_noise_against_glyphs_scores_far_worse_than_glyphs_against_glyphs(glyphs):
  noise = np.random.default_rng(0).uniform(0, 1, glyphs.shape).astype(np.float32)
  space = quality_metrics.PcaSpace(glyphs[:128])
  sanity = quality_metrics.sanity_range(glyphs[:128], glyphs[128:], space)
  assert sanity['size'] == 128
  floor, ceiling = sanity['floor']['samples'], sanity['ceiling']['samples']
  assert ceiling['swd']['mean'] > 3 * floor['swd']['mean']
  assert ceiling['fd_pca'] > 3 * floor['fd_pca']
  assert ceiling['ink_w1'] > 3 * floor['ink_w1']
  collapsed = quality_metrics.sample_quality(np.repeat(glyphs[:1], len(glyphs), 0), glyphs, space)
  assert collapsed['diversity'] < 1e-6 < floor['diversity']
  assert quality_metrics.reconstruction_per_image(glyphs, noise)['ssim'].mean() < 0.1


def _identity(reconstructions, own, references):
  return quality_metrics.identity(quality_metrics.identity_ranks(reconstructions, own, references))


def test_identity_finds_each_glyph_and_counts_a_tie_for_its_own(glyphs):
  own = np.arange(len(glyphs))
  assert _identity(glyphs, own, glyphs) == {'top1': 1.0, 'top5': 1.0}
  # Each reconstruction shows its neighbour's glyph: top-1 fails, and top-5 only where
  # the two glyphs happen to be close.
  shifted = _identity(np.roll(glyphs, 1, axis=0), own, glyphs)
  assert shifted['top1'] == 0.0 and shifted['top5'] < 0.2
  # A reference drawn exactly like the own glyph does not count against it.
  duplicated = np.concatenate([glyphs[:4], glyphs[:1]])
  assert _identity(glyphs[:1], np.array([0]), duplicated)['top1'] == 1.0
  # Slight noise keeps the identity; a constant image has none.
  noisy = np.clip(glyphs + np.random.default_rng(0).normal(0, 0.05, glyphs.shape), 0, 1)
  assert _identity(noisy, own, glyphs)['top1'] > 0.95
  constant = np.broadcast_to(glyphs.mean(axis=0), glyphs.shape)
  assert _identity(constant, own, glyphs)['top5'] < 0.05


def test_the_baselines_are_a_constant_and_a_linear_model_fitted_on_train(glyphs):
  train, measured = glyphs[64:], glyphs[:64]
  sets = baselines.GlyphSets(measured=measured, train=train, other_eval=glyphs[:0])
  report = baselines.measure(sets, baselines.reconstructors(train, z_dim=32))
  assert set(report) == {'mean_glyph', 'pca_8', 'pca_16', 'pca_32'}
  mean_mse = np.mean((measured - train.mean(axis=0)) ** 2, axis=(1, 2, 3)).mean()
  assert report['mean_glyph']['reconstruction']['mse']['mean'] == pytest.approx(mean_mse, rel=1e-5)
  assert 'identity' not in report['mean_glyph']
  psnr = [report[f'pca_{k}']['reconstruction']['psnr']['mean'] for k in (8, 16, 32)]
  top1 = [report[f'pca_{k}']['identity']['top1'] for k in (8, 16, 32)]
  assert report['mean_glyph']['reconstruction']['psnr']['mean'] < psnr[0] < psnr[1] < psnr[2]
  assert top1[0] <= top1[1] <= top1[2]
  # Glyphs that are mixtures of 3 glyphs span 2 dimensions around their mean: PCA with 2
  # components gives them back exactly, with 1 it cannot.
  weights = np.random.default_rng(0).dirichlet([1, 1, 1], 40)
  mixtures = np.einsum('nk,khwc->nhwc', weights, glyphs[:3]).astype(np.float32)
  space = quality_metrics.PcaSpace(mixtures, 2)
  np.testing.assert_allclose(space.reconstruct(mixtures), mixtures, atol=1e-5)
  assert np.abs(space.reconstruct(mixtures, 1) - mixtures).max() > 0.1


def test_worst_decile_follows_the_direction_of_the_metric():
  values = np.arange(1, 21, dtype=np.float64)
  assert quality_metrics.mean_and_worst_decile(values, higher_is_better=True)['worst_decile'] == 1.5
  assert quality_metrics.mean_and_worst_decile(values, higher_is_better=False)['worst_decile'] == 19.5


def test_laplacian_pyramid_has_a_level_per_octave_down_to_16_px():
  levels = quality_metrics.laplacian_pyramid(np.zeros((2, 64, 64, 1), np.float32))
  assert [level.shape[1] for level in levels] == [64, 32, 16]


# -------------------------------------------------------------------- the rules
def _report(ssim, swd, baseline=None, difference_sd=0.0):
  report = {'serving': {'all_ok': 1.0},
            'candidate': {'reconstruction': {'ssim': {'mean': ssim}}, 'samples': {'swd': {'mean': swd}}}}
  if baseline:
    report['baseline'] = {'reconstruction': {'ssim': {'mean': baseline[0]}},
                          'samples': {'swd': {'mean': baseline[1]}}}
    report['estimator_noise'] = {'reconstruction.ssim.mean': {'difference_sd': difference_sd},
                                 'samples.swd.mean': {'difference_sd': difference_sd}}
  return report


RULES = {'serving.all_ok': {'min': 1}, 'reconstruction.ssim.mean': {'min': 0.5},
         'samples.swd.mean': {'max': 100}}
# Two metrics, each moving by 0.01 (SSIM) and 1 (SWD) between retrains, known from 6 retrains.
NOISE = {'retrains': 6, 'metrics': {'reconstruction.ssim.mean': {'retrain_sd': 0.01},
                                    'samples.swd.mean': {'retrain_sd': 1.0}}}


def test_thresholds_bless_and_refuse_with_reasons():
  assert blessing_rules.judge(_report(0.6, 50), RULES)['blessed']
  refused = blessing_rules.judge(_report(0.4, 150), RULES)
  assert not refused['blessed'] and len(refused['reasons']) == 2
  assert 'reconstruction.ssim.mean = 0.4 is below the threshold 0.5' in refused['reasons'][0]


def test_a_bound_above_a_reference_baseline():
  rules = {'reconstruction.ssim.mean': {'above': 'mean_glyph', 'by': 0.2}}
  report = _report(0.5, 50)
  report['baselines'] = {'mean_glyph': {'reconstruction': {'ssim': {'mean': 0.25}}}}
  assert blessing_rules.judge(report, rules)['blessed']
  report['baselines']['mean_glyph']['reconstruction']['ssim']['mean'] = 0.35
  refused = blessing_rules.judge(report, rules)
  assert refused['reasons'] == ['reconstruction.ssim.mean = 0.5 does not beat the mean_glyph '
                                'baseline (0.35) by more than 0.2']
  del report['baselines']
  assert 'could not be measured' in blessing_rules.judge(report, rules)['reasons'][0]


def test_a_bound_over_the_real_glyph_floor_follows_the_floor_at_the_measured_size():
  rules = {'samples.swd.mean': {'max_over_floor_in_quadrature': 20},
           'samples.fd_pca': {'max_over_floor': 5}}
  report = _report(0.6, 30)
  report['candidate']['samples']['fd_pca'] = 12.0
  report['sanity'] = {'floor': {'samples': {'swd': {'mean': 25.0}, 'fd_pca': 9.0}}}  # a small eval set
  assert blessing_rules.judge(report, rules)['blessed']  # sqrt(30² − 25²) = 16.6, 12 − 9 = 3
  report['sanity']['floor']['samples'] = {'swd': {'mean': 8.0}, 'fd_pca': 1.0}  # a large one
  refused = blessing_rules.judge(report, rules)
  assert refused['reasons'] == [
      'samples.swd.mean = 30 is 28.91 beyond what other real glyphs score at this size (8) in '
      'quadrature, more than 20',
      'samples.fd_pca = 12 is 11 beyond what other real glyphs score at this size (1), more than 5']


def test_a_metric_that_could_not_be_measured_refuses_the_model():
  refused = blessing_rules.judge(_report(float('nan'), 50), RULES)
  assert not refused['blessed'] and 'reconstruction.ssim.mean could not be measured' in refused['reasons'][0]


def test_thresholds_given_by_the_user_merge_with_the_defaults():
  merged = blessing_rules.merged_thresholds({'identity.top1': {'min': 0.9}, 'samples.fd_pca': None})
  assert merged['identity.top1'] == {'min': 0.9} and 'samples.fd_pca' not in merged
  assert merged['reconstruction.ssim.mean'] == blessing_rules.DEFAULT_THRESHOLDS['reconstruction.ssim.mean']
  with pytest.raises(ValueError, match='identity.top1 must map to bounds'):
    blessing_rules.merged_thresholds({'identity.top1': 0.9})


def test_a_regression_counts_only_beyond_the_retrain_and_measurement_noise():
  # t quantile: 5 degrees of freedom at 1 - 0.01 / 2; margin = t * sqrt(2 * retrain_sd^2 + sd^2).
  t = scipy.stats.t.ppf(1 - 0.01 / 2, 5)
  margin = t * np.sqrt(2 * 0.01 ** 2)
  inside = blessing_rules.judge(_report(0.70 - 0.9 * margin, 50, baseline=(0.70, 50)), RULES, NOISE)
  assert inside['blessed'], inside['reasons']
  assert inside['regression']['reconstruction.ssim.mean']['margin'] == pytest.approx(margin)
  beyond = blessing_rules.judge(_report(0.70 - 1.1 * margin, 50, baseline=(0.70, 50)), RULES, NOISE)
  assert not beyond['blessed'] and beyond['reasons'][0].startswith('reconstruction.ssim.mean regressed')
  # Lower is better for SWD; better figures never count against a model.
  worse_swd = blessing_rules.judge(_report(0.7, 50 + 1.1 * t * np.sqrt(2), baseline=(0.7, 50)), RULES, NOISE)
  assert not worse_swd['blessed'] and worse_swd['reasons'][0].startswith('samples.swd.mean regressed')
  assert blessing_rules.judge(_report(0.9, 10, baseline=(0.7, 50)), RULES, NOISE)['blessed']
  # The same drop, measured on fewer glyphs (a larger difference_sd), is within the noise.
  noisy = blessing_rules.judge(_report(0.70 - 1.1 * margin, 50, baseline=(0.70, 50), difference_sd=0.02),
                               RULES, NOISE)
  assert noisy['blessed'], noisy['reasons']
  # A lower false-refusal rate asks for more evidence.
  assert blessing_rules.judge(_report(0.70 - 1.1 * margin, 50, baseline=(0.70, 50)), RULES, NOISE,
                              false_refusal_rate=0.0001)['blessed']


def test_without_a_measured_retrain_spread_a_regression_warns_and_does_not_refuse():
  worse = _report(0.60, 50, baseline=(0.70, 50))
  for unmeasured in ({'retrains': 0, 'metrics': {}}, {'retrains': 1, 'metrics': NOISE['metrics']}):
    verdict = blessing_rules.judge(worse, RULES, unmeasured)
    assert verdict['blessed'] and not verdict['regression_vetoes']
    assert verdict['warnings'][0].startswith('reconstruction.ssim.mean regressed')
    assert 'not a refusal' in verdict['warnings'][0]
  measured = blessing_rules.judge(worse, RULES, NOISE)
  assert not measured['blessed'] and measured['regression_vetoes'] and not measured['warnings']


def test_a_guard_counts_only_beyond_a_tenth_of_the_way_to_a_broken_model():
  rules = {'samples.ink_w1': {'max': 1.0}}
  report = {'serving': {'all_ok': 1.0}, 'candidate': {'samples': {'ink_w1': 0.0085}},
            'baseline': {'samples': {'ink_w1': 0.0079}},
            'estimator_noise': {'samples.ink_w1': {'difference_sd': 1e-5}},
            'sanity': {'floor': {'samples': {'ink_w1': 0.003}}, 'ceiling': {'samples': {'ink_w1': 0.31}}}}
  noise = {'retrains': 6, 'metrics': {'samples.ink_w1': {'retrain_sd': 1e-5}}}
  verdict = blessing_rules.judge(report, rules, noise)
  assert verdict['blessed'], verdict['reasons']  # beyond the noise, but 0.0006 is no regression
  assert verdict['regression']['samples.ink_w1']['margin'] == pytest.approx(0.1 * (0.31 - 0.003))
  report['candidate']['samples']['ink_w1'] = 0.05
  assert not blessing_rules.judge(report, rules, noise)['blessed']


class _StandIn:
  """A model measured through the evaluator's own code: reconstructions and samples given."""

  def __init__(self, reconstruct, sample):
    self.reconstruct_pixels, self._sample = reconstruct, sample

  def sample(self, n, seed):
    del seed
    return self._sample(n)


def _judged(glyphs, model):
  """The default gate's verdict on `model`, measured as the executor measures a candidate."""
  train, measured = glyphs[96:], glyphs[:96]
  sets = baselines.GlyphSets(measured=measured, train=train, other_eval=glyphs[:0])
  space = quality_metrics.PcaSpace(measured)
  report = {'serving': {'all_ok': 1.0},
            'candidate': executor.measure(model, sets, space, 96, 0)[0],
            'baselines': baselines.measure(sets, baselines.reconstructors(train, z_dim=32)),
            'sanity': quality_metrics.sanity_range(measured, sets.other_real(96), space)}
  return blessing_rules.judge(report, blessing_rules.DEFAULT_THRESHOLDS)


def _reasons_about(verdict, *paths):
  return {path for path in paths if any(reason.startswith(path) for reason in verdict['reasons'])}


def test_the_default_gate_refuses_a_constant_model(glyphs):
  mean = glyphs[96:].mean(axis=0)
  constant = _StandIn(lambda x: np.broadcast_to(mean, x.shape), lambda n: np.repeat(mean[None], n, 0))
  verdict = _judged(glyphs, constant)
  assert not verdict['blessed']
  assert _reasons_about(verdict, 'reconstruction.psnr.mean', 'reconstruction.ssim.mean',
                        'identity.top1', 'samples.diversity') == {
                            'reconstruction.psnr.mean', 'reconstruction.ssim.mean', 'identity.top1',
                            'samples.diversity'}


def test_the_default_gate_refuses_collapsed_samples_however_good_the_reconstructions(glyphs):
  collapsed = _StandIn(lambda x: x, lambda n: np.repeat(glyphs[:1], n, 0))
  verdict = _judged(glyphs, collapsed)
  assert not verdict['blessed']
  assert _reasons_about(verdict, 'reconstruction.psnr.mean', 'identity.top1') == set()
  assert 'samples.diversity' in _reasons_about(verdict, 'samples.diversity')


def test_the_default_gate_blesses_real_glyphs_and_refuses_noise_and_black(glyphs):
  rng = np.random.default_rng(0)
  # A near-perfect model at a small eval size (96 glyphs): slightly noisy reconstructions, and
  # as samples other real glyphs, which SWD and FD score well above 0 at this size: the
  # bounds over the real-glyph floor at the same size hold for them.
  noisy = lambda x: np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32)
  good = _StandIn(noisy, lambda n: glyphs[-n:])
  assert _judged(glyphs, good)['blessed'], _judged(glyphs, good)['reasons']
  noise = _StandIn(lambda x: rng.uniform(0, 1, x.shape).astype(np.float32),
                   lambda n: rng.uniform(0, 1, (n,) + glyphs.shape[1:]).astype(np.float32))
  black = _StandIn(np.zeros_like, lambda n: np.zeros((n,) + glyphs.shape[1:], np.float32))
  for broken in (noise, black):
    verdict = _judged(glyphs, broken)
    assert not verdict['blessed']
    assert {'reconstruction.psnr.mean', 'identity.top1'} <= _reasons_about(
        verdict, 'reconstruction.psnr.mean', 'identity.top1')


# ------------------------------------------------------- executor and standard Pusher
def _model_artifact(tmp_path, name, broken=False, artifact_id=1):
  """A Model artifact holding a tiny SavedModel; `broken` saturates the decoder to white."""
  tf.keras.utils.set_random_seed(5)
  model = VAEGAN(Architecture(**TINY_ARCHITECTURE), TrainingConfig(batch_size=4),
                 tf.distribute.get_strategy())
  if broken:
    out = model.decoder.get_layer('dec_out')
    kernel, bias = out.get_weights()
    out.set_weights([np.zeros_like(kernel), np.full_like(bias, 10.0)])
  artifact = standard_artifacts.Model()
  artifact.uri = str(tmp_path / name)
  artifact.id = artifact_id
  export.export_saved_model(model, os.path.join(artifact.uri, 'Format-Serving'),
                            references=rendered_references())
  return artifact


def _examples_artifact(glyph_tfrecords):
  artifact = standard_artifacts.Examples()
  artifact.uri = os.path.dirname(os.path.dirname(glyph_tfrecords['train']))
  artifact.split_names = artifact_utils.encode_split_names(['train', 'eval'])
  return artifact


def _evaluate(tmp_path, glyph_tfrecords, model, baseline=None, thresholds=None):
  evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
  evaluation.uri, blessing.uri = str(tmp_path / 'evaluation'), str(tmp_path / 'blessing')
  os.makedirs(evaluation.uri)
  os.makedirs(blessing.uri)
  executor.Executor().Do(
      {'examples': [_examples_artifact(glyph_tfrecords)], 'model': [model],
       'baseline_model': [baseline] if baseline else []},
      {'evaluation': [evaluation], 'blessing': [blessing]},
      {'thresholds': json.dumps(thresholds or blessing_rules.DEFAULT_THRESHOLDS),
       'regression': json.dumps({'bootstrap_replicates': 8, 'retrain_noise': NOISE}),
       'max_examples': 64, 'num_samples': 16,
       'seed': 0,
       'arithmetic_tuples': json.dumps([['酪', '鉻', '鉸'], ['你', '妳', '如']], ensure_ascii=False)})
  report = json.load(open(os.path.join(evaluation.uri, 'metrics.json'), encoding='utf-8'))
  return report, blessing, evaluation


def _push(tmp_path, model, blessing):
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / 'pushed')
  base = str(tmp_path / 'serving' / 'cns_vaegan')
  pusher_executor.Executor().Do(
      {'model': [model], 'model_blessing': [blessing]}, {'pushed_model': [pushed]},
      {'push_destination': proto_utils.proto_to_json(pusher_pb2.PushDestination(
          filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base)))})
  return base, pushed


def test_a_broken_model_is_not_blessed_and_the_standard_pusher_does_not_push_it(
    tmp_path, glyph_tfrecords):
  broken = _model_artifact(tmp_path, 'broken', broken=True)
  report, blessing, evaluation = _evaluate(tmp_path, glyph_tfrecords, broken)
  assert report['serving']['all_ok'] == 1.0  # it serves, it is just bad
  assert not report['blessing']['blessed']
  assert any('reconstruction.psnr.mean' in reason for reason in report['blessing']['reasons'])
  assert blessing.get_int_custom_property('blessed') == 0
  assert os.path.exists(os.path.join(blessing.uri, 'NOT_BLESSED'))
  base, pushed = _push(tmp_path, broken, blessing)
  assert pushed.get_int_custom_property('pushed') == 0 and not os.path.exists(base)
  # The figures are written whatever the verdict, for people to look at.
  assert os.path.exists(os.path.join(evaluation.uri, 'arithmetic_酪-鉻+鉸.png'))
  assert 'arithmetic_你-妳+如' not in report['figures']  # 如 is not among the test glyphs


def test_a_blessed_model_is_pushed_in_the_tf_serving_layout(tmp_path, glyph_tfrecords):
  model = _model_artifact(tmp_path, 'model')
  report, blessing, _ = _evaluate(tmp_path, glyph_tfrecords, model,
                                  thresholds={'serving.all_ok': {'min': 1}})
  assert report['blessing']['blessed'] and blessing.get_int_custom_property('blessed') == 1
  assert blessing.get_int_custom_property('current_model_id') == model.id
  assert set(report['serving']['signatures'].values()) == {'ok'}
  for key in ('floor', 'ceiling'):
    assert set(report['sanity'][key]['samples']) == {'swd', 'fd_pca', 'ink_w1', 'diversity'}
  base, pushed = _push(tmp_path, model, blessing)
  [version] = os.listdir(base)
  assert version.isdigit() and pushed.get_int_custom_property('pushed') == 1
  assert os.path.isfile(os.path.join(base, version, 'saved_model.pb'))
  assert os.path.isdir(os.path.join(base, version, 'variables'))


def test_a_regression_against_the_blessed_baseline_is_refused(tmp_path, glyph_tfrecords):
  baseline = _model_artifact(tmp_path, 'baseline', artifact_id=1)
  candidate = _model_artifact(tmp_path, 'candidate', broken=True, artifact_id=2)
  permissive = {'serving.all_ok': {'min': 1}, 'reconstruction.psnr.mean': {'min': 0.0}}
  report, blessing, _ = _evaluate(tmp_path, glyph_tfrecords, candidate, baseline, permissive)
  assert 'baseline' in report and not report['blessing']['blessed']
  assert 'reconstruction.psnr.mean regressed' in report['blessing']['reasons'][0]
  assert blessing.get_int_custom_property('baseline_model_id') == 1


def test_a_model_missing_signatures_is_refused_not_crashed_on(tmp_path, glyph_tfrecords):
  model = _model_artifact(tmp_path, 'partial')
  path = os.path.join(model.uri, 'Format-Serving')
  loaded = tf.saved_model.load(path)
  tf.saved_model.save(loaded, path, signatures={k: loaded.signatures[k] for k in ('encode', 'decode')})
  report, blessing, _ = _evaluate(tmp_path, glyph_tfrecords, model)
  assert report['serving']['signatures']['sample'] == 'missing'
  assert not report['blessing']['blessed'] and blessing.get_int_custom_property('blessed') == 0
