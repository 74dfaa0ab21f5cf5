"""Server-side batching (serving/batching.py): TF Serving's parameter file and flags, batched
answers equal to unbatched ones, a bad request failing alone, the bounded queue over gRPC and
REST, and a hot swap under batched load."""
import base64
import concurrent.futures
import http.client
import json
import os
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from cns_vaegan.serving import batching, model_server, servables, tf_serving
from cns_vaegan.serving.batching import Batcher, BatchingParameters
from cns_vaegan.serving.client import GlyphClient
from cns_vaegan.serving.model_server import ModelServer
from cns_vaegan.serving.prediction import ServingError, run_signature
import hostile_requests
import serving_checks

# A batched run of the encoder may differ from the same rows run alone by float rounding:
# its convolutions sum in an order that depends on the batch size; rows never mix (batch
# norm runs in inference mode). Measured over 35 glyphs, one batch against 35 runs of one:
# at most 6e-8 on this tiny model and 1.6e-7 on the cpu profile's (ch 32, z 100); the
# decoder's outputs were equal bit for bit. A PNG output may then differ by one grey level.
FLOAT_TOLERANCE = 1e-6
MODEL = 'cns_vaegan'


@pytest.fixture(scope='module')
def model(tmp_path_factory, tiny_model_path):
  base = tmp_path_factory.mktemp('batching')
  os.makedirs(base / MODEL)
  path = serving_checks.copy_version(tiny_model_path, base / MODEL, 1)
  return {'base': base, 'path': path, 'servable': servables.load_servable(MODEL, 1, path)}


@pytest.fixture(scope='module')
def pngs(glyph_dir):
  return [open(os.path.join(glyph_dir, f'U{ord(c)}.png'), 'rb').read() for c in '酪鉻鉸你妳媽湖沽']


def strings(values):
  return np.array(values, dtype=object)


def assert_same_answer(batched, alone):
  assert set(batched) == set(alone)
  for alias, value in alone.items():
    if value.dtype == object:  # PNGs: compare their pixels
      decode = lambda pngs: np.stack([tf.io.decode_png(p).numpy() for p in pngs.reshape(-1)])
      assert np.abs(decode(batched[alias]).astype(int) - decode(value).astype(int)).max() <= 1, alias
    else:
      np.testing.assert_allclose(batched[alias], value, rtol=0, atol=FLOAT_TOLERANCE, err_msg=alias)


# ---------------------------------------------------------------- the file and flags
def test_one_parameter_file_configures_both_servers_as_tf_serving_reads_it(tmp_path, capsys):
  written = tf_serving.write_configs(str(tmp_path), MODEL, '/models')['batching.config']
  assert batching.load_parameters(written) == batching.DEFAULT_PARAMETERS
  # A field left out takes TF Serving's default, comments and either syntax parse.
  assert batching.parse_parameters('# tuned\nmax_batch_size: { value: 8 }\nallowed_batch_sizes: 4\n'
                                   'allowed_batch_sizes: 8') == BatchingParameters(
                                       max_batch_size=8, allowed_batch_sizes=(4, 8))
  assert batching.parse_parameters('') == BatchingParameters(1000, 0, 10, None)
  assert BatchingParameters().threads == os.cpu_count()  # TF Serving's: one a core
  for text, message in (
      ('max_batch_size { value: 0 }', 'max_batch_size must be positive; was 0'),
      ('max_batch_size { value: 8 } allowed_batch_sizes: 4',
       'Last entry in allowed_batch_sizes must match max_batch_size; last entry was 4; expected 8'),
      ('max_batch_size { value: 8 } allowed_batch_sizes: [8, 4, 8]',
       'allowed_batch_sizes entries must be monotonically increasing'),
      ('max_batch_size: 8', 'not a text-format BatchingParameters'),
      ('max_batch_sise { value: 8 }', 'max_batch_sise'),
      ('enable_large_batch_splitting { value: true }',
       'enable_large_batch_splitting is not implemented by the embedded server')):
    with pytest.raises(ValueError, match='^my.config: ') as error:
      batching.parse_parameters(text, 'my.config')
    assert message in str(error.value)

  flags = ['--model-base-path', str(tmp_path)]
  assert model_server.server_from_args(flags).batching == batching.DEFAULT_PARAMETERS
  for off in (['--no-batching'], ['--enable-batching=false']):
    assert model_server.server_from_args(flags + off).batching is None
  tuned = tmp_path / 'tuned.config'
  tuned.write_text('max_batch_size { value: 4 }\nnum_batch_threads { value: 2 }\n')
  assert model_server.server_from_args(flags + ['--batching-parameters-file', str(tuned)]).batching == (
      BatchingParameters(max_batch_size=4, num_batch_threads=2))
  bad = tmp_path / 'bad.config'
  bad.write_text('max_batch_size { value: -1 }')
  for args, message in ((['--batching-parameters-file', str(bad)], f'{bad}: max_batch_size must be'),
                        (['--no-batching', '--batching-parameters-file', str(tuned)],
                         'batching is off')):
    with pytest.raises(SystemExit) as exited:
      model_server.server_from_args(flags + args)
    assert exited.value.code == 2 and message in capsys.readouterr().err


