"""The model server against hostile clients: issue 10's table, property-based requests, a soak.

The server runs in its own process (as `make serve` runs it), so its RSS and threads are
its own. Every refusal is asserted for its status, its time (< 1 s), the server's peak RSS
growth (< 512 MB), and a valid gRPC and REST request right after.
"""
import base64
import concurrent.futures
import http.client
import json
import os
import signal
import socket
import threading
import time

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

import hostile_requests as hostile
from bad_glyph_files import png_bomb, png_with_header
from cns_vaegan.components.trainer.architecture import Architecture
from conftest import TINY_ARCHITECTURE
import serving_checks
from serving_checks import export_tiny_version as export_version

ARCH = Architecture(**TINY_ARCHITECTURE)
MAX_SECONDS, MAX_RSS_GROWTH_MB = 1.0, 512
PROPERTY = settings(max_examples=100, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope='module')
def pngs(glyph_dir):
  return [open(os.path.join(glyph_dir, f'U{ord(c)}.png'), 'rb').read() for c in '酪鉻鉸你']


@pytest.fixture(scope='module')
def server(tmp_path_factory, pngs, tiny_model_path):
  base = tmp_path_factory.mktemp('hostile_serving')
  os.makedirs(base / hostile.MODEL_NAME)
  serving_checks.copy_version(tiny_model_path, base / hostile.MODEL_NAME, 1)
  process = hostile.ServerProcess(str(base))
  process.base = base
  hostile.warm_up(process, pngs, ARCH.z_dim)
  yield process
  assert process.stop() == 0, process.log()[-3000:]


# ------------------------------------------------------------------------ the table
EXPECTED = {  # row -> (status, exact detail or None); None status: threads are checked instead
    'encode, one 16000x16000 PNG': (
        'INVALID_ARGUMENT',
        'input images[0] is a 16000x16000 PNG; the model takes at most 2048 px a side'),
    'encode, the same PNG x8': (
        'INVALID_ARGUMENT',
        'input images[0] is a 16000x16000 PNG; the model takes at most 2048 px a side'),
    'decode, 21-byte proto declaring [20000000, 100]': (
        'INVALID_ARGUMENT', 'input "z" has a batch of 20000000; the server takes at most 256'),
    'arithmetic, 256 triples x 256 coefficients': (
        'INVALID_ARGUMENT', 'signature "arithmetic" would make 65536 images; the server takes at '
                            'most 256 a request (--max-batch-size)'),
    'sample, n = 5000': (
        'INVALID_ARGUMENT', 'signature "sample" would make 5000 images; the server takes at most '
                            '256 a request (--max-batch-size)'),
    '300 idle REST connections': (None, None),
    'REST Content-Length: -1': ('400', None),
    'REST 100,000-deep JSON array': ('400', None),
}


@pytest.mark.parametrize('row', list(EXPECTED))
def test_each_row_of_the_issue_table_is_refused_fast_in_bounded_memory_and_serving_goes_on(
    server, pngs, row):
  idle_threads = server.threads()
  outcome = hostile.run_row(server, row, hostile.issue_table_rows(pngs)[row], pngs)
  status, detail = EXPECTED[row]
  if status is None:  # 300 idle connections cost no thread each (and are held 1 s by the client)
    assert int(outcome.status.split()[0]) <= idle_threads + 4, outcome
    assert outcome.seconds < MAX_SECONDS + 1.5, outcome
  else:
    assert status in outcome.status.split(), outcome  # 'HTTP/1.0 400 Bad Request' has '400'
    assert outcome.seconds < MAX_SECONDS, outcome
  if detail is not None:
    assert outcome.detail == detail
  assert outcome.rss_growth_mb < MAX_RSS_GROWTH_MB, outcome
  assert outcome.still_serving, outcome


