"""scripts/env.sh run keeps the caller's folder, so relative paths a user types mean what
they mean where they typed them, in both of its environments.

The script runs from a copy of itself in a throw-away clone whose environment is already
"made": a venv folder, and a root filesystem that is this environment's own /usr bound in
(CNS_EXTRA_MOUNTS), each marked with the key env.sh looks for. So nothing is installed,
and `run pwd` takes a fraction of a second.
"""
import hashlib
import os
import re
import shutil
import subprocess

import pytest

from cns_vaegan.pipeline import configs

ENV_SH = os.path.join(configs.REPO_ROOT, 'scripts', 'env.sh')


def _sha16(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()[:16]


@pytest.fixture
def clone(tmp_path):
  """(clone folder, environment variables) of a clone whose venv and root filesystem exist."""
  repo = tmp_path / 'clone'
  (repo / 'scripts').mkdir(parents=True)
  shutil.copy(ENV_SH, repo / 'scripts' / 'env.sh')
  (repo / 'requirements.lock').write_text('')
  (repo / 'pyproject.toml').write_text('')
  # The key and stamp env.sh compares (env_key, install_project): an empty lock and pyproject.
  script = open(ENV_SH, encoding='utf-8').read()
  suite, packages, version = (re.search(rf'^{name}="?([^"\n]+)"?$', script, re.M).group(1)
                              for name in ('SUITE', 'APT_PACKAGES', 'RECIPE_VERSION'))
  key, stamp = _sha16(f'{suite} {packages} {version}\n'), f'{repo} {_sha16("")}\n'
  venv = repo / '.venv'
  (venv / 'bin').mkdir(parents=True)
  (venv / '.cns-key').write_text(key + '\n')
  (venv / '.cns-project').write_text(stamp)
  root = tmp_path / 'cache' / f'rootfs-{key}'
  for folder in ('proc', 'dev', 'sys', 'etc', 'usr', 'venv/bin'):
    (root / folder).mkdir(parents=True)
  for link in ('bin', 'lib', 'lib64', 'sbin'):
    os.symlink(f'usr/{link}', root / link)
  (root / 'venv' / '.cns-project').write_text(stamp)
  environ = dict(os.environ, CNS_ENV_CACHE=str(tmp_path / 'cache'), CNS_EXTRA_MOUNTS='/usr')
  return repo, environ


def run(clone, mode, cwd, *command):
  repo, environ = clone
  return subprocess.run(['bash', str(repo / 'scripts' / 'env.sh'), 'run', *command], cwd=cwd,
                        env=dict(environ, CNS_ENV_MODE=mode), capture_output=True, text=True, timeout=60)


def _why_no_root_filesystem() -> str:
  """Why env.sh cannot enter a root filesystem from here ('' if it can): it needs root and a
  private mount namespace, which cannot be made inside another chroot (as the tests run on
  hosts older than Debian 13, where the rootfs case is then checked by hand)."""
  if os.geteuid() != 0:
    return 'entering a root filesystem needs root'
  try:
    subprocess.run(['unshare', '-m', '--propagation', 'private', 'true'], check=True,
                   capture_output=True, text=True, timeout=30)
  except (OSError, subprocess.CalledProcessError) as error:
    return f'no private mount namespace here ({(getattr(error, "stderr", "") or str(error)).strip()})'
  return ''


NO_ROOT_FILESYSTEM = _why_no_root_filesystem()
MODES = ['venv', pytest.param('rootfs', marks=pytest.mark.skipif(bool(NO_ROOT_FILESYSTEM),
                                                                 reason=NO_ROOT_FILESYSTEM))]


@pytest.mark.parametrize('mode', MODES)
def test_run_keeps_the_callers_folder(clone, tmp_path, mode):
  here = tmp_path / 'my data'
  (here / 'pngs').mkdir(parents=True)
  done = run(clone, mode, here, 'bash', '-c', 'pwd && ls pngs && echo "$VIRTUAL_ENV"')
  assert done.returncode == 0, done.stderr
  assert done.stdout.splitlines() == [str(here), f'{clone[0]}/.venv' if mode == 'venv' else '/venv']


def test_a_folder_the_root_filesystem_does_not_show_is_refused_saying_why(clone):
  done = run(clone, 'rootfs', '/', 'pwd')  # / is never bound: it is the root filesystem's own
  assert done.returncode == 1 and done.stdout == ''
  assert done.stderr.startswith('env.sh: the current folder / is not visible inside the environment, '
                                'which binds only /home, /root, /tmp'), done.stderr
  assert 'CNS_EXTRA_MOUNTS' in done.stderr