# ----------------------------------------------------------------------- the answers
def test_concurrent_mixed_size_requests_get_their_own_rows_as_if_run_alone(model, pngs):
  """gRPC and REST requests of 1 to 3 rows to four signatures at once, padded to 2, 4 or 8."""
  rng = np.random.default_rng(0)
  z = lambda n: np.tanh(rng.standard_normal((n, 8))).astype(np.float32)
  requests = [('encode', {'images': strings(pngs[:n])}, ()) for n in (1, 2, 3, 1)]
  requests += [('encode', {'images': strings(pngs[3:5])}, ('mean',))]  # an output filter
  requests += [('decode', {'z': z(n)}, ()) for n in (1, 2, 3)]
  requests += [('reconstruct', {'images': strings(pngs[n:n + 2])}, ()) for n in (0, 2, 5)]
  requests += [('arithmetic', {'a': strings(pngs[i:i + n]), 'b': strings(pngs[1:1 + n]),
                               'c': strings(pngs[2:2 + n]), 'coefficients': np.array(k, np.float32)}, ())
               for i, n, k in ((0, 1, []), (3, 2, []), (0, 1, [0.5, 2.0]), (4, 2, [0.5, 2.0]))]
  rest_body = json.dumps({'signature_name': 'encode', 'instances': [
      {'b64': base64.b64encode(p).decode()} for p in pngs[5:7]]})
  parameters = BatchingParameters(max_batch_size=8, batch_timeout_micros=200_000,
                                  num_batch_threads=1, allowed_batch_sizes=(2, 4, 8))
  server = ModelServer(str(model['base']), MODEL, port=0, rest_port=0, batching=parameters)
  server.start(wait_for_model_seconds=30)
  servable, start = server.manager.current(), threading.Barrier(len(requests) + 1)
  client = GlyphClient(f'127.0.0.1:{server.port}', timeout=20)

  def grpc_call(request):
    start.wait()
    signature, inputs, output_filter = request
    return client.predict(signature, inputs, output_filter)

  def rest_call():
    start.wait()
    connection = http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=20)
    connection.request('POST', f'/v1/models/{MODEL}:predict', rest_body)
    return json.loads(connection.getresponse().read())

  try:
    with concurrent.futures.ThreadPoolExecutor(len(requests) + 1) as pool:
      calls = [pool.submit(grpc_call, request) for request in requests]
      rest_answer = pool.submit(rest_call)
      answers = [call.result() for call in calls]
  finally:
    client.close()
    server.stop()
  for (signature, inputs, output_filter), batched in zip(requests, answers):
    assert_same_answer(batched, run_signature(servable, signature, inputs, output_filter))
  alone = run_signature(servable, 'encode', {'images': strings(pngs[5:7])})
  np.testing.assert_allclose([row['z'] for row in rest_answer.result()['predictions']], alone['z'],
                             rtol=0, atol=FLOAT_TOLERANCE)
  shared = {key: count for key, count in server.batcher.batches_run.items() if key[1] > 1}
  assert shared, server.batcher.batches_run  # some requests did share a run


def test_a_request_that_fails_its_own_checks_fails_alone(model, pngs):
  servable = model['servable']
  # Four rows fill the batch, so the three requests share one run, which the bad PNG fails.
  batcher = Batcher(BatchingParameters(max_batch_size=4, batch_timeout_micros=30_000_000,
                                       num_batch_threads=1))
  good, bad = [strings(pngs[:1]), strings(pngs[2:3])], strings([pngs[1], b'GIF89a' * 8])
  try:
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
      calls = [pool.submit(batcher.run, servable, 'encode', {'images': images}, (), len(images))
               for images in (good[0], bad, good[1])]
    for images, call in zip(good, (calls[0], calls[2])):
      assert_same_answer(call.result(), run_signature(servable, 'encode', {'images': images}))
    with pytest.raises(ServingError) as error:
      calls[1].result()
    with pytest.raises(ServingError) as alone:
      run_signature(servable, 'encode', {'images': bad})
    assert (error.value.code, error.value.message) == (alone.value.code, alone.value.message)
    assert error.value.message == 'input images[1] is not a PNG image'  # its own index
    assert batcher.batches_run == {('encode', 3): 1}
  finally:
    batcher.stop()

  # A request whose deadline passed while it waited is dropped, as TF Serving words it.
  batcher = Batcher(BatchingParameters(batch_timeout_micros=0, num_batch_threads=1))
  try:
    with pytest.raises(ServingError) as error:
      batcher.run(servable, 'encode', {'images': good[0]}, (), 1, deadline=time.monotonic())
    assert (error.value.code, error.value.message) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED, 'Run() timeout exceeded while waiting in batching queue')
    assert not batcher.batches_run
  finally:
    batcher.stop()


