"""End to end: the whole local pipeline through LocalDagRunner on a few dozen glyphs.

PngExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator -> Trainer ->
GlyphEvaluator -> Pusher, with the latest blessed model as the Evaluator's baseline, the
model server over the push, TensorBoard over the Trainer's logs, and what the terminal
shows a person (the rest in the log file).
"""
import glob
import json
import os
import shutil

import pytest

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.orchestration import metadata

from cns_vaegan.components.evaluator import blessing_rules
from cns_vaegan.components.trainer import run_fn
from cns_vaegan.pipeline import configs, local_runner, pipeline
from cns_vaegan.serving import servables
from cns_vaegan.serving.client import GlyphClient
from cns_vaegan.serving.model_server import ModelServer
from conftest import TINY_ARCHITECTURE
from tensorboard_checks import projector_embedding

EXPENSIVE = ['PngExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator', 'Trainer']
JUDGING = ['GlyphEvaluator', 'Pusher']
MAX_TERMINAL_LINES = 60  # issue 12: a fresh `make run` prints at most 60 lines


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


def _terminal(capfd):
  """(the lines the run left on the terminal, the log file the summary names).

  The summary is the last thing on stdout; stderr has the progress bar (its redraws,
  after a carriage return, overwrite one line) and warnings, all printed before it."""
  out, err = capfd.readouterr()
  lines = [line.split('\r')[-1] for line in (out + err).split('\n')]
  lines = [line for line in lines if line.strip()]
  last = out.rstrip('\n').split('\n')[-1]
  assert last.startswith('full log: '), out + err
  return lines, last[len('full log: '):]


def _component_lines(lines, node, outcome):
  """The node's two lines: as it starts, and as it ends with `outcome`."""
  mine = [line for line in lines if line.split()[1:2] == [node]]
  assert len(mine) == 2 and mine[0].endswith('running') and outcome in mine[1], (node, lines)


