"""Rebuilds the figures and tables of docs/ from what commands wrote: `make report`.

1. From the latest local pipeline run under --output-dir (if there is one): the Evaluator's
   headline table beside its baselines and the real-glyph floor and ceiling
   (docs/generated/default_run.md), its figures (docs/figures/*.png), and the run's
   closing summary as the terminal showed it (docs/generated/run_summary.md).
2. Every docs page's generated blocks, `<!-- generated: docs/generated/NAME.md -->` ...
   `<!-- end generated -->`, refilled from the fragment they name. Benchmarks write those
   fragments (benchmarks/fragments.py), each headed by its command and machine.

    python scripts/report.py                 # both
    python scripts/report.py --check         # exit 1 where a page differs from its fragments
"""
import argparse
import glob
import json
import os
import re
import shutil
import sys
from typing import Dict, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GENERATED = os.path.join(REPO, 'docs', 'generated')
FIGURES = os.path.join(REPO, 'docs', 'figures')
PAGES = ['README.md'] + sorted(glob.glob(os.path.join(REPO, 'docs', '*.md')))
BLOCK = re.compile(r'(<!-- generated: (?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- end generated -->)', re.S)
# Figures of an Evaluator run that docs show (the arithmetic panels are all copied too).
RUN_FIGURES = ('samples.png', 'interpolation.png', 'reconstructions.png')

# Headline columns: (label, path into a model's figures, format).
COLUMNS = [('identity top-1', 'identity.top1', '{:.1%}'), ('top-5', 'identity.top5', '{:.1%}'),
           ('PSNR dB', 'reconstruction.psnr.mean', '{:.2f}'), ('SSIM', 'reconstruction.ssim.mean', '{:.3f}'),
           ('SWD ×1e3', 'samples.swd.mean', '{:.1f}'), ('FD (PCA)', 'samples.fd_pca', '{:.2f}'),
           ('ink W1', 'samples.ink_w1', '{:.4f}'), ('diversity', 'samples.diversity', '{:.2f}')]


def _value(figures: Dict, path: str):
  for key in path.split('.'):
    figures = figures.get(key) if isinstance(figures, dict) else None
  return figures


def headline_table(report: Dict) -> List[str]:
  """The candidate's figures, each baseline's, and the sample measures' floor and ceiling."""
  rows = [('**this run**', report['candidate'])]
  rows += [(f'baseline: {name}', figures) for name, figures in sorted(report.get('baselines', {}).items())]
  sanity = report.get('sanity', {})
  rows += [(f'{kind}: {what}', sanity[kind]) for kind, what in
           (('floor', 'other real glyphs'), ('ceiling', 'uniform noise')) if kind in sanity]
  lines = ['| model | ' + ' | '.join(label for label, _, _ in COLUMNS) + ' |',
           '|---|' + '---|' * len(COLUMNS)]
  for name, figures in rows:
    cells = []
    for _, path, form in COLUMNS:
      value = _value(figures, path)
      cells.append(form.format(value) if isinstance(value, (int, float)) else '')
    lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
  return lines


def from_latest_run(output_dir: str) -> None:
  """Fragments and figures from the latest run's evaluation and log (nothing if there is none)."""
  sys.path.insert(0, REPO)
  from cns_vaegan.pipeline import configs, run_summary  # pylint: disable=import-outside-toplevel
  from tfx.orchestration import metadata  # pylint: disable=import-outside-toplevel
  database = configs.metadata_path(output_dir)
  if not os.path.exists(database):
    print(f'report: no pipeline run under {output_dir}; only refilling docs from docs/generated/')
    return
  record = run_summary.RunRecord(metadata.sqlite_metadata_connection_config(database), configs.PIPELINE_NAME)
  evaluation = record.outputs('GlyphEvaluator').get('ModelEvaluation')
  if evaluation is None:
    return
  with open(os.path.join(evaluation.uri, 'metrics.json'), encoding='utf-8') as f:
    report = json.load(f)
  verdict = 'blessed' if report['blessing']['blessed'] else 'refused: ' + '; '.join(report['blessing']['reasons'])
  write_fragment('default_run', [
      f'<!-- written by `make report` from {os.path.relpath(evaluation.uri, REPO)}/metrics.json -->', '',
      f'On {report["num_eval_examples"]:,} eval glyphs and as many samples; the verdict: {verdict}.', '']
      + headline_table(report))
  for path in [os.path.join(evaluation.uri, name) for name in RUN_FIGURES] + glob.glob(
      os.path.join(evaluation.uri, 'arithmetic_*.png')) + glob.glob(os.path.join(evaluation.uri, 'reconstructions_vs_pca_*.png')):
    if os.path.exists(path):
      shutil.copy(path, os.path.join(FIGURES, os.path.basename(path)))
  logs = sorted(glob.glob(os.path.join(output_dir, 'logs', '*.log')), key=os.path.getmtime)
  if logs:
    with open(logs[-1], encoding='utf-8', errors='replace') as f:
      log = f.read()
    if '] Summary:\n' in log:  # the summary, logged as one record, ends with the log's path
      summary = log.rsplit('] Summary:\n', 1)[1]
      summary = summary[:summary.index('full log: ')] + summary[summary.index('full log: '):].split('\n', 1)[0]
      write_fragment('run_summary', [f'<!-- written by `make report` from {os.path.relpath(logs[-1], REPO)} -->', '',
                                     '```', summary, '```'])


def write_fragment(name: str, lines: List[str]) -> None:
  os.makedirs(GENERATED, exist_ok=True)
  with open(os.path.join(GENERATED, f'{name}.md'), 'w', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')


def refilled(text: str) -> str:
  """`text` with every generated block holding its fragment's current content."""
  def fill(match):
    path = os.path.join(REPO, match.group('name'))
    if not os.path.exists(path):
      raise SystemExit(f'report: a page cites {match.group("name")}, which no command has written')
    with open(path, encoding='utf-8') as f:
      return match.group(1) + f.read() + match.group(4)
  return BLOCK.sub(fill, text)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--output-dir', default=os.path.join(REPO, 'outputs'))
  parser.add_argument('--check', action='store_true', help='change nothing; exit 1 where a page is stale')
  args = parser.parse_args()
  if not args.check:
    from_latest_run(args.output_dir)
  stale = []
  for page in PAGES:
    with open(page, encoding='utf-8') as f:
      text = f.read()
    new = refilled(text)
    if new != text:
      stale.append(os.path.relpath(page, REPO))
      if not args.check:
        with open(page, 'w', encoding='utf-8') as f:
          f.write(new)
  if args.check and stale:
    raise SystemExit(f'report: stale generated blocks in {", ".join(stale)}: run make report')
  print(f'report: {"checked" if args.check else "refilled"} {len(PAGES)} pages'
        + (f'; updated {", ".join(stale)}' if stale and not args.check else ''))


if __name__ == '__main__':
  main()