# ------------------------------------------------------------------------ the queue
def test_a_full_queue_is_unavailable_over_grpc_and_503_over_rest_as_tf_serving_answers(model, pngs):
  """One batch of at most 2 rows may wait; a request it cannot take is refused at once."""
  parameters = BatchingParameters(max_batch_size=2, batch_timeout_micros=30_000_000,
                                  max_enqueued_batches=1, num_batch_threads=1)
  server = ModelServer(str(model['base']), MODEL, port=0, rest_port=0, batching=parameters)
  server.start(wait_for_model_seconds=30)
  channel = grpc.insecure_channel(f'127.0.0.1:{server.port}')  # no retries: see each answer
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  call = lambda signature, inputs: hostile_requests.grpc_call(
      stub, hostile_requests.predict_request(signature, inputs), timeout=20)
  full = ('The batch scheduling queue to which this task was submitted is full; currently 1 '
          'batches enqueued and max_enqueued_batches is 1')
  try:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
      waiting = pool.submit(call, 'encode', {'images': strings(pngs[:1])})
      deadline = time.monotonic() + 20
      while not server.batcher._queues:  # pylint: disable=protected-access  (it is queued)
        assert time.monotonic() < deadline and not waiting.done(), waiting
        time.sleep(0.01)
      assert call('encode', {'images': strings(pngs[1:3])}) == ('UNAVAILABLE', full)
      connection = http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=20)
      connection.request('POST', f'/v1/models/{MODEL}:predict', json.dumps(
          {'signature_name': 'encode', 'instances': [{'b64': base64.b64encode(p).decode()}
                                                     for p in pngs[1:3]]}))
      response = connection.getresponse()
      assert (response.status, json.loads(response.read())) == (503, {'error': full})
      assert call('encode', {'images': strings(pngs[1:4])}) == (
          'INVALID_ARGUMENT', 'Task size 3 is larger than maximum input batch size 2')
      # Scalar inputs never wait in a queue; a row that fills the batch sends it at once.
      assert call('sample', {'n': np.int32(2), 'seed': np.int64(0)}) == ('OK', '')
      assert not waiting.done()
      started = time.monotonic()
      assert call('encode', {'images': strings(pngs[1:2])}) == ('OK', '')
      assert waiting.result() == ('OK', '') and time.monotonic() - started < 10
    assert server.batcher.batches_run == {('encode', 2): 1}
  finally:
    channel.close()
    server.stop()


def test_a_hot_swap_under_batched_load_loses_no_request(model, pngs, tmp_path):
  os.makedirs(tmp_path / MODEL)
  serving_checks.copy_version(model['path'], tmp_path / MODEL, 1)
  server = ModelServer(str(tmp_path), MODEL, port=0, rest_port=0, poll_seconds=0.2,
                       batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=2000,
                                                   num_batch_threads=1))
  server.start(wait_for_model_seconds=30)
  failures, versions, stop = [], set(), threading.Event()
  body = json.dumps({'signature_name': 'encode', 'instances': [
      {'b64': base64.b64encode(pngs[0]).decode()}]})

  def grpc_client():
    with GlyphClient(f'127.0.0.1:{server.port}', timeout=20) as own:
      while not stop.is_set():
        try:
          own.encode(pngs[:1])
          versions.add(own.last_version)
        except grpc.RpcError as error:
          failures.append(f'gRPC {error.code().name}: {error.details()}')

  def rest_client():
    connection = http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=20)
    while not stop.is_set():
      connection.request('POST', f'/v1/models/{MODEL}:predict', body)
      response = connection.getresponse()
      answer = response.read()
      if response.status != 200:
        failures.append(f'REST {response.status}: {answer[:200]}')
    connection.close()

  try:
    serving_checks.run_clients_across_a_swap(
        [grpc_client] * 2 + [rest_client], stop,
        lambda: serving_checks.copy_version(model['path'], tmp_path / MODEL, 2),  # no new weights needed
        lambda: 2 in versions, settle_seconds=0.5)
  finally:
    server.stop()
  assert not failures, failures[:5]
  assert versions == {1, 2}
  assert any(requests > 1 for _, requests in server.batcher.batches_run), server.batcher.batches_run
