"""Hostile requests against the model server, and the server in a process of its own.

Shared by tests/test_serving_hostile.py (which asserts on them) and
benchmarks/hostile_requests.py (which prints the table of issue 10). The server runs as
`make serve` runs it, in its own process, so its RSS and threads are measured alone.
"""
import dataclasses
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from bad_glyph_files import png_bomb

MODEL_NAME = 'cns_vaegan'


class ServerProcess:
  """`python -m cns_vaegan.serving.model_server` on free ports; its peak RSS, threads and CPU time."""

  def __init__(self, base_path: str, *extra_args: str, wait: bool = True):
    self.log_path = tempfile.mktemp(prefix='model_server_', suffix='.log')
    self._log = open(self.log_path, 'w', encoding='utf-8')
    self.process = subprocess.Popen(
        [sys.executable, '-m', 'cns_vaegan.serving.model_server', '--model-base-path', base_path,
         '--model-name', MODEL_NAME, '--port', '0', '--rest-port', '0', '--poll-seconds', '0.2',
         *extra_args],
        stdout=subprocess.PIPE, stderr=self._log, text=True)
    self.port = self.rest_port = None
    if wait:
      self.wait_until_serving()

  def wait_until_serving(self, timeout: float = 120) -> None:
    """Reads the server's 'serving ... on grpc HOST:PORT, rest HOST:PORT' line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      line = self.process.stdout.readline()
      if not line and self.process.poll() is not None:
        raise RuntimeError(f'model server exited with {self.process.returncode}: {self.log()[-3000:]}')
      match = re.search(r'grpc [\d.]+:(\d+)(?:, rest [\d.]+:(\d+))?', line)
      if match:
        self.port, self.rest_port = int(match[1]), match[2] and int(match[2])
        return
    raise TimeoutError(f'model server did not start: {self.log()[-3000:]}')

  def log(self) -> str:
    with open(self.log_path, encoding='utf-8', errors='replace') as f:
      return f.read()

  def _status(self, field: str) -> int:
    with open(f'/proc/{self.process.pid}/status', encoding='ascii') as f:
      return int(re.search(rf'^{field}:\s+(\d+)', f.read(), re.M)[1])

  def rss_mb(self) -> float:
    return self._status('VmRSS') / 1024

  def reset_peak_rss(self) -> float:
    """Resets the kernel's peak-RSS mark (clear_refs 5); returns the RSS now, MB."""
    with open(f'/proc/{self.process.pid}/clear_refs', 'w', encoding='ascii') as f:
      f.write('5')
    return self.rss_mb()

  def peak_rss_mb(self) -> float:
    return self._status('VmHWM') / 1024

  def threads(self) -> int:
    return len(os.listdir(f'/proc/{self.process.pid}/task'))

  def cpu_seconds(self) -> float:
    """CPU time the server has used so far, all its threads (utime + stime)."""
    with open(f'/proc/{self.process.pid}/stat', encoding='ascii') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')

  def stop(self) -> Optional[int]:
    if self.process.poll() is None:
      self.process.terminate()
      try:
        self.process.wait(timeout=30)
      except subprocess.TimeoutExpired:
        self.process.kill()
        self.process.wait()
    self._log.close()
    return self.process.returncode


# ----------------------------------------------------------------------------- gRPC
def channel(server: ServerProcess) -> grpc.Channel:
  return grpc.insecure_channel(f'127.0.0.1:{server.port}', options=[
      ('grpc.max_receive_message_length', 512 * 1024 * 1024),
      ('grpc.max_send_message_length', 512 * 1024 * 1024)])


def predict_request(signature: str, inputs: Dict[str, object]) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL_NAME
  request.model_spec.signature_name = signature
  for alias, value in inputs.items():
    request.inputs[alias].CopyFrom(value if isinstance(value, tensor_pb2.TensorProto)
                                   else tf.make_tensor_proto(value))
  return request


def grpc_call(stub, request, timeout: float = 120.0):
  """(status code name, details or '') of one Predict."""
  try:
    stub.Predict(request, timeout=timeout)
    return 'OK', ''
  except grpc.RpcError as error:
    return error.code().name, error.details() or ''


def declared_tensor(dtype: int, dims: List[int], **values) -> tensor_pb2.TensorProto:
  """A TensorProto as a hostile client writes it: any declared shape, any values."""
  proto = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(
      dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]))
  for field, value in values.items():
    if field == 'tensor_content':
      proto.tensor_content = value
    else:
      getattr(proto, field).extend(value)
  return proto


# ----------------------------------------------------------------------------- REST
def rest_call(server: ServerProcess, method: str, path: str, body: bytes = None,
              connection: http.client.HTTPConnection = None, timeout: float = 60.0):
  """(HTTP status, parsed JSON body or raw text); reuses `connection` when given (keep-alive)."""
  own = connection is None
  connection = connection or http.client.HTTPConnection('127.0.0.1', server.rest_port, timeout=timeout)
  try:
    connection.request(method, path, body=body,
                       headers={'Content-Type': 'application/json'} if body is not None else {})
    response = connection.getresponse()
    data = response.read()
    try:
      return response.status, json.loads(data)
    except ValueError:
      return response.status, data.decode('utf-8', 'replace')
  finally:
    if own:
      connection.close()


