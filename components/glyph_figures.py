"""Image grids and panels of glyphs, as the seed's figures (trainer, evaluator, serving CLI).

Figures are built from uint8 batches (n, h, w, c); convert first with from_model_range
([-1, 1], the networks' range) or from_unit_range ([0, 1], the SavedModel's outputs).
"""
import io
from typing import Sequence

import numpy as np
from PIL import Image

from cns_vaegan.components.glyph_examples import denormalize as from_model_range  # noqa: F401


def from_unit_range(images) -> np.ndarray:
  return np.clip(np.round(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, columns: int, padding: int = 1) -> np.ndarray:
  """(n, h, w, c) uint8 -> one image, row-major, with white gutters of `padding` pixels."""
  n, h, w, c = images.shape
  rows = -(-n // columns)
  out = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    y, x = padding + r * (h + padding), padding + col * (w + padding)
    out[y:y + h, x:x + w] = images[i]
  return out


def panel(rows: Sequence[np.ndarray], padding: int = 1, gap: int = 4) -> np.ndarray:
  """Rows of different lengths, left-aligned, `gap` pixels between rows (the seed's panels)."""
  columns = max(len(row) for row in rows)
  parts = [grid(np.asarray(row), columns, padding) for row in rows]
  c = parts[0].shape[-1]
  spacer = np.full((gap, parts[0].shape[1], c), 255, np.uint8)
  out = [parts[0]]
  for part in parts[1:]:
    out += [spacer, part]
  return np.concatenate(out, axis=0)


def png_bytes(image: np.ndarray) -> bytes:
  image = image[..., 0] if image.shape[-1] == 1 else image
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


def save_png(image: np.ndarray, path: str) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (gfile: works on gs:// too)
  with tf.io.gfile.GFile(path, 'wb') as f:
    f.write(png_bytes(image))
  return path


def arithmetic_panel(inputs, outputs: dict, index: int = 0) -> np.ndarray:
  """The seed's four-panel figure from one triple of the `arithmetic` signature's outputs.

  Rows: the inputs A, B, C; their reconstructions; a·(A − B + C) for each coefficient;
  the input-domain A − B + C. `inputs` is (3, h, w, c) in [0, 1].
  """
  return panel([from_unit_range(inputs), from_unit_range(outputs['reconstructions'][index]),
                from_unit_range(outputs['images'][index]),
                from_unit_range(outputs['input_domain'][index:index + 1])])
