"""End to end: the whole local pipeline through LocalDagRunner on a few dozen glyphs.

PngExampleGen -> StatisticsGen -> SchemaGen -> Trainer -> GlyphEvaluator -> Pusher, with
the latest blessed model as the Evaluator's baseline, and the model server over the push.
"""
import json
import os
import shutil

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from cns_vaegan.pipeline import configs, local_runner
from cns_vaegan.serving import servables
from cns_vaegan.serving.client import GlyphClient
from cns_vaegan.serving.model_server import ModelServer
from conftest import TINY_ARCHITECTURE

EXPENSIVE = ['PngExampleGen', 'StatisticsGen', 'SchemaGen', 'Trainer']
JUDGING = ['GlyphEvaluator', 'Pusher']


def _executions(output_dir):
  """{component: [state of each execution, oldest first]} from the pipeline's SQLite MLMD."""
  config = metadata.sqlite_metadata_connection_config(configs.metadata_path(output_dir))
  store = metadata_store.MetadataStore(config)
  result = {}
  for context in store.get_contexts_by_type('node'):
    executions = sorted(store.get_executions_by_context(context.id), key=lambda e: e.id)
    result[context.name.split('.')[-1]] = [
        metadata_store_pb2.Execution.State.Name(e.last_known_state) for e in executions]
  return result


def _only_run(folder):
  [run] = os.listdir(folder)
  return os.path.join(folder, run)


def test_local_pipeline_runs_end_to_end_caches_and_reingests_on_change(glyph_dir, tmp_path):
  data = tmp_path / 'png'
  shutil.copytree(glyph_dir, data)
  (data / 'README.txt').write_text('not a glyph')
  output, serving = str(tmp_path / 'out'), str(tmp_path / 'serving')
  architecture = tmp_path / 'architecture.json'
  architecture.write_text(json.dumps(TINY_ARCHITECTURE))
  thresholds = tmp_path / 'thresholds.json'  # a 4-step model only has to serve
  thresholds.write_text(json.dumps({'serving.all_ok': {'min': 1}}))
  # Default Beam arguments: DirectRunner in multi-processing mode.
  args = ['--data-root', str(data), '--output-dir', output, '--serving-base', serving,
          '--architecture', str(architecture), '--train-steps', '4', '--hparam', 'batch_size=4',
          '--hparam', 'projector_samples=4', '--thresholds', str(thresholds),
          '--eval-examples', '16']

  local_runner.main(args)
  first = _executions(output)
  assert all(first[c] == ['COMPLETE'] for c in EXPENSIVE + JUDGING), first

  root = configs.pipeline_root(output)
  examples = _only_run(os.path.join(root, 'PngExampleGen', 'examples'))
  report = json.load(open(os.path.join(examples, 'ingestion_report.json')))
  assert report['num_bad_files'] == 1 and report['bad_files'][0]['file'].endswith('README.txt')
  schema = open(os.path.join(_only_run(os.path.join(root, 'SchemaGen', 'schema')), 'schema.pbtxt')).read()
  assert 'name: "image"' in schema and 'dim {\n      size: 256\n    }' in schema
  evaluation = _only_run(os.path.join(root, 'GlyphEvaluator', 'evaluation'))
  metrics = json.load(open(os.path.join(evaluation, 'metrics.json'), encoding='utf-8'))
  assert metrics['blessing']['blessed'] and 'baseline' not in metrics  # the first has none
  assert os.path.exists(os.path.join(evaluation, 'arithmetic_酪-鉻+鉸.png'))
  # Pushed as TF Serving expects: <base>/<model name>/<numeric version>/saved_model.pb
  [version] = os.listdir(os.path.join(serving, configs.MODEL_NAME))
  assert servables.available_versions(os.path.join(serving, configs.MODEL_NAME)) == {
      int(version): os.path.join(serving, configs.MODEL_NAME, version)}
  # ... and the model server serves what the pipeline pushed.
  server = ModelServer(serving, configs.MODEL_NAME, port=0, rest_port=None)
  server.start(wait_for_model_seconds=30)
  try:
    with GlyphClient(f'127.0.0.1:{server.port}') as client:
      assert client.sample(2, seed=0)['images'].shape == (2, 16, 16, 1)
      assert client.last_version == int(version)
  finally:
    server.stop()

  # Nothing changed: ingestion, statistics, schema and training are reused. The Evaluator
  # runs again because its baseline is now the first run's blessed model (as in TFX's own
  # e2e tests), and a third run finds even that in the cache.
  local_runner.main(args)
  second = _executions(output)
  assert all(second[c] == ['COMPLETE', 'CACHED'] for c in EXPENSIVE), second
  assert all(second[c] == ['COMPLETE', 'COMPLETE'] for c in JUDGING), second
  local_runner.main(args)
  third = _executions(output)
  assert all(third[c][-1] == 'CACHED' for c in EXPENSIVE + JUDGING), third

  shutil.copy(data / 'U20320.png', data / 'U+4F60.png')  # a new file: ingest again
  local_runner.main(args)
  fourth = _executions(output)
  assert fourth['PngExampleGen'][-1] == 'COMPLETE' and fourth['Trainer'][-1] == 'COMPLETE', fourth


def test_profiles_size_the_default_run_by_the_devices():
  cpu = local_runner.parse_args(['--profile', 'cpu'])
  gpu = local_runner.parse_args(['--profile', 'gpu'])
  seed = local_runner.parse_args(['--profile', 'seed'])
  assert (cpu.architecture_values['ch'], cpu.train_steps) == (32, 5800)
  assert (gpu.architecture_values['ch'], gpu.train_steps) == (64, 29600)
  assert cpu.training_values == gpu.training_values == {'update_schedule': 'one_pass',
                                                         'dis_l_layer': 2}
  # The seed's exact recipe: its network, 100 epochs, every training setting at its default.
  assert (seed.architecture_values['ch'], seed.train_steps, seed.training_values) == (64, 29600, {})
  import tensorflow as tf
  auto = local_runner.parse_args([])
  assert auto.profile == ('gpu' if tf.config.list_physical_devices('GPU') else 'cpu')
  assert local_runner.parse_args(['--train-steps', '7']).train_steps == 7
  overridden = local_runner.parse_args(['--hparam', 'dis_l_layer=3', '--hparam', 'gamma=0.2'])
  assert overridden.training_values == {'update_schedule': 'one_pass', 'dis_l_layer': 3, 'gamma': 0.2}
