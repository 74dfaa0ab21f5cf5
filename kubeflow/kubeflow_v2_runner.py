"""Compiles the pipeline for Kubeflow Pipelines (KFP v2) and, given an endpoint, runs it.

    python -m cns_vaegan.kubeflow.kubeflow_v2_runner --config kubeflow/config.example.yaml
    python -m cns_vaegan.kubeflow.kubeflow_v2_runner \\
        --pipeline-root gs://BUCKET/cns-vaegan/pipelines --data-root gs://BUCKET/glyphs \\
        --serving-base gs://BUCKET/cns-vaegan/serving --container-image REGISTRY/cns-vaegan:0.1.0 \\
        --trainer-gpus 2 --train-steps 30000 --hparam batch_size=256 \\
        --endpoint http://localhost:8080 -- --runner=DataflowRunner --project=P --region=R
    python -m cns_vaegan.kubeflow.kubeflow_v2_runner ... --workers 4 --trainer-gpus 2 \\
        --vertex-project P --vertex-region us-central1     # the Trainer: 4 Vertex machines

The pipeline is the one pipeline/pipeline.py builds for LocalDagRunner. The flags that
describe it (--train-steps, --hparam, --architecture, --thresholds, ...) are the local
runner's and are parsed by its own `parse_args`; this module adds only what a cluster
needs: where data and artifacts live, the container image, GPUs, where to submit.
Arguments after `--` go to Apache Beam, as for the local runner. A --config file holds
the same flags written down; flags on the command line win over it.
"""
import argparse
import datetime
import json
import os
import sys
from typing import Dict, List, Optional, Tuple

import yaml
from absl import logging

from cns_vaegan.pipeline import configs, local_runner, pipeline

DEFAULT_OUTPUT = 'cns-vaegan.yaml'
DEFAULT_EXPERIMENT = 'cns-vaegan'
# Every step's command: TFX's entrypoint behind kubeflow/container_entrypoint.py, which
# types the input artifacts that KFP's launchers pass untyped.
CONTAINER_COMMAND = ['python', '-m', 'cns_vaegan.kubeflow.container_entrypoint']


def config_file_args(path: str) -> Tuple[List[str], List[str]]:
  """Reads a YAML or JSON file of flags ({flag name without --: value}) into (flags, beam args).

  A list repeats its flag (e.g. hparam), true is a bare switch (no-cache: true), and the
  list under `beam-args` is what would follow `--` on the command line.
  """
  with open(path, encoding='utf-8') as f:
    values = yaml.safe_load(f) or {}
  if not isinstance(values, dict):
    raise SystemExit(f'kubeflow_v2_runner: {path} must map flag names to values')
  beam_args = [str(arg) for arg in values.pop('beam-args', None) or []]
  flags: List[str] = []
  for name, value in values.items():
    if isinstance(value, bool):
      flags += [f'--{name}'] if value else []
    elif isinstance(value, list):
      for item in value:
        flags += [f'--{name}', str(item)]
    elif value is not None:
      flags += [f'--{name}', str(value)]
  return flags, beam_args


