"""The REST front end of the embedded model server: TF Serving's JSON API on aiohttp.

GET /v1/models/NAME[/versions/N] (status), GET .../metadata, POST ...:predict (row
"instances" or columnar "inputs", {"b64": ...} strings), as TensorFlow Serving answers them,
errors as {"error": message} with TF Serving's HTTP mapping of status codes.

An asyncio server, so an idle or slow connection costs a socket, not a thread. Each request
is bounded before it costs anything: its body by max_body_bytes (413), reading it and
waiting for the answer by timeout_seconds (408 / 504, also the idle keep-alive limit), the
requests in progress by max_concurrent (429 beyond, as gRPC's RESOURCE_EXHAUSTED), and its
work by the same checks as gRPC (serving/prediction.py), run in the shared worker pool.
A malformed body (bad JSON, a 100,000-deep array, a wrong type anywhere) is a 400 and the
connection stays usable; a malformed HTTP frame (Content-Length: -1) is aiohttp's 400.

The same port serves the glyph playground (serving/playground.py): GET / and /playground/...
"""
import asyncio
import base64
import concurrent.futures
import json
import re
import threading
from typing import Any, Dict, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from absl import logging
from aiohttp import web
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2

from cns_vaegan.data import render_glyphs
from cns_vaegan.serving import prediction
from cns_vaegan.serving.playground import Playground
from cns_vaegan.serving.prediction import RequestLimits, ServingError
from cns_vaegan.serving.servables import ServableManager

_ROUTE = re.compile(r'^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?'
                    r'(?P<action>:predict|/metadata)?$')
# TF Serving's ToHTTPStatusCode (model_servers/http_server.cc, 2.19.1), for the codes raised here.
HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
               grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
               grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.UNAVAILABLE: 503,
               grpc.StatusCode.UNIMPLEMENTED: 501, grpc.StatusCode.INTERNAL: 500}


