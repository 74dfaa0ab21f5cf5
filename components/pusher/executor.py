"""TFX's Pusher executor, run once no version folder of the current second exists.

TF Serving serves the highest numeric version under the base path, and TFX's executor names
a push by int(time.time()). Before handing over to it, this executor takes a lock on the base
directory (on a local filesystem; a no-op on remote ones) and, when the newest existing
version is the current second or later, waits for the next second, so the push gets a
version of its own, above every other. A newest version more than a minute in the future (a
clock set wrong, or a hand-made version) would shadow every push: that is an error naming it.
"""
import contextlib
import fcntl
import os
import time
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher_executor
from tfx.proto import pusher_pb2
from tfx.types import standard_component_specs
from tfx.utils import proto_utils

MAX_WAIT_SECONDS = 60.0


def newest_version(base_directory: str) -> int:
  """The highest numeric folder name under base_directory, 0 if none (TF Serving's versions)."""
  if not os.path.isdir(base_directory):
    return 0
  return max((int(name) for name in os.listdir(base_directory) if name.isdigit()), default=0)


@contextlib.contextmanager
def _locked(base_directory: str):
  """An exclusive lock on base_directory/.push.lock while pushing (local filesystems only)."""
  if '://' in base_directory:
    yield
    return
  os.makedirs(base_directory, exist_ok=True)
  with open(os.path.join(base_directory, '.push.lock'), 'w', encoding='utf-8') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def wait_for_a_free_version(base_directory: str, clock=time.time, sleep=time.sleep) -> None:
  """Returns once int(clock()) is above every existing version of base_directory."""
  newest = newest_version(base_directory)
  wait = newest + 1 - clock()
  if wait > MAX_WAIT_SECONDS:
    raise RuntimeError(f'{base_directory}/{newest} is a version {wait:.0f} s in the future: it would '
                       'shadow every new push (TF Serving serves the highest). Remove or rename it.')
  if wait > 0:
    logging.info('Version %d already exists under %s: pushing in %.2f s, as the next one',
                 newest, base_directory, wait)
    sleep(wait)


class Executor(tfx_pusher_executor.Executor):
  """TFX's Pusher executor, after waiting for a version number no push has taken."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                              destination)
    if destination.WhichOneof('destination') != 'filesystem' or not self.CheckBlessing(input_dict):
      super().Do(input_dict, output_dict, exec_properties)
      return
    base = destination.filesystem.base_directory
    with _locked(base):
      wait_for_a_free_version(base)
      super().Do(input_dict, output_dict, exec_properties)
