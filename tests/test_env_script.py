"""scripts/env.sh run keeps the caller's folder, so relative paths a user types mean what
they mean where they typed them, in both of its environments.

The script runs from a copy of itself in a throw-away clone whose environment is already
"made": a venv folder, and a root filesystem that is this environment's own /usr bound in
(CNS_EXTRA_MOUNTS), each marked with the key env.sh looks for. So nothing is installed,
and `run pwd` takes a fraction of a second.
"""
import glob
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


@pytest.mark.parametrize('mode', MODES)
def test_run_turns_on_onednn_cpu_kernels_unless_the_user_set_them(clone, tmp_path, mode):
  """TensorFlow leaves its oneDNN kernels off on AVX2-only CPUs, which then train several
  times slower (docs/generated/cpu_kernels.md); a user's own setting wins."""
  repo, environ = clone
  environ.pop('TF_ENABLE_ONEDNN_OPTS', None)
  done = run((repo, environ), mode, tmp_path, 'printenv', 'TF_ENABLE_ONEDNN_OPTS')
  assert (done.returncode, done.stdout) == (0, '1\n'), done.stderr
  done = run((repo, dict(environ, TF_ENABLE_ONEDNN_OPTS='0')), mode, tmp_path, 'printenv', 'TF_ENABLE_ONEDNN_OPTS')
  assert (done.returncode, done.stdout) == (0, '0\n'), done.stderr


def test_a_folder_the_root_filesystem_does_not_show_is_refused_saying_why(clone):
  done = run(clone, 'rootfs', '/', 'pwd')  # / is never bound: it is the root filesystem's own
  assert done.returncode == 1 and done.stdout == ''
  assert done.stderr.startswith('env.sh: the current folder / is not visible inside the environment, '
                                'which binds only /home, /root, /tmp'), done.stderr
  assert 'CNS_EXTRA_MOUNTS' in done.stderr


# ------------------------------------------------------------------ NVIDIA driver hosts
@pytest.fixture
def fake_driver(tmp_path):
  """A host's NVIDIA driver as env.sh looks for it: its /proc version file, device nodes
  (plain files here) and libraries, listed by a stand-in for `ldconfig -p`."""
  root = tmp_path / 'driver'
  (root / 'proc' / 'driver' / 'nvidia').mkdir(parents=True)
  (root / 'proc' / 'driver' / 'nvidia' / 'version').write_text(
      'NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15\n')
  (root / 'dev').mkdir()
  for device in ('nvidia0', 'nvidiactl', 'nvidia-uvm'):
    (root / 'dev' / device).write_text('')
  lib = root / 'usr' / 'lib' / 'x86_64-linux-gnu'
  lib.mkdir(parents=True)
  for name in ('libcuda.so.550.54.15', 'libnvidia-ml.so.550.54.15', 'libnvidia-ptxjitcompiler.so.550.54.15'):
    (lib / name).write_text(f'fake {name}\n')
  os.symlink('libcuda.so.550.54.15', lib / 'libcuda.so.1')  # as the driver installs it
  listing = root / 'ldconfig.txt'
  listing.write_text('\n'.join([
      '1234 libs found in cache `/etc/ld.so.cache\'',
      f'\tlibcuda.so.1 (libc6,x86-64) => {lib}/libcuda.so.1',
      f'\tlibcuda.so.1 (libc6) => /usr/lib/i386-linux-gnu/libcuda.so.1',  # 32-bit: not ours
      f'\tlibnvidia-ml.so.1 (libc6,x86-64) => {lib}/libnvidia-ml.so.550.54.15',
      f'\tlibnvidia-ptxjitcompiler.so.1 (libc6,x86-64) => {lib}/libnvidia-ptxjitcompiler.so.550.54.15',
      '\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6',
      '\tlibnvinfer.so.8 (libc6,x86-64) => /usr/lib/x86_64-linux-gnu/libnvinfer.so.8',  # not the driver
  ]) + '\n')
  return {'CNS_NVIDIA_ROOT': str(root), 'CNS_LDCONFIG': f'cat {listing}'}, lib


def gpu_report(clone, mode, driver_env):
  repo, environ = clone
  done = subprocess.run(['bash', str(repo / 'scripts' / 'env.sh'), 'gpu'], capture_output=True, text=True,
                        env=dict(environ, CNS_ENV_MODE=mode, **driver_env), timeout=60)
  assert done.returncode == 0, done.stderr
  return done.stdout.splitlines()


