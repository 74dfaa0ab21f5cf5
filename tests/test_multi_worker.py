"""Training on several workers (MultiWorkerMirroredStrategy): two worker processes on loopback
take exactly the steps one process takes on the same global batch, the chief alone exports
and checkpoints, and a restarted cluster resumes from the chief's checkpoint.

The workers are real processes with their TF_CONFIG (local_cluster.start), each on one CPU.
"""
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from cns_vaegan.components.trainer import cluster, local_cluster
from conftest import TINY_ARCHITECTURE

# One worker's run: run_fn's training (and export, unless 'export' is false), then its
# weights into <weights>/<task>.npz.
WORKER_SCRIPT = '''
import json, sys
import numpy as np
from absl import logging
logging.set_verbosity(logging.INFO)
from tfx.components.trainer.fn_args_utils import FnArgs
from cns_vaegan.components.trainer import cluster, run_fn, training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
args = json.loads(sys.argv[1])
fn_args = FnArgs(train_files=[args['train']], eval_files=[args['eval']], train_steps=args['steps'],
                 model_run_dir=args['logs'], serving_model_dir=args['serving'],
                 custom_config={'architecture': args['arch'], 'training': args['config'],
                                'checkpoint_dir': args['checkpoints']})
if args['export']:
  model = run_fn.train_and_export(fn_args)
else:
  model = training.train(fn_args.train_files, fn_args.eval_files, Architecture(**args['arch']),
                         TrainingConfig(**args['config']), args['steps'], args['logs'], args['checkpoints'])
np.savez(f"{args['weights']}/{cluster.role().name}.npz",
         *[w for net in model.networks.values() for w in net.get_weights()])
'''

# One forward pass per step: the least to trace, which is most of a worker's time here.
CONFIG = dict(batch_size=8, seed=3, update_schedule='one_pass', checkpoint_every_steps=2,
              log_every_steps=1, summary_every_steps=1, image_summary_every_steps=1000,
              projector_samples=0)
# Two workers sum their gradients in another order than one process does: float32 rounding.
RTOL, ATOL = 1e-4, 1e-6


def start_workers(glyph_tfrecords, tmp_path, steps, export=False, workers=2):
  """The workers' processes and their log files; their temporary folders go under tmp_path/tmp."""
  for folder in ('weights', 'tmp', 'logs'):
    (tmp_path / folder).mkdir(exist_ok=True)
  args = json.dumps({'train': glyph_tfrecords['train'], 'eval': glyph_tfrecords['eval'],
                     'arch': TINY_ARCHITECTURE, 'config': CONFIG, 'steps': steps, 'export': export,
                     'logs': str(tmp_path / 'model_run'), 'serving': str(tmp_path / 'serving'),
                     'checkpoints': str(tmp_path / 'checkpoints'), 'weights': str(tmp_path / 'weights')})
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', TMPDIR=str(tmp_path / 'tmp'))
  logs = [open(tmp_path / 'logs' / f'worker-{i}.log', 'a', encoding='utf-8') for i in range(workers)]
  command = ['nice', '-n', '19', sys.executable, '-c', WORKER_SCRIPT, args]
  return local_cluster.start(command, workers, logs, env), logs


def finish(processes, logs, timeout=300):
  try:
    local_cluster.wait(processes, timeout)
  finally:
    for log in logs:
      log.close()


def read_log(tmp_path, index):
  return (tmp_path / 'logs' / f'worker-{index}.log').read_text(encoding='utf-8')


def weights(tmp_path, task):
  with np.load(tmp_path / 'weights' / f'{task}.npz') as saved:
    return [saved[name] for name in saved.files]


def latest_step(checkpoint_dir):
  states = glob.glob(os.path.join(checkpoint_dir, 'ckpt-*.index'))
  return max((int(path.rsplit('-', 1)[1].split('.')[0]) for path in states), default=0)


