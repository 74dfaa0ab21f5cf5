"""Image grids and strips of glyphs, as the seed's figures (shared by trainer and evaluator).

Inputs are batches in [-1, 1] (the model's range), shape (n, h, w, c); outputs uint8.
"""
import io

import numpy as np
from PIL import Image

from cns_vaegan.components.glyph_examples import denormalize as to_uint8


def grid(images, columns: int, padding: int = 1) -> np.ndarray:
  """(n, h, w, c) -> one (rows·(h+p), columns·(w+p), c) uint8 image, row-major, white gutters."""
  images = to_uint8(images)
  n, h, w, c = images.shape
  rows = -(-n // columns)
  out = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, columns)
    y, x = padding + r * (h + padding), padding + col * (w + padding)
    out[y:y + h, x:x + w] = images[i]
  return out


def png_bytes(image: np.ndarray) -> bytes:
  image = image[..., 0] if image.shape[-1] == 1 else image
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


def save_png(image: np.ndarray, path: str) -> str:
  with open(path, 'wb') as f:
    f.write(png_bytes(image))
  return path
