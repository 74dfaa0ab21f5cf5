"""Every package the project's code imports is one it declares, and the declarations agree.

The installed packages (pyproject's package-dir) may import only the standard library and
pyproject's dependencies; tests, benchmarks and scripts also what requirements.in adds
(pytest, hypothesis, ...). Which distribution provides an imported module is read from the
installed distributions' RECORD files (importlib.metadata), so a module whose package is
installed only as some other package's dependency is caught. requirements.lock pins a version every declaration
accepts, and pyproject's Python floor is one the code runs on.
"""
import ast
import collections
import functools
import importlib.metadata
import importlib.util
import os
import re
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cns_vaegan.pipeline import configs

ROOT = configs.REPO_ROOT
# Not the project's code: a port that runs where PyTorch is, without this environment.
NOT_CHECKED = [os.path.join('benchmarks', 'torch_port')]
# Scripts' helpers imported by file name (tests' conftest, benchmarks' siblings).
LOCAL_MODULES = {name[:-3] for folder in ('tests', 'benchmarks', 'scripts')
                 for _, _, files in os.walk(os.path.join(ROOT, folder)) for name in files if name.endswith('.py')}


def _pyproject():
  with open(os.path.join(ROOT, 'pyproject.toml'), 'rb') as f:
    return tomllib.load(f)


def _requirements_in():
  with open(os.path.join(ROOT, 'requirements.in'), encoding='utf-8') as f:
    lines = [line.split('#')[0].strip() for line in f]
  return [Requirement(line) for line in lines if line]


def _lock():
  """{canonical name: pinned version} of requirements.lock."""
  with open(os.path.join(ROOT, 'requirements.lock'), encoding='utf-8') as f:
    pins = [line.strip().split('==') for line in f if '==' in line]
  return {canonicalize_name(name): version for name, version in pins}


def imported_modules(folder):
  """{absolute module name: [file, ...]} of every import in the .py files under folder
  (functions' imports too: they are as direct); the project's own and local ones left out."""
  found = collections.defaultdict(list)
  for directory, _, files in os.walk(os.path.join(ROOT, folder)):
    if any(directory.startswith(os.path.join(ROOT, skip)) for skip in NOT_CHECKED):
      continue
    for name in files:
      if not name.endswith('.py'):
        continue
      path = os.path.join(directory, name)
      with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), path)
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
          modules = [node.module]
        else:
          continue
        for module in modules:
          top = module.split('.')[0]
          if top not in sys.stdlib_module_names and top != 'cns_vaegan' and top not in LOCAL_MODULES:
            found[module].append(os.path.relpath(path, ROOT))
  return found


@functools.lru_cache(maxsize=None)
def _records():
  """[(distribution, its RECORD's text)]: the files each installed distribution put here."""
  return [(canonicalize_name(d.metadata['Name']), '\n' + (d.read_text('RECORD') or ''))
          for d in importlib.metadata.distributions()]


@functools.lru_cache(maxsize=None)
def _package_of(module):
  """How RECORD files name what provides `module`: its top package's folder ('numpy/'), for a
  namespace package the folder below it ('google/protobuf/'), or a top-level module's file."""
  top, _, rest = module.partition('.')
  spec = importlib.util.find_spec(top)
  assert spec is not None, f'{module} is not installed'
  if spec.submodule_search_locations is None:  # a module, not a package
    site = max((p for p in sys.path if p and spec.origin.startswith(os.path.join(p, ''))), key=len)
    return os.path.relpath(spec.origin, site) + ','
  if spec.origin in (None, 'namespace') and rest:
    return f'{top}/{rest.split(".")[0]}/'
  return f'{top}/'


@functools.lru_cache(maxsize=None)
def distributions_of(module):
  """The installed distributions that put files into the package `module` comes from (tfx's
  own modules come from two: tfx and ml-pipelines-sdk)."""
  line = '\n' + _package_of(module)
  return {name for name, record in _records() if line in record}


def undeclared(folders, declared):
  """['package (from distribution; imported by file, ...)'] for each package imported under
  folders that no declared distribution provides."""
  imports = collections.defaultdict(set)
  for folder in folders:
    for module, files in imported_modules(folder).items():
      imports[_package_of(module).rstrip('/,')].update((module, file) for file in files)
  problems = []
  for package, uses in sorted(imports.items()):
    provided_by = distributions_of(min(uses)[0])
    if not provided_by & declared:
      problems.append(f'{package} (from {", ".join(sorted(provided_by)) or "nothing installed"}; '
                      f'imported by {", ".join(sorted({file for _, file in uses})[:3])})')
  return problems


def test_the_packages_import_only_the_standard_library_and_pyprojects_dependencies():
  declared = {canonicalize_name(Requirement(r).name) for r in _pyproject()['project']['dependencies']}
  folders = set(_pyproject()['tool']['setuptools']['package-dir'].values())
  folders = sorted(f for f in folders if not any(f.startswith(other + '/') for other in folders))
  problems = undeclared(folders, declared)
  assert not problems, 'imported, but not in pyproject.toml\'s dependencies:\n' + '\n'.join(problems)


def test_tests_benchmarks_and_scripts_import_only_what_requirements_in_declares():
  declared = {canonicalize_name(r.name) for r in _requirements_in()}
  problems = undeclared(['tests', 'benchmarks', 'scripts'], declared)
  assert not problems, 'imported, but not in requirements.in:\n' + '\n'.join(problems)


def test_requirements_in_holds_pyprojects_dependencies_and_the_lock_satisfies_both():
  in_file = {canonicalize_name(r.name): r for r in _requirements_in()}
  pyproject = [Requirement(r) for r in _pyproject()['project']['dependencies']]
  assert [str(r) for r in pyproject if canonicalize_name(r.name) not in in_file] == []
  lock = _lock()
  for requirement in pyproject + list(in_file.values()):
    name = canonicalize_name(requirement.name)
    assert name in lock, f'{requirement} is not in requirements.lock'
    assert requirement.specifier.contains(lock[name], prereleases=True), (str(requirement), lock[name])


def test_the_python_floor_is_true():
  floor = re.fullmatch(r'>=(\d+)\.(\d+)', _pyproject()['project']['requires-python'])
  assert floor, 'requires-python: expected >=X.Y'
  # asyncio.timeout (serving/rest.py) and tomllib came in 3.11.
  assert tuple(map(int, floor.groups())) >= (3, 11)
  assert sys.version_info[:2] >= tuple(map(int, floor.groups()))


@pytest.mark.parametrize('module, distribution', [('numpy', 'numpy'), ('google.protobuf.text_format', 'protobuf'),
                                                  ('yaml', 'pyyaml'), ('PIL.Image', 'pillow')])
def test_a_module_is_traced_to_the_distribution_that_provides_it(module, distribution):
  assert distribution in distributions_of(module)
