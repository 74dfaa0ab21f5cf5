"""An embedded model server speaking TensorFlow Serving's protocols, for hosts without
`tensorflow_model_server` (none can be installed here; production uses TF Serving,
see serving/tf_serving.py). Hand-written because no installable package provides one.

gRPC: tensorflow.serving.PredictionService (Predict, GetModelMetadata; Classify, Regress
and MultiInference answer UNIMPLEMENTED), tensorflow.serving.ModelService
(GetModelStatus) and the standard grpc.health.v1 service. REST: TF Serving's
/v1/models/NAME[/versions/N][:predict|/metadata] with JSON and {"b64": ...} strings.

    python -m cns_vaegan.serving.model_server --model-base-path outputs/serving \
        --model-name cns_vaegan --port 8500 --rest-port 8501

The ports open only once the first version has loaded; the newest numeric version is
served and replaced when a newer one is pushed (or --model-version pins one).
"""
import argparse
import base64
import concurrent.futures
import http.server
import json
import re
import threading
from typing import Any, Dict, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from absl import logging
from google.protobuf import any_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from cns_vaegan.serving import prediction
from cns_vaegan.serving.prediction import ServingError
from cns_vaegan.serving.servables import ServableManager

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
MAX_BATCH_SIZE = 256


# ----------------------------------------------------------------------------- gRPC
def _version(model_spec) -> Optional[int]:
  return model_spec.version.value if model_spec.HasField('version') else None


def _abort(context, error: ServingError):
  context.abort(error.code, error.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata; the rest are UNIMPLEMENTED by the generated base class."""

  def __init__(self, manager: ServableManager, max_batch_size: int):
    self.manager, self.max_batch_size = manager, max_batch_size

  def Predict(self, request, context):
    try:
      servable = prediction.find_servable(self.manager, request.model_spec.name,
                                          _version(request.model_spec),
                                          request.model_spec.version_label)
      inputs = {}
      for alias, tensor in request.inputs.items():
        try:
          inputs[alias] = tf.make_ndarray(tensor)
        except Exception as error:  # pylint: disable=broad-except  (any malformed proto)
          raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                             f'input "{alias}" is not a valid tensor: {error}') from None
      signature_name = prediction.signature_name_or_default(request.model_spec.signature_name)
      outputs = prediction.predict(servable, signature_name, inputs, request.output_filter,
                                   self.max_batch_size)
    except ServingError as error:
      return _abort(context, error)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    for alias, value in outputs.items():
      response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return response

  def GetModelMetadata(self, request, context):
    try:
      if list(request.metadata_field) != ['signature_def']:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           'Metadata field signature_def is the only one supported; '
                           f'got {list(request.metadata_field)}')
      servable = prediction.find_servable(self.manager, request.model_spec.name,
                                          _version(request.model_spec),
                                          request.model_spec.version_label)
    except ServingError as error:
      return _abort(context, error)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in servable.signature_defs.items():
      signature_map.signature_def[name].CopyFrom(signature)
    packed = any_pb2.Any()
    packed.Pack(signature_map)
    response.metadata['signature_def'].CopyFrom(packed)
    return response


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """GetModelStatus (HandleReloadConfigRequest stays UNIMPLEMENTED)."""

  def __init__(self, manager: ServableManager):
    self.manager = manager

  def GetModelStatus(self, request, context):
    try:
      states = prediction.version_states(self.manager, request.model_spec.name,
                                         _version(request.model_spec))
    except ServingError as error:
      return _abort(context, error)
    response = get_model_status_pb2.GetModelStatusResponse()
    for v, state, error in states:
      status = response.model_version_status.add()
      status.version = v
      status.state = get_model_status_pb2.ModelVersionStatus.State.Value(state)
      if error:
        status.status.error_code = grpc.StatusCode.UNKNOWN.value[0]
        status.status.error_message = error
    return response


# ----------------------------------------------------------------------------- REST
_ROUTE = re.compile(r'^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?'
                    r'(?P<action>:predict|/metadata)?$')
_HTTP_STATUS = {grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.FAILED_PRECONDITION: 400,
                grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.UNAVAILABLE: 503,
                grpc.StatusCode.UNIMPLEMENTED: 501}


def _from_json(value: Any) -> Any:
  """JSON values -> numpy-ready nested lists; {"b64": ...} -> bytes."""
  if isinstance(value, dict):
    if set(value) == {'b64'}:
      return base64.b64decode(value['b64'])
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f'unexpected JSON object {list(value)}')
  if isinstance(value, list):
    return [_from_json(v) for v in value]
  return value.encode('utf-8') if isinstance(value, str) else value


def _to_array(alias: str, value: Any, dtype: tf.dtypes.DType) -> np.ndarray:
  try:
    return np.array(_from_json(value), dtype=object if dtype == tf.string else dtype.as_numpy_dtype)
  except ServingError:
    raise
  except (TypeError, ValueError) as error:
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                       f'input "{alias}" is not a valid {dtype.name} tensor: {error}') from None


def _to_json(alias: str, value: Any) -> Any:
  value = np.asarray(value, dtype=object if isinstance(value, bytes) else None)
  if value.dtype.kind in 'OS':
    encode = ((lambda b: {'b64': base64.b64encode(b).decode('ascii')}) if alias.endswith('_bytes')
              else (lambda b: b.decode('utf-8', 'replace')))
    return np.vectorize(encode, otypes=[object])(value).tolist() if value.ndim else encode(value.item())
  return value.tolist()


def rest_predict(servable, body: Dict[str, Any], max_batch_size: int) -> Dict[str, Any]:
  """TF Serving's REST predict: row ("instances") or columnar ("inputs") format."""
  signature_name, signature = prediction.find_signature(servable, body.get('signature_name', ''))
  aliases = sorted(signature.inputs)
  dtypes = {a: tf.dtypes.as_dtype(signature.inputs[a].dtype) for a in aliases}
  if ('instances' in body) == ('inputs' in body):
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                       'Request must have exactly one of "instances" (row) or "inputs" (columnar)')
  if 'instances' in body:
    instances = body['instances']
    if not isinstance(instances, list) or not instances:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, '"instances" must be a non-empty list')
    named = lambda instance: isinstance(instance, dict) and set(instance) != {'b64'}
    if len(aliases) == 1 and not named(instances[0]):
      columns = {aliases[0]: instances}
    else:
      names = set().union(*(i.keys() for i in instances if named(i)))
      columns = {a: [i.get(a) for i in instances] for a in names}
  else:
    inputs = body['inputs']
    columns = inputs if isinstance(inputs, dict) else {aliases[0] if len(aliases) == 1 else '': inputs}
  arrays = {a: _to_array(a, v, dtypes.get(a, tf.float32)) for a, v in columns.items()}
  outputs = prediction.predict(servable, signature_name, arrays, body.get('output_filter', ()),
                               max_batch_size)
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
  from google.protobuf import json_format  # pylint: disable=g-import-not-at-top
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  for name, signature in servable.signature_defs.items():
    signature_map.signature_def[name].CopyFrom(signature)
  return {'model_spec': {'name': servable.name, 'version': str(servable.version), 'signature_name': ''},
          'metadata': {'signature_def': json_format.MessageToDict(signature_map)}}


