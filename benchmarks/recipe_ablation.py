"""Training recipes compared at equal wall-clock time, measured as the pipeline measures them.

Each cell trains from scratch on an ingested Examples artifact (PngExampleGen's output)
with the pipeline's own code (training.train, export.export_saved_model, then
GlyphEvaluator's executor with its default thresholds), and prints one row: steps,
identity, SSIM, PSNR, SWD, FD, diversity, the verdict, and the mean glyph and PCA-z
baselines measured on the same glyphs.

Equal wall-clock: every cell gets `--minutes` of training at the images/s of its own
network, batch and update schedule on this machine. Those rates are measured once, on
a quiet machine (`--measure-rates`, as benchmarks/train_throughput.py does) and saved
beside the results, so that cells run later, or side by side, get the same budget
whatever else the machine does (the result of a run depends on its steps, not on its
speed).

    python benchmarks/recipe_ablation.py --measure-rates --out /tmp/ablation
    python benchmarks/recipe_ablation.py --out /tmp/ablation --minutes 4 --cells seed one_pass_l3
    python benchmarks/recipe_ablation.py --out /tmp/ablation --table      # the README table
"""
import argparse
import dataclasses
import glob
import json
import math
import os
import time

import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts

from cns_vaegan.components.evaluator import blessing_rules
from cns_vaegan.components.evaluator import executor as evaluator_executor
from cns_vaegan.components.trainer import export, training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN
from cns_vaegan.data import arithmetic_tuples
from cns_vaegan.pipeline import configs

import train_throughput  # pylint: disable=g-import-not-at-top  (benchmarks/ is on sys.path)

CPU_ARCHITECTURE = Architecture.load(configs.PROFILES['cpu']['architecture']).to_dict()
SEED_ARCHITECTURE = Architecture.load(configs.PROFILES['seed']['architecture']).to_dict()
ONE_PASS = {'update_schedule': 'one_pass'}

# name: (architecture overrides, training settings). 'seed' is the seed's recipe at the
# cpu profile's width, the recipe of the default run before this ablation.
CELLS = {
    'seed': ({}, {}),
    'seed_l3': ({}, {'dis_l_layer': 3}),
    'seed_l2': ({}, {'dis_l_layer': 2}),
    'one_pass': ({}, dict(ONE_PASS)),
    'one_pass_l3': ({}, dict(ONE_PASS, dis_l_layer=3)),
    'one_pass_l2': ({}, dict(ONE_PASS, dis_l_layer=2)),
    'one_pass_l1': ({}, dict(ONE_PASS, dis_l_layer=1)),
    'one_pass_l2_decay': ({}, dict(ONE_PASS, dis_l_layer=2, learning_rate_decay=0.3)),
    'one_pass_l3_decay': ({}, dict(ONE_PASS, dis_l_layer=3, learning_rate_decay=0.3)),
    'one_pass_l2_prior': ({}, dict(ONE_PASS, dis_l_layer=2, prior_samples_to_discriminator=True,
                                   prior_samples_to_decoder=True)),
    'one_pass_l2_gamma0.03': ({}, dict(ONE_PASS, dis_l_layer=2, gamma=0.03)),
    'one_pass_l2_gamma0.3': ({}, dict(ONE_PASS, dis_l_layer=2, gamma=0.3)),
    'one_pass_l2_lr4e-4': ({}, dict(ONE_PASS, dis_l_layer=2, learning_rate=4e-4)),
    'one_pass_l2_kl0.5': ({}, dict(ONE_PASS, dis_l_layer=2, kl_weight=0.5)),
    'one_pass_l2_kl2': ({}, dict(ONE_PASS, dis_l_layer=2, kl_weight=2.0)),
    'one_pass_l2_pixel': ({}, dict(ONE_PASS, dis_l_layer=2, pixel_weight=1.0)),
    'one_pass_l2_batch32': ({}, dict(ONE_PASS, dis_l_layer=2, batch_size=32)),
    'one_pass_l2_batch128': ({}, dict(ONE_PASS, dis_l_layer=2, batch_size=128)),
    'one_pass_l2_ch48': ({'ch': 48}, dict(ONE_PASS, dis_l_layer=2)),
    'one_pass_l2_ch24': ({'ch': 24}, dict(ONE_PASS, dis_l_layer=2)),
}


