"""The closing summary of a local run, from what the components recorded, not from the log.

RunRecord reads ML Metadata: each node's last execution (run or cached) and the artifacts
it output. `summary` turns those into the lines a person reads at the end of `make run`:
blessed or not and why, where the model was pushed, the data (ingestion report and
ExampleValidator's anomalies), the Evaluator's headline figures beside their baselines
(its metrics.json), and the commands to run next: when the model is not blessed, what to
change, and which earlier model, if any, `make serve` would serve instead.
"""
import datetime
import json
import os
import shlex
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2

from cns_vaegan.pipeline import configs
from cns_vaegan.serving import servables

# The Evaluator's headline figures: (label, path into a model's figures in metrics.json, format).
HEADLINE = [
    ('PSNR dB', ('reconstruction', 'psnr', 'mean'), '{:.2f}'),
    ('SSIM', ('reconstruction', 'ssim', 'mean'), '{:.3f}'),
    ('MSE', ('reconstruction', 'mse', 'mean'), '{:.4f}'),
    ('identity top-1', ('identity', 'top1'), '{:.1%}'),
    ('identity top-5', ('identity', 'top5'), '{:.1%}'),
    ('samples SWD ×1e3', ('samples', 'swd', 'mean'), '{:.1f}'),
    ('samples diversity', ('samples', 'diversity'), '{:.2f}'),
]
ANOMALIES_FILE = 'SchemaDiff.pb'  # what ExampleValidator writes in each split's folder


class RunRecord:
  """The last execution of each node of a pipeline in its ML Metadata store, and its outputs."""

  def __init__(self, connection_config: metadata_store_pb2.ConnectionConfig, pipeline_name: str):
    self.store = metadata_store.MetadataStore(connection_config)
    self.pipeline_name = pipeline_name

  def last_execution(self, node_id: str) -> Optional[metadata_store_pb2.Execution]:
    context = self.store.get_context_by_type_and_name('node', f'{self.pipeline_name}.{node_id}')
    executions = self.store.get_executions_by_context(context.id) if context else []
    return max(executions, key=lambda e: e.id, default=None)

  def outcome(self, node_id: str) -> str:
    """'done' (ran), 'cached', or the state's name."""
    execution = self.last_execution(node_id)
    state = metadata_store_pb2.Execution.State.Name(execution.last_known_state) if execution else 'UNKNOWN'
    return {'COMPLETE': 'done', 'CACHED': 'cached'}.get(state, state.lower())

  def outputs(self, node_id: str) -> Dict[str, metadata_store_pb2.Artifact]:
    """{artifact type name: artifact} that the node's last execution output."""
    execution = self.last_execution(node_id)
    if execution is None:
      return {}
    ids = [e.artifact_id for e in self.store.get_events_by_execution_ids([execution.id])
           if e.type == metadata_store_pb2.Event.OUTPUT]
    artifacts = self.store.get_artifacts_by_id(ids)
    types = {t.id: t.name for t in self.store.get_artifact_types_by_id(list({a.type_id for a in artifacts}))}
    return {types[a.type_id]: a for a in artifacts}


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.loads(f.read())


def _shown(path: str) -> str:
  """A path as a person types it: relative to here when it is below here."""
  if not path or '://' in path:
    return path
  relative = os.path.relpath(path)
  return path if relative.startswith('..') else relative


def anomalies(uri: str) -> Dict[str, List[str]]:
  """{split: ['feature: what is wrong', ...]} from an ExampleAnomalies artifact; {} when clean."""
  found = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(uri, 'Split-*', ANOMALIES_FILE))):
    with tf.io.gfile.GFile(path, 'rb') as f:
      proto = anomalies_pb2.Anomalies.FromString(f.read())
    problems = [f'{feature}: {info.description or info.short_description}'
                for feature, info in sorted(proto.anomaly_info.items())]
    if proto.HasField('dataset_anomaly_info'):
      problems.append(f'dataset: {proto.dataset_anomaly_info.description}')
    if problems:
      found[os.path.basename(os.path.dirname(path))[len('Split-'):]] = problems
  return found


def metrics_table(report: Dict[str, Any]) -> List[str]:
  """The headline figures of the candidate beside each baseline the report has."""
  columns = {'candidate': report.get('candidate') or {}}
  columns.update(report.get('baselines') or {})
  if report.get('baseline'):
    columns['last blessed'] = report['baseline']

  def value(figures, path, form):
    for key in path:
      figures = figures.get(key) if isinstance(figures, dict) else None
    return form.format(float(figures)) if isinstance(figures, (int, float)) else '–'

  rows = [[label] + [value(figures, path, form) for figures in columns.values()]
          for label, path, form in HEADLINE]
  rows = [row for row in rows if any(cell != '–' for cell in row[1:])]
  header = [f'on {report.get("num_eval_examples", "?")} eval glyphs'] + list(columns)
  widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
  return ['  ' + '  '.join(cell.ljust(widths[0]) if i == 0 else cell.rjust(widths[i])
                           for i, cell in enumerate(row)) for row in [header] + rows]


