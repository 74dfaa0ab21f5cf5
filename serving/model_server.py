"""An embedded model server speaking TensorFlow Serving's protocols, for hosts without
`tensorflow_model_server` (none can be installed here; production uses TF Serving,
see serving/tf_serving.py). Hand-written because no installable package provides one.

gRPC: tensorflow.serving.PredictionService (Predict, GetModelMetadata; Classify, Regress
and MultiInference answer UNIMPLEMENTED), tensorflow.serving.ModelService
(GetModelStatus) and the standard grpc.health.v1 service. REST (serving/rest.py): TF
Serving's /v1/models/NAME[/versions/N][:predict|/metadata] with JSON and {"b64": ...} strings.

    python -m cns_vaegan.serving.model_server --model-base-path outputs/serving \
        --model-name cns_vaegan --port 8500 --rest-port 8501

The ports open only once the first version has loaded (it logs while it waits); the newest
numeric version is served and replaced when a newer one is pushed (or --model-version pins
one). Concurrent requests to a signature share runs of it (serving/batching.py: TF Serving's
--enable_batching and its parameter file; --no-batching turns it off). Every request is
bounded (ServerOptions, the flags): inputs are checked from what they
declare before they are materialised, the image count before the model runs, requests in
progress by a shared pool of workers and a cap per front end, and a gRPC deadline that has
passed by the time a request would run refuses it. SIGTERM drains: health turns NOT_SERVING,
new requests are refused, those in progress get drain_seconds, then it exits 0.
"""
import argparse
import concurrent.futures
import dataclasses
import signal
import threading
import time
from typing import Optional, Tuple

import grpc
import tensorflow as tf
from absl import logging
from google.protobuf import any_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from cns_vaegan.data import render_glyphs
from cns_vaegan.serving import batching, prediction, servables
from cns_vaegan.serving.batching import Batcher, BatchingParameters
from cns_vaegan.serving.prediction import RequestLimits, ServingError
from cns_vaegan.serving.rest import RestServer
from cns_vaegan.serving.servables import ServableManager


@dataclasses.dataclass(frozen=True)
class ServerOptions:
  """Every bound of the server; each is a flag of the same name (see main)."""
  max_batch_size: int = prediction.MAX_BATCH_SIZE   # images a request takes or makes
  max_message_bytes: int = 64 * 1024 * 1024         # a gRPC message, either way; one input tensor
  max_rest_body_bytes: int = 16 * 1024 * 1024       # JSON grows ~10x once parsed
  workers: int = 8                                  # threads running requests, gRPC and REST
  max_concurrent_requests: int = 64                 # per front end; beyond: RESOURCE_EXHAUSTED / 429
  rest_timeout_seconds: float = 30.0                # TF Serving's --rest_api_timeout_in_ms default
  drain_seconds: float = 10.0                       # for requests in progress on SIGTERM
  max_load_retries: int = servables.MAX_LOAD_RETRIES
  load_retry_seconds: float = servables.LOAD_RETRY_SECONDS

  def limits(self) -> RequestLimits:
    return RequestLimits(self.max_batch_size, self.max_message_bytes)


# ----------------------------------------------------------------------------- gRPC
def _version(model_spec) -> Optional[int]:
  return model_spec.version.value if model_spec.HasField('version') else None


