"""The embedded TF-Serving-protocol server: signatures over gRPC and REST, faults, hot swap, CLI."""
import base64
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from cns_vaegan.components import glyph_figures
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.serving import cli
from cns_vaegan.serving.client import GlyphClient
from cns_vaegan.serving.model_server import ModelServer
from conftest import TINY_ARCHITECTURE
import serving_checks
from serving_checks import check_every_signature

ARCH = Architecture(**TINY_ARCHITECTURE)
IMAGE = ARCH.image_shape


def export_version(base, version, seed):
  return tf.saved_model.load(serving_checks.export_tiny_version(base, version, seed))


@pytest.fixture(scope='module')
def served(tmp_path_factory, glyph_dir, tiny_model_path):
  base = tmp_path_factory.mktemp('serving')
  os.makedirs(base / 'cns_vaegan')
  version_1 = serving_checks.copy_version(tiny_model_path, base / 'cns_vaegan', 1)
  in_process = tf.saved_model.load(version_1)
  server = ModelServer(str(base), 'cns_vaegan', port=0, rest_port=0, poll_seconds=0.2)
  server.start(wait_for_model_seconds=30)
  client = GlyphClient(f'127.0.0.1:{server.port}', timeout=20)
  pngs = [open(os.path.join(glyph_dir, f'U{ord(c)}.png'), 'rb').read() for c in '酪鉻鉸你']
  yield {'server': server, 'client': client, 'model': in_process, 'pngs': pngs, 'base': base}
  client.close()
  server.stop()


def local(model, name, **inputs):
  return {k: v.numpy() for k, v in model.signatures[name](
      **{k: tf.constant(v) for k, v in inputs.items()}).items()}


def rest(served, path, body=None):
  url = f'http://127.0.0.1:{served["server"].rest_port}{path}'
  data = None if body is None else json.dumps(body).encode()
  try:
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=20) as response:
      return response.status, json.loads(response.read())
  except urllib.error.HTTPError as error:
    return error.code, json.loads(error.read())


# --------------------------------------------------------------------- the happy path
def test_every_signature_over_grpc_matches_the_model_in_process(served):
  client, model, pngs = served['client'], served['model'], served['pngs']
  out = check_every_signature(client, pngs, IMAGE, ARCH.z_dim)
  images = np.array(pngs, dtype=object)
  np.testing.assert_allclose(out['encode']['z'], local(model, 'encode', images=images)['z'], rtol=1e-6)
  np.testing.assert_allclose(out['reconstruct']['images'],
                             local(model, 'reconstruct', images=images)['images'], rtol=1e-6)
  expected = local(model, 'arithmetic', a=images[:1], b=images[1:2], c=images[2:3],
                   coefficients=np.array([], np.float32))
  np.testing.assert_allclose(out['arithmetic']['images'], expected['images'], rtol=1e-6)
  np.testing.assert_allclose(out['sample']['images'],
                             local(model, 'sample', n=np.int32(3), seed=np.int64(1))['images'])
  assert out['decode']['png_bytes'][0].startswith(b'\x89PNG')
  assert client.last_version == 1


def test_rest_predict_metadata_and_status_like_tf_serving(served):
  model, pngs = served['model'], served['pngs']
  b64 = [{'b64': base64.b64encode(p).decode()} for p in pngs[:2]]
  status, body = rest(served, '/v1/models/cns_vaegan:predict',
                      {'signature_name': 'reconstruct', 'instances': b64})
  assert status == 200 and len(body['predictions']) == 2
  expected = local(model, 'reconstruct', images=np.array(pngs[:2], dtype=object))
  np.testing.assert_allclose(np.array(body['predictions'][0]['images']), expected['images'][0],
                             rtol=1e-6)
  assert base64.b64decode(body['predictions'][0]['png_bytes']['b64']) == expected['png_bytes'][0]
  status, body = rest(served, '/v1/models/cns_vaegan/versions/1:predict',
                      {'signature_name': 'sample', 'inputs': {'n': 2, 'seed': 5},
                       'output_filter': ['z']})
  assert status == 200 and np.array(body['outputs']).shape == (2, ARCH.z_dim)
  status, body = rest(served, '/v1/models/cns_vaegan')
  assert status == 200 and body['model_version_status'][0] == {
      'version': '1', 'state': 'AVAILABLE', 'status': {'error_code': 'OK', 'error_message': ''}}
  status, body = rest(served, '/v1/models/cns_vaegan/metadata')
  assert status == 200 and 'arithmetic' in body['metadata']['signature_def']['signatureDef']


