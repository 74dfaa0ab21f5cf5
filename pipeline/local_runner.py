"""Runs the pipeline on this machine with TFX's LocalDagRunner.

    python -m cns_vaegan.pipeline.local_runner                      # built-in dataset
    python -m cns_vaegan.pipeline.local_runner --data-root ~/my_pngs --train-steps 30000
    python -m cns_vaegan.pipeline.local_runner --hparam gamma=0.01 --hparam latent_tanh=false
    python -m cns_vaegan.pipeline.local_runner -- --runner=FlinkRunner --flink_master=host:8081
    python -m cns_vaegan.pipeline.local_runner --schema reviewed/schema.pbtxt --verbose
    python -m cns_vaegan.pipeline.local_runner --workers 2           # 2 Trainer workers, loopback

Arguments after `--` go to Apache Beam unchanged (DirectRunner in multi-processing
mode unless they say otherwise). ML Metadata lives in SQLite under --output-dir, so a
second run with nothing changed reuses every cached result. The terminal shows a line
per component, the training progress bar and a closing summary; the full log goes to
<output-dir>/logs/ (pipeline/console.py), and --verbose shows it on the terminal too.
"""
import argparse
import datetime
import hashlib
import json
import os
import sys
from typing import List, Optional

from absl import logging
from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2

from cns_vaegan.components import quiet_start
from cns_vaegan.components.evaluator import blessing_rules
from cns_vaegan.components.trainer import training as trainer_training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.data import arithmetic_tuples, render_glyphs
from cns_vaegan.pipeline import configs, console, pipeline, run_summary


def _hparam(text: str):
  """key=value, the value parsed by the TrainingConfig field's type (see parse_setting)."""
  try:
    return TrainingConfig.parse_setting(text)
  except ValueError as error:
    raise argparse.ArgumentTypeError(str(error)) from None


def _int_in(low: int, high: Optional[int] = None):
  """An argparse type: an integer in [low, high] (no upper bound without high)."""
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f'expected a whole number, got {text!r}') from None
    if value < low or (high is not None and value > high):
      bounds = f'from {low} to {high}' if high is not None else f'{low} or more'
      raise argparse.ArgumentTypeError(f'must be {bounds}, got {value}')
    return value
  return parse


