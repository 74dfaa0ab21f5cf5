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

# The network, as the seed's editable architecture.json; PngExampleGen converts every
# PNG to its img_h x img_w x img_c once.
ARCHITECTURE_PATH = os.path.join(REPO_ROOT, 'components', 'trainer', 'architecture.json')
EVAL_PERCENT = 10

# Global steps of the default local run. The seed trained 100 epochs (~32,700 steps of 64);
# at ~97 images/s on a 2-core CPU that is ~6 h, so the default is a short run
# (benchmarks/train_throughput.py prints the figures of your machine). Raise it with
# --train-steps on a GPU box.
TRAIN_STEPS = 600

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