def test_health_and_unimplemented_methods(served):
  channel = grpc.insecure_channel(f'127.0.0.1:{served["server"].port}')
  health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=''))
  assert health.status == health_pb2.HealthCheckResponse.SERVING
  with pytest.raises(grpc.RpcError) as error:
    prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(
        classification_pb2.ClassificationRequest())
  assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
  channel.close()


def test_metadata_fields_other_than_signature_def_are_refused_as_tf_serving_words_it(served):
  from tensorflow_serving.apis import get_model_metadata_pb2
  for fields, message in (([], 'GetModelMetadataRequest must specify at least one metadata_field'),
                          (['signature_def', 'nope'], 'Metadata field nope is not supported')):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=fields)
    request.model_spec.name = 'cns_vaegan'
    with pytest.raises(grpc.RpcError) as error:
      served['client'].predictions.GetModelMetadata(request, timeout=20)
    assert (error.value.code(), error.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)


# ------------------------------------------------------------------------- the faults
def _raw_predict(served, signature, inputs, name='cns_vaegan', version=None, output_filter=()):
  request = predict_pb2.PredictRequest()
  request.model_spec.name = name
  if version is not None:
    request.model_spec.version.value = version
  request.model_spec.signature_name = signature
  for alias, value in inputs.items():
    request.inputs[alias].CopyFrom(value if isinstance(value, type(request.inputs[alias]))
                                   else tf.make_tensor_proto(value))
  request.output_filter.extend(output_filter)
  return served['client'].predictions.Predict(request, timeout=20)


def _malformed():
  proto = tf.make_tensor_proto(np.zeros((1, ARCH.z_dim), np.float32))
  proto.tensor_content = proto.tensor_content[:-4]  # a float short
  return proto


