"""The training loop: resume after a kill, TensorBoard summaries, projector, collapse signal."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from cns_vaegan.components.evaluator import quality_metrics
from cns_vaegan.components.trainer import training
from conftest import TINY_ARCHITECTURE
from tensorboard_checks import projector_embedding

TRAIN_SCRIPT = '''
import json, sys
from absl import logging
logging.set_verbosity(logging.INFO)
from cns_vaegan.components.evaluator import quality_metrics
from cns_vaegan.components.trainer import training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
args = json.loads(sys.argv[1])
training.train([args['train']], [args['eval']], Architecture(**args['arch']),
               TrainingConfig(**args['config']), args['steps'], args['logs'], args['checkpoints'])
'''


def start_training(glyph_tfrecords, tmp_path, steps, **config):
  args = json.dumps({
      'train': glyph_tfrecords['train'], 'eval': glyph_tfrecords['eval'], 'arch': TINY_ARCHITECTURE,
      'config': dict(dict(batch_size=8, checkpoint_every_steps=5, log_every_steps=5,
                          summary_every_steps=5, image_summary_every_steps=10, projector_samples=12),
                     **config),
      'steps': steps, 'logs': str(tmp_path / 'logs'), 'checkpoints': str(tmp_path / 'checkpoints')})
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.Popen([sys.executable, '-c', TRAIN_SCRIPT, args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env)


def latest_step(checkpoint_dir):
  latest = tf.train.latest_checkpoint(checkpoint_dir)
  return int(latest.rsplit('-', 1)[1]) if latest else 0


def test_a_killed_run_resumes_from_its_last_checkpoint(glyph_tfrecords, tmp_path):
  steps = 400
  process = start_training(glyph_tfrecords, tmp_path, steps)
  deadline = time.time() + 240
  while latest_step(tmp_path / 'checkpoints') < 10 and process.poll() is None:
    assert time.time() < deadline, 'no checkpoint within 240 s'
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)  # no chance to clean up, as a pre-empted pod
  process.wait()
  killed_at = latest_step(tmp_path / 'checkpoints')
  assert 10 <= killed_at < steps, 'the first run must die mid-way'

  # The same run started again; saving and drawing images less often only makes it faster
  # (intervals are not part of a checkpoint).
  resumed = start_training(glyph_tfrecords, tmp_path, steps, checkpoint_every_steps=100,
                           image_summary_every_steps=1000)
  output, _ = resumed.communicate(timeout=600)
  assert resumed.returncode == 0, output
  assert f'at step {killed_at}' in output and f'Training {killed_at} -> {steps} steps' in output
  assert latest_step(tmp_path / 'checkpoints') == steps
  assert f'step {killed_at + 5}/{steps}' in output, output  # counting went on from there


def summary_tags(log_dir):
  tags = {}
  for path in glob.glob(os.path.join(log_dir, 'events.out.tfevents.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        tags.setdefault(value.tag, value.metadata.plugin_data.plugin_name)
  return tags


def test_summaries_cover_every_loss_term_images_and_the_projector(glyph_tfrecords, tmp_path):
  process = start_training(glyph_tfrecords, tmp_path, 10, cpu_replicas=2)
  output, _ = process.communicate(timeout=600)
  assert process.returncode == 0, output
  assert 'on 2 replica(s)' in output and 'images/s' in output
  # The progress bar's last state: every step, images/s and each network's loss.
  assert 'Training: 100%' in output and '10/10' in output and 'enc=' in output and 'dis=' in output
  tags = summary_tags(tmp_path / 'logs')
  for term in ('kl', 'dis_l', 'decoder_gan', 'discriminator_loss', 'encoder_loss', 'decoder_loss',
               'd_real', 'd_fake'):
    assert f'loss/{term}' in tags, sorted(tags)
  for name in ('learning_rate/encoder', 'learning_rate/decoder', 'learning_rate/discriminator',
               'throughput/images_per_second', 'diversity/samples_over_real'):
    assert name in tags, sorted(tags)
  for name in ('reconstructions', 'samples', 'interpolation'):
    assert tags.get(name) == 'images', sorted(tags)
  # `tensorboard --logdir <the folder above the run>` shows the run in its Projector tab.
  embedding = projector_embedding(str(tmp_path), 'logs')
  assert embedding['values'].shape == (12, TINY_ARCHITECTURE['z_dim'])
  assert np.all(np.isfinite(embedding['values'])) and np.ptp(embedding['values'], axis=0).max() > 0
  assert embedding['metadata'][0] == 'character\tcode_point' and len(embedding['metadata']) == 13
  assert embedding['sprite'].startswith(b'\x89PNG')
  quality = json.loads((tmp_path / 'logs' / 'reconstruction_quality.json').read_text())
  assert (quality['before']['step'], quality['after']['step']) == (0, 10)
  assert 0 <= quality['after']['ssim'] <= 1 and quality['after']['mse'] > 0
  for step in (0, 10):  # the before/after grids, in the run's output
    assert (tmp_path / 'logs' / f'reconstructions_step{step}.png').exists()


def test_sample_diversity_tells_collapse_from_variety():
  rng = np.random.default_rng(0)
  varied = rng.uniform(-1, 1, (16, 8, 8, 1))
  collapsed = np.repeat(varied[:1], 16, axis=0) + rng.normal(0, 1e-3, (16, 8, 8, 1))
  assert (quality_metrics.mean_pairwise_distance(collapsed)
          < 0.01 * quality_metrics.mean_pairwise_distance(varied))


def test_uneven_batch_split_is_refused(glyph_tfrecords, tmp_path):
  from cns_vaegan.components.trainer.architecture import Architecture
  from cns_vaegan.components.trainer.training_config import TrainingConfig
  two = tf.distribute.MirroredStrategy(['/cpu:0', '/cpu:1'])
  with pytest.raises(ValueError, match='batch_size 7 does not split evenly over 2 replicas'):
    training.train([glyph_tfrecords['train']], [glyph_tfrecords['eval']],
                   Architecture(**TINY_ARCHITECTURE), TrainingConfig(batch_size=7), 1,
                   str(tmp_path), str(tmp_path / 'c'), strategy=two)
