"""The model versions under a TF Serving base path, loaded and hot-swapped as TF Serving does.

`<base>/<model name>/<version>/saved_model.pb`: version folders are parsed as integers
(others are ignored) and count only once saved_model.pb exists (the Pusher copies it
last). The newest version is served unless one is pinned. A new version is loaded
before the old one is dropped, and requests hold the servable they started with, so a
swap never fails a request in flight.

A version that fails to load is tried again up to max_load_retries times, load_retry_seconds
apart: TF Serving's defaults (--max_num_load_retries 5, --load_retry_interval_micros one
minute). Unlike TF Serving, whose loader sleeps between tries, the poller goes on meanwhile,
so a newer version pushed in the interval is loaded at once instead of after the retries.
"""
import dataclasses
import os
import threading
import time
from typing import Dict, Optional

import tensorflow as tf
from absl import logging
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

MAX_LOAD_RETRIES = 5         # TF Serving's --max_num_load_retries default
LOAD_RETRY_SECONDS = 60.0    # TF Serving's --load_retry_interval_micros default, one minute
WAIT_LOG_SECONDS = 30.0      # how often "waiting for a first version" is logged


@dataclasses.dataclass(frozen=True)
class Servable:
  name: str
  version: int
  path: str
  signatures: object                                   # tf.saved_model.load(...).signatures
  signature_defs: Dict[str, meta_graph_pb2.SignatureDef]


def available_versions(model_dir: str) -> Dict[int, str]:
  """{version: path} of complete numeric version folders."""
  versions = {}
  for entry in tf.io.gfile.listdir(model_dir) if tf.io.gfile.isdir(model_dir) else []:
    entry = entry.rstrip('/')
    if entry.isdigit() and tf.io.gfile.exists(os.path.join(model_dir, entry, 'saved_model.pb')):
      versions[int(entry)] = os.path.join(model_dir, entry)
  return versions


def load_servable(name: str, version: int, path: str) -> Servable:
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(path, 'saved_model.pb'), 'rb') as f:
    saved_model.ParseFromString(f.read())
  signature_defs = dict(saved_model.meta_graphs[0].signature_def)
  signature_defs.pop('__saved_model_init_op', None)
  return Servable(name, version, path, tf.saved_model.load(path).signatures, signature_defs)


class ServableManager:
  """Keeps the served version of one model current; thread-safe."""

  def __init__(self, base_path: str, model_name: str, pinned_version: Optional[int] = None,
               poll_seconds: float = 1.0, max_load_retries: int = MAX_LOAD_RETRIES,
               load_retry_seconds: float = LOAD_RETRY_SECONDS):
    self.model_name = model_name
    self.model_dir = os.path.join(base_path, model_name)
    self.pinned_version = pinned_version
    self.poll_seconds = poll_seconds
    self._lock = threading.Lock()
    self._current: Optional[Servable] = None
    self.max_load_retries, self.load_retry_seconds = max_load_retries, load_retry_seconds
    self.states: Dict[int, tuple] = {}  # version -> (state, error message)
    self._failed_loads: Dict[int, int] = {}
    self._next_try: Dict[int, float] = {}  # version -> monotonic time of its next load retry
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  def current(self) -> Optional[Servable]:
    with self._lock:
      return self._current

  def poll_once(self) -> bool:
    """Loads the wanted version if it is not the served one; True if a version is served."""
    versions = available_versions(self.model_dir)
    wanted = self.pinned_version if self.pinned_version is not None else max(versions, default=None)
    current = self.current()
    if wanted is None or wanted not in versions or (current and current.version == wanted):
      return current is not None
    if (self._failed_loads.get(wanted, 0) > self.max_load_retries  # given up on this version
        or time.monotonic() < self._next_try.get(wanted, 0.0)):     # not yet time to retry
      return current is not None
    self.states[wanted] = ('LOADING', '')
    try:
      servable = load_servable(self.model_name, wanted, versions[wanted])
    except Exception as error:  # pylint: disable=broad-except  (a bad version must not kill serving)
      failures = self._failed_loads[wanted] = self._failed_loads.get(wanted, 0) + 1
      gave_up = failures > self.max_load_retries
      self._next_try[wanted] = time.monotonic() + self.load_retry_seconds
      logging.error('Loading %s version %d failed (attempt %d of %d%s): %s', self.model_name,
                    wanted, failures, self.max_load_retries + 1,
                    ', giving up' if gave_up else f', retrying in {self.load_retry_seconds:g} s',
                    error)
      self.states[wanted] = ('END' if gave_up else 'LOADING', f'{type(error).__name__}: {error}')
      return current is not None
    with self._lock:  # new version in, then old version out
      old, self._current = self._current, servable
    self.states[wanted] = ('AVAILABLE', '')
    if old is not None:
      self.states[old.version] = ('END', '')
    logging.info('Serving %s version %d from %s', self.model_name, wanted, servable.path)
    return True

  def wait_for_first_version(self, timeout: Optional[float] = None,
                             cancel: Optional[threading.Event] = None) -> Optional[Servable]:
    """Polls until a version is served; None if `cancel` is set first (e.g. by SIGTERM)."""
    cancel = cancel or threading.Event()
    start = time.monotonic()
    next_log = start
    while not self.poll_once():
      now = time.monotonic()
      if timeout is not None and now - start > timeout:
        raise TimeoutError(f'no servable version of {self.model_name} under {self.model_dir}')
      if now >= next_log:
        logging.info('Waiting for a first version of %s: none loadable under %s yet (%.0f s so '
                     'far); a version is a numeric folder holding saved_model.pb. The ports open '
                     'once one loads.', self.model_name, self.model_dir, now - start)
        next_log = now + WAIT_LOG_SECONDS
      if cancel.wait(self.poll_seconds):
        return None
    return self.current()

  def start_polling(self) -> None:
    def loop():
      while not self._stop.wait(self.poll_seconds):
        try:
          self.poll_once()
        except Exception as error:  # pylint: disable=broad-except
          logging.error('Polling %s failed: %s', self.model_dir, error)
    self._thread = threading.Thread(target=loop, name='servable-poller', daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread:
      self._thread.join(timeout=5)