# ------------------------------------------------------------------- which task leads
@pytest.mark.parametrize('tf_config, chief, workers', [
    ('', True, 1),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}', True, 2),
    ('{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}', False, 2),
    ('{"cluster": {"chief": ["c:1"], "worker": ["a:1", "b:1"]}, "task": {"type": "chief", "index": 0}}',
     True, 3),
    ('{"cluster": {"chief": ["c:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
     False, 2),
    ('{"cluster": {"master": ["m:1"], "worker": ["a:1"]}, "task": {"type": "master", "index": 0}}',
     True, 2),
    ('{"cluster": {"master": ["m:1"], "worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}',
     False, 2),
    # Vertex AI adds job and environment; a one-machine job may name only its chief.
    ('{"cluster": {"chief": ["c:1"]}, "task": {"type": "chief", "index": 0}, "environment": "cloud",'
     ' "job": {"worker_pool_specs": []}}', True, 1),
])
def test_the_chief_is_found_in_every_tf_config_shape(tf_config, chief, workers):
  role = cluster.role(tf_config)
  assert (role.is_chief, role.num_workers) == (chief, workers)
  assert 'master' not in role.cluster  # MultiWorkerMirroredStrategy knows chief and worker only


@pytest.mark.parametrize('tf_config, message', [
    ('{"cluster": {"worker": ["a:1"], "ps": ["p:1"]}, "task": {"type": "worker", "index": 0}}', 'parameter servers'),
    ('{"cluster": {"chief": ["c:1"], "evaluator": ["e:1"]}, "task": {"type": "evaluator", "index": 0}}',
     'evaluator'),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', 'not in its cluster'),
])
def test_tasks_that_do_not_train_are_refused_saying_why(tf_config, message):
  with pytest.raises(ValueError, match=message):
    cluster.role(tf_config)


def test_only_the_chief_writes_where_it_is_told(tmp_path):
  chief, other = cluster.role(cluster.tf_config(['a:1', 'b:1'], 0)), cluster.role(cluster.tf_config(['a:1', 'b:1'], 1))
  with cluster.writable(str(tmp_path / 'out'), chief) as path:
    assert path == str(tmp_path / 'out')
  with cluster.writable(str(tmp_path / 'out'), other) as path:
    assert path != str(tmp_path / 'out') and os.path.isdir(path)
  assert not os.path.exists(path)  # removed after


# --------------------------------------------------------------------- two processes
STEPS = 3


@pytest.fixture(scope='module')
def two_worker_run(glyph_tfrecords, tmp_path_factory):
  """(folder, the model of one process on the same global batch and seed): two workers run
  run_fn for STEPS steps while this process trains the reference (one replica)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer import training  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer.architecture import Architecture  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer.training_config import TrainingConfig  # pylint: disable=import-outside-toplevel
  folder = tmp_path_factory.mktemp('two_workers')
  processes, logs = start_workers(glyph_tfrecords, folder, STEPS, export=True)
  single = training.train([glyph_tfrecords['train']], [glyph_tfrecords['eval']],
                          Architecture(**TINY_ARCHITECTURE), TrainingConfig(**CONFIG), STEPS,
                          str(folder / 'single_logs'), str(folder / 'single_checkpoints'),
                          strategy=tf.distribute.MirroredStrategy(['/cpu:0']), role=cluster.Role())
  finish(processes, logs)
  return folder, single


def test_two_workers_step_as_one_process_and_export_once(two_worker_run):
  folder, single = two_worker_run
  chief_log = read_log(folder, 0)
  assert 'on 2 replica(s)' in chief_log and 'worker-0 of 2 workers (chief: True)' in chief_log, chief_log
  reference = [w for net in single.networks.values() for w in net.get_weights()]
  chief, other = weights(folder, 'worker-0'), weights(folder, 'worker-1')
  assert len(chief) == len(other) == len(reference)
  for a, b, c in zip(chief, other, reference):
    np.testing.assert_array_equal(a, b)  # the workers hold the same variables, bit for bit
    np.testing.assert_allclose(a, c, rtol=RTOL, atol=ATOL)
  assert any(not np.allclose(a, b) for a, b in zip(chief, weights_at_start(single)))  # it trained
  # One SavedModel (the chief's), one set of checkpoints and logs; worker 1's temporary ones are gone.
  exported = glob.glob(str(folder / '**' / 'saved_model.pb'), recursive=True)
  assert exported == [str(folder / 'serving' / 'saved_model.pb')]
  assert latest_step(folder / 'checkpoints') == STEPS
  assert glob.glob(str(folder / 'model_run' / 'events.out.tfevents.*'))
  assert os.listdir(folder / 'tmp') == []


def weights_at_start(model):
  """The initial weights of a model like `model` (same architecture, config and seed)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from cns_vaegan.components.trainer.vaegan import VAEGAN  # pylint: disable=import-outside-toplevel
  tf.keras.utils.set_random_seed(model.config.seed)
  fresh = VAEGAN(model.arch, model.config, tf.distribute.get_strategy())
  return [w for net in fresh.networks.values() for w in net.get_weights()]


