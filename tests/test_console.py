"""What the terminal shows while the local pipeline runs, and what goes to the log file instead."""
import datetime
import json
import logging as py_logging
import os
import re
import subprocess
import sys

import pytest
from absl import logging
from ml_metadata.proto import metadata_store_pb2

from cns_vaegan.pipeline import console, run_summary

LIBRARY = '/venv/lib/python3.13/site-packages/tfx/orchestration/portable/launcher.py'
RUNNER = '/venv/lib/python3.13/site-packages/tfx/orchestration/local/local_dag_runner.py'


def _record(level, pathname, msg, *args):
  """A record as the absl logger makes it for a call in `pathname`."""
  return py_logging.LogRecord('absl', level, pathname, 1, msg, args, None)


def test_the_log_file_gets_everything_the_terminal_our_warnings_and_every_error(tmp_path, capfd):
  logging.set_verbosity(logging.INFO)
  path = tmp_path / 'logs' / 'run.log'
  root = py_logging.getLogger()
  with pytest.raises(RuntimeError, match='the run failed'):
    with console.log_to_file(str(path)):
      logging.info('an INFO line')
      logging.warning('a warning of ours')  # this file is in the repository
      root.handle(_record(py_logging.WARNING, LIBRARY, 'a library warning'))
      root.handle(_record(py_logging.ERROR, LIBRARY, 'a library error'))
      os.write(2, b'a C++ line on descriptor 2\n')
      subprocess.run([sys.executable, '-c', 'import sys; sys.stderr.write("a child process line\\n")'],
                     check=True)
      print('the progress bar', file=sys.stderr)  # sys.stderr stays on the terminal
      raise RuntimeError('the run failed')
  os.write(2, b'descriptor 2 is back\n')
  out, err = capfd.readouterr()
  log = path.read_text()
  for line in ('an INFO line', 'a warning of ours', 'a library warning', 'a library error',
               'a C++ line', 'a child process line'):
    assert line in log, line
  for line in ('a warning of ours', 'a library error', 'the progress bar', 'descriptor 2 is back'):
    assert line in err, line
  for line in ('an INFO line', 'a library warning', 'a C++ line', 'a child process line'):
    assert line not in out + err, line


def test_verbose_keeps_the_info_log_on_the_terminal_too(tmp_path, capfd):
  logging.set_verbosity(logging.INFO)
  path = tmp_path / 'run.log'
  with console.log_to_file(str(path), verbose=True):
    logging.info('an INFO line')
  assert 'an INFO line' in capfd.readouterr().err and 'an INFO line' in path.read_text()


def test_component_lines_follow_the_local_dag_runners_records(capsys):
  outcomes = {'PngExampleGen': 'cached', 'Trainer': 'done'}
  lines = console.ComponentLines(['PngExampleGen', 'Trainer', 'Pusher'], outcomes.get)
  for node in ('PngExampleGen', 'Trainer'):
    lines.handle(_record(py_logging.INFO, RUNNER, console.ComponentLines.RUNNING, node))
    lines.handle(_record(py_logging.INFO, LIBRARY, console.ComponentLines.RUNNING, 'Other'))  # not the runner's
    lines.handle(_record(py_logging.INFO, RUNNER, console.ComponentLines.FINISHED, node))
  lines.handle(_record(py_logging.INFO, RUNNER, console.ComponentLines.RUNNING, 'Pusher'))
  lines.failed()
  printed = capsys.readouterr().out.splitlines()
  assert printed[:3] == ['[1/3] PngExampleGen  running', '[1/3] PngExampleGen  cached',
                         '[2/3] Trainer        running']
  assert re.fullmatch(r'\[2/3\] Trainer        done in \d+\.\d s', printed[3]), printed
  assert printed[4] == '[3/3] Pusher         running'
  assert re.fullmatch(r'\[3/3\] Pusher         FAILED after \d+\.\d s', printed[5]), printed
  assert len(printed) == 6


@pytest.mark.parametrize('seconds, text', [(0.04, '0.0 s'), (59.9, '59.9 s'), (432.4, '7 min 12 s')])
def test_durations_read_as_a_person_says_them(seconds, text):
  assert console.duration(seconds) == text


