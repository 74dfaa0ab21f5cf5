"""This process's place in a training cluster, read from TF_CONFIG, and where it may write.

Platforms that train on several machines (Vertex AI custom jobs, a Kubeflow TFJob, the
local runner's --workers) start the same program on every machine and tell each process
its place in the TF_CONFIG environment variable:

    {"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]},
     "task": {"type": "worker", "index": 0}}

Its shapes differ by platform: a `chief` task beside the workers (Vertex, TFJob), the
older `master` (AI Platform Training), or `worker`s only (worker 0 then leads). Every
training task runs the same training loop in lockstep (MultiWorkerMirroredStrategy's
collectives need all of them), but only the chief writes checkpoints, TensorBoard logs
and the SavedModel; the others write the same files to temporary folders, removed after,
as TensorFlow's multi-worker guide does, so no two processes write one file.
"""
import contextlib
import dataclasses
import json
import os
import shutil
import tempfile
from typing import Iterator, List, Optional

TRAINING_TASKS = ('chief', 'worker')  # the tasks that train; `master` is read as `chief`


@dataclasses.dataclass(frozen=True)
class Role:
  """This process's task in the cluster; a process with no TF_CONFIG is a cluster of one."""
  task_type: str = 'chief'
  task_index: int = 0
  cluster: dict = dataclasses.field(default_factory=dict)  # task type -> addresses

  @property
  def num_workers(self) -> int:
    """Processes that train: the chief (if any) and every worker."""
    return max(sum(len(self.cluster.get(task, ())) for task in TRAINING_TASKS), 1)

  @property
  def is_chief(self) -> bool:
    """The chief task, or worker 0 when the cluster has no chief."""
    if self.task_type == 'chief':
      return True
    return self.task_type == 'worker' and self.task_index == 0 and not self.cluster.get('chief')

  @property
  def name(self) -> str:
    return f'{self.task_type}-{self.task_index}'


def role(tf_config: Optional[str] = None) -> Role:
  """The Role TF_CONFIG (or `tf_config`, its JSON text) gives this process.

  `master` is renamed `chief` (MultiWorkerMirroredStrategy knows only chief and worker);
  tasks that do not train (`ps`, `evaluator`) are refused, saying why.
  """
  text = os.environ.get('TF_CONFIG', '') if tf_config is None else tf_config
  config = json.loads(text) if text.strip() else {}
  cluster = {('chief' if task == 'master' else task): list(addresses)
             for task, addresses in (config.get('cluster') or {}).items()}
  task = config.get('task') or {}
  task_type = {'master': 'chief'}.get(task.get('type'), task.get('type'))
  if not cluster:
    return Role()
  if len(cluster.get('chief', ())) > 1:
    raise ValueError(f'TF_CONFIG names {len(cluster["chief"])} chief/master tasks; a cluster has one')
  if 'ps' in cluster:
    raise ValueError('TF_CONFIG names parameter servers (ps): the Trainer trains with '
                     'MultiWorkerMirroredStrategy, which has none; give it chief and worker tasks')
  if task_type not in TRAINING_TASKS:
    raise ValueError(f'TF_CONFIG task type {task_type!r}: the Trainer runs only as a chief, master '
                     f'or worker task (an evaluator beside the training is not supported)')
  index = int(task.get('index', 0))
  if not 0 <= index < len(cluster.get(task_type, ())):
    raise ValueError(f'TF_CONFIG task {task_type} {index} is not in its cluster {cluster}')
  return Role(task_type, index, cluster)


def tf_config(addresses: List[str], index: int) -> str:
  """TF_CONFIG for worker `index` of a cluster of workers only (worker 0 leads)."""
  return json.dumps({'cluster': {'worker': list(addresses)}, 'task': {'type': 'worker', 'index': index}})


@contextlib.contextmanager
def writable(path: str, this: Role) -> Iterator[str]:
  """`path` for the chief; for any other worker a temporary folder, removed afterwards."""
  if this.is_chief:
    yield path
    return
  folder = tempfile.mkdtemp(prefix=f'cns-{this.name}-')
  try:
    yield folder
  finally:
    shutil.rmtree(folder, ignore_errors=True)