def _kubeflow_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m cns_vaegan.kubeflow.kubeflow_v2_runner',
      description='Compile the cns-vaegan pipeline to a KFP v2 pipeline spec; submit it with --endpoint.',
      epilog='Every flag of the local runner is accepted too (--train-steps, --hparam, --architecture, '
             '--thresholds, --pipeline-name, --model-name, --no-cache, ...; see python -m '
             'cns_vaegan.pipeline.local_runner --help). Arguments after -- go to Apache Beam.',
      allow_abbrev=False)  # an abbreviation must not swallow a local runner flag
  parser.add_argument('--config', help='YAML/JSON file of these flags (command-line flags win)')
  where = parser.add_argument_group('where things live (every pod reads them: use gs:// or another shared filesystem)')
  where.add_argument('--pipeline-root', required=True, help='root of every artifact the run writes')
  where.add_argument('--data-root', required=True, help='folder of glyph PNGs')
  where.add_argument('--serving-base', required=True,
                     help='TF Serving base path; blessed models go to <it>/<model name>/<unix time>/')
  where.add_argument('--container-image', required=True,
                     help='the image every step runs in (built from the repository Dockerfile)')
  parser.add_argument('--trainer-gpus', type=int, default=0,
                      help=f'{pipeline.GPU_RESOURCE} for the Trainer pod; it trains with MirroredStrategy '
                           'over all of them (default: %(default)s)')
  vertex = parser.add_argument_group(
      'the Trainer as a Vertex AI custom job (needed for --workers N > 1: N machines train as one)')
  vertex.add_argument('--vertex-project', help='Google Cloud project of the training job')
  vertex.add_argument('--vertex-region', help='its region, e.g. us-central1')
  vertex.add_argument('--vertex-machine-type', default='n1-standard-8', help='default: %(default)s')
  vertex.add_argument('--vertex-accelerator', default='NVIDIA_TESLA_T4',
                      help='GPU type of each machine, when --trainer-gpus > 0 (default: %(default)s)')
  parser.add_argument('--baseline-resolver', action='store_true',
                      help='keep the latest-blessed-model Resolver as the Evaluator\'s baseline: '
                           'Vertex AI Pipelines runs it, open-source Kubeflow Pipelines cannot')
  parser.add_argument('--output', default=DEFAULT_OUTPUT,
                      help='pipeline spec file to write, .yaml or .json (default: %(default)s)')
  submit = parser.add_argument_group('submission (only with --endpoint)')
  submit.add_argument('--endpoint', help='KFP API host, e.g. http://localhost:8080 or https://HOST/pipeline')
  submit.add_argument('--experiment', default=DEFAULT_EXPERIMENT, help='default: %(default)s')
  submit.add_argument('--namespace', help='your Kubeflow profile namespace (multi-user installations)')
  submit.add_argument('--run-name', help='default: <pipeline name> <UTC time>')
  return parser


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
  """Kubeflow flags here; everything else through local_runner.parse_args, so both runners
  accept the same pipeline flags and validate them the same way."""
  argv = list(sys.argv[1:] if argv is None else argv)
  beam_args: List[str] = []
  if '--' in argv:
    split = argv.index('--')
    argv, beam_args = argv[:split], argv[split + 1:]
  config = argparse.ArgumentParser(add_help=False)
  config.add_argument('--config')
  config_path = config.parse_known_args(argv)[0].config
  if config_path:
    config_flags, config_beam_args = config_file_args(config_path)
    argv, beam_args = config_flags + argv, config_beam_args + beam_args  # later flags win

  args, pipeline_flags = _kubeflow_parser().parse_known_args(argv)
  if args.trainer_gpus < 0:
    raise SystemExit('kubeflow_v2_runner: --trainer-gpus must be 0 or more')
  if not any(flag == '--profile' or flag.startswith('--profile=') for flag in pipeline_flags):
    # The cluster's Trainer pod, not this machine, decides.
    pipeline_flags += ['--profile', configs.DEFAULT_PROFILE['gpu' if args.trainer_gpus else 'cpu']]
  if bool(args.vertex_project) != bool(args.vertex_region):
    raise SystemExit('kubeflow_v2_runner: --vertex-project and --vertex-region go together')
  shared = local_runner.parse_args(
      pipeline_flags + ['--data-root', args.data_root, '--serving-base', args.serving_base, '--']
      + beam_args)
  for name, value in vars(args).items():
    setattr(shared, name, value)
  if shared.workers > 1 and not args.vertex_project:
    raise SystemExit('kubeflow_v2_runner: --workers > 1 needs --vertex-project and --vertex-region: '
                     'the Trainer then runs as a Vertex AI custom job of that many machines. A '
                     'Kubeflow Pipelines step is one pod, and the pipeline spec cannot start a '
                     'cluster of them (a TFJob is outside it; see docs/distributed.md)')
  return shared


def create_pipeline(args: argparse.Namespace):
  """The pipeline of pipeline/pipeline.py, with the cluster's paths and the Trainer's GPUs.

  KFP keeps its own ML Metadata, so there is no connection config. The latest-blessed
  Resolver is kept only with --baseline-resolver (Vertex AI Pipelines runs it; open-source
  KFP cannot), else the Evaluator blesses by its thresholds alone.
  """
  return pipeline.create_pipeline(
      **local_runner.pipeline_kwargs(args),
      pipeline_root=args.pipeline_root,
      trainer_gpus=args.trainer_gpus,
      vertex_training=vertex_training(args),
      baseline_resolver=args.baseline_resolver)


