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
  assert argv[0] == 'tensorflow_model_server' and '--port=9000' in argv and '--enable_batching' in argv


def test_without_the_binary_it_says_what_to_run_and_exits_2(tmp_path, capsys, monkeypatch):
  monkeypatch.setenv('PATH', str(tmp_path))  # no tensorflow_model_server here
  assert tf_serving.main(['--model-base-path', str(tmp_path), '--config-dir', str(tmp_path / 'c')]) == 2
  message = capsys.readouterr().err
  assert 'tensorflow_model_server is not on PATH' in message and 'docker run' in message


@pytest.mark.skipif(not REAL_SERVER, reason='set CNS_TF_SERVING_ADDRESS=host:port of a '
                    'tensorflow_model_server serving cns_vaegan to run the client against it')
def test_the_same_client_passes_against_real_tf_serving(glyph_dir):
  pngs = [open(os.path.join(glyph_dir, f'U{ord(c)}.png'), 'rb').read() for c in '酪鉻鉸']
  with GlyphClient(REAL_SERVER) as client:
    shape = client.decode([[0.0] * len(client.encode(pngs[:1])['z'][0])])['images'].shape[1:]
    check_every_signature(client, pngs, shape, len(client.encode(pngs[:1])['z'][0]))
