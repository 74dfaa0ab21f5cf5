"""The network's shape, as the seed's editable `architecture.json` (img_h/img_w/img_c, ch, z_dim)."""
import dataclasses
import json
import os

DEFAULT_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'architecture.json')


@dataclasses.dataclass(frozen=True)
class Architecture:
  img_h: int = 32
  img_w: int = 32
  img_c: int = 1
  ch: int = 64                 # channels of the first conv; doubled at each of 4 layers
  z_dim: int = 100
  leaky_relu_slope: float = 0.02   # the seed's lrelu leak (not the usual 0.2)
  batch_norm_momentum: float = 0.9  # the seed's slim batch_norm decay
  batch_norm_epsilon: float = 1e-5

  def __post_init__(self):
    if self.img_h % 16 or self.img_w % 16:
      raise ValueError(f'architecture: img_h and img_w must be multiples of 16 (four stride-2 '
                       f'layers), got {self.img_h}x{self.img_w}')
    if self.img_c not in (1, 3):
      raise ValueError(f'architecture: img_c must be 1 or 3, got {self.img_c}')

  @property
  def image_shape(self):
    return (self.img_h, self.img_w, self.img_c)

  @classmethod
  def from_dict(cls, values: dict) -> 'Architecture':
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - known
    if unknown:
      raise ValueError(f'architecture: unknown keys {sorted(unknown)} (known: {sorted(known)})')
    return cls(**values)

  @classmethod
  def load(cls, path: str = DEFAULT_PATH) -> 'Architecture':
    with open(path, encoding='utf-8') as f:
      return cls.from_dict(json.load(f))

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)