def _faults(pngs):
  z = np.zeros((1, ARCH.z_dim), np.float32)
  images = np.array(pngs[:1], dtype=object)
  return [
      ('unknown model', dict(signature='decode', inputs={'z': z}, name='nope'),
       grpc.StatusCode.NOT_FOUND, 'Servable not found for request: Latest(nope)'),
      ('unknown version', dict(signature='decode', inputs={'z': z}, version=99),
       grpc.StatusCode.NOT_FOUND, 'Servable not found for request: Specific(cns_vaegan, 99)'),
      ('unknown signature', dict(signature='nope', inputs={'z': z}),
       grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
      ('missing input', dict(signature='arithmetic', inputs={'a': images, 'b': images,
                                                              'coefficients': np.zeros([0], np.float32)}),
       grpc.StatusCode.INVALID_ARGUMENT, 'Missing but required: {c}'),
      ('extra input', dict(signature='decode', inputs={'z': z, 'x': z}),
       grpc.StatusCode.INVALID_ARGUMENT, 'Sent extra: {x}'),
      ('malformed tensor', dict(signature='decode', inputs={'z': _malformed()}),
       grpc.StatusCode.INVALID_ARGUMENT, 'input "z" is not a valid tensor'),
      ('wrong dtype', dict(signature='decode', inputs={'z': z.astype(np.int32)}),
       grpc.StatusCode.INVALID_ARGUMENT, 'Expects arg[0] ("z") to be float32 but int32 is provided'),
      ('wrong shape', dict(signature='decode', inputs={'z': np.zeros((1, 2, 3), np.float32)}),
       grpc.StatusCode.INVALID_ARGUMENT, 'input "z" has shape [1, 2, 3]'),
      ('not a PNG', dict(signature='encode', inputs={'images': np.array([b'GIF89a'], dtype=object)}),
       grpc.StatusCode.INVALID_ARGUMENT, 'input images[0] is not a PNG image'),
      ('undecodable PNG', dict(signature='encode', inputs={'images': np.array([pngs[0][:40]], dtype=object)}),
       grpc.StatusCode.INVALID_ARGUMENT, 'Invalid PNG'),
      ('unknown output alias', dict(signature='decode', inputs={'z': z}, output_filter=['nope']),
       grpc.StatusCode.INVALID_ARGUMENT, 'output tensor alias not found in signature: nope'),
      ('batch too large', dict(signature='decode', inputs={'z': np.zeros((300, ARCH.z_dim), np.float32)}),
       grpc.StatusCode.INVALID_ARGUMENT, 'the server takes at most 256'),
  ]


def test_every_fault_gets_tf_servings_status_and_the_server_stays_up(served):
  for label, request, code, message in _faults(served['pngs']):
    with pytest.raises(grpc.RpcError) as error:
      _raw_predict(served, **request)
    assert error.value.code() == code, label
    assert message in error.value.details(), (label, error.value.details())
    good = _raw_predict(served, '', {'images': np.array(served['pngs'][:1], dtype=object)})
    assert good.model_spec.signature_name == 'serving_default'  # empty name: serving_default


def test_rest_faults_map_to_http_statuses(served):
  assert rest(served, '/v1/models/cns_vaegan:predict', {'signature_name': 'nope', 'instances': [1]}) == (
      400, {'error': 'Serving signature key "nope" not found.'})
  status, body = rest(served, '/v1/models/nope:predict', {'instances': [1]})
  assert status == 404 and 'Servable not found for request: Latest(nope)' in body['error']
  status, body = rest(served, '/v1/models/cns_vaegan:predict',
                      {'signature_name': 'encode', 'instances': [{'b64': 'bm90IGEgcG5n'}]})
  assert status == 400 and body['error'] == 'input images[0] is not a PNG image'


# ------------------------------------------------------------------- versions and swap
def test_a_new_version_is_swapped_in_under_load_without_a_failed_request(served):
  client, pngs, base = served['client'], served['pngs'], served['base']
  failures, versions, stop = [], [], threading.Event()

  def stream():
    with GlyphClient(f'127.0.0.1:{served["server"].port}', timeout=20) as own:
      while not stop.is_set():
        try:
          own.reconstruct(pngs[:2])
          versions.append(own.last_version)
        except grpc.RpcError as error:
          failures.append(error.details())

  def swap():
    os.makedirs(base / 'cns_vaegan' / 'not-a-version')  # ignored: not numeric
    return export_version(str(base / 'cns_vaegan'), 2, seed=2)

  v2 = serving_checks.run_clients_across_a_swap([stream] * 4, stop, swap,
                                                lambda: bool(versions) and versions[-1] == 2, 0.5)
  assert not failures, failures[:3]
  assert versions[0] == 1 and versions[-1] == 2 and 2 in versions
  after = client.reconstruct(pngs[:1])['images']
  np.testing.assert_allclose(after, local(v2, 'reconstruct', images=np.array(pngs[:1], dtype=object))
                             ['images'], rtol=1e-6)
  states = {s['version']: s['state'] for s in client.model_status()}
  assert states == {1: 'END', 2: 'AVAILABLE'}


def test_a_pinned_version_is_served_and_ports_open_only_once_a_version_loads(tmp_path, served):
  model_dir = tmp_path / 'cns_vaegan'
  os.makedirs(model_dir / '7')  # no saved_model.pb yet: not a version
  server = ModelServer(str(tmp_path), 'cns_vaegan', port=0, rest_port=None, model_version=1,
                       poll_seconds=0.1)
  started = threading.Thread(target=server.start, kwargs={'wait_for_model_seconds': 60})
  started.start()
  time.sleep(0.5)
  assert started.is_alive() and server._grpc is None  # still waiting: no port yet
  for version in ('1', '2'):  # staged, then renamed: a version appears whole
    shutil.copytree(served['base'] / 'cns_vaegan' / version, model_dir / f'.staging-{version}')
    os.rename(model_dir / f'.staging-{version}', model_dir / version)
  started.join(timeout=60)
  try:
    with GlyphClient(f'127.0.0.1:{server.port}') as pinned:
      pinned.sample(1)
      assert pinned.last_version == 1  # pinned, though 2 is newer
  finally:
    server.stop()


# ------------------------------------------------------------------------------ CLI
def test_cli_writes_the_seeds_figures(served, tmp_path, font_path):
  address = f'127.0.0.1:{served["server"].port}'
  common = ['--server', address, '--out', str(tmp_path), '--font', font_path]
  assert cli.main(common + ['arith', '酪', '鉻', '鉸']) == 0
  panel = Image.open(tmp_path / 'arith_酪-鉻+鉸.png')
  assert panel.size == (5 * 17 + 1, 4 * (16 + 2) + 3 * 4)  # 5 columns; 4 rows with gaps of 4
  assert cli.main(common + ['interpolate', '你妳']) == 0
  assert Image.open(tmp_path / 'interpolate_你-妳.png').width == 10 * 17 + 1
  assert cli.main(common + ['sample', '-n', '9']) == 0
  assert Image.open(tmp_path / 'samples_n9_seed0.png').size == (3 * 17 + 1, 3 * 17 + 1)
  tuples = tmp_path / 'test.txt'
  tuples.write_text('酪鉻鉸\n你 妳 如\n', encoding='utf-8')
  assert cli.main(common + ['batch', str(tuples)]) == 0
  assert (tmp_path / 'arith_你-妳+如.png').exists()
  assert cli.main(common + ['--model-name', 'nope', 'sample']) == 1


def test_cli_coefficients_flag_sets_the_panel_width(served, tmp_path, font_path):
  common = ['--server', f'127.0.0.1:{served["server"].port}', '--out', str(tmp_path), '--font', font_path]
  assert cli.main(common + ['arith', '酪鉻鉸', '--coefficients', '1,2']) == 0
  assert Image.open(tmp_path / 'arith_酪-鉻+鉸.png').width == 3 * 17 + 1  # 3 inputs, 2 a values


def test_cli_global_flags_go_before_or_after_the_command_and_figures_land_where_it_runs(
    served, tmp_path, font_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)  # no --out: ./cns-vaegan-figures, in the folder it runs from
  address = f'127.0.0.1:{served["server"].port}'
  assert cli.main(['sample', '-n', '4', '--server', address, '--font', font_path]) == 0
  written = tmp_path / cli.DEFAULT_OUT / 'samples_n4_seed0.png'
  assert written.is_file() and capsys.readouterr().out.splitlines() == [str(written)]
  # Given on both sides, the one after the command wins; given before only, it holds.
  assert cli.main(['--server', '127.0.0.1:1', 'status', '--server', address, '--timeout', '20']) == 0
  assert cli.main(['--server', address, '--out', 'elsewhere', 'reconstruct', '你', '--font', font_path]) == 0
  assert capsys.readouterr().out.splitlines()[-1] == str(tmp_path / 'elsewhere' / 'reconstruct_你.png')


def test_cli_sample_splits_n_into_requests_the_server_takes_with_a_progress_bar(served, tmp_path, font_path,
                                                                             capsys):
  common = ['--server', f'127.0.0.1:{served["server"].port}', '--out', str(tmp_path), '--font', font_path]
  assert cli.main(common + ['sample', '-n', '300']) == 0  # over the server's 256
  assert Image.open(tmp_path / 'samples_n300_seed0.png').size == (18 * 17 + 1, 17 * 17 + 1)
  assert '300/300' in capsys.readouterr().err
  # Requests of 7, 7 and 2 glyphs, seeded 3, 4 and 5.
  assert cli.main(common + ['--max-batch-size', '7', 'sample', '-n', '16', '--seed', '3']) == 0
  client = served['client']
  parts = [client.sample(size, seed)['images'] for size, seed in ((7, 3), (7, 4), (2, 5))]
  expected = glyph_figures.grid(glyph_figures.from_unit_range(np.concatenate(parts)), columns=4)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'samples_n16_seed3.png')), expected[..., 0])


