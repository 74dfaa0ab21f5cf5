"""End to end: the local runner's pipeline through LocalDagRunner on a few dozen glyphs."""
import json
import os
import shutil

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.orchestration import metadata

from cns_vaegan.pipeline import configs, local_runner
from conftest import TINY_ARCHITECTURE

COMPONENTS = ['PngExampleGen', 'StatisticsGen', 'SchemaGen', 'Trainer']


def _executions(output_dir):
  """{component: [last known state of each execution]} from the pipeline's SQLite MLMD."""
  config = metadata.sqlite_metadata_connection_config(configs.metadata_path(output_dir))
  store = metadata_store.MetadataStore(config)
  contexts = {c.id: c.name for c in store.get_contexts_by_type('node')}
  result = {}
  for context_id, name in contexts.items():
    component = name.split('.')[-1]
    result[component] = [metadata_store_pb2.Execution.State.Name(e.last_known_state)
                         for e in sorted(store.get_executions_by_context(context_id), key=lambda e: e.id)]
  return result


def test_local_pipeline_ingests_caches_and_reingests_on_change(glyph_dir, tmp_path):
  data = tmp_path / 'png'
  shutil.copytree(glyph_dir, data)
  (data / 'README.txt').write_text('not a glyph')
  output = str(tmp_path / 'out')
  # The default Beam arguments: DirectRunner in multi-processing mode.
  architecture = tmp_path / 'architecture.json'
  architecture.write_text(json.dumps(TINY_ARCHITECTURE))
  args = ['--data-root', str(data), '--output-dir', output, '--architecture', str(architecture),
          '--train-steps', '4', '--hparam', 'batch_size=4', '--hparam', 'projector_samples=4']

  local_runner.main(args)
  first = _executions(output)
  assert all(first[c] == ['COMPLETE'] for c in COMPONENTS), first

  root = configs.pipeline_root(output)
  examples_dir = os.path.join(root, 'PngExampleGen', 'examples')
  [run_id] = os.listdir(examples_dir)
  report = json.load(open(os.path.join(examples_dir, run_id, 'ingestion_report.json')))
  assert report['num_bad_files'] == 1 and report['bad_files'][0]['file'].endswith('README.txt')
  assert sorted(os.listdir(os.path.join(examples_dir, run_id))) == [
      'Split-eval', 'Split-train', 'ingestion_report.json']

  schema_dir = os.path.join(root, 'SchemaGen', 'schema')
  [schema_run] = os.listdir(schema_dir)
  schema = open(os.path.join(schema_dir, schema_run, 'schema.pbtxt')).read()
  assert 'name: "image"' in schema and 'dim {\n      size: 256\n    }' in schema

  model_dir = os.path.join(root, 'Trainer', 'model')
  [model_run] = os.listdir(model_dir)
  assert os.path.isfile(os.path.join(model_dir, model_run, 'Format-Serving', 'saved_model.pb'))

  local_runner.main(args)  # nothing changed: every component is a cache hit
  second = _executions(output)
  assert all(second[c] == ['COMPLETE', 'CACHED'] for c in COMPONENTS), second

  shutil.copy(data / 'U20320.png', data / 'U+4F60.png')  # a new file: re-ingest
  local_runner.main(args)
  third = _executions(output)
  assert all(third[c] == ['COMPLETE', 'CACHED', 'COMPLETE'] for c in COMPONENTS), third
