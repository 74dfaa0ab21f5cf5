"""Time to a good model: training recipes measured by when they first meet the quality bar.

Each variant trains the `cpu` profile's network with the pipeline's own code
(training.train, export, GlyphEvaluator's measures on the 1,964 eval glyphs), and is
measured at several points of its run (the run resumes from its checkpoint between
points; the learning rate is constant, so stopping at a point is what a run of that
length would do). A point's time is its images divided by the variant's images/s,
measured side by side in this process, interleaved (--rate-rounds rounds of
--rate-steps steps of each variant in turn), so every ratio comes from the same minutes
of the same machine. The quality bar is the default run's: identity top-1 >= 99 %,
SSIM >= 0.72, samples SWD <= --swd-bar (the worst of the default recipe's retrains).

    python benchmarks/time_to_quality.py --out /tmp/ttq                 # every variant
    python benchmarks/time_to_quality.py --out /tmp/ttq --table          # the table again
    python benchmarks/time_to_quality.py --out /tmp/ttq --variants       # the rates alone
"""
import argparse
import glob
import json
import os
import time

import tensorflow as tf

from cns_vaegan.components.evaluator import blessing_rules
from cns_vaegan.components.trainer import export, training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.components.trainer.vaegan import VAEGAN
from cns_vaegan.pipeline import configs

import fragments  # pylint: disable=g-import-not-at-top  (benchmarks/ is on sys.path)
import recipe_ablation  # pylint: disable=g-import-not-at-top
import train_throughput  # pylint: disable=g-import-not-at-top

CPU = configs.PROFILES['cpu']
# The budget every point is a share of: the cpu profile's before this benchmark chose its
# recipe, 5,800 steps of 64 images in float32.
BUDGET_IMAGES = 5800 * 64
VARIANTS = {
    'float32, batch 64 (the recipe before)': dict(mixed_precision=False),
    'mixed, batch 64': dict(mixed_precision=True),
    'mixed, batch 128, lr ×√2': dict(mixed_precision=True, batch_size=128, learning_rate=2.83e-4),
}
POINTS = (0.5, 0.6, 0.7, 0.8, 1.0)  # shares of the budget's images at which to measure


def config_of(settings: dict) -> TrainingConfig:
  base = {k: v for k, v in CPU['training'].items() if k != 'mixed_precision'}
  return TrainingConfig.from_dict(dict(base, projector_samples=0, image_summary_every_steps=10**9,
                                       checkpoint_every_steps=10**9, **settings))


def measure_rates(arch: Architecture, rounds: int, steps: int) -> dict:
  """images/s of each variant, interleaved round by round, each under its own precision."""
  models, batches, seconds = {}, {}, {name: 0.0 for name in VARIANTS}
  strategy = training.make_strategy()
  for name, settings in VARIANTS.items():
    config = config_of(settings)
    tf.keras.mixed_precision.set_global_policy(training.compute_policy(config))
    with strategy.scope():
      models[name] = VAEGAN(arch, config, strategy)
    batches[name] = next(iter(strategy.experimental_distribute_dataset(tf.data.Dataset.from_tensors(
        train_throughput.random_batch(arch, config.batch_size)))))
    float(models[name].train_step(batches[name])['encoder_loss'])  # trace and warm up
  tf.keras.mixed_precision.set_global_policy('float32')
  for _ in range(rounds):
    for name, model in models.items():
      start = time.perf_counter()
      for _ in range(steps):
        result = model.train_step(batches[name])
      float(result['encoder_loss'])
      seconds[name] += time.perf_counter() - start
  return {name: rounds * steps * models[name].config.batch_size / seconds[name] for name in VARIANTS}


def run_variant(name: str, arch: Architecture, examples: str, out: str) -> list:
  """Trains the variant point by point; returns one row per point (steps, report)."""
  config = config_of(VARIANTS[name])
  folder = os.path.join(out, name.replace(' ', '_').replace(',', '').replace('×', 'x').replace('√', 'sqrt'))
  pattern = lambda split: [os.path.join(examples, f'Split-{split}', '*')]
  rows = []
  for share in POINTS:
    steps = int(round(share * BUDGET_IMAGES / config.batch_size))
    result_file = os.path.join(folder, f'point_{steps}.json')
    if os.path.exists(result_file):
      with open(result_file, encoding='utf-8') as f:
        rows.append(json.load(f))
      continue
    start = time.perf_counter()
    model = training.train(pattern('train'), pattern('eval'), arch, config, steps,
                           os.path.join(folder, 'logs'), os.path.join(folder, 'checkpoints'))
    model_dir = os.path.join(folder, f'model_{steps}')
    export.export_trained(model, os.path.join(model_dir, 'Format-Serving'), pattern('train'), pattern('eval'))
    report = recipe_ablation.evaluate(model_dir, examples, os.path.join(folder, f'evaluation_{steps}'))
    row = {'variant': name, 'steps': steps, 'images': steps * config.batch_size,
           'policy': training.compute_policy(config), 'seconds_here': time.perf_counter() - start,
           'report': report}
    with open(result_file, 'w', encoding='utf-8') as f:
      json.dump(row, f, indent=1, ensure_ascii=False)
    print(f'{name}: {steps} steps measured', flush=True)
    rows.append(row)
  return rows