def test_a_version_that_failed_to_load_is_retried_spaced_out_then_given_up(tmp_path, served):
  from cns_vaegan.serving.servables import ServableManager
  model_dir = tmp_path / 'cns_vaegan' / '3'
  model_dir.mkdir(parents=True)
  (model_dir / 'saved_model.pb').write_bytes(b'half a file')  # a copy in progress
  manager = ServableManager(str(tmp_path), 'cns_vaegan', max_load_retries=2, load_retry_seconds=0.3)
  assert not manager.poll_once() and manager.states[3][0] == 'LOADING'
  shutil.rmtree(model_dir)
  shutil.copytree(served['base'] / 'cns_vaegan' / '1', model_dir)  # the copy completes
  assert not manager.poll_once()  # too soon: the retry waits load_retry_seconds
  time.sleep(0.35)
  assert manager.poll_once() and manager.current().version == 3
  broken = tmp_path / 'cns_vaegan' / '4'
  broken.mkdir()
  (broken / 'saved_model.pb').write_bytes(b'never a model')
  for _ in range(4):  # the first try and 2 retries, then given up
    assert manager.poll_once()  # version 3 keeps serving throughout
    time.sleep(0.35)
  assert manager.current().version == 3 and manager.states[4][0] == 'END'
  assert manager._failed_loads[4] == 3  # pylint: disable=protected-access
