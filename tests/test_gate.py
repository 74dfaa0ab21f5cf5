"""The blessing gate as it runs: models trained here, judged by the Evaluator's executor.

Nothing here reads a committed report: each test trains what it judges, with the default
recipe (configs.RECIPE) on the test glyphs. Models this small, trained for seconds, are not
good glyph models, and the default thresholds say so; the regression rule runs at its
default false-refusal rate (1 %) with a given retrain spread (SPREAD) and, at this eval size,
leans on the run's own estimator noise, as it must on a user's small folder.
"""
import json
import os

import pytest
from tfx.types import artifact_utils, standard_artifacts

from cns_vaegan.components.evaluator import blessing_rules, executor
from cns_vaegan.components.pusher import executor as pusher_executor
from cns_vaegan.components.trainer import export, perturbation, training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.pipeline import configs
from conftest import TINY_ARCHITECTURE

STEPS = 200
SERVES = {'serving.all_ok': {'min': 1.0}}  # thresholds a small model meets: only the regression rule judges
# The retrain spread the rule is given: of the order the default recipe's figures move between
# retrains. These tests check the rule's mechanics with the run's own paired-bootstrap noise
# (a retrain inside the margin, a damaged model far outside it), not its calibration, which
# benchmarks/gate_noise.py measures.
SPREAD = {'retrains': 4, 'metrics': {
    'reconstruction.psnr.mean': {'retrain_sd': 0.07}, 'reconstruction.ssim.mean': {'retrain_sd': 0.004},
    'reconstruction.mse.mean': {'retrain_sd': 0.0005}, 'identity.top1': {'retrain_sd': 0.0},
    'samples.swd.mean': {'retrain_sd': 1.2}, 'samples.fd_pca': {'retrain_sd': 0.5},
    'samples.ink_w1': {'retrain_sd': 0.0006}, 'samples.diversity': {'retrain_sd': 0.01}}}


def _examples(glyph_tfrecords):
  artifact = standard_artifacts.Examples()
  artifact.uri = os.path.dirname(os.path.dirname(glyph_tfrecords['train']))
  artifact.split_names = artifact_utils.encode_split_names(['train', 'eval'])
  return artifact


def _export(model, glyph_tfrecords, folder, artifact_id) -> standard_artifacts.Model:
  """The model exported as run_fn exports it, as a Model artifact."""
  artifact = standard_artifacts.Model()
  artifact.uri, artifact.id = str(folder), artifact_id
  export.export_trained(model, os.path.join(artifact.uri, 'Format-Serving'), [glyph_tfrecords['train']],
                        [glyph_tfrecords['eval']])
  return artifact


@pytest.fixture(scope='module')
def models(glyph_tfrecords, tmp_path_factory):
  """{seed: (Model artifact, the trained VAEGAN)}: two retrains of the default recipe."""
  out = {}
  for seed in (0, 1):
    folder = tmp_path_factory.mktemp(f'seed{seed}')
    config = TrainingConfig.from_dict(dict(configs.RECIPE, batch_size=8, seed=seed, projector_samples=0,
                                           image_summary_every_steps=10**6))
    model = training.train([glyph_tfrecords['train']], [glyph_tfrecords['eval']],
                           Architecture(**TINY_ARCHITECTURE), config, STEPS, str(folder / 'logs'),
                           str(folder / 'checkpoints'))
    out[seed] = (_export(model, glyph_tfrecords, folder / 'model', seed + 1), model)
  return out