def parse_args(argv: Optional[List[str]] = None):
  argv = list(sys.argv[1:] if argv is None else argv)
  beam_args: List[str] = []
  if '--' in argv:
    split = argv.index('--')
    argv, beam_args = argv[:split], argv[split + 1:]
  parser = argparse.ArgumentParser(
      description='Run the cns-vaegan TFX pipeline locally.',
      epilog='Arguments after -- are passed to Apache Beam (beam_pipeline_args).')
  parser.add_argument('--data-root', default=None,
                      help='folder of glyph PNGs (default: the built-in TW-Kai set, rendered if missing)')
  parser.add_argument('--input-pattern', default='*',
                      help='glob of the files to ingest under --data-root (default: every file)')
  parser.add_argument('--output-dir', default=configs.OUTPUT_DIR,
                      help='where artifacts and the ML Metadata SQLite store go (default: %(default)s)')
  parser.add_argument('--pipeline-name', default=configs.PIPELINE_NAME)
  parser.add_argument('--profile', choices=('auto',) + tuple(configs.PROFILES), default='auto',
                      help='network, steps and recipe: seed (the seed\'s exact recipe, ch 64, 100 '
                           'epochs), gpu (ch 64, 100 epochs, configs.RECIPE) or cpu (ch 32, 3,200 '
                           'steps, configs.RECIPE); auto: gpu if a GPU is visible, else cpu')
  parser.add_argument('--architecture', help='network JSON (img_h, img_w, img_c, ch, z_dim, ...); '
                      'default: the profile\'s')
  parser.add_argument('--image-size', type=int, help='override the architecture\'s img_h and img_w')
  parser.add_argument('--train-steps', type=_int_in(1), help='global training steps (default: the profile\'s)')
  parser.add_argument('--hparam', type=_hparam, action='append', default=[], metavar='KEY=VALUE',
                      help='a training setting (see components/trainer/training_config.py), '
                           'e.g. gamma=0.01 or latent_tanh=false; repeatable')
  parser.add_argument('--cpu-replicas', type=_int_in(0), default=0,
                      help='with no GPU, train with MirroredStrategy over this many logical CPUs')
  parser.add_argument('--workers', type=_int_in(1), default=1,
                      help='train on this many worker processes on this machine (loopback), as a '
                           'cluster of machines would (MultiWorkerMirroredStrategy; default: %(default)s)')
  parser.add_argument('--eval-percent', type=_int_in(1, 99), default=configs.EVAL_PERCENT,
                      help='share of the glyphs in the eval split, 1 to 99 (default: %(default)s)')
  parser.add_argument('--serving-base', default=None,
                      help='TF Serving base path; blessed models go to <it>/<model name>/<version> '
                           '(default: <output-dir>/serving)')
  parser.add_argument('--model-name', default=configs.MODEL_NAME)
  parser.add_argument('--thresholds', help='JSON file of blessing thresholds, merged over the '
                      'defaults ({"identity.top1": {"min": 0.9}, "samples.fd_pca": null}; see README)')
  parser.add_argument('--false-refusal-rate', type=float, default=blessing_rules.DEFAULT_FALSE_REFUSAL_RATE,
                      help='the chance the gate refuses a retrain of the same code as a regression '
                           '(default: %(default)s)')
  parser.add_argument('--retrain-noise', help='JSON file of each metric\'s spread across retrains, '
                      'written by benchmarks/gate_noise.py on your data (default: the built-in '
                      'data\'s, components/evaluator/retrain_noise.json)')
  parser.add_argument('--eval-examples', type=_int_in(1), default=2048,
                      help='eval glyphs (and samples) the evaluator measures')
  parser.add_argument('--schema', help='a reviewed schema.pbtxt to validate the data against '
                      '(ImportSchemaGen), instead of the one SchemaGen infers')
  parser.add_argument('--checkpoint-dir', help='where the Trainer keeps its checkpoints (default: '
                      '<pipeline root>/Trainer/model_run/checkpoints/<hash of inputs and settings>)')
  parser.add_argument('--no-cache', action='store_true', help='re-run every component')
  parser.add_argument('--verbose', action='store_true',
                      help='show the full log on the terminal too (it always goes to <output-dir>/logs/)')
  args = parser.parse_args(argv)
  args.beam_pipeline_args = configs.DEFAULT_BEAM_PIPELINE_ARGS + beam_args

  if args.profile == 'auto':
    args.profile = configs.DEFAULT_PROFILE['gpu' if _gpu_visible() else 'cpu']
  profile = configs.PROFILES[args.profile]
  args.architecture = args.architecture or profile['architecture']
  if args.train_steps is None:
    args.train_steps = profile['train_steps']
  architecture = Architecture.load(args.architecture).to_dict()
  if args.image_size:
    architecture.update(img_h=args.image_size, img_w=args.image_size)
  args.architecture_values = Architecture.from_dict(architecture).to_dict()  # validates
  training = dict(profile['training'], **dict(args.hparam))  # --hparam wins over the profile
  if args.cpu_replicas:
    training['cpu_replicas'] = args.cpu_replicas
  try:
    TrainingConfig.from_dict(training)  # fail now, not after ingestion, on a bad setting
  except ValueError as error:
    parser.error(f'--hparam: {error}')
  args.training_values = training
  args.evaluation_values = {
      'max_examples': args.eval_examples, 'num_samples': args.eval_examples,
      'arithmetic_tuples': arithmetic_tuples.read_tuples()}
  if not 0.0 < args.false_refusal_rate < 1.0:
    parser.error(f'--false-refusal-rate must be between 0 and 1, got {args.false_refusal_rate}')
  args.evaluation_values['false_refusal_rate'] = args.false_refusal_rate
  if args.thresholds:
    args.evaluation_values['thresholds'] = _json_file(parser, '--thresholds', args.thresholds)
    try:
      blessing_rules.merged_thresholds(args.evaluation_values['thresholds'])  # fail now on a bad one
    except (ValueError, AttributeError) as error:
      parser.error(f'--thresholds {args.thresholds}: {error}')
  if args.retrain_noise:
    args.evaluation_values['retrain_noise'] = _json_file(parser, '--retrain-noise', args.retrain_noise)
  args.serving_base = args.serving_base or os.path.join(args.output_dir, 'serving')
  if args.schema and '://' not in args.schema:
    read_schema(args.schema)  # fail now on a missing or malformed file
  return args


def _json_file(parser: argparse.ArgumentParser, flag: str, path: str):
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (OSError, ValueError) as error:
    parser.error(f'{flag} {path}: not a readable JSON file: {error}')


def read_schema(path: str) -> bytes:
  """The file's bytes, once they parse as a TensorFlow Metadata Schema in text format."""
  try:
    with open(path, 'rb') as f:
      content = f.read()
    text_format.Parse(content.decode('utf-8'), schema_pb2.Schema())
  except (OSError, UnicodeDecodeError, text_format.ParseError) as error:
    raise SystemExit(f'local_runner: --schema {path}: not a readable schema.pbtxt: {error}') from None
  return content


