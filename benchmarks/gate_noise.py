"""The blessing gate's noise, false refusals and power, measured on retrains of one recipe.

Trains, with the pipeline's own code (training.train, export, the Evaluator's measures),
--retrains models of the `cpu` profile (the default recipe and budget), differing only in
their seed (initialisation, data order, noise), and --degraded variants of it: a quarter of
the steps (`quarter`), the first retrain with every weight moved by noise of 0.1 or 0.3 of
its variable's spread (`perturbed-0.1`, `perturbed-0.3`: known damage, no training), or
the seed's recipe at its old 3,000-step budget (`seed-recipe`, a long training). Then:

1. Noise. For every gated metric, its spread across the retrains (measured_sd) and its
   estimator noise on the eval set (estimator_sd: the bootstrap over eval glyphs and sample
   draws of paired_comparison.py, per model); retrain_sd = sqrt(measured_sd² −
   estimator_sd²) is what retraining alone moves. Written to --noise-out, the file the
   gate reads by default (components/evaluator/retrain_noise.json).
2. The loop a user runs: the first retrain is judged by the thresholds, each next retrain
   against the latest blessed one, then each degraded variant against the latest blessed
   one, by blessing_rules.judge with the noise of step 1 (and, as a check that the figures
   do not merely describe themselves, with the noise of the other retrains only).
3. False refusals: every ordered pair of retrains judged. Power: every degraded variant
   judged against every retrain.
4. Size: every model and the gate's reference models measured on the first n eval glyphs
   for each --sizes n, each beside the real-glyph floor at that size, with the default
   thresholds' verdict: the absolute bounds must hold at any eval size.

    python benchmarks/gate_noise.py --out /tmp/gate                      # train, measure, print
    python benchmarks/gate_noise.py --out /tmp/gate --noise-out components/evaluator/retrain_noise.json
    python benchmarks/gate_noise.py --out /tmp/gate --degraded quarter seed-recipe   # other variants
"""
import argparse
import glob
import itertools
import json
import os
import shutil
import sys
import time

import numpy as np

from cns_vaegan.components.evaluator import (baselines, blessing_rules, executor,
                                             paired_comparison, quality_metrics)
from cns_vaegan.components.evaluator import retrain_noise as retrain_noise_file
from cns_vaegan.components.trainer import export, perturbation, training
from cns_vaegan.components.trainer.architecture import Architecture
from cns_vaegan.components.trainer.training_config import TrainingConfig
from cns_vaegan.pipeline import configs

import fragments  # pylint: disable=g-import-not-at-top  (benchmarks/ is on sys.path)
import recipe_ablation  # pylint: disable=g-import-not-at-top
import reference_models  # pylint: disable=g-import-not-at-top

CPU = configs.PROFILES['cpu']
# --degraded variants: {key: (name, training settings, share of the steps, weight perturbation)}.
DEGRADED = {
    'quarter': ('a quarter of the steps', {}, 0.25, None),
    'perturbed-0.1': ('retrain 0, weights moved by 0.1 sd', {}, None, 0.1),
    'perturbed-0.3': ('retrain 0, weights moved by 0.3 sd', {}, None, 0.3),
    'seed-recipe': ('the seed recipe, 3,000 steps',
                    {k: TrainingConfig().to_dict()[k] for k in CPU['training']}, None, None),
}
DEFAULT_DEGRADED = ['quarter', 'perturbed-0.1', 'perturbed-0.3']
OLD_DEFAULT_STEPS = 3000


def _trained(folder: str, examples: str, settings: dict, steps: int):
  """training.train in `folder` (resuming from its checkpoint: a finished one trains no step)."""
  arch = Architecture.load(CPU['architecture'])
  config = TrainingConfig.from_dict(dict(CPU['training'], projector_samples=0, **settings))
  pattern = lambda split: [os.path.join(examples, f'Split-{split}', '*')]
  return training.train(pattern('train'), pattern('eval'), arch, config, steps,
                        os.path.join(folder, 'logs'), os.path.join(folder, 'checkpoints')), pattern