def meets_bar(report: dict, swd_bar: float) -> bool:
  value = lambda path: blessing_rules.lookup(report, path)
  return (value('identity.top1') >= 0.99 and value('reconstruction.ssim.mean') >= 0.72
          and value('samples.swd.mean') <= swd_bar)


def profile_line(rates: dict, budget_minutes: float) -> str:
  """The cpu profile's own budget at its variant's rate, beside the recipe before."""
  images = CPU['train_steps'] * CPU['training']['batch_size']
  variant = 'mixed, batch 64' if CPU['training'].get('mixed_precision') else next(iter(VARIANTS))
  minutes = images / rates[variant] / 60
  return (f"The cpu profile ({CPU['train_steps']:,} steps of {CPU['training']['batch_size']}, "
          f"{variant.split(',')[0]}): {images:,} images, {minutes:.1f} min at that rate, "
          f"{minutes / budget_minutes:.0%} of the recipe before.")


def table(rows: list, rates: dict, swd_bar: float) -> str:
  reference = rates[next(iter(VARIANTS))]
  budget_minutes = BUDGET_IMAGES / reference / 60
  lines = [f'Rates measured side by side here: ' + ', '.join(f'{n}: {r:.0f} images/s' for n, r in rates.items()),
           f'Minutes are images / that rate; the recipe before takes {budget_minutes:.1f} min for its '
           f'{BUDGET_IMAGES:,} images. Bar: identity >= 99 %, SSIM >= 0.72, SWD <= {swd_bar:g}.',
           profile_line(rates, budget_minutes), '',
           '| variant | precision | steps | images | minutes | share of before | identity | SSIM | PSNR dB '
           '| SWD ×1e3 | FD | bar |', '|---|---|---|---|---|---|---|---|---|---|---|---|']
  for row in rows:
    minutes = row['images'] / rates[row['variant']] / 60
    value = lambda path, r=row: blessing_rules.lookup(r['report'], path)
    lines.append(
        f"| {row['variant']} | {row['policy']} | {row['steps']} | {row['images']:,} | {minutes:.1f} | "
        f"{minutes / budget_minutes:.0%} | {value('identity.top1'):.1%} | "
        f"{value('reconstruction.ssim.mean'):.3f} | {value('reconstruction.psnr.mean'):.2f} | "
        f"{value('samples.swd.mean'):.1f} | {value('samples.fd_pca'):.1f} | "
        f"{'met' if meets_bar(row['report'], swd_bar) else '–'} |")
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', required=True, help='results folder (resumable: finished points are kept)')
  parser.add_argument('--examples', help='an Examples artifact folder (default: the newest of the local pipeline)')
  parser.add_argument('--variants', nargs='*', default=list(VARIANTS), choices=list(VARIANTS))
  parser.add_argument('--rate-rounds', type=int, default=5)
  parser.add_argument('--rate-steps', type=int, default=20)
  parser.add_argument('--swd-bar', type=float, default=14.6)
  parser.add_argument('--table', action='store_true', help='print the table of the results in --out')
  parser.add_argument('--fragment', help='also write the table to docs/generated/<FRAGMENT>.md')
  args = parser.parse_args()
  os.makedirs(args.out, exist_ok=True)
  arch = Architecture.load(CPU['architecture'])
  rates_file = os.path.join(args.out, 'rates.json')
  if not args.table:
    examples = args.examples or max(glob.glob(os.path.join(
        configs.pipeline_root(), 'PngExampleGen', 'examples', '*')), key=os.path.getmtime)
    if not os.path.exists(rates_file):
      with open(rates_file, 'w', encoding='utf-8') as f:
        json.dump(measure_rates(arch, args.rate_rounds, args.rate_steps), f, indent=1, ensure_ascii=False)
    for name in args.variants:
      run_variant(name, arch, examples, args.out)
  with open(rates_file, encoding='utf-8') as f:
    rates = json.load(f)
  rows = []
  for path in sorted(glob.glob(os.path.join(args.out, '*', 'point_*.json'))):
    with open(path, encoding='utf-8') as f:
      rows.append(json.load(f))
  rows.sort(key=lambda r: (list(VARIANTS).index(r['variant']), r['steps']))
  out = fragments.Fragment(args.fragment)
  out.print(table(rows, rates, args.swd_bar))
  out.close()


if __name__ == '__main__':
  main()