def pinned_schema_copy(path: str, output_dir: str) -> str:
  """A copy of the reviewed schema named by its content. TFX keys ImportSchemaGen's cache on
  the path it is given, so an edited file at the same path would otherwise be a cache hit."""
  content = read_schema(path)
  copy = os.path.join(output_dir, 'schemas', hashlib.sha256(content).hexdigest()[:16] + '.pbtxt')
  if not os.path.exists(copy):
    os.makedirs(os.path.dirname(copy), exist_ok=True)
    with open(copy, 'wb') as f:
      f.write(content)
  return copy


def _gpu_visible() -> bool:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with quiet_start.held_back():  # CUDA's start-up lines ("failed call to cuInit" without a GPU)
    return bool(tf.config.list_physical_devices('GPU'))


def ensure_builtin_dataset(data_root: str = configs.BUILTIN_DATA_ROOT) -> str:
  """Renders the built-in TW-Kai dataset (the seed's 32 px set) on first use."""
  if not os.path.isdir(data_root) or not os.listdir(data_root):
    logging.info('Rendering the built-in dataset into %s', data_root)
    render_glyphs.render_dataset(data_root)
  return data_root


def pipeline_kwargs(args) -> dict:
  """create_pipeline's arguments from parsed flags, shared by every runner; each runner adds
  where the pipeline root and metadata live and what its orchestrator needs."""
  return dict(
      pipeline_name=args.pipeline_name,
      data_root=args.data_root,
      input_pattern=args.input_pattern,
      schema_file=args.schema,
      checkpoint_dir=args.checkpoint_dir,
      architecture=args.architecture_values,
      training=args.training_values,
      train_steps=args.train_steps,
      trainer_workers=args.workers,
      eval_percent=args.eval_percent,
      serving_model_dir=os.path.join(args.serving_base, args.model_name),
      evaluation=args.evaluation_values,
      beam_pipeline_args=args.beam_pipeline_args,
      enable_cache=not args.no_cache,
  )


def log_path(args) -> str:
  """This run's log file: <output-dir>/logs/<pipeline>-<local time>.log."""
  now = datetime.datetime.now().strftime('%Y%m%d-%H%M%S')
  return os.path.join(args.output_dir, 'logs', f'{args.pipeline_name}-{now}.log')


def run(args, log_file: str) -> List[str]:
  """Runs the pipeline, a line per component as it starts and ends; returns the summary."""
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  args.data_root = args.data_root or ensure_builtin_dataset()
  if '://' not in args.data_root and not os.path.isdir(args.data_root):
    raise SystemExit(f'local_runner: --data-root {args.data_root} is not a folder')
  kwargs = pipeline_kwargs(args)
  if args.schema and '://' not in args.schema:
    kwargs['schema_file'] = pinned_schema_copy(args.schema, args.output_dir)
  # Every component runs in this process: split the CPU before any of them touches TF.
  trainer_training.configure_devices(args.training_values.get('cpu_replicas', 0))
  connection = tfx.orchestration.metadata.sqlite_metadata_connection_config(
      configs.metadata_path(args.output_dir, args.pipeline_name))
  pipeline_root = configs.pipeline_root(args.output_dir, args.pipeline_name)
  tfx_pipeline = pipeline.create_pipeline(
      **kwargs, pipeline_root=pipeline_root, metadata_connection_config=connection)
  record = run_summary.RunRecord(connection, args.pipeline_name)
  lines = console.ComponentLines([node.id for node in tfx_pipeline.components], record.outcome)
  with console.handler(lines):
    try:
      tfx.orchestration.LocalDagRunner().run(tfx_pipeline)
    except BaseException:
      lines.failed()
      raise
  return run_summary.summary(record, pipeline_root, args.serving_base, args.model_name, log_file,
                             args.schema)


def main(argv: Optional[List[str]] = None) -> None:
  logging.set_verbosity(logging.INFO)
  args = parse_args(argv)
  log_file = log_path(args)
  try:
    with console.log_to_file(log_file, args.verbose):
      logging.info('Profile %s: %s, %d training steps', args.profile, args.architecture, args.train_steps)
      summary = run(args, log_file)
      logging.info('Summary:\n%s', '\n'.join(summary))
  except BaseException:
    print(f'The run failed; its full log: {log_file}', file=sys.stderr)
    raise
  print('\n'.join(summary))


if __name__ == '__main__':
  main()