def cell_settings(name):
  arch_overrides, settings = CELLS[name]
  arch = Architecture.from_dict(dict(CPU_ARCHITECTURE, **arch_overrides))
  return arch, TrainingConfig.from_dict(dict(settings, projector_samples=0))


def rate_key(arch: Architecture, config: TrainingConfig) -> str:
  """What sets the cost of a step: width, batch, schedule, and extra passes for prior samples."""
  prior = config.prior_samples_to_discriminator or config.prior_samples_to_decoder
  return f'ch{arch.ch}_batch{config.batch_size}_{config.update_schedule}' + ('_prior' if prior else '')


def measure_rates(names, steps: int) -> dict:
  """images/s of each distinct (width, batch, schedule) among the cells, one CPU device."""
  rates = {}
  strategy = training.make_strategy()  # as the Trainer on one CPU
  for name in names:
    arch, config = cell_settings(name)
    key = rate_key(arch, config)
    if key in rates:
      continue
    with strategy.scope():
      model = VAEGAN(arch, config, strategy)
    batch = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(
        train_throughput.random_batch(arch, config.batch_size)))))
    rates[key] = train_throughput.rate(lambda: model.train_step(batch), config.batch_size, steps)
    print(f'{key}: {rates[key]:.1f} images/s', flush=True)
  return rates


def examples_artifact(uri: str) -> standard_artifacts.Examples:
  artifact = standard_artifacts.Examples()
  artifact.uri = uri
  artifact.split_names = artifact_utils.encode_split_names(['train', 'eval'])
  return artifact


def evaluate(model_dir: str, examples_uri: str, out_dir: str, bootstrap_replicates: int = 2) -> dict:
  """GlyphEvaluator's executor on the exported model, default thresholds, no blessed baseline
  (and a token bootstrap: the estimator noise is benchmarks/gate_noise.py's subject)."""
  model = standard_artifacts.Model()
  model.uri, model.id = model_dir, 1
  evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
  evaluation.uri, blessing.uri = os.path.join(out_dir, 'evaluation'), os.path.join(out_dir, 'blessing')
  for uri in (evaluation.uri, blessing.uri):
    os.makedirs(uri, exist_ok=True)
  evaluator_executor.Executor().Do(
      {'examples': [examples_artifact(examples_uri)], 'model': [model]},
      {'evaluation': [evaluation], 'blessing': [blessing]},
      {'thresholds': json.dumps(blessing_rules.DEFAULT_THRESHOLDS),
       'regression': json.dumps({'bootstrap_replicates': bootstrap_replicates}),
       'max_examples': 2048, 'num_samples': 2048, 'seed': 0,
       'arithmetic_tuples': json.dumps([t for t in arithmetic_tuples.read_tuples() if t[0] == '酪'],
                                       ensure_ascii=False)})
  with open(os.path.join(evaluation.uri, evaluator_executor.METRICS_FILE), encoding='utf-8') as f:
    return json.load(f)


def run_cell(name: str, examples_uri: str, minutes: float, rates: dict, out: str,
             steps: int = 0) -> dict:
  arch, config = cell_settings(name)
  rate = rates.get(rate_key(arch, config), float('nan'))
  steps = steps or int(round(minutes * 60 * rate / config.batch_size))
  folder = os.path.join(out, f'{name}_{steps}')
  pattern = lambda split: [os.path.join(examples_uri, f'Split-{split}', '*')]
  start = time.perf_counter()
  model = training.train(pattern('train'), pattern('eval'), arch, config, steps,
                         os.path.join(folder, 'logs'), os.path.join(folder, 'checkpoints'))
  train_seconds = time.perf_counter() - start
  model_dir = os.path.join(folder, 'model')
  export.export_trained(model, os.path.join(model_dir, 'Format-Serving'), pattern('train'), pattern('eval'))
  report = evaluate(model_dir, examples_uri, folder)
  row = {'cell': name, 'settings': CELLS[name], 'steps': steps, 'minutes_at_rate': minutes,
         'images_per_second_quiet': rate, 'train_seconds_here': train_seconds, 'report': report}
  with open(os.path.join(out, f'{name}_{steps}.json'), 'w', encoding='utf-8') as f:
    json.dump(row, f, indent=1, ensure_ascii=False)
  print(table_row(row), flush=True)
  return row


HEADER = ('| cell | minutes | steps | identity top-1 | top-5 | SSIM | PSNR dB | SWD ×1e3 | FD (PCA) '
          '| diversity | verdict |\n|---|---|---|---|---|---|---|---|---|---|---|')