def served_version(serving_base: str, model_name: str) -> Optional[Tuple[int, str]]:
  """(version, local time it was pushed) of what the model server would serve from this base:
  the newest complete version, picked as the server picks it; None when nothing is there."""
  versions = servables.available_versions(os.path.join(serving_base, model_name))
  if not versions:
    return None
  version = max(versions)
  pushed = tf.io.gfile.stat(os.path.join(versions[version], 'saved_model.pb')).mtime_nsec / 1e9
  return version, datetime.datetime.fromtimestamp(pushed).strftime('%Y-%m-%d %H:%M')


def summary(record: RunRecord, pipeline_root: str, serving_base: str, model_name: str,
            log_path: str, schema_file: Optional[str] = None) -> List[str]:
  """The closing lines of a run, last the path of its full log."""
  lines = []
  report = None
  evaluation = record.outputs('GlyphEvaluator').get('ModelEvaluation')
  if evaluation is not None:
    report = _read_json(os.path.join(evaluation.uri, 'metrics.json'))
  pushed = record.outputs('Pusher').get('PushedModel')
  destination = pushed.custom_properties['pushed_destination'].string_value if pushed else ''
  if report is None:
    lines.append(f'{record.pipeline_name}: no evaluation found')
  elif report['blessing']['blessed']:
    lines.append(f'{record.pipeline_name}: model BLESSED, pushed to {_shown(destination) or "(nowhere?)"}')
    lines.append('  why: every threshold met' + (
        ', no regression against the last blessed model' if report.get('baseline') else
        '; no other blessed model to compare with'))
  else:
    lines.append(f'{record.pipeline_name}: model NOT blessed, nothing pushed')
    lines += [f'  why: {reason}' for reason in report['blessing']['reasons']]
  if report is not None:
    lines += [f'  warning: {warning}' for warning in report['blessing'].get('warnings', [])]

  examples = record.outputs('PngExampleGen').get('Examples')
  ingestion = _read_json(os.path.join(examples.uri, 'ingestion_report.json')) if examples else None
  if ingestion:
    bad = ingestion['num_bad_files']
    lines.append(f'  data: {ingestion["num_examples"]:,} glyphs ingested, {bad} bad file(s)'
                 + (f' (see {_shown(os.path.join(examples.uri, "ingestion_report.json"))})' if bad else ''))
  schema = f'the pinned schema {_shown(schema_file)}' if schema_file else 'the inferred schema'
  validation = record.outputs('ExampleValidator').get('ExampleAnomalies')
  found = anomalies(validation.uri) if validation else {}
  if validation is None:
    lines.append('  data validation: no ExampleAnomalies found')
  elif not found:
    lines.append(f'  data validation: no anomalies against {schema}')
  else:
    lines.append(f'  data validation: ANOMALIES against {schema} (the run went on; see '
                 f'{_shown(validation.uri)})')
    lines += [f'    {split}: {problem}' for split, problems in found.items() for problem in problems]

  if report and report.get('candidate'):
    lines += metrics_table(report)
  if evaluation is not None:
    lines.append(f'  figures and metrics.json: {_shown(evaluation.uri)}')

  blessed = bool(report and report['blessing']['blessed'])
  lines.append('next:')
  if report and not blessed:
    lines += ['  the reasons above name the thresholds the model missed (its figures and metrics.json show more);',
              '  make run ARGS="--thresholds FILE.json" judges it by yours (the trained model comes from the cache),',
              '  or train again: ARGS="--train-steps N", "--hparam KEY=VALUE", or "--no-cache" to re-run everything']
  serve = 'make serve'
  if (os.path.abspath(serving_base), model_name) != (os.path.abspath(os.path.join(configs.OUTPUT_DIR, 'serving')),
                                                       configs.MODEL_NAME):
    base = serving_base if '://' in serving_base else os.path.abspath(serving_base)  # make runs in the repository
    serve += f' ARGS={shlex.quote(f"--model-base-path {base} --model-name {model_name}")}'
  cli = 'scripts/env.sh run python -m cns_vaegan.serving.cli'
  served = served_version(serving_base, model_name)
  if blessed:
    lines.append(f'  {serve}    # gRPC :8500, REST :8501')
  elif served:
    lines.append(f'  {serve}    # would serve version {served[0]}, pushed {served[1]} by an earlier run '
                 '(this run pushed nothing)')
  else:
    lines.append(f'  {serve} would serve nothing: no model has been pushed to '
                 f'{_shown(os.path.join(serving_base, model_name))} yet (it would wait for one)')
  if blessed or served:
    lines.append(f'  {cli} arith 酪 鉻 鉸    # in another shell; prints where the PNG went')
  lines += [f'  scripts/env.sh run tensorboard --logdir {_shown(os.path.join(pipeline_root, "Trainer", "model_run"))}',
            f'full log: {_shown(log_path)}']
  return lines
