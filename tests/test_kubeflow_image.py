"""The container image recipe (Dockerfile, .dockerignore), read: the environment the tests
run in (the same Debian release and Debian packages as scripts/env.sh, the same
requirements.lock, the project installed), layered so a code change rebuilds only the
project's layer, and a build context that holds every file the package needs, whose hash
(the image's label) changes with those files only. Building and running it is
tests/test_kubeflow_local_run.py's job (scripts/build_image.sh)."""
import os
import re

from cns_vaegan.kubeflow import image_source
from cns_vaegan.pipeline import configs

ROOT = configs.REPO_ROOT


def _read(name):
  with open(os.path.join(ROOT, name)) as f:
    return f.read()


def _stages():
  """[(base image, text of the stage)] of the Dockerfile; ${ARG}s before the first FROM
  resolved to their defaults."""
  header, *parts = re.split(r'^FROM\s+', _read('Dockerfile'), flags=re.M)
  defaults = dict(re.findall(r'^ARG (\w+)=(\S+)$', header, re.M))
  return [(re.sub(r'\$\{(\w+)\}', lambda m: defaults[m.group(1)], part.split()[0]), part) for part in parts]


def _apt_packages(stage):
  """The packages on the stage's `apt-get install` line."""
  [packages] = re.findall(r'apt-get install -y --no-install-recommends ([^\\\n]+)', stage)
  return set(packages.split())


def test_dockerfile_rebuilds_the_test_environment():
  env_sh = _read('scripts/env.sh')
  suite = re.search(r'^SUITE=(\S+)$', env_sh, re.M).group(1)
  env_packages = set(re.search(r'^APT_PACKAGES="([^"]+)"$', env_sh, re.M).group(1).split(','))
  stages = _stages()
  assert [base for base, _ in stages] == [f'debian:{suite}-slim'] * 2
  (_, build), (_, runtime) = stages
  # The playground's browser tests need a browser; the pipeline's steps never run one.
  browser_test_only = {'chromium', 'dbus-x11'}
  assert env_packages - browser_test_only <= _apt_packages(build) | _apt_packages(runtime)
  assert {'python3', 'fonts-cns11643-kai', 'ca-certificates'} <= _apt_packages(runtime)
  assert 'python3 -m venv /venv' in build
  locks_dir = re.search(r'^COPY requirements\.lock requirements-gpu\.lock (\S+)/$', build, re.M).group(1)
  assert f'/venv/bin/pip install --no-cache-dir -r {locks_dir}/requirements.lock' in build
  # The GPU libraries (by default) so the Trainer sees the pod's GPUs.
  assert re.search(r'^ARG CUDA=1$', build, re.M)
  assert f'/venv/bin/pip install --no-cache-dir -r {locks_dir}/requirements-gpu.lock' in build
  gpu_lock = _read('requirements-gpu.lock')
  assert 'nvidia-cudnn-cu12==' in gpu_lock and 'nvidia-cublas-cu12==' in gpu_lock
  # A proxy's CA for pip (scripts/build_image.sh passes the host's), before pip, build stage only.
  assert build.index('ARG EXTRA_CA_CERTS=') < build.index('update-ca-certificates') < build.index('pip install')
  assert 'EXTRA_CA_CERTS' not in runtime
  # The project last, after the venv copy: a code change rebuilds one small layer.
  assert 'COPY . ' not in build
  project = '/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-build-isolation /src'
  assert runtime.index('COPY --from=build /venv /venv') < runtime.index('COPY . /src') < runtime.index(project)
  # The spec's commands start with `python -m ...`: the venv's python must come first.
  assert re.search(r'^ENV PATH=/venv/bin:\$PATH', runtime, re.M)


