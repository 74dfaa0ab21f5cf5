"""Predict semantics shared by the gRPC and REST front ends, with TF Serving's status codes.

Inputs arrive by alias as TensorProtos (gRPC) or numpy arrays (REST). Every input is
checked against the signature and the RequestLimits from what it declares (dtype, shape,
size) before it is materialised, and the request's image count against the work budget
before the model runs, so no request costs more than its limits allow. Errors are
ServingError(code, message); the codes and messages follow TensorFlow Serving 2.19 for the
same faults (the pinned tensorflow-serving-api), with the offending input named, and a
refusal by the model itself reaches the client as the model worded it.
"""
import dataclasses
import math
from typing import Dict, Iterable, Optional, Sequence, Union

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from cns_vaegan.components.trainer.export import request_images
from cns_vaegan.serving.servables import Servable, ServableManager

DEFAULT_SIGNATURE = 'serving_default'
MAX_BATCH_SIZE = 256
MAX_TENSOR_BYTES = 64 * 1024 * 1024


@dataclasses.dataclass(frozen=True)
class RequestLimits:
  """What one request may ask of the server, checked before any input is materialised."""
  max_batch_size: int = MAX_BATCH_SIZE      # images a request takes or makes; also any input's batch
  max_tensor_bytes: int = MAX_TENSOR_BYTES  # one input, as materialised


class ServingError(Exception):
  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code, self.message = code, message


def _invalid(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def find_servable(manager: ServableManager, name: str, version: Optional[int],
                  version_label: str = '') -> Servable:
  """The servable a request's ModelSpec names, or NOT_FOUND as TF Serving words it."""
  if version_label:
    raise _invalid(f'Unrecognized servable version label: {version_label}')
  request = f'Specific({name}, {version})' if version is not None else f'Latest({name})'
  servable = manager.current()
  if (servable is None or name != manager.model_name
      or (version is not None and version != servable.version)):
    raise ServingError(grpc.StatusCode.NOT_FOUND, f'Servable not found for request: {request}')
  return servable


def signature_name_or_default(name: str) -> str:
  return name or DEFAULT_SIGNATURE


def find_signature(servable: Servable, signature_name: str):
  """(name, SignatureDef) a request names; empty means serving_default; else FAILED_PRECONDITION."""
  signature_name = signature_name_or_default(signature_name)
  signature = servable.signature_defs.get(signature_name)
  if signature is None:
    raise ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                       f'Serving signature key "{signature_name}" not found.')
  return signature_name, signature


def version_states(manager: ServableManager, name: str, version: Optional[int]):
  """[(version, state, error message)] for a status request, or NOT_FOUND as TF Serving words it."""
  states = dict(manager.states)
  if name != manager.model_name or (version is not None and version not in states):
    raise ServingError(grpc.StatusCode.NOT_FOUND,
                       f'Could not find any versions of model {name}' if version is None else
                       f'Servable not found for request: Specific({name}, {version})')
  return [(v, *states[v]) for v in sorted(states if version is None else [version])]


def _set(names: Iterable[str]) -> str:
  return '{' + ','.join(sorted(names)) + '}'


def _compatible(shape: Sequence[int], expected) -> bool:
  if expected.unknown_rank:
    return True
  dims = [d.size for d in expected.dim]
  return len(shape) == len(dims) and all(e < 0 or e == s for s, e in zip(shape, dims))


def _shape_text(expected) -> str:
  return '[' + ','.join('?' if d.size < 0 else str(d.size) for d in expected.dim) + ']'


def _check_declared(index: int, alias: str, dtype: tf.dtypes.DType, shape: Sequence[int],
                    info, limits: RequestLimits) -> int:
  """dtype, shape, batch and size an input declares, against its TensorInfo; its element count."""
  expected = tf.dtypes.as_dtype(info.dtype)
  if dtype != expected:
    raise _invalid(f'Expects arg[{index}] ("{alias}") to be {expected.name} but {dtype.name} is provided')
  if any(d < 0 for d in shape) or not _compatible(shape, info.tensor_shape):
    raise _invalid(f'input "{alias}" has shape {list(shape)} but the signature expects '
                   f'{_shape_text(info.tensor_shape)}')
  if shape and shape[0] > limits.max_batch_size:
    raise _invalid(f'input "{alias}" has a batch of {shape[0]}; the server takes at most '
                   f'{limits.max_batch_size}')
  count = math.prod(shape)
  size = count * (8 if dtype == tf.string else dtype.size)
  if size > limits.max_tensor_bytes:
    raise _invalid(f'input "{alias}" of shape {list(shape)} would take {size} bytes; the server '
                   f'takes at most {limits.max_tensor_bytes} an input')
  return count