def table_row(row: dict) -> str:
  def value(path):  # the candidate's figure, NaN where it was not measured
    found = blessing_rules.lookup(row['report'], path)
    return float('nan') if found is None else found
  minutes = f"{row['minutes_at_rate']:g}" if not math.isnan(row['images_per_second_quiet']) else '–'
  return (f"| {row['cell']} | {minutes} | {row['steps']} | {value('identity.top1'):.1%} | "
          f"{value('identity.top5'):.1%} | {value('reconstruction.ssim.mean'):.3f} | "
          f"{value('reconstruction.psnr.mean'):.2f} | {value('samples.swd.mean'):.1f} | "
          f"{value('samples.fd_pca'):.1f} | {value('samples.diversity'):.2f} | "
          f"{'blessed' if _blessed_now(row['report']) else 'refused'} |")


def _blessed_now(report: dict) -> bool:
  """The verdict of today's default gate (a result may predate a change of thresholds)."""
  return blessing_rules.judge(report, blessing_rules.DEFAULT_THRESHOLDS)['blessed']


def baseline_rows(report: dict) -> str:
  rows = []
  for name, measured in sorted(report['baselines'].items()):
    identity = measured.get('identity', {})
    top1 = f"{identity['top1']:.1%}" if identity else '–'
    top5 = f"{identity['top5']:.1%}" if identity else '–'
    rows.append(f"| baseline: {name} | – | – | {top1} | {top5} | "
                f"{measured['reconstruction']['ssim']['mean']:.3f} | "
                f"{measured['reconstruction']['psnr']['mean']:.2f} | | | | |")
  return '\n'.join(rows)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--examples', help='an Examples artifact folder (with Split-train, Split-eval); '
                      'default: the newest under outputs/pipelines/cns-vaegan/PngExampleGen')
  parser.add_argument('--out', required=True, help='results folder (rates.json, one JSON per cell)')
  parser.add_argument('--cells', nargs='*', default=list(CELLS), choices=list(CELLS))
  parser.add_argument('--minutes', type=float, default=4.0, help='training budget of each cell')
  parser.add_argument('--steps', type=int, default=0, help='a fixed number of steps instead')
  parser.add_argument('--measure-rates', action='store_true',
                      help='time each cell\'s step (run on a quiet machine) and save rates.json')
  parser.add_argument('--rate-steps', type=int, default=30)
  parser.add_argument('--anchor', default='ch32_batch64_one_pass=440',
                      help='KEY=IMAGES_PER_SECOND: scale the measured rates so that KEY runs at this '
                           'rate (default: the slower machine of this kind, where the seed\'s step runs '
                           'at ~230 images/s and the one-pass step at ~440); "" keeps them as measured')
  parser.add_argument('--table', action='store_true', help='print the table of the results in --out')
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  rates_file = os.path.join(args.out, 'rates.json')
  if args.table:
    rows = [json.load(open(p, encoding='utf-8')) for p in sorted(glob.glob(os.path.join(args.out, '*.json')))]
    rows = [r for r in rows if 'cell' in r]  # not rates.json
    rows.sort(key=lambda r: (r['minutes_at_rate'], list(CELLS).index(r['cell'])))
    print(HEADER)
    print('\n'.join(table_row(r) for r in rows))
    if rows:
      print(baseline_rows(rows[0]['report']))
    return
  if args.measure_rates:
    rates = measure_rates(args.cells, args.rate_steps)
    previous = json.load(open(rates_file)) if os.path.exists(rates_file) else {}
    with open(rates_file, 'w') as f:
      json.dump(dict(previous, **rates), f, indent=1)
    return
  examples = args.examples or max(glob.glob(os.path.join(
      configs.pipeline_root(), 'PngExampleGen', 'examples', '*')), key=os.path.getmtime)
  rates = json.load(open(rates_file)) if os.path.exists(rates_file) else {}
  if args.anchor and rates:
    key, value = args.anchor.split('=')
    rates = {k: v * float(value) / rates[key] for k, v in rates.items()}
  for name in args.cells:
    arch, config = cell_settings(name)
    if not args.steps and rate_key(arch, config) not in rates:
      raise SystemExit(f'no rate for {rate_key(arch, config)} in {rates_file}: run --measure-rates')
    run_cell(name, examples, args.minutes, rates, args.out, args.steps)


if __name__ == '__main__':
  main()