def test_local_pipeline_runs_end_to_end_caches_and_reingests_on_change(glyph_dir, tmp_path, capfd):
  data = tmp_path / 'png'
  shutil.copytree(glyph_dir, data)
  (data / 'README.txt').write_text('not a glyph')
  output, serving = str(tmp_path / 'out'), str(tmp_path / 'serving')
  architecture = tmp_path / 'architecture.json'
  architecture.write_text(json.dumps(TINY_ARCHITECTURE))
  # Default Beam arguments: DirectRunner in multi-processing mode.
  args = ['--data-root', str(data), '--output-dir', output, '--serving-base', serving,
          '--architecture', str(architecture), '--train-steps', '4', '--hparam', 'batch_size=4',
          '--hparam', 'projector_samples=4', '--eval-examples', '16']

  # The default gate: a 4-step model is no glyph model, so it is refused and nothing is pushed.
  local_runner.main(args)
  first = _executions(output)
  assert all(first[c] == ['COMPLETE'] for c in EXPENSIVE + JUDGING), first
  # The terminal: a line as each component starts and ends, then the summary; the log
  # file has the rest (TFX's launcher dumps, Beam, TensorFlow's C++ lines).
  lines, log_file = _terminal(capfd)
  terminal = '\n'.join(lines)
  assert len(lines) <= MAX_TERMINAL_LINES, terminal
  for node in EXPENSIVE + JUDGING:
    _component_lines(lines, node, 'done in')
  with open(log_file, encoding='utf-8') as f:
    log = f.read()
  assert 'Running launcher for' in log and 'Running launcher for' not in terminal
  assert 'oneDNN' not in terminal and 'WARNING:absl' not in terminal
  refused = terminal[terminal.index('cns-vaegan: model NOT blessed, nothing pushed'):]
  assert 'why: reconstruction.psnr.mean' in refused and 'would serve nothing' in refused, refused
  assert not os.path.exists(serving)

  # Thresholds a 4-step model meets (merged over the defaults: null drops one): the Evaluator
  # runs again, every earlier component is reused, and the model is pushed.
  thresholds = tmp_path / 'thresholds.json'
  thresholds.write_text(json.dumps(dict({path: None for path in blessing_rules.DEFAULT_THRESHOLDS},
                                        **{'serving.all_ok': {'min': 1}})))
  args += ['--thresholds', str(thresholds)]
  local_runner.main(args)
  blessed_run = _executions(output)
  assert all(blessed_run[c] == ['COMPLETE', 'CACHED'] for c in EXPENSIVE), blessed_run
  assert all(blessed_run[c] == ['COMPLETE', 'COMPLETE'] for c in JUDGING), blessed_run
  lines, log_file = _terminal(capfd)
  terminal = '\n'.join(lines)
  root = configs.pipeline_root(output)
  # The versions (the Pusher's .push.lock sits beside them; TF Serving reads numeric names only).
  [version] = [str(v) for v in servables.available_versions(os.path.join(serving, configs.MODEL_NAME))]
  summary = terminal[terminal.index('cns-vaegan: model BLESSED'):]
  assert f'pushed to {serving}/{configs.MODEL_NAME}/{version}' in summary
  assert 'data validation: no anomalies against the inferred schema' in summary
  for figure in ('PSNR dB', 'SSIM', 'MSE', 'candidate'):
    assert figure in summary
  assert 'make serve' in summary and 'cns_vaegan.serving.cli arith' in summary
  model_run = os.path.join(root, 'Trainer', 'model_run')
  assert f'tensorboard --logdir {model_run}' in summary
  # ... and that logdir shows the run's embedding in TensorBoard's Projector tab.
  [run] = [name for name in os.listdir(model_run) if name != 'checkpoints']
  embedding = projector_embedding(model_run, run)['values']  # up to 4 eval glyphs (projector_samples)
  assert 0 < len(embedding) <= 4 and embedding.shape[1] == TINY_ARCHITECTURE['z_dim']

  examples = _only_run(os.path.join(root, 'PngExampleGen', 'examples'))
  report = json.load(open(os.path.join(examples, 'ingestion_report.json')))
  assert report['num_bad_files'] == 1 and report['bad_files'][0]['file'].endswith('README.txt')
  schema = open(os.path.join(_only_run(os.path.join(root, 'SchemaGen', 'schema')), 'schema.pbtxt')).read()
  assert 'name: "image"' in schema and 'dim {\n      size: 256\n    }' in schema
  evaluation = max(glob.glob(os.path.join(root, 'GlyphEvaluator', 'evaluation', '*')), key=os.path.getmtime)
  metrics = json.load(open(os.path.join(evaluation, 'metrics.json'), encoding='utf-8'))
  assert metrics['blessing']['blessed'] and 'baseline' not in metrics  # the first has none
  assert os.path.exists(os.path.join(evaluation, 'arithmetic_酪-鉻+鉸.png'))
  # Pushed as TF Serving expects: <base>/<model name>/<numeric version>/saved_model.pb
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
  capfd.readouterr()
  local_runner.main(args)
  second = _executions(output)
  assert all(second[c][-1] == 'CACHED' for c in EXPENSIVE), second
  assert all(second[c][-1] == 'COMPLETE' for c in JUDGING), second
  lines, _ = _terminal(capfd)
  for node in EXPENSIVE:
    _component_lines(lines, node, 'cached')
  local_runner.main(args + ['--verbose'])  # the INFO log on the terminal too
  third = _executions(output)
  assert all(third[c][-1] == 'CACHED' for c in EXPENSIVE + JUDGING), third
  lines, log_file = _terminal(capfd)
  assert 'Component Trainer is running.' in '\n'.join(lines) and os.path.getsize(log_file)

  # A new file (ingest again), validated against a reviewed schema that says glyphs are
  # 32 x 32: ExampleValidator reports the 16 px images, and the run goes on.
  shutil.copy(data / 'U20320.png', data / 'U+4F60.png')
  reviewed = tmp_path / 'reviewed_schema.pbtxt'
  reviewed.write_text(schema.replace('dim {\n      size: 256\n    }', 'dim {\n      size: 1024\n    }'))
  checkpoints = tmp_path / 'checkpoints'
  local_runner.main(args + ['--schema', str(reviewed), '--checkpoint-dir', str(checkpoints)])
  fourth = _executions(output)
  assert fourth['PngExampleGen'][-1] == 'COMPLETE' and fourth['Trainer'][-1] == 'COMPLETE', fourth
  assert fourth['ImportSchemaGen'] == ['COMPLETE'] and fourth['ExampleValidator'][-1] == 'COMPLETE'
  lines, _ = _terminal(capfd)
  terminal = '\n'.join(lines)
  position = {tuple(line.split()[1:3]): i for i, line in enumerate(lines)}
  assert position['ExampleValidator', 'done'] < position['Trainer', 'running'], terminal  # validated first
  assert f'data validation: ANOMALIES against the pinned schema {reviewed}' in terminal
  assert any(line.strip().startswith(('train: image:', 'eval: image:')) for line in lines), terminal
  assert 'model BLESSED' in terminal  # anomalies do not stop the run
  assert tf_checkpoint_step(checkpoints) == 4  # --checkpoint-dir reached run_fn