def test_the_models_and_the_servers_words_reach_grpc_and_rest_clients_intact(server, pngs):
  bomb = png_bomb(16000)
  cases = [  # (signature, inputs, JSON inputs, the exact message)
      ('encode', {'images': np.array([pngs[0], bomb], dtype=object)},
       {'images': [{'b64': base64.b64encode(p).decode()} for p in (pngs[0], bomb)]},
       'input images[1] is a 16000x16000 PNG; the model takes at most 2048 px a side'),
      ('interpolate', {'start': np.array(pngs[:1], dtype=object),
                       'end': np.array(pngs[1:2], dtype=object), 'steps': np.int32(1)},
       {'start': [{'b64': base64.b64encode(pngs[0]).decode()}],
        'end': [{'b64': base64.b64encode(pngs[1]).decode()}], 'steps': 1},
       'input steps must be between 2 and 64, got 1'),
      ('sample', {'n': np.int32(300), 'seed': np.int64(0)}, {'n': 300, 'seed': 0},
       'signature "sample" would make 300 images; the server takes at most 256 a request '
       '(--max-batch-size)'),
  ]
  with hostile.channel(server) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for signature, inputs, json_inputs, message in cases:
      assert hostile.grpc_call(stub, hostile.predict_request(signature, inputs)) == (
          'INVALID_ARGUMENT', message)
      body = json.dumps({'signature_name': signature, 'inputs': json_inputs}).encode()
      assert hostile.rest_call(server, 'POST', hostile.predict_path(), body) == (
          400, {'error': message})


# ----------------------------------------------------------- property-based requests
DTYPES = [types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_INT32, types_pb2.DT_INT64,
          types_pb2.DT_STRING, types_pb2.DT_BOOL, types_pb2.DT_HALF, types_pb2.DT_UINT8,
          types_pb2.DT_INVALID, 999]
SIGNATURE_INPUTS = {'encode': ['images'], 'reconstruct': ['images'], 'decode': ['z'],
                    'encode_pixels': ['pixels'], 'sample': ['n', 'seed'],
                    'interpolate': ['start', 'end', 'steps'],
                    'arithmetic': ['a', 'b', 'c', 'coefficients'], 'nope': ['x']}
ANSWERS = {'OK', 'INVALID_ARGUMENT', 'FAILED_PRECONDITION'}


def bounded(server, run_property, **fixtures) -> None:
  """Runs a hypothesis property against the server; its peak RSS may grow < 512 MB meanwhile."""
  before = server.reset_peak_rss()
  run_property(server=server, **fixtures)
  assert server.peak_rss_mb() - before < MAX_RSS_GROWTH_MB
  assert server.process.poll() is None


@st.composite
def tensor_protos(draw):
  """Any dtype, any declared shape (huge, negative, unknown rank), any or no values."""
  dims = draw(st.lists(st.one_of(st.integers(0, 3), st.integers(0, 2 ** 40), st.integers(-3, -1)),
                       max_size=5))
  values = draw(st.sampled_from(['none', 'float_val', 'int_val', 'int64_val', 'string_val',
                                 'tensor_content']))
  kwargs = {}
  if values == 'float_val':
    kwargs[values] = draw(st.lists(st.floats(allow_nan=True, width=32), max_size=8))
  elif values in ('int_val', 'int64_val'):
    kwargs[values] = draw(st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=8))
  elif values == 'string_val':
    kwargs[values] = draw(st.lists(st.binary(max_size=40), max_size=4))
  elif values == 'tensor_content':
    kwargs[values] = draw(st.binary(max_size=64))
  proto = hostile.declared_tensor(draw(st.sampled_from(DTYPES)), dims, **kwargs)
  proto.tensor_shape.unknown_rank = draw(st.booleans()) and not dims
  return proto


@PROPERTY
@given(signature=st.sampled_from(sorted(SIGNATURE_INPUTS)), data=st.data())
def _any_declared_tensor(server, signature, data):
  aliases = SIGNATURE_INPUTS[signature]
  inputs = {alias: data.draw(tensor_protos(), label=alias)
            for alias in data.draw(st.lists(st.sampled_from(aliases + ['extra']), min_size=1,
                                            max_size=5, unique=True), label='aliases')}
  with hostile.channel(server) as channel:
    start = time.perf_counter()
    code, detail = hostile.grpc_call(prediction_service_pb2_grpc.PredictionServiceStub(channel),
                                     hostile.predict_request(signature, inputs), timeout=30)
  assert code in ANSWERS, detail
  assert time.perf_counter() - start < 5, (code, detail)


def test_any_declared_tensor_is_answered_without_materialising_it(server):
  bounded(server, _any_declared_tensor)


@st.composite
def pngs_with_any_header(draw):
  """A PNG with any IHDR (size, depth, colour type) and any data after it, maybe cut short."""
  data = png_with_header(draw(st.one_of(st.integers(0, 64), st.integers(0, 2 ** 32 - 1))),
                         draw(st.one_of(st.integers(0, 64), st.integers(0, 2 ** 32 - 1))),
                         draw(st.binary(max_size=200)), draw(st.sampled_from([1, 2, 4, 8, 16, 7])),
                         draw(st.sampled_from([0, 2, 3, 4, 6, 5])))
  return data[:draw(st.integers(0, len(data)))] if draw(st.booleans()) else data


