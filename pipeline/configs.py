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

# Profiles: a network, a number of steps and a training recipe (TrainingConfig settings).
# `seed` is the seed's exact recipe: ch 64, 100 epochs of the ~18,950-glyph train split at
# batch 64 (29,600 steps), sequential D/G/G/E updates, Dis_l on the discriminator's 4th
# layer, samples from the prior N(0, I). RECIPE is what the ablation in docs/results.md ("Choosing
# the recipe") chose instead: one forward pass per step, Dis_l on the 2nd layer, and
# samples from a Gaussian fitted to the train codes, in mixed precision where the device
# computes it fast (float16 on GPUs, bfloat16 on CPUs with BF16 instructions, float32
# elsewhere: training.compute_policy). `gpu` is RECIPE at the seed's size; `cpu` at ch 32
# for 3,200 steps, where benchmarks/time_to_quality.py found it meets the default run's
# quality bar (identity, SSIM, samples SWD) in about half the time of the 5,800 float32
# steps it replaced. `--profile` picks one; `--architecture`, `--train-steps` and
# `--hparam` override it. (benchmarks/train_throughput.py prints the speed of your machine,
# recipe_ablation.py the quality of each recipe.)
_TRAINER_DIR = os.path.join(REPO_ROOT, 'components', 'trainer')
RECIPE = {'update_schedule': 'one_pass', 'dis_l_layer': 2, 'sampling': 'fitted_gaussian',
          'mixed_precision': True}
PROFILES = {
    'seed': {'architecture': os.path.join(_TRAINER_DIR, 'architecture.json'), 'train_steps': 29600,
             'training': {}},
    'gpu': {'architecture': os.path.join(_TRAINER_DIR, 'architecture.json'), 'train_steps': 29600,
            'training': RECIPE},
    'cpu': {'architecture': os.path.join(_TRAINER_DIR, 'architecture_cpu.json'), 'train_steps': 3200,
            'training': RECIPE},
}
# The profile a run takes when --profile is not given, by whether its Trainer sees a GPU.
DEFAULT_PROFILE = {'gpu': 'gpu', 'cpu': 'cpu'}

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
