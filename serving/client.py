"""A small client of the served glyph model over TF Serving's gRPC API.

Works unchanged against TensorFlow Serving and the embedded server (same protos). Each
call has a deadline; UNAVAILABLE is retried with backoff by gRPC's own retry policy.
Images go in as PNG bytes and come back as float arrays in [0, 1] and PNG bytes.
"""
import json
from typing import Dict, List, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

_RETRY_POLICY = json.dumps({'methodConfig': [{
    'name': [{'service': 'tensorflow.serving.PredictionService'},
             {'service': 'tensorflow.serving.ModelService'}],
    'retryPolicy': {'maxAttempts': 5, 'initialBackoff': '0.2s', 'maxBackoff': '3s',
                    'backoffMultiplier': 2, 'retryableStatusCodes': ['UNAVAILABLE']},
}]})


class GlyphClient:
  """encode / decode / reconstruct / arithmetic / interpolate / sample, plus status and metadata."""

  def __init__(self, address: str, model_name: str = 'cns_vaegan', version: Optional[int] = None,
               timeout: float = 30.0, max_message_bytes: int = 64 * 1024 * 1024):
    self.model_name, self.version, self.timeout = model_name, version, timeout
    self.channel = grpc.insecure_channel(address, options=[
        ('grpc.service_config', _RETRY_POLICY), ('grpc.enable_retries', 1),
        ('grpc.max_receive_message_length', max_message_bytes),
        ('grpc.max_send_message_length', max_message_bytes)])
    self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
    self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

  def close(self) -> None:
    self.channel.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()

  def _spec(self, spec, signature_name: str = '') -> None:
    spec.name = self.model_name
    if self.version is not None:
      spec.version.value = self.version
    if signature_name:
      spec.signature_name = signature_name

  def predict(self, signature_name: str, inputs: Dict[str, np.ndarray],
              output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """Any signature, raw: numpy in, numpy out. Raises grpc.RpcError with the server's status."""
    request = predict_pb2.PredictRequest()
    self._spec(request.model_spec, signature_name)
    for alias, value in inputs.items():
      request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    request.output_filter.extend(output_filter)
    response = self.predictions.Predict(request, timeout=self.timeout, wait_for_ready=True)
    self.last_version = response.model_spec.version.value
    return {alias: tf.make_ndarray(tensor) for alias, tensor in response.outputs.items()}

  # ------------------------------------------------------------------ the signatures
  def encode(self, pngs: Sequence[bytes]) -> Dict[str, np.ndarray]:
    return self.predict('encode', {'images': np.array(pngs, dtype=object)})

  def decode(self, z: np.ndarray) -> Dict[str, np.ndarray]:
    return self.predict('decode', {'z': np.asarray(z, np.float32)})

  def reconstruct(self, pngs: Sequence[bytes]) -> Dict[str, np.ndarray]:
    return self.predict('reconstruct', {'images': np.array(pngs, dtype=object)})

  def arithmetic(self, a: Sequence[bytes], b: Sequence[bytes], c: Sequence[bytes],
                 coefficients: Sequence[float] = ()) -> Dict[str, np.ndarray]:
    """a·(A − B + C) for each coefficient; none: the model's default, the seed's 0.25 … 3."""
    return self.predict('arithmetic', {
        'a': np.array(a, dtype=object), 'b': np.array(b, dtype=object),
        'c': np.array(c, dtype=object), 'coefficients': np.asarray(coefficients, np.float32)})

  def interpolate(self, start: Sequence[bytes], end: Sequence[bytes], steps: int = 8):
    return self.predict('interpolate', {'start': np.array(start, dtype=object),
                                        'end': np.array(end, dtype=object),
                                        'steps': np.array(steps, np.int32)})

  def sample(self, n: int, seed: int = 0) -> Dict[str, np.ndarray]:
    return self.predict('sample', {'n': np.array(n, np.int32), 'seed': np.array(seed, np.int64)})

  # -------------------------------------------------------------- status and metadata
  def model_status(self) -> List[Dict[str, object]]:
    request = get_model_status_pb2.GetModelStatusRequest()
    self._spec(request.model_spec)
    response = self.models.GetModelStatus(request, timeout=self.timeout, wait_for_ready=True)
    return [{'version': s.version,
             'state': get_model_status_pb2.ModelVersionStatus.State.Name(s.state),
             'error': s.status.error_message} for s in response.model_version_status]

  def signature_names(self) -> List[str]:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=['signature_def'])
    self._spec(request.model_spec)
    response = self.predictions.GetModelMetadata(request, timeout=self.timeout, wait_for_ready=True)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata['signature_def'].Unpack(signature_map)
    return sorted(signature_map.signature_def)
