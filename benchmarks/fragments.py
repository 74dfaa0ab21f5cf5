"""What a benchmark prints, also kept as a markdown fragment that docs/ pages include.

A benchmark runs for minutes or hours, so docs are not rebuilt by running it again: each
run writes its tables to docs/generated/<name>.md, headed by the command that printed them
and the machine it ran on, and `make report` (scripts/report.py) copies every fragment into
the docs pages that cite it, between `<!-- generated: docs/generated/<name>.md -->` and
`<!-- end generated -->`. tests/test_docs.py fails when a page and its fragment disagree.
"""
import os
import platform
import sys
from typing import Optional

GENERATED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'docs', 'generated')


def machine() -> str:
  """The CPU model and core count (absolute figures depend on them), and a GPU if TF sees one."""
  model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      model = next((line.split(':', 1)[1].strip() for line in f if line.startswith('model name')), model)
  except OSError:
    pass
  return f'{model}, {os.cpu_count()} cores'


class Fragment:
  """print() to stdout and, when `name` is given, to docs/generated/<name>.md."""

  def __init__(self, name: Optional[str], argv=None):
    self.file = None
    if name:
      os.makedirs(GENERATED, exist_ok=True)
      self.path = os.path.join(GENERATED, f'{name}.md')
      self.file = open(self.path, 'w', encoding='utf-8')  # pylint: disable=consider-using-with
      command = ' '.join(['python', os.path.relpath(sys.argv[0])] + list(sys.argv[1:] if argv is None else argv))
      self.file.write(f'<!-- written by `{command}` on {machine()} -->\n\n')

  def print(self, *lines: str) -> None:
    for line in lines:
      print(line, flush=True)
      if self.file:
        self.file.write(line + '\n')

  def close(self) -> None:
    if self.file:
      self.file.close()
      print(f'(written to {self.path})')