def _evaluate(tmp_path, glyph_tfrecords, model, baseline=None, thresholds=None):
  """GlyphEvaluator's executor, the default rules unless `thresholds`; the report it wrote."""
  evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
  evaluation.uri, blessing.uri = str(tmp_path / 'evaluation'), str(tmp_path / 'blessing')
  os.makedirs(evaluation.uri)
  os.makedirs(blessing.uri)
  executor.Executor().Do(
      {'examples': [_examples(glyph_tfrecords)], 'model': [model],
       'baseline_model': [baseline] if baseline else []},
      {'evaluation': [evaluation], 'blessing': [blessing]},
      {'thresholds': json.dumps(thresholds or blessing_rules.DEFAULT_THRESHOLDS),
       'regression': json.dumps({'retrain_noise': SPREAD}),
       'max_examples': 64, 'num_samples': 64, 'seed': 0, 'arithmetic_tuples': '[]'})
  with open(os.path.join(evaluation.uri, executor.METRICS_FILE), encoding='utf-8') as f:
    return json.load(f)


def _damaged(model, glyph_tfrecords, folder):
  """The model exported with every trained weight moved by noise of its variable's spread."""
  with perturbation.perturbed_weights(model, scale=1.0):
    return _export(model, glyph_tfrecords, folder, 9)


def test_the_default_thresholds_refuse_a_model_trained_for_seconds(tmp_path, glyph_tfrecords, models):
  report = _evaluate(tmp_path, glyph_tfrecords, models[0][0])
  verdict = report['blessing']
  assert not verdict['blessed'] and report['serving']['all_ok'] == 1.0
  # It does not beat the constant mean glyph by the margin a linear model with a quarter of
  # its code size does, and names few characters.
  failed = {reason.split(' ')[0] for reason in verdict['reasons']}
  assert {'reconstruction.psnr.mean', 'identity.top1'} <= failed, verdict['reasons']
  assert report['num_eval_examples'] == report['sanity']['size'] == 12


def test_a_retrain_is_blessed_against_the_blessed_model_and_a_damaged_one_refused(
    tmp_path, glyph_tfrecords, models):
  retrain = _evaluate(tmp_path / 'retrain', glyph_tfrecords, models[1][0], models[0][0], SERVES)
  assert retrain['baseline_model'] == models[0][0].uri  # two different trained models compared
  compared = retrain['blessing']['regression']
  assert set(compared) == set(blessing_rules.REGRESSION_METRICS)
  assert retrain['blessing']['blessed'], retrain['blessing']['reasons']
  assert all(entry['difference_sd'] > 0 for entry in compared.values() if entry['worse_by'] != 0)

  damaged = _damaged(models[0][1], glyph_tfrecords, tmp_path / 'damaged')
  refused = _evaluate(tmp_path / 'damaged_eval', glyph_tfrecords, damaged, models[0][0], SERVES)
  assert not refused['blessing']['blessed'], refused['blessing']['regression']
  assert any(' regressed: ' in reason for reason in refused['blessing']['reasons']), refused['blessing']


def test_two_pushes_in_the_same_second_get_two_versions(tmp_path, glyph_tfrecords, models):
  from tfx.proto import pusher_pb2
  from tfx.utils import proto_utils
  base = tmp_path / 'serving' / 'cns_vaegan'
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  blessing.set_int_custom_property('blessed', 1)
  versions = []
  for push in range(2):
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / f'pushed{push}')
    pusher_executor.Executor().Do(
        {'model': [models[push][0]], 'model_blessing': [blessing]}, {'pushed_model': [pushed]},
        {'push_destination': proto_utils.proto_to_json(pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=str(base))))})
    versions.append(pushed.get_string_custom_property('pushed_version'))
  assert len(set(versions)) == 2
  assert sorted(name for name in os.listdir(base) if name.isdigit()) == sorted(versions)
  for version in versions:
    assert os.path.isfile(base / version / 'saved_model.pb')


def test_a_version_in_the_future_is_refused_by_name(tmp_path):
  base = tmp_path / 'cns_vaegan'
  os.makedirs(base / '1000')
  slept = []
  pusher_executor.wait_for_a_free_version(str(base), clock=lambda: 1000.25, sleep=slept.append)
  assert slept == [pytest.approx(0.75)]
  os.makedirs(base / '5000')
  with pytest.raises(RuntimeError, match='5000 is a version .* in the future'):
    pusher_executor.wait_for_a_free_version(str(base), clock=lambda: 1000.25)
