"""The container image recipe (Dockerfile, .dockerignore), read: the environment the tests
run in (the same Debian release and Debian packages as scripts/env.sh, the same
requirements.lock, the project installed), layered so a code change rebuilds only the
project's layer, and a build context that holds every file the package needs. Building
and running it is tests/test_kubeflow_local_run.py's job (scripts/build_image.sh)."""
import fnmatch
import os
import re

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
  assert env_packages <= _apt_packages(build) | _apt_packages(runtime)
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


def _ignored(path, patterns):
  """Whether .dockerignore keeps `path` out of the build context (it or a parent matches)."""
  parts = path.split('/')
  prefixes = ['/'.join(parts[:i]) for i in range(1, len(parts) + 1)]
  return any(fnmatch.fnmatch(prefix, pattern) or fnmatch.fnmatch(prefix, pattern.lstrip('*/'))
             for pattern in patterns for prefix in prefixes)


def test_build_context_has_the_package_and_not_the_outputs():
  patterns = [line.strip() for line in _read('.dockerignore').splitlines()
              if line.strip() and not line.startswith('#')]
  assert not any(p.startswith('!') for p in patterns)  # kept simple: no re-includes
  pyproject = _read('pyproject.toml')
  package_dirs = re.findall(r'^"cns_vaegan[.\w]*" = "([\w/]+)"$', pyproject, re.M)
  assert 'pipeline' in package_dirs and 'kubeflow' in package_dirs
  needed = ['pyproject.toml', 'requirements.lock', 'requirements-gpu.lock', 'components/trainer/architecture.json',
            'data/arithmetic_tuples.txt'] + [f'{d}/__init__.py' for d in package_dirs]
  for path in needed:
    assert os.path.exists(os.path.join(ROOT, path)), path
    assert not _ignored(path, patterns), path
  for path in ['outputs/pipelines', 'data/glyphs/twkai_32/U20320.png', '.git/HEAD', '.venv/bin',
               'components/__pycache__/x.pyc']:
    assert _ignored(path, patterns), path