def raw_http(server: ServerProcess, request: bytes, timeout: float = 10.0) -> str:
  """Sends bytes as they are; the response's status line, 'closed' or 'no answer in N s'."""
  with socket.create_connection(('127.0.0.1', server.rest_port), timeout=timeout) as sock:
    sock.sendall(request)
    data = b''
    try:
      while b'\r\n' not in data:
        chunk = sock.recv(4096)
        if not chunk:
          break
        data += chunk
    except socket.timeout:
      return f'no answer in {timeout:.0f} s'
  return data.split(b'\r\n', 1)[0].decode('latin-1') or 'closed'


def predict_path(version: Optional[int] = None) -> str:
  return f'/v1/models/{MODEL_NAME}' + (f'/versions/{version}' if version else '') + ':predict'


_SLOWEST = []


def slowest_allowed_images() -> np.ndarray:
  """16 white 2048 px RGBA PNGs: the most decoding one encode request may ask (2^26 pixels)."""
  if not _SLOWEST:
    import io  # pylint: disable=g-import-not-at-top
    from PIL import Image  # pylint: disable=g-import-not-at-top
    buffer = io.BytesIO()
    Image.new('RGBA', (2048, 2048), (255, 255, 255, 255)).save(buffer, 'PNG', compress_level=9)
    _SLOWEST.append(np.array([buffer.getvalue()] * 16, dtype=object))
  return _SLOWEST[0]


# ---------------------------------------------------------------------- the table
@dataclasses.dataclass
class Outcome:
  row: str
  status: str           # gRPC code name or HTTP status
  seconds: float
  rss_growth_mb: float  # peak RSS during the request over the RSS before it
  threads: int          # server threads at the end of the request
  detail: str = ''
  still_serving: bool = False


def still_serving(server: ServerProcess, pngs) -> bool:
  """A valid request over gRPC and one over REST both answer."""
  with channel(server) as ch:
    code, _ = grpc_call(prediction_service_pb2_grpc.PredictionServiceStub(ch), predict_request(
        'reconstruct', {'images': np.array(pngs[:1], dtype=object)}), timeout=60)
  status, _ = rest_call(server, 'GET', f'/v1/models/{MODEL_NAME}')
  return code == 'OK' and status == 200


def warm_up(server: ServerProcess, pngs, z_dim: int) -> None:
  """One valid call of each signature: a signature's first call builds its function (~1 s)."""
  images = np.array(pngs[:1], dtype=object)
  with channel(server) as ch:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
    for signature, inputs in (('encode', {'images': images}), ('reconstruct', {'images': images}),
                              ('decode', {'z': np.zeros((1, z_dim), np.float32)}),
                              ('arithmetic', {'a': images, 'b': images, 'c': images,
                                              'coefficients': np.ones(1, np.float32)}),
                              ('interpolate', {'start': images, 'end': images, 'steps': np.int32(2)}),
                              ('sample', {'n': np.int32(1), 'seed': np.int64(0)})):
      code, detail = grpc_call(stub, predict_request(signature, inputs))
      if code != 'OK':
        raise RuntimeError(f'warm-up {signature}: {code} {detail}')


def idle_connections(server: ServerProcess, count: int = 300, hold: float = 1.0):
  """Opens `count` REST connections that send nothing; ('threads', threads while held)."""
  sockets = [socket.create_connection(('127.0.0.1', server.rest_port)) for _ in range(count)]
  time.sleep(hold)
  threads = server.threads()
  for sock in sockets:
    sock.close()
  return f'{threads} threads', ''


def issue_table_rows(pngs) -> Dict[str, Callable[[ServerProcess, object], tuple]]:
  """Each row of issue 10's table: (server, gRPC stub) -> (status, detail)."""
  bomb = png_bomb(16000)
  triples = np.array((list(pngs) * 256)[:256], dtype=object)
  return {
      'encode, one 16000x16000 PNG': lambda s, stub: grpc_call(stub, predict_request(
          'encode', {'images': np.array([bomb], dtype=object)})),
      'encode, the same PNG x8': lambda s, stub: grpc_call(stub, predict_request(
          'encode', {'images': np.array([bomb] * 8, dtype=object)})),
      'decode, 21-byte proto declaring [20000000, 100]': lambda s, stub: grpc_call(
          stub, predict_request('decode', {'z': declared_tensor(
              types_pb2.DT_FLOAT, [20000000, 100], float_val=[0.0])})),
      'arithmetic, 256 triples x 256 coefficients': lambda s, stub: grpc_call(stub, predict_request(
          'arithmetic', {'a': triples, 'b': triples[::-1].copy(), 'c': triples,
                         'coefficients': np.linspace(0.1, 3, 256).astype(np.float32)})),
      'sample, n = 5000': lambda s, stub: grpc_call(stub, predict_request(
          'sample', {'n': np.int32(5000), 'seed': np.int64(0)})),
      '300 idle REST connections': lambda s, stub: idle_connections(s),
      'REST Content-Length: -1': lambda s, stub: (raw_http(s, (
          f'POST {predict_path()} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
          'Content-Length: -1\r\n\r\n{}').encode()), ''),
      'REST 100,000-deep JSON array': lambda s, stub: rest_call(
          s, 'POST', predict_path(), b'{"instances": ' + b'[' * 100000 + b']' * 100000 + b'}'),
  }


def run_row(server: ServerProcess, name: str, call, pngs) -> Outcome:
  before = server.reset_peak_rss()
  with channel(server) as ch:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(ch)
    start = time.perf_counter()
    status, detail = call(server, stub)
    seconds = time.perf_counter() - start
  outcome = Outcome(name, str(status), seconds, server.peak_rss_mb() - before, server.threads(),
                    str(detail)[:160])
  outcome.still_serving = still_serving(server, pngs)
  return outcome
