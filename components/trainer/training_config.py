"""Training hyper-parameters. Defaults are the seed's (tf-vaegan v0.4, the README's figures).

Every field can be set from the pipeline (the Trainer's custom_config['training']) and
from the runners' command line (`--hparam KEY=VALUE`, parsed by `parse_setting`).
"""
import dataclasses
import math
from typing import Any, Dict, Tuple

_TRUE, _FALSE = ('true', '1', 'yes', 'on'), ('false', '0', 'no', 'off')


def _parse_bool(text: str) -> bool:
  """Command-line spellings of a bool; anything else is refused (a non-empty string such as
  'False' must never count as true)."""
  if text.lower() not in _TRUE + _FALSE:
    raise ValueError(text)
  return text.lower() in _TRUE


def _parse_float(text: str) -> float:
  value = float(text)
  if not math.isfinite(value):
    raise ValueError(text)
  return value


# How a command-line value becomes each field type (the fields' annotations), and what it takes.
_PARSERS = {bool: _parse_bool, int: int, float: _parse_float, str: str}
_TAKES = {bool: '/'.join(_TRUE + _FALSE), int: 'a whole number', float: 'a finite number', str: 'text'}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
  batch_size: int = 64                  # global batch, split across replicas
  learning_rate: float = 2e-4           # one Adam per network
  beta1: float = 0.5
  gamma: float = 0.1                    # weight of Dis_l in the decoder's loss (Eq. 9)
  decoder_steps_per_discriminator_step: int = 2   # the seed updates G twice per D step
  # 'sequential': D, then G (decoder_steps_per_discriminator_step times), then E, each from a
  # fresh forward pass (the seed's); 'one_pass': one forward pass, each network the gradient
  # of its own loss (Larsen et al.'s official code; G once per step).
  update_schedule: str = 'sequential'
  # Departures from the seed's losses (its values turn them off):
  kl_weight: float = 1.0                # weight of the KL term in the encoder's loss
  pixel_weight: float = 0.0             # L1 pixel reconstruction term in E's and G's losses
  learning_rate_decay: float = 0.0      # last share of the steps over which the rate falls linearly to 0
  # v0.4 (default) vs v0.4.1 choices:
  latent_tanh: bool = True              # z = tanh(mean + sigma·eps); KL taken before the tanh
  prior_samples_to_discriminator: bool = False   # D also sees G(z_p), z_p from the prior
  prior_samples_to_decoder: bool = False         # G also learns to fool D with G(z_p)
  dis_l_layer: int = 4                  # which discriminator conv gives Dis_l: 4 (last) or 3
  # Where the exported `sample` signature draws codes (no effect on training):
  # 'standard_normal', the prior (the seed's); 'fitted_gaussian', a full-covariance Gaussian
  # fitted to the train split's encoder means after training (sampling.py says why).
  sampling: str = 'standard_normal'
  # Larsen et al.'s official equilibrium gating (off in the seed):
  equilibrium_gating: bool = False
  equilibrium: float = 0.68
  equilibrium_margin: float = 0.35
  # Devices and precision:
  # Mixed precision where the device computes it fast (training.compute_policy): float16 on a
  # GPU, bfloat16 on a CPU with BF16 instructions (AVX512_BF16 or AMX), else float32. Weights
  # stay float32, and the exported model computes in float32.
  mixed_precision: bool = False
  cpu_replicas: int = 0                 # >1: MirroredStrategy over that many logical CPUs (no GPU)
  # Observability and resumption:
  log_every_steps: int = 50
  summary_every_steps: int = 50
  image_summary_every_steps: int = 500
  checkpoint_every_steps: int = 500
  projector_samples: int = 1000         # eval glyphs in the TensorBoard projector
  shuffle_buffer: int = 25000
  seed: int = 0

  def __post_init__(self):
    for name, kind in self.field_types().items():
      value = getattr(self, name)
      # bool is an int in Python, and an int is a fine float; nothing else converts silently.
      accepted = (int, float) if kind is float else (kind,)
      if not isinstance(value, accepted) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f'training: {name} must be a {kind.__name__}, got {value!r}')
    if self.dis_l_layer not in (1, 2, 3, 4):
      raise ValueError(f'training: dis_l_layer must be 1..4, got {self.dis_l_layer}')
    if self.update_schedule not in ('sequential', 'one_pass'):
      raise ValueError(f"training: update_schedule must be 'sequential' or 'one_pass', "
                       f'got {self.update_schedule!r}')
    if self.sampling not in ('standard_normal', 'fitted_gaussian'):
      raise ValueError(f"training: sampling must be 'standard_normal' or 'fitted_gaussian', "
                       f'got {self.sampling!r}')
    if not 0.0 <= self.learning_rate_decay <= 1.0:
      raise ValueError(f'training: learning_rate_decay must be in [0, 1], got {self.learning_rate_decay}')
    if self.batch_size <= 0 or self.decoder_steps_per_discriminator_step < 1:
      raise ValueError('training: batch_size and decoder_steps_per_discriminator_step must be positive')

  @classmethod
  def field_types(cls) -> Dict[str, type]:
    return {f.name: f.type for f in dataclasses.fields(cls)}

  @classmethod
  def valid_keys(cls) -> str:
    """'batch_size (int), learning_rate (float), ...': what an error message offers."""
    return ', '.join(f'{name} ({kind.__name__})' for name, kind in cls.field_types().items())

  @classmethod
  def parse_setting(cls, text: str) -> Tuple[str, Any]:
    """(key, value) from 'key=value' as a runner's --hparam gives it, the value parsed by the
    field's type: true/false/1/0/yes/no/on/off for a bool, an integer, a finite number, or
    the text. An unknown key or a value of the wrong type raises ValueError naming the key,
    its type and every valid key, so a runner refuses it before anything runs."""
    key, sep, value = (part.strip() for part in text.partition('='))
    types = cls.field_types()
    if not sep or not key:
      raise ValueError(f'expected KEY=VALUE, got {text!r}; valid keys: {cls.valid_keys()}')
    if key not in types:
      raise ValueError(f'unknown training setting {key!r}; valid keys: {cls.valid_keys()}')
    kind = types[key]
    try:
      return key, _PARSERS[kind](value)
    except ValueError:
      raise ValueError(f'training setting {key} is a {kind.__name__} ({_TAKES[kind]}), got {value!r}; '
                       f'valid keys: {cls.valid_keys()}') from None

  @classmethod
  def from_dict(cls, values: dict) -> 'TrainingConfig':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values or {}) - known
    if unknown:
      raise ValueError(f'training: unknown keys {sorted(unknown)} (known: {sorted(known)})')
    return cls(**(values or {}))

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)
