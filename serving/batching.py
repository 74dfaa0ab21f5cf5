"""Server-side batching for the embedded model server, as TF Serving's --enable_batching does it.

Concurrent requests to the same signature of the same model version wait in a queue and run
as one call of the signature, their inputs concatenated along the first (batch) dimension;
each caller gets exactly its own rows back. TF Serving 2.19.1's semantics, as read in its
sources (tensorflow_serving/batching/batching_session.cc and TensorFlow's SharedBatchScheduler,
tensorflow/core/kernels/batching_util/shared_batch_scheduler.h):

- one queue per model version and signature, served round-robin by `num_batch_threads`
  threads shared by every queue; a queue holds batches, the last one open: a request that
  does not fit the open batch (`max_batch_size` rows) closes it and opens the next; a thread
  takes the front batch once it is closed, full, or `batch_timeout_micros` old;
- a request that would need more than `max_enqueued_batches` batches waiting: UNAVAILABLE
  "The batch scheduling queue to which this task was submitted is full; ..." (HTTP 503),
  which gRPC clients may retry; a request of more rows than `max_batch_size`:
  INVALID_ARGUMENT "Task size N is larger than maximum input batch size M"; a gRPC request
  whose deadline passes in the queue is dropped: RESOURCE_EXHAUSTED "Run() timeout exceeded
  while waiting in batching queue" (each such request; TF Serving drops a batch only when
  all its requests have expired);
- with `allowed_batch_sizes`, a batch is padded up to the next allowed size with copies of
  the first row of its last request (TF Serving's choice: a row known to be valid).

Where it differs, it is so that each request gets the answer it would get alone:
- a signature with a scalar input (`sample`'s n and seed, `interpolate`'s steps) runs
  unbatched in the request's thread (TF Serving refuses it: "Batching Run() input tensors
  must have at least one dimension"); so does a request whose inputs differ in rows (the
  model's own message then names them);
- `arithmetic`'s `coefficients` is one vector for the whole request, not one per row: only
  requests with equal coefficients share a queue (TF Serving would concatenate them too);
  likewise requests whose inputs differ past the first dimension go to different queues;
- a batch that fails (a PNG that does not decode, a batch past the model's pixel budget) is
  run again request by request, so every request gets its own answer, error message and
  indices included; its batch-mates pay one failed run (TF Serving fails them all);
- the server's per-request limits also bound each batch: its images (rows, times K for
  `arithmetic`) stay within --max-batch-size and each concatenated input within
  --max-message-bytes; a request that would pass them starts a new batch, and padding is
  left out where it would.

The parameter file is TF Serving's text-format BatchingParameters
(servables/tensorflow/session_bundle_config.proto), parsed with protobuf's text_format
against that message declared below (tensorflow-serving-api ships no
session_bundle_config_pb2). Hand-written: no installable package provides the scheduler.
"""
import collections
import dataclasses
import os
import threading
import time
from typing import Dict, List, Optional, Sequence, Tuple

import grpc
import numpy as np
from absl import logging
from google.protobuf import (descriptor_pb2, descriptor_pool, message_factory, text_format,
                             wrappers_pb2)

from cns_vaegan.serving.prediction import RequestLimits, ServingError, run_signature
from cns_vaegan.serving.servables import Servable

# Inputs that hold one value for the whole request rather than one per row; the output of
# the same name is that value too. Requests share a batch only when these are equal.
SHARED_INPUTS = {'arithmetic': ('coefficients',)}