def test_the_summary_puts_each_baseline_beside_the_candidate():
  figures = lambda psnr, ssim, mse: {'reconstruction': {  # noqa: E731
      'psnr': {'mean': psnr}, 'ssim': {'mean': ssim}, 'mse': {'mean': mse}}}
  report = {'num_eval_examples': 1964,
            'candidate': dict(figures(10.27, 0.375, 0.096), identity={'top1': 0.412, 'top5': 0.7},
                              samples={'swd': {'mean': 16.1}, 'diversity': 0.92}),
            'baselines': {'mean_glyph': figures(8.1, 0.2, 0.15),
                          'pca_100': dict(figures(11.5, 0.41, 0.07), identity={'top1': 0.3, 'top5': 0.6})}}
  table = run_summary.metrics_table(report)
  assert table[0].split() == ['on', '1964', 'eval', 'glyphs', 'candidate', 'mean_glyph', 'pca_100']
  rows = {line[:20].strip(): line[20:].split() for line in table[1:]}
  assert rows['PSNR dB'] == ['10.27', '8.10', '11.50'] and rows['SSIM'] == ['0.375', '0.200', '0.410']
  assert rows['identity top-1'] == ['41.2%', '–', '30.0%']
  assert rows['samples SWD ×1e3'] == ['16.1', '–', '–']
  # Without baselines (or with the last blessed model only) the table still reads.
  alone = run_summary.metrics_table({'candidate': report['candidate'], 'baseline': report['candidate']})
  assert alone[0].split()[-3:] == ['candidate', 'last', 'blessed'] and len(alone) == 1 + 7


class FinishedRun:
  """What RunRecord answers for a finished run whose Evaluator wrote `report`, without a store."""
  pipeline_name = 'cns-vaegan'

  def __init__(self, folder, report):
    os.makedirs(folder / 'evaluation', exist_ok=True)
    (folder / 'evaluation' / 'metrics.json').write_text(json.dumps(report))
    self.evaluation = metadata_store_pb2.Artifact(uri=str(folder / 'evaluation'))

  def outputs(self, node_id):
    return {'ModelEvaluation': self.evaluation} if node_id == 'GlyphEvaluator' else {}


def _summary(tmp_path, blessed, reasons=(), serving_base=None):
  run = FinishedRun(tmp_path / 'run', {'blessing': {'blessed': blessed, 'reasons': list(reasons)}})
  return '\n'.join(run_summary.summary(run, str(tmp_path / 'root'), serving_base or str(tmp_path / 'serving'),
                                       'cns_vaegan', str(tmp_path / 'run.log')))


def _push(tmp_path, version, when=None):
  folder = tmp_path / 'serving' / 'cns_vaegan' / str(version)
  os.makedirs(folder)
  if when:  # complete, pushed at `when`; else a folder the Pusher is still copying into
    (folder / 'saved_model.pb').write_bytes(b'')
    os.utime(folder / 'saved_model.pb', (when.timestamp(),) * 2)


def test_a_summary_not_blessed_says_what_make_serve_would_serve_and_what_to_do(tmp_path, monkeypatch):
  serve = f"make serve ARGS='--model-base-path {tmp_path / 'serving'} --model-name cns_vaegan'"
  summary = _summary(tmp_path, False, ['reconstruction.ssim.mean 0.12 < min 0.2'])
  assert 'cns-vaegan: model NOT blessed, nothing pushed\n  why: reconstruction.ssim.mean 0.12 < min 0.2' in summary
  assert '--thresholds FILE.json' in summary and '--no-cache' in summary and '--train-steps' in summary
  assert (f'{serve} would serve nothing: no model has been pushed to {tmp_path / "serving" / "cns_vaegan"} '
          'yet (it would wait for one)') in summary
  assert 'cns_vaegan.serving.cli' not in summary  # nothing to query

  earlier = datetime.datetime(2026, 3, 1, 9, 30)
  _push(tmp_path, 1700000000, earlier - datetime.timedelta(days=1))
  _push(tmp_path, 1700000100, earlier)
  _push(tmp_path, 1800000000)  # no saved_model.pb yet: the server would not serve it
  summary = _summary(tmp_path, False, ['samples.swd.mean 30.1 > max 25'])
  assert (f"{serve}    # would serve version 1700000100, pushed 2026-03-01 09:30 by an earlier run "
          "(this run pushed nothing)") in summary
  assert 'cns_vaegan.serving.cli arith' in summary

  blessed = _summary(tmp_path, True)
  assert f'{serve}    # gRPC :8500, REST :8501' in blessed and 'would serve' not in blessed
  assert '--thresholds' not in blessed
  monkeypatch.chdir(tmp_path)  # a relative --output-dir: make runs in the repository, so the path is absolute
  assert f'{serve}    # gRPC' in _summary(tmp_path, True, serving_base='serving')


def test_the_cli_starts_without_tensorflows_start_up_lines():
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  cli = subprocess.run([sys.executable, '-m', 'cns_vaegan.serving.cli', '--server', '127.0.0.1:1',
                        '--timeout', '1', 'status'], capture_output=True, text=True, env=env, timeout=120)
  assert cli.returncode == 1 and cli.stdout == ''
  assert len(cli.stderr.splitlines()) == 1 and cli.stderr.startswith('cli: '), cli.stderr  # only its error
