"""TensorFlow's C++ start-up lines kept off the terminal of the runners, the CLI and the server.

TensorFlow 2.21 writes its start-up lines (oneDNN, "Could not find cuda drivers",
cpu_feature_guard) through absl's C++ logging before absl is initialised, and absl then
prints every message to stderr whatever TF_CPP_MIN_LOG_LEVEL says (abseil-cpp PR 1957).
Only the file descriptor can hold them back: `stderr_to` points descriptor 2 at another
file while a block runs, and `import_tensorflow` imports TensorFlow inside one, keeps
what it printed in STARTUP_OUTPUT (the local runner writes it to its log file) and
prints it after all if the import fails.
"""
import contextlib
import os
import sys
import tempfile

STARTUP_OUTPUT = ''


@contextlib.contextmanager
def stderr_to(fd: int):
  """Inside the block, descriptor 2 (C++ code, child processes, sys.stderr) writes to `fd`."""
  sys.stderr.flush()
  saved = os.dup(2)
  os.dup2(fd, 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)


@contextlib.contextmanager
def held_back():
  """Inside the block, descriptor 2's output is kept in STARTUP_OUTPUT, and printed after all
  if the block fails (it may say why)."""
  global STARTUP_OUTPUT
  with tempfile.TemporaryFile('w+', encoding='utf-8', errors='replace') as held:
    failed = True
    try:
      with stderr_to(held.fileno()):
        yield
      failed = False
    finally:
      held.seek(0)
      output = held.read()
      STARTUP_OUTPUT += output
      if failed:
        sys.stderr.write(output)


def import_tensorflow() -> None:
  """Imports TensorFlow once, its start-up lines held back."""
  if 'tensorflow' in sys.modules:
    return
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')  # INFO lines after start-up, which it filters
  with held_back():
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import,import-outside-toplevel