def test_a_restarted_cluster_resumes_from_the_chiefs_checkpoint(two_worker_run, glyph_tfrecords):
  """The cluster of the run above started again for more steps, as Vertex or a TFJob restarts a
  job after a worker's failure: worker 1 kept no checkpoint of its own, and reads the chief's.
  (A single process killed mid-run resumes too: test_training.py.)"""
  folder, _ = two_worker_run
  finish(*start_workers(glyph_tfrecords, folder, STEPS + 2))
  for index in (0, 1):
    log = read_log(folder, index)
    assert f'{folder / "checkpoints"}/ckpt-{STEPS} at step {STEPS}' in log, log
    assert f'Training {STEPS} -> {STEPS + 2} steps' in log, log
  assert latest_step(folder / 'checkpoints') == STEPS + 2
  for a, b in zip(weights(folder, 'worker-0'), weights(folder, 'worker-1')):
    np.testing.assert_array_equal(a, b)
  assert os.listdir(folder / 'tmp') == []


def test_a_failed_worker_stops_the_others():
  sleeper = [sys.executable, '-c', 'import os, sys, time; '
             'sys.exit(3) if \'"index": 1\' in os.environ["TF_CONFIG"] else time.sleep(60)']
  started = time.monotonic()
  with pytest.raises(RuntimeError, match='worker 1 of 2 exited with status 3'):
    local_cluster.wait(local_cluster.start(sleeper, 2), timeout=30)
  assert time.monotonic() - started < 10


def test_local_workers_share_the_cores_unless_told():
  """Each of N loopback workers gets cores / N op threads (at least 1); a set value is kept."""
  def started_with(threads: str, workers: int, env: dict) -> None:
    check = [sys.executable, '-c', 'import os, sys; '
             'sys.exit(os.environ.get("TF_NUM_INTRAOP_THREADS") != sys.argv[1])', threads]
    local_cluster.wait(local_cluster.start(check, workers, env=env), timeout=30)

  plain = {'PATH': os.environ['PATH']}
  started_with(str(max(1, os.cpu_count() // 2)), 2, plain)
  started_with('1', os.cpu_count() + 1, plain)
  started_with('7', 2, dict(plain, TF_NUM_INTRAOP_THREADS='7'))


def test_the_local_runners_workers_flag_gives_the_trainer_the_cluster_executor(tmp_path):
  from cns_vaegan.pipeline import local_runner, pipeline  # pylint: disable=import-outside-toplevel

  def trainer(*flags):
    args = local_runner.parse_args([*flags, '--data-root', str(tmp_path), '--profile', 'cpu'])
    built = pipeline.create_pipeline(**local_runner.pipeline_kwargs(args), pipeline_root=str(tmp_path))
    return next(c for c in built.components if c.id == 'Trainer')

  two, one = trainer('--workers', '2'), trainer()
  assert two.executor_spec.executor_class is local_cluster.Executor
  assert json.loads(two.exec_properties['custom_config'])['local_workers'] == 2
  assert one.executor_spec.executor_class is not local_cluster.Executor
  assert 'local_workers' not in json.loads(one.exec_properties['custom_config'])
  with pytest.raises(SystemExit):
    local_runner.parse_args(['--workers', '0'])