def make_rest_handler(manager: ServableManager, max_batch_size: int, max_body_bytes: int):
  class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def _reply(self, status: int, payload: Dict[str, Any]):
      data = json.dumps(payload).encode('utf-8')
      self.send_response(status)
      self.send_header('Content-Type', 'application/json')
      self.send_header('Content-Length', str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def _handle(self, method: str):
      match = _ROUTE.match(self.path.split('?')[0])
      try:
        if not match:
          raise ServingError(grpc.StatusCode.NOT_FOUND, f'Malformed request: {method} {self.path}')
        name, action = match['name'], match['action']
        version = int(match['version']) if match['version'] else None
        if method == 'GET' and action is None:
          return self._reply(200, _status_json(manager, name, version))
        servable = prediction.find_servable(manager, name, version)
        if method == 'GET' and action == '/metadata':
          return self._reply(200, _metadata_json(servable))
        if method == 'POST' and action == ':predict':
          length = int(self.headers.get('Content-Length', 0))
          if length > max_body_bytes:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f'request body of {length} bytes exceeds {max_body_bytes}')
          try:
            body = json.loads(self.rfile.read(length) or b'{}')
          except json.JSONDecodeError as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f'JSON parse error: {error}') from None
          return self._reply(200, rest_predict(servable, body, max_batch_size))
        raise ServingError(grpc.StatusCode.NOT_FOUND, f'Malformed request: {method} {self.path}')
      except ServingError as error:
        return self._reply(_HTTP_STATUS.get(error.code, 500), {'error': error.message})
      except Exception as error:  # pylint: disable=broad-except  (answer, never drop the connection)
        logging.exception('REST %s %s failed', method, self.path)
        return self._reply(500, {'error': f'{type(error).__name__}: {error}'})

    def do_GET(self):  # noqa: N802  (http.server's naming)
      self._handle('GET')

    def do_POST(self):  # noqa: N802
      self._handle('POST')

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
      logging.debug('REST %s', format % args)

  return Handler