def _abort(context, error: ServingError):
  context.abort(error.code, error.message)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata; the rest are UNIMPLEMENTED by the generated base class."""

  def __init__(self, manager: ServableManager, limits: RequestLimits,
               batcher: Optional[Batcher] = None):
    self.manager, self.limits, self.batcher = manager, limits, batcher

  def Predict(self, request, context):
    try:
      remaining = context.time_remaining()
      if remaining is not None and remaining <= 0:  # it waited for a worker past its deadline
        logging.info('Predict not run: its deadline passed before it ran')
        raise ServingError(grpc.StatusCode.DEADLINE_EXCEEDED,
                           'Deadline Exceeded: the deadline passed before it ran')
      servable = prediction.find_servable(self.manager, request.model_spec.name,
                                          _version(request.model_spec),
                                          request.model_spec.version_label)
      signature_name = prediction.signature_name_or_default(request.model_spec.signature_name)
      outputs = prediction.predict(servable, signature_name, dict(request.inputs),
                                   request.output_filter, self.limits, self.batcher,
                                   None if remaining is None else time.monotonic() + remaining)
    except ServingError as error:
      return _abort(context, error)
    response = predict_pb2.PredictResponse()
    if not context.is_active():  # the client gave up (deadline, cancel): nothing to send
      return response
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.model_spec.signature_name = signature_name
    for alias, value in outputs.items():
      response.outputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return response

  def GetModelMetadata(self, request, context):
    try:
      if not request.metadata_field:
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           'GetModelMetadataRequest must specify at least one metadata_field')
      for field in request.metadata_field:
        if field != 'signature_def':
          raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                             f'Metadata field {field} is not supported')
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


# --------------------------------------------------------------------------- server
class ModelServer:
  """gRPC (and optionally REST) serving one model; start() returns once ports are open.

  `batching`: server-side batching's parameters (serving/batching.py), None for none.
  """

  def __init__(self, model_base_path: str, model_name: str, host: str = '127.0.0.1',
               port: int = 8500, rest_port: Optional[int] = 8501, model_version: Optional[int] = None,
               poll_seconds: float = 1.0, options: ServerOptions = ServerOptions(),
               batching: Optional[BatchingParameters] = batching.DEFAULT_PARAMETERS,
               font_path: str = render_glyphs.DEFAULT_FONT):
    self.manager = ServableManager(model_base_path, model_name, model_version, poll_seconds,
                                   options.max_load_retries, options.load_retry_seconds)
    self.host, self.port, self.rest_port, self.options = host, port, rest_port, options
    self.batching = batching
    self.font_path = font_path  # the playground draws typed characters with it
    self.batcher: Optional[Batcher] = None
    self.pool = concurrent.futures.ThreadPoolExecutor(options.workers, thread_name_prefix='request')
    self._grpc: Optional[grpc.Server] = None
    self._rest: Optional[RestServer] = None
    self.health = health.HealthServicer()

  def start(self, wait_for_model_seconds: Optional[float] = None,
            cancel: Optional[threading.Event] = None) -> Optional[Tuple[int, Optional[int]]]:
    """Opens the ports once a version has loaded; None if `cancel` was set while waiting."""
    if self.manager.wait_for_first_version(wait_for_model_seconds, cancel) is None:
      return None
    options = self.options
    if self.batching is not None:
      self.batcher = Batcher(self.batching, options.limits())
    self._grpc = grpc.server(
        self.pool, maximum_concurrent_rpcs=options.max_concurrent_requests,
        options=[('grpc.max_receive_message_length', options.max_message_bytes),
                 ('grpc.max_send_message_length', options.max_message_bytes)])
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(self.manager, options.limits(), self.batcher), self._grpc)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self.manager), self._grpc)
    health_pb2_grpc.add_HealthServicer_to_server(self.health, self._grpc)
    self.port = self._grpc.add_insecure_port(f'{self.host}:{self.port}')
    self._grpc.start()
    if self.rest_port is not None:
      self._rest = RestServer(self.manager, self.host, self.rest_port, self.pool, options.limits(),
                              options.max_rest_body_bytes, options.rest_timeout_seconds,
                              options.max_concurrent_requests, self.batcher, self.font_path)
      self.rest_port = self._rest.start()
    for service in ('', 'tensorflow.serving.PredictionService', 'tensorflow.serving.ModelService'):
      self.health.set(service, health_pb2.HealthCheckResponse.SERVING)
    self.manager.start_polling()
    logging.info('Model server: gRPC on %s:%d, REST on %s; %s; batching: %s', self.host,
                 self.port, f'{self.host}:{self.rest_port}' if self._rest else 'off', options,
                 self.batching or 'off')
    return self.port, self.rest_port

  def stop(self, grace: Optional[float] = None) -> None:
    """Drains: NOT_SERVING, new requests refused, those in progress get `grace` seconds."""
    grace = self.options.drain_seconds if grace is None else grace
    self.health.enter_graceful_shutdown()
    stopped = self._grpc.stop(grace) if self._grpc else None
    if self._rest:
      self._rest.stop(grace)
    if stopped:
      stopped.wait()
    if self.batcher:
      self.batcher.stop()
    self.manager.stop()
    self.pool.shutdown(wait=False, cancel_futures=True)


def _boolean(text: str) -> bool:
  """true/false as TF Serving's flags spell them (also 1/0, yes/no)."""
  if text.lower() in ('true', '1', 'yes'):
    return True
  if text.lower() in ('false', '0', 'no'):
    return False
  raise argparse.ArgumentTypeError(f'expected true or false, got {text!r}')


