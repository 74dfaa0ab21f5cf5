"""What TensorFlow sees in this environment (`make doctor`, `scripts/env.sh doctor`).

The GPUs it lists, the CUDA and cuDNN it was built for, whether the driver's libcuda
loads, and the profile `--profile auto` picks from that, with the reason: so a GPU host
that trains on its CPU says why before a long run does.
"""
import ctypes
import os
import sys

from cns_vaegan.components import quiet_start
from cns_vaegan.components.trainer import cluster
from cns_vaegan.pipeline import configs


def libcuda() -> str:
  """Whether the driver's libcuda.so.1 loads here (what TensorFlow dlopens), and why not."""
  try:
    ctypes.CDLL('libcuda.so.1')
    return 'loads'
  except OSError as error:
    return f'does not load ({error})'


def cpu_kernels() -> str:
  """Whether TensorFlow's oneDNN CPU kernels are on (TF_ENABLE_ONEDNN_OPTS; scripts/env.sh
  turns them on: on AVX2-only CPUs TensorFlow leaves them off, and trains several times slower)."""
  from cns_vaegan.components.trainer import training  # pylint: disable=import-outside-toplevel
  state = 'on' if training.onednn_enabled() else 'off'
  return (f'CPU kernels: oneDNN {state} (TF_ENABLE_ONEDNN_OPTS={os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset")}); '
          f'BF16 instructions: {"yes: the cpu profile trains in bfloat16" if training.cpu_has_bf16() else "no: the cpu profile trains in float32"}')


def report() -> list:
  with quiet_start.held_back():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    gpus = tf.config.list_physical_devices('GPU')
  build = tf.sysconfig.get_build_info()
  lines = [f'TensorFlow {tf.__version__}: built with CUDA {build.get("cuda_version", "-")}, '
           f'cuDNN {build.get("cudnn_version", "-")} (CUDA build: {build.get("is_cuda_build", False)})',
           f'libcuda.so.1 {libcuda()}; LD_LIBRARY_PATH={os.environ.get("LD_LIBRARY_PATH", "")}']
  for device in tf.config.list_physical_devices():
    details = tf.config.experimental.get_device_details(device) if device.device_type == 'GPU' else {}
    extra = ', '.join(f'{k} {v}' for k, v in details.items())
    lines.append(f'device {device.name}' + (f' ({extra})' if extra else ''))
  lines.append(cpu_kernels())
  profile = configs.DEFAULT_PROFILE['gpu' if gpus else 'cpu']
  if gpus:
    why = f'{len(gpus)} GPU(s) visible: MirroredStrategy over all of them'
  elif not build.get('is_cuda_build'):
    why = 'no GPU: this TensorFlow has no CUDA support'
  elif 'does not load' in libcuda():
    why = ('no GPU: the NVIDIA driver\'s libcuda.so.1 is not visible (no driver, or, in the root '
           'filesystem, scripts/env.sh found none to bind: see `scripts/env.sh gpu`)')
  else:
    why = 'no GPU: the driver loads but TensorFlow lists none (CUDA libraries missing? see its log above)'
  lines.append(f'--profile auto picks {profile!r}: {why}')
  role = cluster.role()
  if role.num_workers > 1:
    lines.append(f'TF_CONFIG: {role.name} of {role.num_workers} workers (chief: {role.is_chief})')
  return lines


def main() -> None:
  print('\n'.join(report()))
  sys.stdout.flush()


if __name__ == '__main__':
  main()