def test_a_host_without_a_driver_keeps_its_environment_key(clone, tmp_path):
  (tmp_path / 'no_driver').mkdir()
  report = gpu_report(clone, 'rootfs', {'CNS_NVIDIA_ROOT': str(tmp_path / 'no_driver'), 'CNS_LDCONFIG': 'true'})
  key = os.path.basename(glob.glob(str(tmp_path / 'cache' / 'rootfs-*'))[0])[len('rootfs-'):]
  assert report == ['driver: none', f'mode: rootfs; key: {key}', 'installs: requirements.lock']


def test_a_driver_is_found_and_its_devices_and_libraries_are_bound(clone, fake_driver, tmp_path):
  driver_env, lib = fake_driver
  report = gpu_report(clone, 'rootfs', driver_env)
  root = driver_env['CNS_NVIDIA_ROOT']
  assert report[0] == 'driver: nvidia'
  assert report[1] == 'version: NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15'
  key = report[2].split('key: ')[1]
  assert report[2].startswith('mode: rootfs; key: ') and not glob.glob(str(tmp_path / 'cache' / f'rootfs-{key}'))
  assert report[3:] == [
      'installs: requirements.lock requirements-gpu.lock',
      f'device: {root}/dev/nvidia-uvm', f'device: {root}/dev/nvidia0', f'device: {root}/dev/nvidiactl',
      f'binds: {lib}/libcuda.so.1 -> /run/cns-nvidia/libcuda.so.1',
      f'binds: {lib}/libnvidia-ml.so.550.54.15 -> /run/cns-nvidia/libnvidia-ml.so.1',
      f'binds: {lib}/libnvidia-ptxjitcompiler.so.550.54.15 -> /run/cns-nvidia/libnvidia-ptxjitcompiler.so.1']
  # In a venv the host's own loader finds the driver: nothing is bound, the key still counts the GPU.
  venv = gpu_report(clone, 'venv', driver_env)
  assert not [line for line in venv if line.startswith('binds:')] and venv[2] == f'mode: venv; key: {key}'


@pytest.mark.skipif(bool(NO_ROOT_FILESYSTEM), reason=NO_ROOT_FILESYSTEM or 'rootfs')
def test_inside_the_root_filesystem_the_driver_libraries_load_by_soname(clone, fake_driver, tmp_path):
  driver_env, _ = fake_driver
  repo, environ = clone
  key = gpu_report(clone, 'rootfs', driver_env)[2].split('key: ')[1]
  root = glob.glob(str(tmp_path / 'cache' / 'rootfs-*'))[0]
  os.rename(root, tmp_path / 'cache' / f'rootfs-{key}')  # the environment made for this host
  done = subprocess.run(
      ['bash', str(repo / 'scripts' / 'env.sh'), 'run', 'bash', '-c',
       'echo "$LD_LIBRARY_PATH" && cat /run/cns-nvidia/libcuda.so.1 /run/cns-nvidia/libnvidia-ml.so.1 '
       '&& ls /run/cns-nvidia'],
      cwd=tmp_path, env=dict(environ, CNS_ENV_MODE='rootfs', **driver_env), capture_output=True, text=True,
      timeout=60)
  assert done.returncode == 0, done.stderr
  assert done.stdout.splitlines() == [
      '/run/cns-nvidia', 'fake libcuda.so.550.54.15', 'fake libnvidia-ml.so.550.54.15',
      'libcuda.so.1', 'libnvidia-ml.so.1', 'libnvidia-ptxjitcompiler.so.1']
  assert not os.listdir(tmp_path / 'cache' / f'rootfs-{key}' / 'run' / 'cns-nvidia')  # nothing left behind


def test_doctor_says_what_tensorflow_sees_and_why_it_picks_its_profile(monkeypatch):
  from cns_vaegan.pipeline import doctor  # pylint: disable=import-outside-toplevel
  monkeypatch.delenv('TF_CONFIG', raising=False)
  lines = doctor.report()
  assert lines[0].startswith('TensorFlow 2.') and 'CUDA' in lines[0] and 'cuDNN' in lines[0]
  assert lines[1].startswith('libcuda.so.1 ')
  assert any(line.startswith('device /physical_device:CPU:0') for line in lines)
  onednn = 'on' if os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '1' else ''
  assert any(line.startswith(f'CPU kernels: oneDNN {onednn}') for line in lines), lines
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  expected = 'gpu' if tf.config.list_physical_devices('GPU') else 'cpu'
  assert lines[-1].startswith(f"--profile auto picks '{expected}': "), lines
  monkeypatch.setenv('TF_CONFIG', '{"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 1}}')
  assert doctor.report()[-1] == 'TF_CONFIG: worker-1 of 2 workers (chief: False)'