# ----------------------------------------------------------------------- parameters
@dataclasses.dataclass(frozen=True)
class BatchingParameters:
  """The fields of TF Serving's BatchingParameters the embedded server honours.

  A field a file leaves out takes TF Serving's default (its QueueOptions and
  SharedBatchScheduler::Options), so one file means the same to both servers;
  num_batch_threads None is TF Serving's: one thread per core (port::MaxParallelism()).
  """
  max_batch_size: int = 1000
  batch_timeout_micros: int = 0
  max_enqueued_batches: int = 10
  num_batch_threads: Optional[int] = None
  allowed_batch_sizes: Tuple[int, ...] = ()
  thread_pool_name: str = 'batch_threads'

  def __post_init__(self):
    """TF Serving's checks and words (shared_batch_scheduler.h, bundle_factory_util.cc)."""
    for name, least in (('max_batch_size', 1), ('batch_timeout_micros', 0),
                        ('max_enqueued_batches', 1), ('num_batch_threads', 1)):
      value = getattr(self, name)
      if value is not None and value < least:
        raise ValueError(f'{name} must be {"positive" if least else "non-negative"}; was {value}')
    sizes = self.allowed_batch_sizes
    if any(b <= a for a, b in zip(sizes, sizes[1:])) or (sizes and sizes[0] < 1):
      raise ValueError('allowed_batch_sizes entries must be monotonically increasing')
    if sizes and sizes[-1] != self.max_batch_size:
      raise ValueError('Last entry in allowed_batch_sizes must match max_batch_size; last entry '
                       f'was {sizes[-1]}; expected {self.max_batch_size}')

  @property
  def threads(self) -> int:
    return self.num_batch_threads or os.cpu_count() or 1


# The embedded server's defaults and the batching.config serving/tf_serving.py writes for
# TF Serving, chosen with `make benchmark-serving` (docs/serving.md, "Server-side batching"):
# as large a batch as a request may be (--max-batch-size), so no request the server takes is
# refused; no timeout, so a lone request never waits; one thread per core (left out of the
# file, TF Serving's default too); and room for as many batches as --workers runs requests.
DEFAULT_PARAMETERS = BatchingParameters(max_batch_size=256, batch_timeout_micros=0,
                                        max_enqueued_batches=8)

_INT64_FIELDS = ('max_batch_size', 'batch_timeout_micros', 'max_enqueued_batches',
                 'num_batch_threads')
# Fields of the message the embedded server does not implement: refused when set.
_UNSUPPORTED = ('enable_large_batch_splitting', 'max_execution_batch_size',
                'pad_variable_length_inputs')


def _message_class():
  """tensorflow.serving.BatchingParameters, fields and numbers as session_bundle_config.proto
  declares them (2.19.1), in a pool of its own so it never clashes with a real one."""
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  proto = descriptor_pb2.FileDescriptorProto(
      name='cns_vaegan/serving/batching_parameters.proto', package='tensorflow.serving',
      dependency=['google/protobuf/wrappers.proto'], syntax='proto3')
  message = proto.message_type.add(name='BatchingParameters')
  field = descriptor_pb2.FieldDescriptorProto
  for name, number, wrapper in (
      ('max_batch_size', 1, 'Int64Value'), ('batch_timeout_micros', 2, 'Int64Value'),
      ('max_enqueued_batches', 3, 'Int64Value'), ('num_batch_threads', 4, 'Int64Value'),
      ('thread_pool_name', 5, 'StringValue'), ('enable_large_batch_splitting', 8, 'BoolValue'),
      ('max_execution_batch_size', 9, 'Int64Value')):
    message.field.add(name=name, number=number, label=field.LABEL_OPTIONAL,
                      type=field.TYPE_MESSAGE, type_name=f'.google.protobuf.{wrapper}')
  message.field.add(name='allowed_batch_sizes', number=6, label=field.LABEL_REPEATED,
                    type=field.TYPE_INT64)
  message.field.add(name='pad_variable_length_inputs', number=7, label=field.LABEL_OPTIONAL,
                    type=field.TYPE_BOOL)
  pool.Add(proto)
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName('tensorflow.serving.BatchingParameters'))


_Message = _message_class()