def train_model(folder: str, examples: str, settings: dict, steps: int, perturb=None, source=None) -> str:
  """Trains and exports one model (resuming from its checkpoint); returns its model folder.
  With `perturb`, the finished model in folder `source` is restored instead, and exported
  with its weights moved by that fraction of their spread (perturbation.py)."""
  model_dir = os.path.join(folder, 'model')
  if os.path.exists(os.path.join(model_dir, 'Format-Serving', 'saved_model.pb')):
    return model_dir
  start = time.perf_counter()
  if perturb is not None and not os.path.exists(os.path.join(folder, 'checkpoints')):
    shutil.copytree(os.path.join(source, 'checkpoints'), os.path.join(folder, 'checkpoints'))
  model, pattern = _trained(folder, examples, settings, steps)
  serving_dir = os.path.join(model_dir, 'Format-Serving')
  if perturb is None:
    export.export_trained(model, serving_dir, pattern('train'), pattern('eval'))
  else:
    with perturbation.perturbed_weights(model, perturb):
      export.export_trained(model, serving_dir, pattern('train'), pattern('eval'))
  with open(os.path.join(folder, 'training.json'), 'w', encoding='utf-8') as f:
    json.dump({'settings': settings, 'steps': steps, 'perturbed': perturb, 'source': source,
               'seconds': time.perf_counter() - start}, f, indent=1)
  what = f'{steps} steps' if perturb is None else f'{source} restored, weights moved by {perturb} sd'
  print(f'made {folder}: {what} in {time.perf_counter() - start:.0f} s', flush=True)
  return model_dir


def models_to_measure(args) -> dict:
  """{name: model folder}: the retrains, then the degraded variants; trained when missing
  (with --existing, only those already trained)."""
  steps = CPU['train_steps']
  wanted = {f'retrain {seed}': (f'retrain_{seed}', {'seed': seed}, steps, None)
            for seed in range(args.retrains)}
  for key in args.degraded:
    name, settings, share, perturb = DEGRADED[key]
    model_steps = int(steps * share) if share else (steps if perturb is not None else OLD_DEFAULT_STEPS)
    wanted[f'degraded: {name}'] = (f'degraded_{key}', settings, model_steps, perturb)
  out = {}
  for name, (folder, settings, model_steps, perturb) in wanted.items():
    folder = os.path.join(args.out, folder)
    if args.existing and not os.path.exists(os.path.join(folder, 'model', 'Format-Serving', 'saved_model.pb')):
      continue
    out[name] = train_model(folder, args.examples, settings, model_steps, perturb,
                            source=os.path.join(args.out, 'retrain_0'))
  return out


def report_for(figures: dict, name: str, shared: dict, baseline: str = None, noise: dict = None) -> dict:
  """The report the Evaluator writes for candidate `name` (against `baseline`), from measurements."""
  report = dict(shared, serving={'all_ok': 1.0}, candidate=figures[name]['figures'])
  report['estimator_noise'] = {path: {'sd': figures[name]['sd'][path]} for path in figures[name]['sd']}
  if baseline is not None:
    report['baseline'] = figures[baseline]['figures']
    for path in report['estimator_noise']:
      report['estimator_noise'][path]['difference_sd'] = noise[(name, baseline)][path]
  return report


def retrain_noise(figures: dict, retrains: list, command: str) -> dict:
  """retrain_noise.measure over the named retrains."""
  return retrain_noise_file.measure(
      [(figures[r]['figures'], {p: {'sd': sd} for p, sd in figures[r]['sd'].items()}) for r in retrains],
      what='the spread of each gated figure across retrains of one recipe on one dataset '
           '(blessing_rules reads retrain_sd)',
      command=command, recipe=dict(CPU['training']), train_steps=CPU['train_steps'],
      eval_glyphs=figures[retrains[0]]['num_eval'])