def tf_checkpoint_step(folder):
  import tensorflow as tf
  latest = tf.train.latest_checkpoint(str(folder))
  return int(latest.rsplit('-', 1)[1]) if latest else None


def test_profiles_size_the_default_run_by_the_devices():
  cpu = local_runner.parse_args(['--profile', 'cpu'])
  gpu = local_runner.parse_args(['--profile', 'gpu'])
  seed = local_runner.parse_args(['--profile', 'seed'])
  assert (cpu.architecture_values['ch'], cpu.train_steps) == (32, 3200)
  assert (gpu.architecture_values['ch'], gpu.train_steps) == (64, 29600)
  assert cpu.training_values == gpu.training_values == {
      'update_schedule': 'one_pass', 'dis_l_layer': 2, 'sampling': 'fitted_gaussian',
      'mixed_precision': True}
  # The seed's exact recipe: its network, 100 epochs, every training setting at its default.
  assert (seed.architecture_values['ch'], seed.train_steps, seed.training_values) == (64, 29600, {})
  import tensorflow as tf
  auto = local_runner.parse_args([])
  assert auto.profile == ('gpu' if tf.config.list_physical_devices('GPU') else 'cpu')
  assert local_runner.parse_args(['--train-steps', '7']).train_steps == 7
  overridden = local_runner.parse_args(['--hparam', 'dis_l_layer=3', '--hparam', 'gamma=0.2'])
  assert overridden.training_values == {'update_schedule': 'one_pass', 'dis_l_layer': 3,
                                        'sampling': 'fitted_gaussian', 'mixed_precision': True,
                                        'gamma': 0.2}


def _components(argv, tmp_path):
  """{component id: component} of the pipeline the local runner would run with `argv`."""
  args = local_runner.parse_args(argv + ['--data-root', str(tmp_path), '--profile', 'cpu'])
  built = pipeline.create_pipeline(**local_runner.pipeline_kwargs(args),
                                   pipeline_root=str(tmp_path / 'root'))
  return {component.id: component for component in built.components}


def test_checkpoint_dir_flag_reaches_run_fn_and_schema_flag_pins_a_schema(tmp_path):
  default = _components([], tmp_path)
  assert {'SchemaGen', 'ExampleValidator'} <= set(default) and 'ImportSchemaGen' not in default
  assert 'checkpoint_dir' not in json.loads(default['Trainer'].exec_properties['custom_config'])

  schema = tmp_path / 'schema.pbtxt'
  schema.write_text('feature {\n  name: "image"\n  type: FLOAT\n}\n')
  pinned = _components(['--checkpoint-dir', 'gs://bucket/checkpoints', '--schema', str(schema)],
                       tmp_path)
  custom_config = json.loads(pinned['Trainer'].exec_properties['custom_config'])
  fn_args = FnArgs(custom_config=custom_config, train_files=[], eval_files=[], train_steps=1,
                   model_run_dir=str(tmp_path / 'model_run' / '7'))
  assert run_fn.checkpoint_dir_for(fn_args, custom_config) == 'gs://bucket/checkpoints'
  assert 'SchemaGen' not in pinned
  assert pinned['ImportSchemaGen'].exec_properties['schema_file'] == str(schema)
  assert pinned['ExampleValidator'].inputs['schema'].producer_component_id == 'ImportSchemaGen'

  schema.write_text('feature { name: ')  # not a schema: refused before anything runs
  with pytest.raises(SystemExit, match=f'--schema {schema}: not a readable schema.pbtxt'):
    local_runner.parse_args(['--schema', str(schema)])
