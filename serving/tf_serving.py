"""Production serving: TensorFlow Serving (`tensorflow_model_server`, the tensorflow/serving
image) on the Pusher's base path. Writes its configuration files and starts it.

    python -m cns_vaegan.serving.tf_serving --model-base-path /models --config-dir /tmp/tfs

models.config     ModelServerConfig: name, base path, version policy (latest / specific)
batching.config   server-side batching parameters, the embedded server's defaults
                  (serving/batching.py DEFAULT_PARAMETERS); used with --enable-batching only, since
                  TF Serving's batching refuses this model's scalar-input signatures
monitoring.config Prometheus metrics at /monitoring/prometheus/metrics on the REST port

Without the binary on PATH (it cannot be installed on these machines) it writes the
files, prints the command and the equivalent `docker run`, and exits with status 2. The
container sees the base path at /models and its own copy of the files (in
<config dir>/docker, naming /models) at /config: a host path means nothing inside it.
"""
import argparse
import dataclasses
import os
import posixpath
import shlex
import shutil
import sys
from typing import Dict, List, Sequence

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from cns_vaegan.serving import batching

BINARY = 'tensorflow_model_server'
TF_SERVING_IMAGE = 'tensorflow/serving:2.19.1'
# Where `docker run` mounts the Pusher's base path and the config files in the container.
CONTAINER_MODELS = '/models'
CONTAINER_CONFIG = '/config'


def model_server_config(model_name: str, base_path: str,
                        versions: Sequence[int] = ()) -> model_server_config_pb2.ModelServerConfig:
  """Serve the latest version, or exactly `versions` when given (TF Serving's version policy)."""
  config = model_server_config_pb2.ModelServerConfig()
  model = config.model_config_list.config.add()
  model.name = model_name
  model.base_path = os.path.join(base_path, model_name)
  model.model_platform = 'tensorflow'
  if versions:
    model.model_version_policy.specific.versions.extend(versions)
  else:
    model.model_version_policy.latest.num_versions = 1
  return config


def batching_config(**overrides) -> str:
  """The embedded server's default BatchingParameters, with `overrides` (field=value)."""
  return batching.to_text(dataclasses.replace(batching.DEFAULT_PARAMETERS, **overrides))


MONITORING_CONFIG = 'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n'


def write_configs(config_dir: str, model_name: str, base_path: str, versions: Sequence[int] = (),
                  **batching) -> Dict[str, str]:
  os.makedirs(config_dir, exist_ok=True)
  files = {
      'models.config': text_format.MessageToString(model_server_config(model_name, base_path, versions)),
      'batching.config': batching_config(**batching),
      'monitoring.config': MONITORING_CONFIG,
  }
  paths = {}
  for name, text in files.items():
    paths[name] = os.path.join(config_dir, name)
    with open(paths[name], 'w', encoding='utf-8') as f:
      f.write(text)
  return paths


def command(paths: Dict[str, str], port: int = 8500, rest_port: int = 8501,
            enable_batching: bool = False) -> List[str]:
  """TF Serving's command line. Batching is off unless asked for: TF Serving's BatchingSession
  wraps every signature of the model, and then refuses `sample` and `interpolate` (scalar
  inputs) and mixes `arithmetic` requests' coefficients (docs/serving.md)."""
  batching_flags = (['--enable_batching', f'--batching_parameters_file={paths["batching.config"]}']
                    if enable_batching else [])
  return [BINARY, f'--port={port}', f'--rest_api_port={rest_port}',
          f'--model_config_file={paths["models.config"]}',
          '--model_config_file_poll_wait_seconds=60',
          '--file_system_poll_wait_seconds=2'] + batching_flags + [
              f'--monitoring_config_file={paths["monitoring.config"]}']


def docker_run(model_base_path: str, config_dir: str, model_name: str, versions: Sequence[int] = (),
               port: int = 8500, rest_port: int = 8501, enable_batching: bool = False,
               **batching) -> List[str]:
  """The `docker run` of the official image serving `model_base_path`: writes the container's
  config files (paths as the container sees them) to <config_dir>/docker; returns argv."""
  docker_dir = os.path.join(os.path.abspath(config_dir), 'docker')
  files = write_configs(docker_dir, model_name, CONTAINER_MODELS, versions, **batching)
  in_container = {name: posixpath.join(CONTAINER_CONFIG, name) for name in files}
  # The image's entrypoint adds --model_name/--model_base_path; run the server itself, as
  # kubeflow/serving/deployment.yaml does.
  return ['docker', 'run', '--rm', '-p', f'{port}:8500', '-p', f'{rest_port}:8501',
          '-v', f'{os.path.abspath(model_base_path)}:{CONTAINER_MODELS}:ro',
          '-v', f'{docker_dir}:{CONTAINER_CONFIG}:ro',
          '--entrypoint', BINARY, TF_SERVING_IMAGE] + command(in_container, enable_batching=enable_batching)[1:]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--model-base-path', required=True, help='the Pusher\'s base directory')
  parser.add_argument('--model-name', default='cns_vaegan')
  parser.add_argument('--versions', type=int, nargs='*', default=(), help='pin these versions')
  parser.add_argument('--config-dir', required=True, help='where the config files are written')
  parser.add_argument('--port', type=int, default=8500)
  parser.add_argument('--rest-port', type=int, default=8501)
  parser.add_argument('--max-batch-size', type=int,
                      default=batching.DEFAULT_PARAMETERS.max_batch_size,
                      help='max_batch_size of batching.config (default %(default)s, the embedded '
                      'server\'s)')
  parser.add_argument('--enable-batching', action='store_true',
                      help='start TF Serving with --enable_batching: it then refuses the sample and '
                           'interpolate signatures and mixes arithmetic requests\' coefficients '
                           '(docs/serving.md); the embedded server batches without that')
  args = parser.parse_args(argv)
  paths = write_configs(args.config_dir, args.model_name, os.path.abspath(args.model_base_path),
                        args.versions, max_batch_size=args.max_batch_size)
  argv_out = command(paths, args.port, args.rest_port, args.enable_batching)
  if shutil.which(BINARY) is None:
    docker = docker_run(args.model_base_path, args.config_dir, args.model_name, args.versions,
                        args.port, args.rest_port, args.enable_batching, max_batch_size=args.max_batch_size)
    print(f'tf_serving: {BINARY} is not on PATH. Wrote {", ".join(paths.values())}.\n'
          f'Run: {shlex.join(argv_out)}\n'
          f'or:  {shlex.join(docker)}\n'
          'or serve with the embedded server: python -m cns_vaegan.serving.model_server '
          f'--model-base-path {args.model_base_path}', file=sys.stderr)
    return 2
  os.execvp(BINARY, argv_out)
  return 0  # not reached


if __name__ == '__main__':
  sys.exit(main())