def closest(verdict: dict) -> str:
  """The compared metric nearest to (or furthest past) its margin: name and worse_by / margin."""
  entries = verdict['regression']
  if not entries:
    return '–'
  path, entry = max(entries.items(), key=lambda kv: kv[1]['worse_by'] / max(kv[1]['margin'], 1e-12))
  return f"{path} {entry['worse_by'] / max(entry['margin'], 1e-12):+.2f}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', required=True, help='models and results (resumable)')
  parser.add_argument('--examples', help='an Examples artifact (default: the newest of the local pipeline)')
  parser.add_argument('--retrains', type=int, default=6)
  parser.add_argument('--replicates', type=int, default=paired_comparison.DEFAULT_REPLICATES)
  parser.add_argument('--sizes', type=int, nargs='*', default=[200, 500, 1000, 2048])
  parser.add_argument('--noise-out', help='write the retrain noise here (the gate reads '
                      'components/evaluator/retrain_noise.json)')
  parser.add_argument('--fragment', help='also write the tables to docs/generated/<FRAGMENT>.md')
  parser.add_argument('--degraded', nargs='*', choices=sorted(DEGRADED), default=DEFAULT_DEGRADED,
                      help='the degraded variants (default: %(default)s)')
  parser.add_argument('--train-only', action='store_true')
  parser.add_argument('--existing', action='store_true', help='measure the models trained so far only')
  args = parser.parse_args()
  command = 'python benchmarks/gate_noise.py ' + ' '.join(sys.argv[1:])
  args.examples = args.examples or max(glob.glob(os.path.join(
      configs.pipeline_root(), 'PngExampleGen', 'examples', '*')), key=os.path.getmtime)
  os.makedirs(args.out, exist_ok=True)
  folders = models_to_measure(args)
  if args.train_only:
    return
  retrains = [name for name in folders if name.startswith('retrain')]
  degraded = [name for name in folders if name.startswith('degraded')]
  arch = Architecture.load(CPU['architecture'])
  glyphs = executor.read_glyph_sets(recipe_ablation.examples_artifact(args.examples), arch.img_h,
                                    arch.img_c, max(args.sizes))
  real = glyphs.measured
  n, seed = len(real), 0
  space = quality_metrics.PcaSpace(real)
  shared = {'num_eval_examples': n,
            'baselines': baselines.measure(glyphs, baselines.reconstructors(glyphs.train, arch.z_dim)),
            'sanity': quality_metrics.sanity_range(real, glyphs.other_real(n, seed), space, seed)}

  # ---- 1. every model measured, and one paired bootstrap over all of them
  figures, measured = {}, []
  for name, folder in folders.items():
    model = executor.ServedGlyphModel(os.path.join(folder, 'Format-Serving'))
    result, detail = executor.measure(model, glyphs, space, n, seed)
    figures[name] = {'figures': result, 'num_eval': n}
    measured.append(detail)
  print(f'bootstrap: {args.replicates} replicates over {len(measured)} models', flush=True)
  start = time.perf_counter()
  replicated = paired_comparison.replicates(measured, real, space, n, seed, args.replicates)
  print(f'  {time.perf_counter() - start:.0f} s', flush=True)
  names = list(folders)
  noise = {}
  for i, name in enumerate(names):
    figures[name]['sd'] = {path: float(np.std(v[:, i], ddof=1)) for path, v in replicated.items()}
    for j, other in enumerate(names):
      if i != j:
        noise[(name, other)] = {path: float(np.std(v[:, i] - v[:, j], ddof=1))
                                for path, v in replicated.items()}
  gate_noise = retrain_noise(figures, retrains, command)
  if args.noise_out:
    with open(args.noise_out, 'w', encoding='utf-8') as f:
      json.dump(gate_noise, f, indent=1)
      f.write('\n')

  out = fragments.Fragment(args.fragment)
  out.print(f'\n## Noise: {len(retrains)} retrains of the default recipe, {n} eval glyphs\n')
  out.print('| metric | retrains | mean | measured sd | estimator sd | retrain sd |')
  out.print('|---|---|---|---|---|---|')
  for path, entry in gate_noise['metrics'].items():
    values = ', '.join(f'{v:.4g}' for v in entry['values'])
    out.print(f"| {path} | {values} | {np.mean(entry['values']):.4g} | {entry['measured_sd']:.3g} | "
          f"{entry['estimator_sd']:.3g} | {entry['retrain_sd']:.3g} |")

  seconds = {}
  for name, folder in folders.items():
    with open(os.path.join(os.path.dirname(folder), 'training.json'), encoding='utf-8') as f:
      seconds[name] = json.load(f)['seconds']
  out.print('\nWall time to train and export each (s, other jobs may have shared the machine): ' +
            ', '.join(f'{name} {value:.0f}' for name, value in seconds.items()))

  # ---- 2. the loop a user runs
  out.print('\n## The loop: each model judged against the latest blessed one\n')
  out.print('| model | judged against | verdict | nearest to its margin (worse / margin) | '
        'verdict, noise of the other retrains only | reasons |')
  out.print('|---|---|---|---|---|---|')
  blessed = None
  for name in retrains + degraded:
    report = report_for(figures, name, shared, blessed, noise)
    verdict = blessing_rules.judge(report, blessing_rules.DEFAULT_THRESHOLDS, gate_noise)
    others = [r for r in retrains if r not in (name, blessed)]
    held_out = blessing_rules.judge(report, blessing_rules.DEFAULT_THRESHOLDS,
                                    retrain_noise(figures, others, command)) if len(others) >= 2 else None
    out.print(f"| {name} | {blessed or 'thresholds only'} | {'blessed' if verdict['blessed'] else 'refused'} | "
          f"{closest(verdict)} | {'–' if held_out is None else ('blessed' if held_out['blessed'] else 'refused')} | "
          f"{'; '.join(verdict['reasons'])[:300] or '–'} |")
    if verdict['blessed'] and name in retrains:
      blessed = name

  # ---- 3. false refusals and power
  pairs = list(itertools.permutations(retrains, 2))
  refused = [(a, b) for a, b in pairs if not blessing_rules.judge(
      report_for(figures, a, shared, b, noise), blessing_rules.DEFAULT_THRESHOLDS, gate_noise)['blessed']]
  out.print(f'\nFalse refusals: {len(refused)} of {len(pairs)} ordered pairs of retrains refused'
        + (': ' + ', '.join(f'{a} vs {b}' for a, b in refused) if refused else ''))
  for name in degraded:
    verdicts = [blessing_rules.judge(report_for(figures, name, shared, r, noise),
                                     blessing_rules.DEFAULT_THRESHOLDS, gate_noise) for r in retrains]
    regressed = sorted({p for v in verdicts for p, e in v['regression'].items() if e['regressed']})
    out.print(f"Power: {name}: refused against {sum(not v['blessed'] for v in verdicts)} of {len(retrains)} "
          f"retrains; regressed on {', '.join(regressed) or 'nothing'}; thresholds alone: "
          f"{'blessed' if blessing_rules.judge(report_for(figures, name, shared), blessing_rules.DEFAULT_THRESHOLDS)['blessed'] else 'refused'}")

  # ---- 4. the absolute bounds at every eval size
  out.print('\n## The thresholds at each eval size: each sample measure beyond the real-glyph floor at '
        'that size, as the default thresholds read it (SWD and ink W1 in quadrature, FD less the floor)\n')
  out.print('| eval glyphs | model | PSNR dB | SSIM | identity | SWD beyond floor | FD beyond floor | '
        'ink W1 beyond floor | diversity | verdict |')
  out.print('|---|---|---|---|---|---|---|---|---|---|')
  standins = reference_models.reference_models(glyphs.train, arch.z_dim)
  for size in args.sizes:
    sets = baselines.GlyphSets(measured=real[:size], other_eval=np.concatenate([real[size:], glyphs.other_eval]),
                               train=glyphs.train)
    size_space = quality_metrics.PcaSpace(sets.measured)
    context = {'num_eval_examples': size,
               'baselines': baselines.measure(sets, baselines.reconstructors(glyphs.train, arch.z_dim)),
               'sanity': quality_metrics.sanity_range(sets.measured, sets.other_real(size, seed), size_space, seed)}
    floor = context['sanity']['floor']
    out.print(f"| {size} | the floor itself: other real glyphs (raw figures) | | | | {floor['samples']['swd']['mean']:.1f} | "
          f"{floor['samples']['fd_pca']:.2f} | {floor['samples']['ink_w1']:.4f} | "
          f"{floor['samples']['diversity']:.2f} | |")
    candidates = {name: executor.ServedGlyphModel(os.path.join(folder, 'Format-Serving'))
                  for name, folder in folders.items()}
    candidates.update(standins)
    for name, model in candidates.items():
      report = dict(context, serving={'all_ok': 1.0},
                    candidate=executor.measure(model, sets, size_space, size, seed)[0])
      verdict = blessing_rules.judge(report, blessing_rules.DEFAULT_THRESHOLDS)
      over = lambda path, r=report: blessing_rules.over_floor(
          blessing_rules.lookup(r, path), blessing_rules.lookup(r, path, 'sanity.floor'),
          quadrature='quadrature' in next(iter(blessing_rules.DEFAULT_THRESHOLDS[path])))
      c = report['candidate']
      out.print(f"| {size} | {name} | {c['reconstruction']['psnr']['mean']:.2f} | "
            f"{c['reconstruction']['ssim']['mean']:.3f} | {c['identity']['top1']:.1%} | "
            f"{over('samples.swd.mean'):.1f} | {over('samples.fd_pca'):.2f} | {over('samples.ink_w1'):.4f} | "
            f"{c['samples']['diversity']:.2f} | {'blessed' if verdict['blessed'] else 'refused'} |")

  out.close()


if __name__ == '__main__':
  main()