def server_from_args(argv=None) -> ModelServer:
  """The server the command line describes, not yet started (exits 2 on a bad flag or file)."""
  defaults = ServerOptions()
  parser = argparse.ArgumentParser(description='Serve the pushed model over TF Serving\'s gRPC and REST APIs.')
  parser.add_argument('--model-base-path', required=True, help='the Pusher\'s base path (holds <model name>/<version>/)')
  parser.add_argument('--model-name', default='cns_vaegan')
  parser.add_argument('--model-version', type=int, help='serve this version only (default: the newest)')
  parser.add_argument('--host', default='127.0.0.1', help='address to bind (default loopback)')
  parser.add_argument('--port', type=int, default=8500, help='gRPC port (0: any free)')
  parser.add_argument('--rest-port', type=int, default=8501, help='REST port (0: any free; -1: off)')
  parser.add_argument('--poll-seconds', type=float, default=1.0, help='how often new versions are looked for')
  parser.add_argument('--font', default=render_glyphs.DEFAULT_FONT,
                      help='the font the playground (http://HOST:REST_PORT/) draws typed characters '
                           'with: the dataset\'s (default %(default)s)')
  helps = {
      'max_batch_size': 'images one request may take or make (N, N·K, N·(steps + 2), n) and the '
                        'largest batch of any input',
      'max_message_bytes': 'largest gRPC message, either way, and largest input tensor once materialised',
      'max_rest_body_bytes': 'largest REST request body (413 beyond)',
      'workers': 'threads running requests, gRPC and REST together',
      'max_concurrent_requests': 'requests in progress or queued per front end; beyond, '
                                 'RESOURCE_EXHAUSTED (gRPC) or 429 (REST)',
      'rest_timeout_seconds': 'to receive a REST body, to answer it (504), and idle keep-alive',
      'drain_seconds': 'on SIGTERM, how long requests in progress may take to finish',
      'max_load_retries': 'retries of a version that failed to load, before giving it up',
      'load_retry_seconds': 'seconds between those retries',
  }
  for field in dataclasses.fields(ServerOptions):
    parser.add_argument('--' + field.name.replace('_', '-'), type=type(getattr(defaults, field.name)),
                        default=getattr(defaults, field.name),
                        help=f'{helps[field.name]} (default %(default)s)')
  parser.add_argument('--enable-batching', type=_boolean, nargs='?', const=True, default=True,
                      metavar='BOOL', help='server-side batching of concurrent requests to a '
                      'signature (TF Serving\'s --enable_batching; default on); '
                      '--enable-batching=false or --no-batching turns it off')
  parser.add_argument('--no-batching', dest='enable_batching', action='store_false',
                      help='the same as --enable-batching=false')
  parser.add_argument('--batching-parameters-file', metavar='FILE',
                      help='a text-format BatchingParameters, the file TF Serving\'s '
                      '--batching_parameters_file reads (default: the one serving/tf_serving.py '
                      f'writes: {batching.to_text(batching.DEFAULT_PARAMETERS).strip()})')
  args = parser.parse_args(argv)
  if args.batching_parameters_file and not args.enable_batching:
    parser.error('--batching-parameters-file is set but batching is off')
  try:
    parameters = (batching.load_parameters(args.batching_parameters_file)
                  if args.batching_parameters_file else batching.DEFAULT_PARAMETERS)
  except (OSError, ValueError) as error:
    parser.error(str(error))
  options = ServerOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(ServerOptions)})
  return ModelServer(args.model_base_path, args.model_name, args.host, args.port,
                     None if args.rest_port < 0 else args.rest_port, args.model_version,
                     args.poll_seconds, options, parameters if args.enable_batching else None,
                     args.font)


def main(argv=None) -> int:
  server = server_from_args(argv)
  model_name, options = server.manager.model_name, server.options
  logging.set_verbosity(logging.INFO)
  stopping = threading.Event()
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda signum, frame: stopping.set())
  if server.start(cancel=stopping) is None:
    logging.info('Stopped before any version of %s loaded', model_name)
    return 0
  print(f'serving {model_name} on grpc {server.host}:{server.port}'
        + (f', rest {server.host}:{server.rest_port}' if server.rest_port else ''), flush=True)
  if server.rest_port:
    print(f'the glyph playground: http://{server.host}:{server.rest_port}/', flush=True)
  while not stopping.wait(1.0):
    pass
  logging.info('Stopping: draining requests in progress for up to %g s', options.drain_seconds)
  server.stop()
  logging.info('Stopped')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
