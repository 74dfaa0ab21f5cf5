"""What a person sees while the local pipeline runs, and the log file that keeps the rest.

By default the terminal shows a line as each component starts and one as it ends, the
Trainer's progress bar, warnings from this project's code, every error, and the closing
summary. The rest goes to a log file: Python logging (absl's, so TFX's launcher dumps,
Beam's and TensorFlow's) through a handler at INFO, and what C++ code and Beam's worker
processes write to file descriptor 2 by pointing that descriptor at the file, while
sys.stderr (the progress bar's stream, tracebacks) stays on the terminal. `verbose`
keeps the INFO log on the terminal too.
"""
import contextlib
import logging
import os
import sys
import time
from typing import Callable, Dict, List, Tuple

from tqdm import tqdm

from cns_vaegan.components import quiet_start
from cns_vaegan.pipeline import configs

LOG_FORMAT = '%(asctime)s %(levelname)s %(name)s %(filename)s:%(lineno)d] %(message)s'


class TerminalFilter(logging.Filter):
  """Errors from anywhere; warnings only from this project's code (TFX and Beam warn a lot)."""

  def filter(self, record: logging.LogRecord) -> bool:
    ours = record.pathname.startswith(configs.REPO_ROOT + os.sep)
    return record.levelno >= logging.ERROR or (record.levelno >= logging.WARNING and ours)


class TerminalHandler(logging.StreamHandler):
  """Writes around the progress bar (tqdm.write), not through it."""

  def emit(self, record: logging.LogRecord) -> None:
    try:
      tqdm.write(self.format(record), file=self.stream)
    except Exception:  # pylint: disable=broad-except  (as logging.StreamHandler does)
      self.handleError(record)


@contextlib.contextmanager
def log_to_file(path: str, verbose: bool = False):
  """Inside the block, the log goes to `path` and the terminal shows what the module says."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  root = logging.getLogger()
  with open(path, 'a', encoding='utf-8', buffering=1) as log_file, contextlib.ExitStack() as stack:
    log_file.write(quiet_start.STARTUP_OUTPUT)
    if not verbose:
      # A stream on the terminal's stderr, then descriptor 2 to the log file (O_APPEND, so
      # this process and its children add whole lines).
      terminal_stream = stack.enter_context(os.fdopen(os.dup(2), 'w', buffering=1, encoding='utf-8',
                                                      errors='replace'))
      stack.enter_context(quiet_start.stderr_to(log_file.fileno()))
      stack.callback(setattr, sys, 'stderr', sys.stderr)
      sys.stderr = terminal_stream
    to_file = logging.StreamHandler(log_file)
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    terminal = TerminalHandler(sys.stderr)
    terminal.setFormatter(logging.Formatter('%(levelname)s %(filename)s:%(lineno)d] %(message)s'))
    if not verbose:
      terminal.addFilter(TerminalFilter())
    stack.callback(setattr, root, 'handlers', root.handlers[:])
    stack.callback(root.setLevel, root.level)
    stack.callback(logging.captureWarnings, False)
    root.handlers = [to_file, terminal]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    yield


@contextlib.contextmanager
def handler(extra: logging.Handler):
  """`extra` sees every log record inside the block."""
  root = logging.getLogger()
  root.addHandler(extra)
  try:
    yield extra
  finally:
    root.removeHandler(extra)


def duration(seconds: float) -> str:
  if seconds < 60:
    return f'{seconds:.1f} s'
  minutes, seconds = divmod(round(seconds), 60)
  return f'{minutes} min {seconds:02d} s'


class ComponentLines(logging.Handler):
  """Prints a line as each component starts and as it ends: how long, run or cached.

  Driven by the two records LocalDagRunner itself logs around each component
  (tfx/orchestration/local/local_dag_runner.py), recognised by their message template and
  the node id they carry, not by rendered text. `outcome(node id)` says how it ended
  ('done', 'cached'), from ML Metadata.
  """
  RUNNING, FINISHED = 'Component %s is running.', 'Component %s is finished.'

  def __init__(self, node_ids: List[str], outcome: Callable[[str], str]):
    super().__init__(logging.INFO)
    self.node_ids, self.outcome = node_ids, outcome
    self.width = max(len(node) for node in node_ids)
    self.started: Dict[str, Tuple[int, float]] = {}
    self.running = None

  def emit(self, record: logging.LogRecord) -> None:
    if record.module != 'local_dag_runner' or record.msg not in (self.RUNNING, self.FINISHED):
      return
    node = record.args[0]
    if record.msg == self.RUNNING:
      self.started[node] = (len(self.started) + 1, time.monotonic())
      self.running = node
      self._print(node, 'running')
    else:
      self.running = None
      outcome = self.outcome(node)
      took = time.monotonic() - self.started[node][1]
      self._print(node, outcome if outcome == 'cached' else f'{outcome} in {duration(took)}')

  def failed(self) -> None:
    """Ends the line of the component that was running when the run failed."""
    if self.running:
      self._print(self.running, f'FAILED after {duration(time.monotonic() - self.started[self.running][1])}')

  def _print(self, node: str, what: str) -> None:
    number = self.started[node][0]
    print(f'[{number}/{len(self.node_ids)}] {node:<{self.width}}  {what}', flush=True)