@PROPERTY
@given(png=pngs_with_any_header(), rest=st.booleans())
def _any_png_header(server, pngs, png, rest):
  images = [pngs[0], png]
  if rest:
    body = json.dumps({'signature_name': 'encode', 'instances': [
        {'b64': base64.b64encode(p).decode()} for p in images]}).encode()
    status, answer = hostile.rest_call(server, 'POST', hostile.predict_path(), body)
    assert status in (200, 400), answer
    detail = '' if status == 200 else answer['error']
  else:
    with hostile.channel(server) as channel:
      code, detail = hostile.grpc_call(
          prediction_service_pb2_grpc.PredictionServiceStub(channel),
          hostile.predict_request('encode', {'images': np.array(images, dtype=object)}))
    assert code in ('OK', 'INVALID_ARGUMENT'), (code, detail)
  if len(png) < 24:  # no whole IHDR size
    assert detail == 'input images[1] is not a PNG image'
  elif max(int.from_bytes(png[16:20], 'big'), int.from_bytes(png[20:24], 'big')) > 2048:
    assert detail == (f'input images[1] is a {int.from_bytes(png[16:20], "big")}x'
                      f'{int.from_bytes(png[20:24], "big")} PNG; the model takes at most 2048 px a side')


def test_any_png_header_is_refused_by_its_size_or_decoded_within_bounds(server, pngs):
  bounded(server, _any_png_header, pngs=pngs)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                       max_size=4),
    max_leaves=20)
request_bodies = st.one_of(
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {'signature_name': st.sampled_from(sorted(SIGNATURE_INPUTS)) | json_values},
        optional={'instances': json_values, 'inputs': json_values,
                  'output_filter': st.lists(st.sampled_from(['z', 'images', 'x'])) | json_values}
    ).map(json.dumps),
    st.integers(1, 5000).map(lambda depth: '[' * depth + ']' * depth),
    st.binary(max_size=200),
)


@PROPERTY
@given(body=request_bodies)
def _any_json_body(server, body):
  connection = http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=30)
  try:
    status, answer = hostile.rest_call(server, 'POST', hostile.predict_path(),
                                       body if isinstance(body, bytes) else body.encode(),
                                       connection=connection)
    assert status in (200, 400, 404), answer
    assert status == 200 or 'error' in answer
    again = hostile.rest_call(server, 'GET', f'/v1/models/{hostile.MODEL_NAME}', connection=connection)
    assert again[0] == 200  # the same keep-alive connection, right after
  finally:
    connection.close()


def test_any_json_body_is_answered_4xx_or_200_and_the_connection_stays_usable(server):
  bounded(server, _any_json_body)


# --------------------------------------------------------------------------- REST
def test_rest_bodies_over_the_limit_slow_bodies_and_bad_bodies_are_refused(server):
  connection = http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=30)
  status, answer = hostile.rest_call(server, 'POST', hostile.predict_path(), b'{"instances": [1,',
                                     connection=connection)
  assert status == 400 and answer['error'].startswith('JSON Parse error')
  assert hostile.rest_call(server, 'GET', f'/v1/models/{hostile.MODEL_NAME}',
                           connection=connection)[0] == 200  # keep-alive survives a 400
  connection.close()
  start = time.perf_counter()
  line = hostile.raw_http(server, (f'POST {hostile.predict_path()} HTTP/1.1\r\nHost: x\r\n'
                                   f'Content-Length: {64 * 1024 * 1024}\r\n\r\n{{').encode())
  assert ' 413 ' in line and time.perf_counter() - start < MAX_SECONDS


@pytest.fixture(scope='module')
def tight(server):
  """A second server on the same models with small limits: 1 worker, 2 requests, 1 s timeouts."""
  process = hostile.ServerProcess(str(server.base), '--workers', '1', '--max-concurrent-requests',
                                  '2', '--rest-timeout-seconds', '1')
  yield process
  assert process.stop() == 0, process.log()[-3000:]


