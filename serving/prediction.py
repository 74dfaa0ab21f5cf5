"""Predict semantics shared by the gRPC and REST front ends, with TF Serving's status codes.

Inputs arrive as numpy arrays by alias; errors are ServingError(code, message) whose
codes and messages follow TensorFlow Serving 2.21 for the same faults, with the
offending input named.
"""
from typing import Dict, Iterable, Optional

import grpc
import numpy as np
import tensorflow as tf

from cns_vaegan.serving.servables import Servable, ServableManager

DEFAULT_SIGNATURE = 'serving_default'
PNG_MAGIC = b'\x89PNG\r\n\x1a\n'


class ServingError(Exception):
  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code, self.message = code, message


def find_servable(manager: ServableManager, name: str, version: Optional[int],
                  version_label: str = '') -> Servable:
  """The servable a request's ModelSpec names, or NOT_FOUND as TF Serving words it."""
  if version_label:
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                       f'Unrecognized servable version label: {version_label}')
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


def _compatible(shape, expected) -> bool:
  if expected.unknown_rank:
    return True
  dims = [d.size for d in expected.dim]
  return len(shape) == len(dims) and all(e < 0 or e == s for s, e in zip(shape, dims))


def _shape_text(expected) -> str:
  return '[' + ','.join('?' if d.size < 0 else str(d.size) for d in expected.dim) + ']'


def predict(servable: Servable, signature_name: str, inputs: Dict[str, np.ndarray],
            output_filter: Iterable[str] = (), max_batch_size: int = 256) -> Dict[str, np.ndarray]:
  """Validates the request against the SignatureDef, runs it, returns the (filtered) outputs."""
  signature_name, signature = find_signature(servable, signature_name)
  expected, sent = set(signature.inputs), set(inputs)
  if expected != sent:
    raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f'input size does not match signature: {len(sent)}!={len(expected)} len({_set(sent)}) != '
        f'len({_set(expected)}). Sent extra: {_set(sent - expected)}. '
        f'Missing but required: {_set(expected - sent)}.')
  output_filter = list(output_filter)
  unknown = [alias for alias in output_filter if alias not in signature.outputs]
  if unknown:
    raise ServingError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f'output tensor alias not found in signature: {unknown[0]} Outputs expected to be in the '
        f'set {_set(signature.outputs)}.')

  tensors = {}
  for index, alias in enumerate(sorted(inputs)):
    info, value = signature.inputs[alias], inputs[alias]
    dtype = tf.dtypes.as_dtype(info.dtype)
    got = tf.dtypes.as_dtype(value.dtype) if value.dtype.kind != 'O' else tf.string
    if got != dtype:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f'Expects arg[{index}] ("{alias}") to be {dtype.name} but {got.name} is provided')
    if not _compatible(value.shape, info.tensor_shape):
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f'input "{alias}" has shape {list(value.shape)} but the signature expects '
                         f'{_shape_text(info.tensor_shape)}')
    if value.ndim and value.shape[0] > max_batch_size:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f'input "{alias}" has a batch of {value.shape[0]}; the server takes at '
                         f'most {max_batch_size}')
    tensors[alias] = tf.constant(value, dtype=dtype)

  try:
    outputs = servable.signatures[signature_name](**tensors)
  except tf.errors.InvalidArgumentError as error:
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                       _name_bad_png(inputs) or error.message.strip().splitlines()[-1]) from None
  except tf.errors.OpError as error:
    raise ServingError(grpc.StatusCode.INTERNAL, error.message.strip().splitlines()[-1]) from None
  wanted = output_filter or list(outputs)
  return {alias: outputs[alias].numpy() for alias in wanted}


def _name_bad_png(inputs: Dict[str, np.ndarray]) -> str:
  """For a failed run, the first string input element that is not a PNG, if any."""
  for alias, value in sorted(inputs.items()):
    if value.dtype.kind in 'OS':
      for position, item in enumerate(np.asarray(value).reshape(-1)):
        if not bytes(item).startswith(PNG_MAGIC):
          return f'input "{alias}"[{position}] is not a decodable PNG image'
  return ''