def _from_proto(index: int, alias: str, proto: tensor_pb2.TensorProto, info,
                limits: RequestLimits) -> np.ndarray:
  """The array a TensorProto holds, once what it declares has passed the checks."""
  try:
    dtype = tf.dtypes.as_dtype(proto.dtype)
  except TypeError:
    raise _invalid(f'input "{alias}" has an unknown dtype ({proto.dtype})') from None
  if proto.tensor_shape.unknown_rank:
    raise _invalid(f'input "{alias}" declares no shape')
  shape = [d.size for d in proto.tensor_shape.dim]
  count = _check_declared(index, alias, dtype, shape, info, limits)
  if proto.tensor_content and dtype != tf.string and len(proto.tensor_content) != count * dtype.size:
    raise _invalid(f'input "{alias}" is not a valid tensor: {len(proto.tensor_content)} bytes of '
                   f'content for shape {shape} of {dtype.name}')
  try:
    return tf.make_ndarray(proto)
  except Exception as error:  # pylint: disable=broad-except  (any other malformed proto)
    raise _invalid(f'input "{alias}" is not a valid tensor: {error}') from None


def _checked_array(index: int, alias: str, value: np.ndarray, info,
                   limits: RequestLimits) -> np.ndarray:
  dtype = tf.string if value.dtype.kind in 'OSU' else tf.dtypes.as_dtype(value.dtype)
  _check_declared(index, alias, dtype, value.shape, info, limits)
  return value


Input = Union[np.ndarray, tensor_pb2.TensorProto]


def checked_inputs(signature, inputs: Dict[str, Input], output_filter: Sequence[str],
                   limits: RequestLimits) -> Dict[str, np.ndarray]:
  """Aliases, dtypes, shapes and sizes against the signature and limits; the inputs as arrays."""
  expected, sent = set(signature.inputs), set(inputs)
  if expected != sent:
    raise _invalid(
        f'input size does not match signature: {len(sent)}!={len(expected)} len({_set(sent)}) != '
        f'len({_set(expected)}). Sent extra: {_set(sent - expected)}. '
        f'Missing but required: {_set(expected - sent)}.')
  unknown = [alias for alias in output_filter if alias not in signature.outputs]
  if unknown:
    raise _invalid(f'output tensor alias not found in signature: {unknown[0]} Outputs expected to be '
                   f'in the set {_set(signature.outputs)}.')
  arrays = {}
  for index, alias in enumerate(sorted(inputs)):
    value, info = inputs[alias], signature.inputs[alias]
    arrays[alias] = (_from_proto(index, alias, value, info, limits)
                     if isinstance(value, tensor_pb2.TensorProto)
                     else _checked_array(index, alias, value, info, limits))
  return arrays


def check_work(signature_name: str, arrays: Dict[str, np.ndarray], limits: RequestLimits) -> int:
  """The images the request would take or make, refused over the budget before anything runs."""
  try:
    count = request_images(signature_name, arrays)
  except (TypeError, ValueError, OverflowError):  # e.g. a non-numeric n: the model will refuse it
    return 0
  if count > limits.max_batch_size:
    raise _invalid(f'signature "{signature_name}" would make {count} images; the server takes at '
                   f'most {limits.max_batch_size} a request (--max-batch-size)')
  return count


def run_signature(servable: Servable, signature_name: str, arrays: Dict[str, np.ndarray],
                  output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
  """One run of the signature on checked inputs; the outputs `output_filter` names (all if empty)."""
  signature = servable.signature_defs[signature_name]
  tensors = {alias: tf.constant(value, dtype=tf.dtypes.as_dtype(signature.inputs[alias].dtype))
             for alias, value in arrays.items()}
  try:
    outputs = servable.signatures[signature_name](**tensors)
  except tf.errors.InvalidArgumentError as error:
    raise _invalid(model_message(error.message)) from None
  except tf.errors.OpError as error:
    raise ServingError(grpc.StatusCode.INTERNAL, model_message(error.message)) from None
  wanted = output_filter or list(outputs)
  return {alias: outputs[alias].numpy() for alias in wanted}


def predict(servable: Servable, signature_name: str, inputs: Dict[str, Input],
            output_filter: Iterable[str] = (),
            limits: RequestLimits = RequestLimits(), batcher=None,
            deadline: Optional[float] = None) -> Dict[str, np.ndarray]:
  """Validates the request against the SignatureDef and limits, runs it, returns the outputs.

  With a `batcher` (serving/batching.py) the run may be shared with concurrent requests;
  `deadline` (time.monotonic()) lets the batcher drop the request if it passes in the queue.
  """
  signature_name, signature = find_signature(servable, signature_name)
  output_filter = list(output_filter)
  arrays = checked_inputs(signature, inputs, output_filter, limits)
  images = check_work(signature_name, arrays, limits)
  if batcher is not None:
    return batcher.run(servable, signature_name, arrays, output_filter, images, deadline)
  return run_signature(servable, signature_name, arrays, output_filter)


_TF_CONTEXT = ('Graph execution error:', 'Detected at node', '<stack traces unavailable>', '[[', '\t')


def model_message(message: str) -> str:
  """The model's own words for a failed run: its assertion text, else TF's first real line.

  TF wraps an op's error in context lines (the node, '[[{{node ...}}]]'); an assertion of
  the exported model reads 'assertion failed: [<message>]' and the message is passed on whole.
  """
  lines = [line for line in message.strip().splitlines()
           if line.strip() and not line.lstrip(' ').startswith(_TF_CONTEXT)]
  text = lines[0] if lines else message.strip()
  prefix = 'assertion failed: ['
  if text.startswith(prefix) and text.endswith(']'):
    return text[len(prefix):-1]
  return text