def vertex_training(args: argparse.Namespace) -> Optional[Dict]:
  """pipeline.create_pipeline's `vertex_training`, with --vertex-project; else None."""
  if not args.vertex_project:
    return None
  return {'project': args.vertex_project, 'region': args.vertex_region, 'image': args.container_image,
          'machine_type': args.vertex_machine_type, 'accelerator_type': args.vertex_accelerator}


def compile_pipeline(args: argparse.Namespace) -> Dict:
  """Writes the KFP v2 pipeline spec to args.output (YAML, or JSON by extension); returns it.

  Pipeline spec schema 2.1 because open-source KFP resolves only its parameter constants.
  Steps run CONTAINER_COMMAND, which takes TFX's entrypoint arguments.
  The pipeline root is stored as the spec's default, so a spec uploaded by hand runs there too.
  """
  from tfx import v1 as tfx  # pylint: disable=g-import-not-at-top
  runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=args.container_image, default_commands=CONTAINER_COMMAND,
          use_pipeline_spec_2_1=True))
  job = runner.run(create_pipeline(args), write_out=False)  # a PipelineJob, as a dict
  spec = job['pipelineSpec']
  spec['defaultPipelineRoot'] = args.pipeline_root
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output, 'w', encoding='utf-8') as f:
    if args.output.endswith('.json'):
      json.dump(spec, f, indent=2, sort_keys=True)  # ASCII: CJK characters as \u escapes
    else:
      yaml.safe_dump(spec, f, sort_keys=True)
  logging.info('Wrote the pipeline spec to %s', args.output)
  return spec


def open_source_kfp_problems(spec: Dict) -> List[str]:
  """Tasks that open-source KFP cannot run: TFX Resolvers compile to `resolver` executors,
  which only Vertex AI Pipelines implements (KFP's compiler fails the run with
  'resolver executors not implemented')."""
  executors = spec['deploymentSpec']['executors']
  components = spec['components']
  return sorted(name for name, task in spec['root']['dag']['tasks'].items()
                if 'resolver' in executors[components[task['componentRef']['name']]['executorLabel']])


def run_url(endpoint: str, run_id: str) -> str:
  """The KFP UI page of a run (the UI is served where the API is)."""
  base = endpoint if endpoint.startswith(('http://', 'https://')) else 'http://' + endpoint
  return f'{base.rstrip("/")}/#/runs/details/{run_id}'


def submit(args: argparse.Namespace, spec: Dict) -> str:
  """Creates the pipeline in KFP (or adds a version to it), starts a run; returns its URL."""
  import kfp  # pylint: disable=g-import-not-at-top
  for task in open_source_kfp_problems(spec):
    logging.warning('Task %s is a TFX Resolver: open-source Kubeflow Pipelines cannot run it '
                    '(see docs/kubeflow.md); Vertex AI Pipelines can.', task)
  now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')
  client = kfp.Client(host=args.endpoint)
  pipeline_id = client.get_pipeline_id(args.pipeline_name)
  if pipeline_id is None:
    created = client.upload_pipeline(args.output, pipeline_name=args.pipeline_name)
    pipeline_id = created.pipeline_id
    versions = client.list_pipeline_versions(pipeline_id, page_size=1, sort_by='created_at desc')
    version_id = versions.pipeline_versions[0].pipeline_version_id
  else:
    version = client.upload_pipeline_version(
        args.output, pipeline_version_name=f'{args.pipeline_name} {now}', pipeline_id=pipeline_id)
    version_id = version.pipeline_version_id
  experiment = client.create_experiment(args.experiment, namespace=args.namespace)
  run = client.run_pipeline(
      experiment_id=experiment.experiment_id,
      job_name=args.run_name or f'{args.pipeline_name} {now}',
      pipeline_id=pipeline_id,
      version_id=version_id,
      pipeline_root=args.pipeline_root)
  return run_url(args.endpoint, run.run_id)


def main(argv: Optional[List[str]] = None) -> None:
  logging.set_verbosity(logging.INFO)
  args = parse_args(argv)
  spec = compile_pipeline(args)
  print(f'Pipeline spec: {args.output}')
  if args.endpoint:
    print(f'Run: {submit(args, spec)}')


if __name__ == '__main__':
  main()