def _invalid(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


# ------------------------------------------------------------------------- JSON <-> numpy
def _from_json(value: Any) -> Any:
  """JSON values -> numpy-ready nested lists; {"b64": ...} -> bytes."""
  if isinstance(value, dict):
    if set(value) == {'b64'} and isinstance(value['b64'], str):
      return base64.b64decode(value['b64'], validate=True)
    raise _invalid(f'unexpected JSON object with keys {sorted(value)[:5]}')
  if isinstance(value, list):
    return [_from_json(v) for v in value]
  return value.encode('utf-8') if isinstance(value, str) else value


def _to_array(alias: str, value: Any, dtype: tf.dtypes.DType) -> np.ndarray:
  try:
    array = np.array(_from_json(value), dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
  except ServingError:
    raise
  except (TypeError, ValueError, OverflowError, RecursionError) as error:
    raise _invalid(f'input "{alias}" is not a valid {dtype.name} tensor: {error}') from None
  if dtype == tf.string and any(not isinstance(item, bytes) for item in array.reshape(-1)):
    raise _invalid(f'input "{alias}" is not a valid string tensor: every element must be a '
                   'string or {"b64": ...}')
  return array


def _to_json(alias: str, value: Any) -> Any:
  value = np.asarray(value, dtype=object if isinstance(value, bytes) else None)
  if value.dtype.kind in 'OS':
    encode = ((lambda b: {'b64': base64.b64encode(b).decode('ascii')}) if alias.endswith('_bytes')
              else (lambda b: b.decode('utf-8', 'replace')))
    return np.vectorize(encode, otypes=[object])(value).tolist() if value.ndim else encode(value.item())
  return value.tolist()


def _columns(body: Dict[str, Any], aliases) -> Dict[str, Any]:
  """{alias: JSON value} from a row ("instances") or columnar ("inputs") request."""
  if ('instances' in body) == ('inputs' in body):
    raise _invalid('Request must have exactly one of "instances" (row) or "inputs" (columnar)')
  if 'inputs' in body:
    inputs = body['inputs']
    return inputs if isinstance(inputs, dict) else {aliases[0] if len(aliases) == 1 else '': inputs}
  instances = body['instances']
  if not isinstance(instances, list) or not instances:
    raise _invalid('"instances" must be a non-empty list')
  named = [isinstance(i, dict) and set(i) != {'b64'} for i in instances]
  if not any(named) and len(aliases) == 1:
    return {aliases[0]: instances}
  if not all(named):
    raise _invalid('"instances" must all be objects naming the inputs, or all be values of the '
                   'one input')
  names = set().union(*instances)
  return {a: [i.get(a) for i in instances] for a in names}


def rest_predict(servable, body: Any, limits: RequestLimits, batcher=None) -> Dict[str, Any]:
  """TF Serving's REST predict: row ("instances") or columnar ("inputs") format."""
  if not isinstance(body, dict):
    raise _invalid('JSON Value: request body Is not object')
  signature_name = body.get('signature_name', '')
  output_filter = body.get('output_filter', [])
  if not isinstance(signature_name, str):
    raise _invalid('"signature_name" must be a string')
  if not isinstance(output_filter, list) or not all(isinstance(a, str) for a in output_filter):
    raise _invalid('"output_filter" must be a list of strings')
  signature_name, signature = prediction.find_signature(servable, signature_name)
  aliases = sorted(signature.inputs)
  dtypes = {a: tf.dtypes.as_dtype(signature.inputs[a].dtype) for a in aliases}
  arrays = {a: _to_array(a, v, dtypes.get(a, tf.float32)) for a, v in _columns(body, aliases).items()}
  outputs = prediction.predict(servable, signature_name, arrays, output_filter, limits, batcher)
  if 'instances' in body:
    if len(outputs) == 1:
      [(alias, value)] = outputs.items()
      return {'predictions': _to_json(alias, value)}
    n = len(body['instances'])
    return {'predictions': [{a: _to_json(a, v[i]) for a, v in outputs.items()} for i in range(n)]}
  if len(outputs) == 1:
    [(alias, value)] = outputs.items()
    return {'outputs': _to_json(alias, value)}
  return {'outputs': {a: _to_json(a, v) for a, v in outputs.items()}}


def _status_json(manager: ServableManager, name: str, version: Optional[int]) -> Dict[str, Any]:
  return {'model_version_status': [
      {'version': str(v), 'state': state,
       'status': {'error_code': 'UNKNOWN' if error else 'OK', 'error_message': error}}
      for v, state, error in prediction.version_states(manager, name, version)]}


def _metadata_json(servable) -> Dict[str, Any]:
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  for name, signature in servable.signature_defs.items():
    signature_map.signature_def[name].CopyFrom(signature)
  return {'model_spec': {'name': servable.name, 'version': str(servable.version), 'signature_name': ''},
          'metadata': {'signature_def': json_format.MessageToDict(signature_map)}}


def answer(manager: ServableManager, method: str, path: str, body: bytes,
           limits: RequestLimits, batcher=None) -> Tuple[int, Dict[str, Any]]:
  """(HTTP status, JSON payload) for one request; blocking, so it runs in the worker pool."""
  try:
    match = _ROUTE.match(path)
    if not match:
      raise ServingError(grpc.StatusCode.NOT_FOUND, f'Malformed request: {method} {path}')
    name, action = match['name'], match['action']
    version = int(match['version']) if match['version'] else None
    if method == 'GET' and action is None:
      return 200, _status_json(manager, name, version)
    servable = prediction.find_servable(manager, name, version)
    if method == 'GET' and action == '/metadata':
      return 200, _metadata_json(servable)
    if method == 'POST' and action == ':predict':
      try:
        request = json.loads(body or b'{}')
      except (ValueError, RecursionError) as error:  # RecursionError: nesting too deep
        raise _invalid(f'JSON Parse error: {type(error).__name__}: {error}') from None
      return 200, rest_predict(servable, request, limits, batcher)
    raise ServingError(grpc.StatusCode.NOT_FOUND, f'Malformed request: {method} {path}')
  except ServingError as error:
    return HTTP_STATUS.get(error.code, 500), {'error': error.message}
  except RecursionError as error:  # deep JSON that parsed, then nested too deep to convert
    return 400, {'error': f'JSON Value nested too deep: {error}'}
  except Exception as error:  # pylint: disable=broad-except  (answer, never drop the connection)
    logging.exception('REST %s %s failed', method, path)
    return 500, {'error': f'{type(error).__name__}: {error}'}


# ------------------------------------------------------------------------------ server
class RestServer:
  """aiohttp on its own event-loop thread; requests answered in the shared worker pool."""

  def __init__(self, manager: ServableManager, host: str, port: int,
               pool: concurrent.futures.Executor, limits: RequestLimits, max_body_bytes: int,
               timeout_seconds: float, max_concurrent: int, batcher=None,
               font_path: str = render_glyphs.DEFAULT_FONT):
    self.manager, self.host, self.port, self.pool, self.limits = manager, host, port, pool, limits
    self.batcher = batcher  # serving/batching.py's, when server-side batching is on
    self.font_path = font_path  # the playground draws typed characters with it
    self.max_body_bytes, self.timeout, self.max_concurrent = max_body_bytes, timeout_seconds, max_concurrent
    self.in_flight = 0
    self._loop = asyncio.new_event_loop()
    self._runner: Optional[web.AppRunner] = None
    self._thread: Optional[threading.Thread] = None

  def _reply(self, status: int, payload: Dict[str, Any]) -> web.Response:
    return web.Response(status=status, body=json.dumps(payload).encode('utf-8'),
                        content_type='application/json')

  async def _handle(self, request: web.Request) -> web.Response:
    if self.in_flight >= self.max_concurrent:
      return self._reply(429, {'error': f'the server answers at most {self.max_concurrent} REST '
                                        'requests at once; try again later'})
    self.in_flight += 1
    try:
      if request.content_length is not None and request.content_length > self.max_body_bytes:
        return self._reply(413, {'error': f'request body of {request.content_length} bytes; the '
                                          f'server takes at most {self.max_body_bytes}'})
      try:
        async with asyncio.timeout(self.timeout):
          body = await request.read()
      except TimeoutError:
        return self._reply(408, {'error': f'request body not received within {self.timeout:g} s'})
      except web.HTTPRequestEntityTooLarge:
        return self._reply(413, {'error': f'request body over {self.max_body_bytes} bytes'})
      work = self._loop.run_in_executor(self.pool, answer, self.manager, request.method,
                                        request.path, body, self.limits, self.batcher)
      try:
        status, payload = await asyncio.wait_for(asyncio.shield(work), self.timeout)
      except TimeoutError:
        return self._reply(504, {'error': f'no answer within {self.timeout:g} s'})
      return self._reply(status, payload)
    finally:
      self.in_flight -= 1

  def _capped(self, handler):
    """A playground handler under the same cap of requests in progress as _handle's."""
    async def capped(request: web.Request) -> web.Response:
      if self.in_flight >= self.max_concurrent:
        return self._reply(429, {'error': f'the server answers at most {self.max_concurrent} '
                                          'REST requests at once; try again later'})
      self.in_flight += 1
      try:
        return await handler(request)
      finally:
        self.in_flight -= 1
    return capped

  def start(self) -> int:
    """Binds and serves; returns the port."""
    app = web.Application(client_max_size=self.max_body_bytes)
    playground = Playground(self.manager, self.font_path,
                            lambda work, *args: self._loop.run_in_executor(self.pool, work, *args))
    for route in playground.routes():  # first: the catch-all below would take their paths
      app.router.add_route(route.method, route.path, self._capped(route.handler))
    app.router.add_route('*', '/{path:.*}', self._handle)
    # keepalive_timeout also closes a connection that never sends a request.
    self._runner = web.AppRunner(app, keepalive_timeout=self.timeout, shutdown_timeout=0,
                                 access_log=None)
    ready = concurrent.futures.Future()

    async def serve():
      await self._runner.setup()
      site = web.TCPSite(self._runner, self.host, self.port)
      await site.start()
      return site._server.sockets[0].getsockname()[1]  # pylint: disable=protected-access

    def run():
      asyncio.set_event_loop(self._loop)
      try:
        ready.set_result(self._loop.run_until_complete(serve()))
      except BaseException as error:  # pylint: disable=broad-except  (reported to start())
        ready.set_exception(error)
        return
      self._loop.run_forever()

    self._thread = threading.Thread(target=run, name='rest', daemon=True)
    self._thread.start()
    self.port = ready.result(timeout=60)
    return self.port

  def stop(self, grace: float) -> None:
    """Stops accepting, lets requests in progress finish for up to `grace` seconds, closes."""
    async def drain():
      for site in list(self._runner.sites):
        await site.stop()
      deadline = self._loop.time() + grace
      while self.in_flight and self._loop.time() < deadline:
        await asyncio.sleep(0.05)
      await self._runner.cleanup()
    if self._thread is None:
      return
    asyncio.run_coroutine_threadsafe(drain(), self._loop).result(timeout=grace + 30)
    self._loop.call_soon_threadsafe(self._loop.stop)
    self._thread.join(timeout=10)
    self._thread = None
