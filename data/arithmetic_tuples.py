"""The seed's latent-arithmetic experiments: "A B C" tuples for a·(A − B + C).

`arithmetic_tuples.txt` keeps the seed's own `test.txt` (one tuple per line; the
seed wrote them without spaces, `酪鉻鉸`, and both forms are read).
"""
import os
from typing import List, Tuple

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'arithmetic_tuples.txt')


def read_tuples(path: str = DEFAULT_PATH) -> List[Tuple[str, str, str]]:
  tuples = []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      characters = ''.join(line.split())
      if not characters or characters.startswith('#'):
        continue
      if len(characters) != 3:
        raise ValueError(f'{path}:{number}: expected three characters "A B C", got {line.strip()!r}')
      tuples.append((characters[0], characters[1], characters[2]))
  return tuples