def test_build_context_has_the_package_and_not_the_outputs():
  rules = image_source.ignore_rules(ROOT)
  assert rules and not any(back for back, _ in rules)  # kept simple: no re-includes
  pyproject = _read('pyproject.toml')
  package_dirs = re.findall(r'^"cns_vaegan[.\w]*" = "([\w/]+)"$', pyproject, re.M)
  assert 'pipeline' in package_dirs and 'kubeflow' in package_dirs
  needed = ['pyproject.toml', 'requirements.lock', 'requirements-gpu.lock', 'components/trainer/architecture.json',
            'data/arithmetic_tuples.txt'] + [f'{d}/__init__.py' for d in package_dirs]
  for path in needed:
    assert os.path.exists(os.path.join(ROOT, path)), path
    assert not image_source.ignored(path, rules), path
  for path in ['outputs/pipelines', 'data/glyphs/twkai_32/U20320.png', '.git/HEAD', '.venv/bin',
               'components/__pycache__/x.pyc', 'cns-vaegan-figures/samples_n64_seed0.png',
               '.hypothesis/examples/x']:
    assert image_source.ignored(path, rules), path


def _tree(root, files):
  for path, content in files.items():
    os.makedirs(os.path.dirname(os.path.join(root, path)) or root, exist_ok=True)
    with open(os.path.join(root, path), 'w') as f:
      f.write(content)


def test_the_source_hash_changes_with_what_the_image_copies_and_nothing_else(tmp_path):
  root = str(tmp_path)
  _tree(root, {'.dockerignore': _read('.dockerignore'), 'Dockerfile': 'FROM x\n', 'pipeline/a.py': 'A = 1\n',
               'scripts/run.sh': 'echo\n'})
  first = image_source.source_hash(root)
  assert first == image_source.source_hash(root)
  # What .dockerignore leaves out of the context: run outputs, caches, git, the CLI's figures.
  _tree(root, {'outputs/pipelines/x': '1', 'data/glyphs/twkai_32/U1.png': '2', '.git/HEAD': '3',
               'pipeline/__pycache__/a.cpython-313.pyc': '4', 'cns_vaegan.egg-info/PKG-INFO': '5',
               'cns-vaegan-figures/f.png': '6', '.venv/bin/python': '7'})
  assert image_source.source_hash(root) == first
  changes = [lambda: _tree(root, {'pipeline/a.py': 'A = 2\n'}),          # content
             lambda: os.chmod(os.path.join(root, 'scripts/run.sh'), 0o755),  # executable bit
             lambda: _tree(root, {'pipeline/b.py': ''}),                  # a new file
             lambda: os.rename(os.path.join(root, 'pipeline/b.py'), os.path.join(root, 'pipeline/c.py')),
             lambda: os.symlink('a.py', os.path.join(root, 'pipeline/link.py'))]
  seen = {first}
  for change in changes:
    change()
    seen.add(image_source.source_hash(root))
  assert len(seen) == 1 + len(changes)


DOCKERIGNORE = """# rules of every kind Docker's .dockerignore has
*.egg-info
/top.txt
**/__pycache__
**/*.tmp
docs/**
!docs/keep.md
sub/*/deep
?.log
[ab].bin
build
  spaced
"""


def test_the_build_context_is_the_one_docker_py_computes(tmp_path):
  from docker.utils import build as docker_build  # pylint: disable=import-outside-toplevel
  root = str(tmp_path)
  _tree(root, {'.dockerignore': DOCKERIGNORE, 'Dockerfile': '', **{path: '' for path in [
      'x.egg-info/PKG-INFO', 'sub/x.egg-info/keep', 'top.txt', 'sub/top.txt', 'a/__pycache__/m.pyc',
      'a/b/__pycache__/m.pyc', 'a/m.py', 'c.tmp', 'a/b/c.tmp', 'a/b/c.tmpx', 'docs/x.md', 'docs/keep.md',
      'docs/d/y.md', 'sub/one/deep', 'sub/two/deep/z', 'sub/one/deeper', 'sub/deep', 'x.log', 'xy.log',
      'a.bin', 'c.bin', 'build/out', 'sub/build', 'spaced', 'kept.txt']}})
  for folder in (root, ROOT):
    with open(os.path.join(folder, '.dockerignore')) as f:
      patterns = [line.strip() for line in f.read().splitlines() if line.strip() and not line.startswith('#')]
    by_docker_py = sorted(path for path in docker_build.exclude_paths(folder, patterns)
                          if not os.path.isdir(os.path.join(folder, path)) or os.path.islink(os.path.join(folder, path)))
    assert image_source.context_files(folder) == by_docker_py, folder
  assert 'docs/keep.md' in image_source.context_files(root) and 'sub/x.egg-info/keep' in image_source.context_files(root)
