"""docs/ stays true to what commands wrote: every generated block equals its fragment."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_generated_block_in_the_docs_equals_the_fragment_it_cites():
  result = subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'report.py'), '--check'],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
