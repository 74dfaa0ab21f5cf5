"""Which checkout an image was built from: a hash of the files its build context holds.

The Dockerfile COPYs the whole build context (the repository minus what .dockerignore
leaves out), so the hash covers exactly those files: their paths, contents and executable
bits. scripts/build_image.sh labels the image with it (LABEL), and the kfp.local test
compares the label with this checkout's hash, so an image built from other code is never
tested as if it were this code.

    python3 kubeflow/image_source.py [REPOSITORY]     # prints LABEL=<hash>, for docker build --label

Standard library only: build_image.sh runs it with the host's python3, before (or beside)
the project's environment is made. For that reason the .dockerignore rules are written out
here, following Docker's own (moby's patternmatcher: Go's filepath.Match per path element,
`**` for any number of folders, `!` to take a path back, the last matching line wins, a
folder's rule covering everything below it); the tests check them against docker-py's
implementation.
"""
import hashlib
import os
import re
import sys
from typing import List, Tuple

LABEL = 'cns-vaegan.source-hash'


def _regex(pattern: str) -> 're.Pattern':
  """A .dockerignore pattern (already cleaned) as a regular expression over a relative path."""
  out, i = '^', 0
  while i < len(pattern):
    c = pattern[i]
    i += 1
    if c == '*':
      if pattern[i:i + 1] == '*':  # **: any number of folders, none included
        i += 1
        if pattern[i:i + 1] == '/':
          i += 1
        out += '.*' if i >= len(pattern) else '(.*/)?'
      else:
        out += '[^/]*'
    elif c == '?':
      out += '[^/]'
    elif c == '[':  # a class as Go writes it ([^...] negates) reads the same as a regex
      end = pattern.find(']', i + 1)
      if end < 0:
        out += re.escape(c)
      else:
        out += pattern[i - 1:end + 1]
        i = end + 1
    elif c == '\\' and i < len(pattern):
      out += re.escape(pattern[i])
      i += 1
    else:
      out += re.escape(c)
  return re.compile(out + '$')


def ignore_rules(root: str) -> List[Tuple[bool, 're.Pattern']]:
  """[(takes back, regex)] from root/.dockerignore, in order; none without the file."""
  path = os.path.join(root, '.dockerignore')
  if not os.path.exists(path):
    return []
  rules = []
  with open(path, encoding='utf-8') as f:
    for line in f:
      line = line.strip()
      if not line or line.startswith('#'):
        continue
      back = line.startswith('!')
      line = line[1:].strip() if back else line
      cleaned = os.path.normpath(line).lstrip('/')
      if cleaned in ('', '.'):  # Docker ignores the pattern "."
        continue
      rules.append((back, _regex(cleaned)))
  return rules


def ignored(path: str, rules) -> bool:
  """Whether the relative path is left out of the build context: the last rule matching it,
  or one of the folders above it, decides."""
  parts = path.split('/')
  prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
  result = False
  for back, regex in rules:
    if any(regex.match(prefix) for prefix in prefixes):
      result = not back
  return result


def context_files(root: str) -> List[str]:
  """The relative paths of the files (and symbolic links) docker build sends, sorted."""
  rules = ignore_rules(root)
  takes_back = any(back for back, _ in rules)
  found = []
  for directory, folders, files in os.walk(root):
    relative = os.path.relpath(directory, root)
    prefix = '' if relative == '.' else relative.replace(os.sep, '/') + '/'
    links = [name for name in folders if os.path.islink(os.path.join(directory, name))]
    found += [prefix + name for name in files + links if not ignored(prefix + name, rules)]
    if not takes_back:  # nothing below an ignored folder can come back: skip it (.git, outputs)
      folders[:] = [name for name in folders if not ignored(prefix + name, rules)]
  return sorted(found)


def source_hash(root: str) -> str:
  """SHA-256 over each context file's path, executable bit and content (a link's target)."""
  digest = hashlib.sha256()
  for relative in context_files(root):
    path = os.path.join(root, relative)
    if os.path.islink(path):
      kind, content = 'link', os.readlink(path).encode()
    else:
      kind = 'exec' if os.stat(path).st_mode & 0o100 else 'file'
      with open(path, 'rb') as f:
        content = f.read()
    digest.update(f'{relative}\0{kind}\0{len(content)}\0'.encode() + content)
  return digest.hexdigest()


def main(argv: List[str]) -> None:
  root = argv[1] if len(argv) > 1 else os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  print(f'{LABEL}={source_hash(root)}')


if __name__ == '__main__':
  main(sys.argv)