def parse_parameters(text: str, source: str = 'batching parameters') -> BatchingParameters:
  """A text-format BatchingParameters (what --batching_parameters_file holds); ValueError
  naming `source` and the field when it is malformed, out of range or not implemented here."""
  message = _Message()
  try:
    text_format.Parse(text, message)
  except text_format.ParseError as error:
    raise ValueError(f'{source}: not a text-format BatchingParameters: {error}') from None
  for name in _UNSUPPORTED:
    set_here = (message.pad_variable_length_inputs if name == 'pad_variable_length_inputs'
                else message.HasField(name) and getattr(message, name).value)
    if set_here:
      raise ValueError(f'{source}: {name} is not implemented by the embedded server (leave it '
                       'out: its queues never mix inputs of different shapes or split requests)')
  values = {name: getattr(message, name).value for name in _INT64_FIELDS + ('thread_pool_name',)
            if message.HasField(name)}
  try:
    return BatchingParameters(**values, allowed_batch_sizes=tuple(message.allowed_batch_sizes))
  except ValueError as error:
    raise ValueError(f'{source}: {error}') from None


def load_parameters(path: str) -> BatchingParameters:
  with open(path, encoding='utf-8') as f:
    return parse_parameters(f.read(), path)


def to_text(parameters: BatchingParameters) -> str:
  """The text-format file TF Serving's --batching_parameters_file reads."""
  lines = [f'{name} {{ value: {getattr(parameters, name)} }}' for name in _INT64_FIELDS
           if getattr(parameters, name) is not None]
  lines += [f'allowed_batch_sizes: {size}' for size in parameters.allowed_batch_sizes]
  if parameters.thread_pool_name != BatchingParameters.thread_pool_name:
    lines.append(f'thread_pool_name {{ value: "{parameters.thread_pool_name}" }}')
  return '\n'.join(lines) + '\n'


# ------------------------------------------------------------------------ the tasks
class _Task:
  """One request waiting for its rows: its inputs, its cost, and where its answer goes."""

  def __init__(self, arrays, output_filter, rows: int, images: int, deadline: Optional[float]):
    self.arrays, self.output_filter, self.rows, self.deadline = arrays, output_filter, rows, deadline
    self.images = max(images, rows)
    self.bytes = max(_nbytes(value) for value in arrays.values())
    self.outputs: Optional[Dict[str, np.ndarray]] = None
    self.error: Optional[ServingError] = None
    self.done = threading.Event()

  def answer(self, outputs: Dict[str, np.ndarray]) -> None:
    self.outputs = {alias: outputs[alias] for alias in self.output_filter or outputs}
    self.done.set()

  def fail(self, error: ServingError) -> None:
    self.error = error
    self.done.set()


def _nbytes(value: np.ndarray) -> int:
  if value.dtype == object:
    return sum(len(item) for item in value.reshape(-1))
  return value.nbytes


class _Batch:
  def __init__(self):
    self.tasks: List[_Task] = []
    self.rows = self.images = self.bytes = 0
    self.started = 0.0  # time.monotonic() of its first task

  def add(self, task: _Task) -> None:
    if not self.tasks:
      self.started = time.monotonic()
    self.tasks.append(task)
    self.rows += task.rows
    self.images += task.images
    self.bytes += task.bytes


@dataclasses.dataclass
class _Queue:
  """The batches of one (model version, signature, shared inputs, inner shapes); last is open."""
  servable: Servable
  signature_name: str
  shared: Tuple[str, ...]
  batches: collections.deque = dataclasses.field(default_factory=lambda: collections.deque([_Batch()]))

  def schedulable(self, parameters: BatchingParameters, now: float) -> bool:
    open_batch = self.batches[-1]
    return len(self.batches) > 1 or bool(open_batch.tasks) and (
        open_batch.rows >= parameters.max_batch_size
        or now >= open_batch.started + parameters.batch_timeout_micros / 1e6)

  def empty(self) -> bool:
    return len(self.batches) == 1 and not self.batches[0].tasks


