"""Defaults for the pipeline; every one can be overridden by a runner flag."""
import os

PIPELINE_NAME = 'cns-vaegan'

# Repository root, so defaults work from any working directory.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The built-in dataset: the seed's TWKai98_32x32 set, rendered from the CNS TW-Kai font
# by cns_vaegan.data.render_glyphs (the local runner renders it on first use).
BUILTIN_DATA_ROOT = os.path.join(REPO_ROOT, 'data', 'glyphs', 'twkai_32')

# Everything a run writes (artifacts, ML Metadata, pushed models) lives under here.
OUTPUT_DIR = os.path.join(REPO_ROOT, 'outputs')

EVAL_PERCENT = 10

# Two sizings of the same model and recipe. `seed` is the seed's: ch 64 and 100 epochs of
# the ~18,950-glyph train split at batch 64 (29,600 steps); at ~110 images/s on a 2-core CPU
# that is ~5 h, so it is the default only where a GPU is visible. `cpu` halves the width
# (ch 32: ~450 images/s here) and trains 3,000 steps (~10 epochs, ~7 min), so the whole
# pipeline finishes in about a quarter of an hour with recognisable reconstructions.
# `--profile` picks one; `--architecture` and `--train-steps` override either.
# (benchmarks/train_throughput.py prints the figures of your machine.)
_TRAINER_DIR = os.path.join(REPO_ROOT, 'components', 'trainer')
PROFILES = {
    'seed': {'architecture': os.path.join(_TRAINER_DIR, 'architecture.json'), 'train_steps': 29600},
    'cpu': {'architecture': os.path.join(_TRAINER_DIR, 'architecture_cpu.json'), 'train_steps': 3000},
}

# Beam's DirectRunner with one worker process per core. Runner flags given on the
# command line come after these, so they win (e.g. --runner=FlinkRunner ...).
DEFAULT_BEAM_PIPELINE_ARGS = [
    '--direct_running_mode=multi_processing',
    '--direct_num_workers=0',  # 0 = as many workers as cores
]


# TensorFlow Serving reads <serving base>/<model name>/<numeric version>/saved_model.pb.
MODEL_NAME = 'cns_vaegan'


def pipeline_root(output_dir: str = OUTPUT_DIR, pipeline_name: str = PIPELINE_NAME) -> str:
  return os.path.join(output_dir, 'pipelines', pipeline_name)


def metadata_path(output_dir: str = OUTPUT_DIR, pipeline_name: str = PIPELINE_NAME) -> str:
  return os.path.join(output_dir, 'metadata', pipeline_name, 'metadata.db')