def test_rest_idle_and_slow_connections_time_out(tight):
  with socket.create_connection(('127.0.0.1', tight.rest_port), timeout=10) as idle:
    start = time.perf_counter()
    assert idle.recv(100) == b''  # closed by the server: its keep-alive timeout
    assert time.perf_counter() - start < 5
  line = hostile.raw_http(tight, (f'POST {hostile.predict_path()} HTTP/1.1\r\nHost: x\r\n'
                                  'Content-Length: 100\r\n\r\n{"inst').encode())
  assert ' 408 ' in line


def test_requests_beyond_the_cap_are_resource_exhausted(tight):
  slow = hostile.predict_request('encode', {'images': hostile.slowest_allowed_images()})
  with hostile.channel(tight) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
      codes = list(pool.map(lambda _: hostile.grpc_call(stub, slow)[0], range(6)))
  assert 'RESOURCE_EXHAUSTED' in codes and 'OK' in codes, codes


def test_a_request_whose_deadline_passed_while_it_queued_is_never_run(tight):
  slow = hostile.predict_request('encode', {'images': hostile.slowest_allowed_images()})
  quick = hostile.predict_request('sample', {'n': np.int32(1), 'seed': np.int64(0)})
  with hostile.channel(tight) as channel, concurrent.futures.ThreadPoolExecutor(1) as pool:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    start = time.perf_counter()
    busy = pool.submit(hostile.grpc_call, stub, slow)
    time.sleep(0.3)  # the one worker is busy
    assert hostile.grpc_call(stub, slow, timeout=0.3)[0] == 'DEADLINE_EXCEEDED'  # queued, expired
    assert busy.result()[0] == 'OK'
    slow_seconds = time.perf_counter() - start
    start = time.perf_counter()
    assert hostile.grpc_call(stub, quick)[0] == 'OK'
    # Had the expired request run after `busy`, this one would have waited as long again.
    assert time.perf_counter() - start < min(1.0, slow_seconds / 2)


# ------------------------------------------------------------------- lifecycle, soak
def test_it_says_it_waits_for_a_model_then_drains_on_sigterm(tmp_path, pngs):
  model_dir = tmp_path / hostile.MODEL_NAME
  os.makedirs(model_dir)
  process = hostile.ServerProcess(str(tmp_path), '--drain-seconds', '20', wait=False)
  try:
    deadline = time.monotonic() + 120
    while 'Waiting for a first version of cns_vaegan' not in process.log():
      assert time.monotonic() < deadline and process.process.poll() is None, process.log()[-2000:]
      time.sleep(0.2)
    export_version(model_dir, 1, seed=3)
    process.wait_until_serving()
    slow = hostile.predict_request('encode', {'images': hostile.slowest_allowed_images()})
    with hostile.channel(process) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      in_flight = concurrent.futures.ThreadPoolExecutor(1).submit(hostile.grpc_call, stub, slow)
      time.sleep(0.5)
      process.process.send_signal(signal.SIGTERM)
      assert in_flight.result() == ('OK', '')  # drained, not cut
    assert process.process.wait(timeout=60) == 0
    assert 'Stopping: draining requests in progress' in process.log()
  finally:
    process.stop()


def test_soak_grpc_and_rest_clients_across_a_hot_swap_lose_nothing_within_a_memory_ceiling(
    server, pngs):
  images = np.array(pngs[:2], dtype=object)
  body = json.dumps({'signature_name': 'reconstruct', 'instances': [
      {'b64': base64.b64encode(p).decode()} for p in pngs[:2]]}).encode()
  failures, versions, stop = [], set(), threading.Event()
  before = server.reset_peak_rss()

  def grpc_client():
    with hostile.channel(server) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      while not stop.is_set():
        try:
          response = stub.Predict(hostile.predict_request('reconstruct', {'images': images}), timeout=30)
          versions.add(response.model_spec.version.value)
        except grpc.RpcError as error:
          failures.append(f'gRPC {error.code().name}: {error.details()}')

  def rest_client():
    connection = http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=30)
    while not stop.is_set():
      status, answer = hostile.rest_call(server, 'POST', hostile.predict_path(), body, connection)
      if status != 200:
        failures.append(f'REST {status}: {answer}')
    connection.close()

  serving_checks.run_clients_across_a_swap(
      [grpc_client, grpc_client, rest_client, rest_client], stop,
      lambda: export_version(server.base / hostile.MODEL_NAME, 2, seed=2),  # the hot swap
      lambda: 2 in versions)
  assert not failures, failures[:5]
  assert versions == {1, 2}
  assert server.peak_rss_mb() - before < MAX_RSS_GROWTH_MB
  assert server.threads() < 64