# --------------------------------------------------------------------- the batcher
class Batcher:
  """Queues batchable requests and runs them in batches on `num_batch_threads` threads."""

  def __init__(self, parameters: BatchingParameters, limits: RequestLimits = RequestLimits()):
    self.parameters, self.limits = parameters, limits
    self._lock = threading.Condition()
    self._queues: Dict[tuple, _Queue] = {}
    self._next = 0  # round-robin position over the queues
    self._stopping = False
    # (signature, requests in the batch) -> batches run: for logs, monitoring and tests.
    self.batches_run = collections.Counter()
    self._threads = [threading.Thread(target=self._serve, name=f'{parameters.thread_pool_name}_{i}',
                                      daemon=True) for i in range(parameters.threads)]
    for thread in self._threads:
      thread.start()

  # ------------------------------------------------------------- request threads
  def run(self, servable: Servable, signature_name: str, arrays: Dict[str, np.ndarray],
          output_filter: Sequence[str], images: int,
          deadline: Optional[float] = None) -> Dict[str, np.ndarray]:
    """The request's outputs, from a batch when it can share one, else from a run of its own."""
    rows = _rows(servable, signature_name, arrays)
    if rows is None:
      return run_signature(servable, signature_name, arrays, output_filter)
    if rows > self.parameters.max_batch_size:
      raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                         f'Task size {rows} is larger than maximum input batch size '
                         f'{self.parameters.max_batch_size}')
    task = _Task(arrays, list(output_filter), rows, images, deadline)
    self._enqueue(servable, signature_name, task)
    task.done.wait()
    if task.error is not None:
      raise task.error
    return task.outputs

  def _enqueue(self, servable: Servable, signature_name: str, task: _Task) -> None:
    shared = SHARED_INPUTS.get(signature_name, ())
    key = (servable.name, servable.version, signature_name,
           tuple((alias, value.dtype.str, value.shape if alias in shared else value.shape[1:],
                  value.tobytes() if alias in shared else b'')
                 for alias, value in sorted(task.arrays.items())))
    with self._lock:
      if self._stopping:
        raise ServingError(grpc.StatusCode.UNAVAILABLE, 'the server is stopping')
      queue = self._queues.get(key)
      if queue is None:
        queue = self._queues[key] = _Queue(servable, signature_name, shared)
      if not self._fits(queue.batches[-1], task):
        if len(queue.batches) >= self.parameters.max_enqueued_batches:
          raise ServingError(
              grpc.StatusCode.UNAVAILABLE,
              'The batch scheduling queue to which this task was submitted is full; currently '
              f'{len(queue.batches)} batches enqueued and max_enqueued_batches is '
              f'{self.parameters.max_enqueued_batches}')
        queue.batches.append(_Batch())
      queue.batches[-1].add(task)
      self._lock.notify()  # one idle thread looks

  def _fits(self, batch: _Batch, task: _Task) -> bool:
    """Room for `task` in `batch`: rows, and the server's per-request limits for the whole."""
    return not batch.tasks or (batch.rows + task.rows <= self.parameters.max_batch_size
                               and batch.images + task.images <= self.limits.max_batch_size
                               and batch.bytes + task.bytes <= self.limits.max_tensor_bytes)

  # --------------------------------------------------------------- batch threads
  def _serve(self) -> None:
    while True:
      with self._lock:
        found = self._take()
        while found is None:
          if self._stopping:
            return
          self._lock.wait(self._seconds_to_next_timeout())
          found = self._take()
        now = time.monotonic()
        if any(queue.schedulable(self.parameters, now) for queue in self._queues.values()):
          self._lock.notify()  # another batch is ready too: an idle thread takes it
      queue, batch = found
      try:
        self._process(queue, batch)
      except Exception as error:  # pylint: disable=broad-except  (never leave a caller waiting)
        logging.exception('A batch of %s failed', queue.signature_name)
        for task in batch.tasks:
          if not task.done.is_set():
            task.fail(ServingError(grpc.StatusCode.INTERNAL, f'{type(error).__name__}: {error}'))

  def _take(self) -> Optional[Tuple[_Queue, _Batch]]:
    """The next schedulable batch, round-robin over the queues (under the lock)."""
    now, queues = time.monotonic(), list(self._queues.items())
    for i in range(len(queues)):
      key, queue = queues[(self._next + i) % len(queues)]
      if queue.schedulable(self.parameters, now) or (self._stopping and not queue.empty()):
        self._next = (self._next + i + 1) % len(queues)
        if len(queue.batches) == 1:
          queue.batches.append(_Batch())
        batch = queue.batches.popleft()
        if queue.empty():  # a queue lives while it holds requests (old versions go)
          del self._queues[key]
        return queue, batch
    return None

  def _seconds_to_next_timeout(self) -> Optional[float]:
    """How long until an open batch times out; None (wait for a request) if none holds one."""
    timeout = self.parameters.batch_timeout_micros / 1e6
    starts = [q.batches[-1].started for q in self._queues.values() if q.batches[-1].tasks]
    return max(0.0, min(starts) + timeout - time.monotonic()) if starts else None

  def _process(self, queue: _Queue, batch: _Batch) -> None:
    now = time.monotonic()
    tasks = []
    for task in batch.tasks:
      if task.deadline is not None and now >= task.deadline:
        task.fail(ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               'Run() timeout exceeded while waiting in batching queue'))
      else:
        tasks.append(task)
    if not tasks:
      return
    with self._lock:
      self.batches_run[queue.signature_name, len(tasks)] += 1
    rows = sum(task.rows for task in tasks)
    padding = self._padding(tasks)
    inputs = {alias: np.concatenate([t.arrays[alias] for t in tasks]
                                    + [tasks[-1].arrays[alias][:1]] * padding)
              for alias in tasks[0].arrays if alias not in queue.shared}
    inputs.update({alias: tasks[0].arrays[alias] for alias in queue.shared})
    wanted = set().union(*(t.output_filter for t in tasks)) if all(t.output_filter for t in tasks) else ()
    try:
      outputs = run_signature(queue.servable, queue.signature_name, inputs, sorted(wanted))
    except ServingError as error:
      if len(tasks) == 1 and not padding:
        tasks[0].fail(error)
        return
      logging.info('A batch of %d %s requests failed (%s); running them one by one',
                   len(tasks), queue.signature_name, error.message)
      for task in tasks:
        try:
          task.answer(run_signature(queue.servable, queue.signature_name, task.arrays,
                                    task.output_filter))
        except ServingError as own:
          task.fail(own)
      return
    for alias, value in outputs.items():
      if alias not in queue.shared and (value.ndim == 0 or len(value) != rows + padding):
        raise RuntimeError(f'output "{alias}" of {queue.signature_name} has shape {value.shape}, '
                           f'not a row for each of the batch\'s {rows + padding} rows')
    start = 0
    for task in tasks:
      task.answer({alias: value if alias in queue.shared else value[start:start + task.rows]
                   for alias, value in outputs.items()})
      start += task.rows

  def _padding(self, tasks: List[_Task]) -> int:
    """Rows to add to reach the next allowed batch size; none where they would pass a limit."""
    rows = sum(task.rows for task in tasks)
    target = next((size for size in self.parameters.allowed_batch_sizes if size >= rows), rows)
    extra, last = target - rows, tasks[-1]
    images = sum(task.images for task in tasks) + extra * last.images // last.rows
    row_bytes = max(_nbytes(value[:1]) for value in last.arrays.values())
    fits = (images <= self.limits.max_batch_size
            and sum(task.bytes for task in tasks) + extra * row_bytes <= self.limits.max_tensor_bytes)
    return extra if fits else 0

  def stop(self) -> None:
    """Runs what is queued, then ends the threads; later requests are refused (UNAVAILABLE)."""
    with self._lock:
      self._stopping = True
      self._lock.notify_all()
    for thread in self._threads:
      thread.join(timeout=60)


def _rows(servable: Servable, signature_name: str, arrays: Dict[str, np.ndarray]) -> Optional[int]:
  """The request's rows if it can share a batch: every input but the shared ones has a batch
  dimension in the signature and the same number of rows (at least one); else None."""
  shared = SHARED_INPUTS.get(signature_name, ())
  signature = servable.signature_defs[signature_name]
  rows = set()
  for alias, value in arrays.items():
    if alias in shared:
      continue
    shape = signature.inputs[alias].tensor_shape
    if shape.unknown_rank or not shape.dim or shape.dim[0].size != -1 or value.ndim == 0:
      return None
    rows.add(len(value))
  return rows.pop() if len(rows) == 1 and min(rows) > 0 else None
