"""Renders the built-in dataset: one grayscale PNG per CJK ideograph a font covers.

The seed's `TWKai98_32x32` set is the CNS TW-Kai font drawn with PIL at font size 32
at (0, 0), a white glyph on black, one file per character named U<decimal code point>.
Debian ships that font (package fonts-cns11643-kai), so the same set can be made here:

    python -m cns_vaegan.data.render_glyphs --out data/glyphs/twkai_32

Output is deterministic: the same font and flags give the same bytes. Next to the
PNGs the folder gets `dataset.json` naming the font and its SHA-256 (the ingestion
component skips nothing silently, so the manifest goes beside the PNG folder).
"""
import argparse
import hashlib
import io
import json
import os
import sys

from fontTools import ttLib
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from cns_vaegan.data import glyph_names

DEFAULT_FONT = '/usr/share/fonts/truetype/cns11643/TW-Kai-98_1.ttf'
DEFAULT_SIZE = 32
# CJK Unified Ideographs as of Unicode 6.1, the range the CNS TW-Kai 98 font covers.
CJK_FIRST, CJK_LAST = 0x4E00, 0x9FCC
MANIFEST_NAME = 'dataset.json'


def font_sha256(font_path: str) -> str:
  with open(font_path, 'rb') as f:
    return hashlib.sha256(f.read()).hexdigest()


def covered_characters(font_path: str, first: int = CJK_FIRST, last: int = CJK_LAST) -> list:
  """Characters in [first, last] that the font's cmap maps to a glyph (any face of a TTC)."""
  code_points = set()
  fonts = (ttLib.TTCollection(font_path).fonts if font_path.lower().endswith('.ttc')
           else [ttLib.TTFont(font_path, lazy=True)])
  for font in fonts:
    cmap = font.getBestCmap() or {}
    code_points.update(cp for cp in cmap if first <= cp <= last)
  return [chr(cp) for cp in sorted(code_points)]


class GlyphRenderer:
  """Draws characters as the seed did: white on black, font size = image size, at (0, 0)."""

  def __init__(self, font_path: str = DEFAULT_FONT, size: int = DEFAULT_SIZE):
    if not os.path.isfile(font_path):
      raise FileNotFoundError(
          f'font not found: {font_path} (apt-get install fonts-cns11643-kai, or pass --font)')
    self.font_path = font_path
    self.size = size
    self._font = ImageFont.truetype(font_path, size)

  def render(self, character: str) -> Image.Image:
    image = Image.new('L', (self.size, self.size), 0)
    ImageDraw.Draw(image).text((0, 0), character, fill=255, font=self._font)
    return image

  def render_png(self, character: str) -> bytes:
    buffer = io.BytesIO()
    # No timestamps or text chunks, so the bytes depend only on the pixels.
    self.render(character).save(buffer, format='PNG', optimize=False)
    return buffer.getvalue()


def render_dataset(out_dir: str, font_path: str = DEFAULT_FONT, size: int = DEFAULT_SIZE,
                   characters=None, limit=None, progress: bool = True) -> dict:
  """Writes one PNG per character into out_dir and returns the manifest it wrote beside them."""
  renderer = GlyphRenderer(font_path, size)
  covered = covered_characters(font_path)
  if characters is None:
    wanted = covered
    missing = []
  else:
    covered_set = set(covered)
    wanted = [c for c in dict.fromkeys(characters) if c in covered_set]
    missing = [c for c in dict.fromkeys(characters) if c not in covered_set]
  if limit is not None:
    wanted = wanted[:limit]
  if not wanted:
    raise ValueError(f'{font_path} covers none of the requested characters')
  os.makedirs(out_dir, exist_ok=True)
  for character in tqdm(wanted, desc='rendering glyphs', unit='glyph', disable=not progress):
    with open(os.path.join(out_dir, glyph_names.filename_for(character)), 'wb') as f:
      f.write(renderer.render_png(character))
  manifest = {
      'font_path': os.path.abspath(font_path),
      'font_sha256': font_sha256(font_path),
      'image_size': size,
      'num_glyphs': len(wanted),
      'font_covers_in_range': len(covered),
      'range': [f'U+{CJK_FIRST:04X}', f'U+{CJK_LAST:04X}'],
      'requested_but_not_in_font': missing,
  }
  manifest_path = os.path.join(os.path.dirname(os.path.abspath(out_dir)),
                               os.path.basename(os.path.normpath(out_dir)) + '.' + MANIFEST_NAME)
  with open(manifest_path, 'w', encoding='utf-8') as f:
    json.dump(manifest, f, ensure_ascii=False, indent=2, sort_keys=True)
  return manifest


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--out', required=True, help='folder for the PNGs (created)')
  parser.add_argument('--font', default=DEFAULT_FONT, help='TTF/TTC/OTF file (default: CNS TW-Kai)')
  parser.add_argument('--size', type=int, default=DEFAULT_SIZE, help='image side in pixels (default 32)')
  parser.add_argument('--limit', type=int, help='render only the first N covered characters')
  parser.add_argument('--chars', help='UTF-8 text file; render only the characters in it')
  parser.add_argument('--no-progress', action='store_true')
  args = parser.parse_args(argv)
  characters = None
  if args.chars:
    with open(args.chars, encoding='utf-8') as f:
      characters = [c for c in f.read() if not c.isspace()]
  try:
    manifest = render_dataset(args.out, args.font, args.size, characters, args.limit,
                              progress=not args.no_progress)
  except (FileNotFoundError, ValueError) as error:
    print(f'render_glyphs: {error}', file=sys.stderr)
    return 2
  print(f'wrote {manifest["num_glyphs"]} glyphs of {manifest["image_size"]}px to {args.out} '
        f'(font sha256 {manifest["font_sha256"][:16]}…)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
