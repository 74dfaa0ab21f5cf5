"""Production TF Serving: its config files, and the shared client checks against a real one."""
import os

import pytest
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from cns_vaegan.serving import tf_serving
from cns_vaegan.serving.client import GlyphClient
from serving_checks import check_every_signature

REAL_SERVER = os.environ.get('CNS_TF_SERVING_ADDRESS')


def test_written_model_config_parses_as_tf_servings_own_proto(tmp_path):
  paths = tf_serving.write_configs(str(tmp_path), 'cns_vaegan', '/models', versions=[3, 4],
                                   max_batch_size=16)
  config = text_format.Parse(open(paths['models.config']).read(),
                             model_server_config_pb2.ModelServerConfig())
  [model] = config.model_config_list.config
  assert (model.name, model.base_path, model.model_platform) == ('cns_vaegan', '/models/cns_vaegan', 'tensorflow')
  assert list(model.model_version_policy.specific.versions) == [3, 4]
  latest = tf_serving.model_server_config('cns_vaegan', '/m')
  assert latest.model_config_list.config[0].model_version_policy.latest.num_versions == 1
  assert 'max_batch_size { value: 16 }' in open(paths['batching.config']).read()
  argv = tf_serving.command(paths, 9000, 9001)
  assert argv[0] == 'tensorflow_model_server' and '--port=9000' in argv and '--enable_batching' not in argv
  assert '--enable_batching' in tf_serving.command(paths, 9000, 9001, enable_batching=True)


def test_without_the_binary_it_says_what_to_run_and_exits_2(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('PATH', str(tmp_path))  # no tensorflow_model_server here
  assert tf_serving.main(['--model-base-path', str(tmp_path), '--config-dir', str(tmp_path / 'c')]) == 2
  message = capsys.readouterr().err
  assert 'tensorflow_model_server is not on PATH' in message and 'docker run' in message


def _host_path(container_path, docker_argv):
  """The host path behind a container path, through docker_argv's -v mounts; None if unmounted."""
  mounts = [docker_argv[i + 1].split(':')[:2] for i, arg in enumerate(docker_argv) if arg == '-v']
  for host, target in mounts:
    if container_path == target or container_path.startswith(target + '/'):
      return host + container_path[len(target):]
  return None


def test_docker_run_names_only_paths_the_container_sees(tmp_path):
  base = tmp_path / 'serving'
  (base / 'cns_vaegan' / '1700000000').mkdir(parents=True)
  (base / 'cns_vaegan' / '1700000000' / 'saved_model.pb').write_bytes(b'')
  argv = tf_serving.docker_run(str(base), str(tmp_path / 'config'), 'cns_vaegan', port=9000, rest_port=9001,
                               enable_batching=True)
  image_at = argv.index(tf_serving.TF_SERVING_IMAGE)
  assert argv[:3] == ['docker', 'run', '--rm'] and '9000:8500' in argv and '9001:8501' in argv
  assert argv[image_at - 2:image_at] == ['--entrypoint', 'tensorflow_model_server']
  in_container = argv[image_at + 1:]
  flags = dict(arg[2:].split('=', 1) for arg in in_container if '=' in arg)
  for name in ('model_config_file', 'batching_parameters_file', 'monitoring_config_file'):
    assert flags[name].startswith('/config/') and os.path.isfile(_host_path(flags[name], argv)), name
  assert '--enable_batching' in in_container
  # Without the opt-in, no batching: its BatchingSession would refuse sample and interpolate.
  default = tf_serving.docker_run(str(base), str(tmp_path / 'config'), 'cns_vaegan')
  assert not any('batching' in arg for arg in default)
  models_config = open(_host_path(flags['model_config_file'], argv)).read()
  assert str(tmp_path) not in ' '.join(in_container) + models_config  # no host path inside
  [model] = text_format.Parse(models_config, model_server_config_pb2.ModelServerConfig()).model_config_list.config
  assert model.base_path == '/models/cns_vaegan'
  assert os.path.isfile(os.path.join(_host_path(model.base_path, argv), '1700000000', 'saved_model.pb'))
  # The local binary's own files still name the host path.
  local = tf_serving.write_configs(str(tmp_path / 'config'), 'cns_vaegan', str(base))
  assert f'base_path: "{base}/cns_vaegan"' in open(local['models.config']).read()


@pytest.mark.skipif(not REAL_SERVER, reason='set CNS_TF_SERVING_ADDRESS=host:port of a '
                    'tensorflow_model_server serving cns_vaegan to run the client against it')
def test_the_same_client_passes_against_real_tf_serving(glyph_dir):
  pngs = [open(os.path.join(glyph_dir, f'U{ord(c)}.png'), 'rb').read() for c in '酪鉻鉸']
  with GlyphClient(REAL_SERVER) as client:
    shape = client.decode([[0.0] * len(client.encode(pngs[:1])['z'][0])])['images'].shape[1:]
    check_every_signature(client, pngs, shape, len(client.encode(pngs[:1])['z'][0]))