# --------------------------------------------------------------------------- server
class ModelServer:
  """gRPC (and optionally REST) serving one model; start() returns once ports are open."""

  def __init__(self, model_base_path: str, model_name: str, host: str = '127.0.0.1',
               port: int = 8500, rest_port: Optional[int] = 8501, model_version: Optional[int] = None,
               poll_seconds: float = 1.0, max_batch_size: int = MAX_BATCH_SIZE,
               max_message_bytes: int = MAX_MESSAGE_BYTES, workers: int = 16):
    self.manager = ServableManager(model_base_path, model_name, model_version, poll_seconds)
    self.host, self.port, self.rest_port = host, port, rest_port
    self.max_batch_size, self.max_message_bytes, self.workers = max_batch_size, max_message_bytes, workers
    self._grpc: Optional[grpc.Server] = None
    self._rest: Optional[http.server.ThreadingHTTPServer] = None
    self.health = health.HealthServicer()

  def start(self, wait_for_model_seconds: Optional[float] = None) -> Tuple[int, Optional[int]]:
    self.manager.wait_for_first_version(wait_for_model_seconds)  # ports open only after this
    self._grpc = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=self.workers),
        options=[('grpc.max_receive_message_length', self.max_message_bytes),
                 ('grpc.max_send_message_length', self.max_message_bytes)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(self.manager, self.max_batch_size), self._grpc)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.manager), self._grpc)
    health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
    self.port = self._grpc.add_insecure_port(f'{self.host}:{self.port}')
    self._grpc.start()
    if self.rest_port is not None:
      self._rest = http.server.ThreadingHTTPServer(
          (self.host, self.rest_port),
          make_rest_handler(self.manager, self.max_batch_size, self.max_message_bytes))
      self.rest_port = self._rest.server_address[1]
      threading.Thread(target=self._rest.serve_forever, name='rest', daemon=True).start()
    for service in ('', 'tensorflow.serving.PredictionService', 'tensorflow.serving.ModelService'):
      self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
    self.manager.start_polling()
    logging.info('Model server: gRPC on %s:%d, REST on %s', self.host, self.port,
                 f'{self.host}:{self.rest_port}' if self._rest else 'off')
    return self.port, self.rest_port

  def stop(self) -> None:
    self.health.enter_graceful_shutdown()
    self.manager.stop()
    if self._rest:
      self._rest.shutdown()
      self._rest.server_close()
    if self._grpc:
      self._grpc.stop(grace=2).wait()

  def wait(self) -> None:
    self._grpc.wait_for_termination()


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description='Serve the pushed model over TF Serving\'s gRPC and REST APIs.')
  parser.add_argument('--model-base-path', required=True, help='the Pusher\'s base path (holds <model name>/<version>/)')
  parser.add_argument('--model-name', default='cns_vaegan')
  parser.add_argument('--model-version', type=int, help='serve this version only (default: the newest)')
  parser.add_argument('--host', default='127.0.0.1', help='address to bind (default loopback)')
  parser.add_argument('--port', type=int, default=8500, help='gRPC port')
  parser.add_argument('--rest-port', type=int, default=8501, help='REST port (0: any free; -1: off)')
  parser.add_argument('--poll-seconds', type=float, default=1.0)
  parser.add_argument('--max-batch-size', type=int, default=MAX_BATCH_SIZE)
  args = parser.parse_args(argv)
  logging.set_verbosity(logging.INFO)
  server = ModelServer(args.model_base_path, args.model_name, args.host, args.port,
                       None if args.rest_port < 0 else args.rest_port, args.model_version,
                       args.poll_seconds, args.max_batch_size)
  server.start()
  print(f'serving {args.model_name} on grpc {args.host}:{server.port}'
        + (f', rest {args.host}:{server.rest_port}' if server.rest_port else ''), flush=True)
  try:
    server.wait()
  except KeyboardInterrupt:
    server.stop()


if __name__ == '__main__':
  main()
