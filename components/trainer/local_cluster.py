"""The Trainer on N worker processes of this machine, talking over loopback.

TFX's GenericExecutor calls run_fn once, in its own process, and starts no cluster: on
Vertex AI or a Kubeflow TFJob the platform starts the processes and sets TF_CONFIG. The
local runner's --workers does what those platforms do, on one machine: the Trainer's
executor (Executor below, used when the pipeline asks for local_workers > 1) starts N
processes of `python -m cns_vaegan.components.trainer.local_cluster`, each running the
same run_fn with a TF_CONFIG naming it worker i of N on free loopback ports, waits for
all of them, and fails if any fails, stopping the others (which would wait on their
collectives). Separate processes are needed: every worker needs its own TensorFlow
server, and MultiWorkerMirroredStrategy must be made before a process runs any op, while
LocalDagRunner's process has run TensorFlow for the components before the Trainer.
The workers' output goes where the executor's does (the run's log file). Unless the
environment already says, the workers share the machine's cores between them
(TF_NUM_INTRAOP_THREADS): N processes each sized for every core would spin against each
other at every collective of the step.
"""
import importlib
import json
import os
import socket
import subprocess
import sys
import time
from typing import IO, List, Optional, Sequence

from absl import logging
from tfx.components.trainer import executor as trainer_executor
from tfx.components.trainer.fn_args_utils import FnArgs
from tfx.dsl.io import fileio
from tfx.utils import json_utils

from cns_vaegan.components.trainer import cluster

# The FnArgs a worker gets: what run_fn reads, all of it JSON.
FN_ARGS_FIELDS = ('train_files', 'eval_files', 'train_steps', 'eval_steps', 'model_run_dir',
                  'serving_model_dir', 'custom_config')
# custom_config's key for the number of worker processes (the pipeline's local_workers).
WORKERS_KEY = 'local_workers'


def free_ports(count: int) -> List[int]:
  """`count` loopback ports free now (the OS's choice; all held open until all are chosen)."""
  sockets = [socket.socket() for _ in range(count)]
  try:
    for s in sockets:
      s.bind(('localhost', 0))
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def shared_cores(workers: int, env: dict) -> dict:
  """`env` with each of `workers` processes given its share of this machine's cores for
  TensorFlow's op threads, unless `env` already sets TF_NUM_INTRAOP_THREADS."""
  if 'TF_NUM_INTRAOP_THREADS' in env:
    return env
  return dict(env, TF_NUM_INTRAOP_THREADS=str(max(1, (os.cpu_count() or 1) // workers)))


def start(argv: Sequence[str], workers: int, outputs: Optional[Sequence[IO]] = None,
          env: Optional[dict] = None) -> List[subprocess.Popen]:
  """Starts `argv` `workers` times, process i with TF_CONFIG naming it worker i (0 leads);
  process i writes to outputs[i] (default: this process's stdout and stderr)."""
  addresses = [f'localhost:{port}' for port in free_ports(workers)]
  base = shared_cores(workers, dict(env or os.environ))
  processes = []
  for index in range(workers):
    output = outputs[index] if outputs else None
    environment = dict(base, TF_CONFIG=cluster.tf_config(addresses, index))
    processes.append(subprocess.Popen(list(argv), env=environment, stdout=output,
                                      stderr=subprocess.STDOUT if output else None))
  return processes


def wait(processes: List[subprocess.Popen], timeout: Optional[float] = None) -> None:
  """Waits for every process; when one fails (or `timeout` passes), stops the rest and raises."""
  deadline = None if timeout is None else time.monotonic() + timeout
  try:
    while [p.poll() for p in processes].count(None):
      failed = [i for i, p in enumerate(processes) if p.returncode not in (None, 0)]
      if failed:
        raise RuntimeError(f'worker {failed[0]} of {len(processes)} exited with status '
                           f'{processes[failed[0]].returncode}')
      if deadline is not None and time.monotonic() > deadline:
        raise TimeoutError(f'the {len(processes)} workers did not finish within {timeout} s')
      time.sleep(0.2)
    failed = [i for i, p in enumerate(processes) if p.returncode]
    if failed:
      raise RuntimeError(f'worker {failed[0]} of {len(processes)} exited with status '
                         f'{processes[failed[0]].returncode}')
  finally:
    for p in processes:
      if p.poll() is None:
        p.kill()
        p.wait()


def worker_command(run_fn: str, fn_args: FnArgs) -> List[str]:
  """The command of one worker: this module running `run_fn` on these FnArgs."""
  fields = {name: getattr(fn_args, name) for name in FN_ARGS_FIELDS}
  return [sys.executable, '-m', __name__, run_fn, json.dumps(fields)]


class Executor(trainer_executor.GenericExecutor):
  """GenericExecutor, run_fn on custom_config['local_workers'] processes when that is > 1."""

  def Do(self, input_dict, output_dict, exec_properties) -> None:
    custom_config = json_utils.loads(exec_properties.get('custom_config') or 'null') or {}
    workers = int(custom_config.get(WORKERS_KEY) or 1)
    if workers <= 1:
      super().Do(input_dict, output_dict, exec_properties)
      return
    fn_args = self._GetFnArgs(input_dict, output_dict, exec_properties)
    logging.info('Training on %d local worker processes (MultiWorkerMirroredStrategy)', workers)
    wait(start(worker_command(exec_properties['run_fn'], fn_args), workers))
    if not fileio.exists(fn_args.serving_model_dir):
      raise RuntimeError('the chief worker exported no model')
    logging.info('Training complete. Model written to %s. ModelRun written to %s',
                 fn_args.serving_model_dir, fn_args.model_run_dir)


def main(argv: List[str]) -> None:
  """python -m ...local_cluster MODULE.RUN_FN FN_ARGS_JSON: one worker (TF_CONFIG set)."""
  logging.set_verbosity(logging.INFO)
  module, name = argv[1].rsplit('.', 1)
  run_fn = getattr(importlib.import_module(module), name)
  logging.info('Worker %s of %d', cluster.role().name, cluster.role().num_workers)
  run_fn(FnArgs(**json.loads(argv[2])))


if __name__ == '__main__':
  main(sys.argv)
