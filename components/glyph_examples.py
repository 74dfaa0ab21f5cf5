"""Glyph PNG -> model-ready pixels -> tf.train.Example, and back.

Shared by the ingestion component (which writes the examples once, already at the
model's size and channel layout) and by everything that reads them (trainer,
evaluator, tests), so the feature layout is defined in exactly one place.

Pixels are stored as floats in [-1, 1] (value / 127.5 - 1), the range the
decoder's tanh produces; the mapping from uint8 is exact and invertible.

Image size is bounded by the same policy as the served model (MAX_IMAGE_SIDE, also the
exported model's default): it is read from the PNG header and refused before any decoding.
"""
import dataclasses
import io
import os
import struct
from typing import Optional, Tuple

import numpy as np
from PIL import Image

from cns_vaegan.data import glyph_names

# Feature names: one place, used by writer and readers.
IMAGE = 'image'
CHARACTER = 'character'
CODE_POINT = 'code_point'
SOURCE_FILE = 'source_file'
HEIGHT = 'height'
WIDTH = 'width'
CHANNELS = 'channels'

# Largest PNG width or height accepted, ingested or served: generous for glyphs (the seed's
# are 64 px), small enough that decoding one costs at most 2048² · 4 bytes.
MAX_IMAGE_SIDE = 2048
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'

# PNG modes with an unambiguous 8-bit reading. 16-bit ('I;16', 'I') and float
# modes are refused rather than guessed at.
_ACCEPTED_MODES = {'1', 'L', 'LA', 'P', 'PA', 'RGB', 'RGBA'}


class BadGlyphFile(ValueError):
  """A file that cannot become a training example; the message says why."""


@dataclasses.dataclass(frozen=True)
class Glyph:
  character: str
  source_file: str
  pixels: np.ndarray  # uint8, (height, width, channels)


def to_model_pixels(image: Image.Image, size: int, channels: int) -> np.ndarray:
  """Any accepted PIL image -> uint8 (size, size, channels): alpha over black, padded square, resized."""
  if image.mode not in _ACCEPTED_MODES:
    raise BadGlyphFile(f'unsupported PNG mode {image.mode!r} (accepted: {sorted(_ACCEPTED_MODES)})')
  if image.mode in ('P', 'PA'):
    image = image.convert('RGBA')
  if image.mode in ('LA', 'RGBA'):  # transparent pixels become background (black)
    background = Image.new(image.mode, image.size, 0)
    image = Image.alpha_composite(background, image)
  image = image.convert('L' if channels == 1 else 'RGB')
  width, height = image.size
  if width != height:  # pad to a square so glyphs keep their aspect ratio
    side = max(width, height)
    square = Image.new(image.mode, (side, side), 0)
    square.paste(image, ((side - width) // 2, (side - height) // 2))
    image = square
  if image.size != (size, size):
    image = image.resize((size, size), Image.Resampling.LANCZOS)
  pixels = np.asarray(image, dtype=np.uint8)
  return pixels.reshape(size, size, channels)


def png_size(data: bytes) -> Optional[Tuple[int, int]]:
  """(width, height) from a PNG's IHDR chunk, without decoding; None if `data` is no PNG."""
  if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b'IHDR':
    return None
  return struct.unpack('>II', data[16:24])


def decode_glyph(path: str, png_bytes: bytes, size: int, channels: int,
                 max_side: int = MAX_IMAGE_SIDE) -> Glyph:
  """Reads one glyph file; raises BadGlyphFile naming the file and the reason.

  A PNG wider or taller than max_side is refused from its header, before decoding, and any
  decoder failure (PIL raises many types, e.g. DecompressionBombError) is a BadGlyphFile.
  """
  name = os.path.basename(path)
  try:
    character = glyph_names.character_from_filename(path)
  except ValueError as error:
    raise BadGlyphFile(str(error)) from None
  if not png_bytes:
    raise BadGlyphFile(f'{name}: empty file')
  header = png_size(png_bytes)
  if header and max(header) > max_side:
    raise BadGlyphFile(f'{name}: {header[0]}x{header[1]} px PNG, over the {max_side} px a side '
                       'limit (read from its header, not decoded)')
  try:
    with Image.open(io.BytesIO(png_bytes)) as image:
      if image.format != 'PNG':
        raise BadGlyphFile(f'{name}: not a PNG (it is {image.format})')
      image.load()  # decodes every byte: truncated files fail here
      pixels = to_model_pixels(image, size, channels)
  except BadGlyphFile as error:
    raise BadGlyphFile(str(error) if str(error).startswith(name) else f'{name}: {error}') from None
  except Exception as error:  # pylint: disable=broad-except  (any decoder failure is bad input)
    raise BadGlyphFile(f'{name}: unreadable image ({type(error).__name__}: {error})') from None
  return Glyph(character=character, source_file=path, pixels=pixels)


def normalize(pixels: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]."""
  return pixels.astype(np.float32) / 127.5 - 1.0


def denormalize(values: np.ndarray) -> np.ndarray:
  """float [-1, 1] -> uint8 [0, 255]; the exact inverse of normalize on its outputs."""
  return np.clip(np.round((np.asarray(values) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def to_example(glyph: Glyph):
  """The tf.train.Example the ingestion component writes for one glyph."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (keeps decode-only users light)
  height, width, channels = glyph.pixels.shape
  feature = tf.train.Feature
  return tf.train.Example(features=tf.train.Features(feature={
      IMAGE: feature(float_list=tf.train.FloatList(value=normalize(glyph.pixels).ravel())),
      CHARACTER: feature(bytes_list=tf.train.BytesList(value=[glyph.character.encode('utf-8')])),
      CODE_POINT: feature(int64_list=tf.train.Int64List(value=[ord(glyph.character)])),
      SOURCE_FILE: feature(bytes_list=tf.train.BytesList(value=[glyph.source_file.encode('utf-8')])),
      HEIGHT: feature(int64_list=tf.train.Int64List(value=[height])),
      WIDTH: feature(int64_list=tf.train.Int64List(value=[width])),
      CHANNELS: feature(int64_list=tf.train.Int64List(value=[channels])),
  }))


def feature_spec(size: int, channels: int) -> dict:
  """tf.io.parse_example spec for the examples, images as (size, size, channels) floats."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {
      IMAGE: tf.io.FixedLenFeature([size, size, channels], tf.float32),
      CHARACTER: tf.io.FixedLenFeature([], tf.string),
      CODE_POINT: tf.io.FixedLenFeature([], tf.int64),
      SOURCE_FILE: tf.io.FixedLenFeature([], tf.string),
  }


def list_files(patterns) -> list:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  files = sorted(f for pattern in patterns for f in tf.io.gfile.glob(pattern))
  if not files:
    raise ValueError(f'no TFRecord files match {patterns}')
  return files


def read_examples(patterns, size: int, channels: int):
  """tf.data of parsed examples ({'image', 'character', ...}) from gzipped TFRecords, read in parallel."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = feature_spec(size, channels)
  return (tf.data.TFRecordDataset(list_files(patterns), compression_type='GZIP',
                                  num_parallel_reads=tf.data.AUTOTUNE)
          .map(lambda record: tf.io.parse_single_example(record, spec),
               num_parallel_calls=tf.data.AUTOTUNE))


def first_examples(patterns, size: int, channels: int, n: int) -> dict:
  """The first n examples as numpy arrays ({'image', 'character', ...}), for figures and checks."""
  batch = next(iter(read_examples(patterns, size, channels).batch(n)), None)
  if batch is None:
    raise ValueError(f'no examples in {patterns}')
  return {key: value.numpy() for key, value in batch.items()}
