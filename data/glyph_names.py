"""Which character a glyph PNG shows, from its file name.

The seed's CNS set names each file after the character's decimal code point
(`U20320.png` is U+4F60 你). Other folders of glyphs often use hex names or the
character itself, so those are understood too; anything else is not a glyph.
"""
import os
import re

_DECIMAL = re.compile(r'^U(\d+)$')                      # U20320  (the seed's names)
_HEX = re.compile(r'^(?:U\+|u\+|uni|U_)([0-9A-Fa-f]{4,6})$')  # U+4F60, uni4F60


def filename_for(character: str, extension: str = '.png') -> str:
  """The seed's file name for `character`: U<decimal code point><extension>."""
  if len(character) != 1:
    raise ValueError(f'expected one character, got {character!r}')
  return f'U{ord(character)}{extension}'


def character_from_filename(path: str) -> str:
  """The character a glyph file shows, or ValueError saying why the name is not understood."""
  stem = os.path.splitext(os.path.basename(path))[0]
  match = _DECIMAL.match(stem) or _HEX.match(stem)
  if match:
    code_point = int(match.group(1), 10 if match.re is _DECIMAL else 16)
    if code_point > 0x10FFFF:
      raise ValueError(f'{os.path.basename(path)}: code point {code_point} is beyond Unicode')
    return chr(code_point)
  if len(stem) == 1:  # 你.png
    return stem
  raise ValueError(
      f'{os.path.basename(path)}: file name does not name a character '
      '(expected U<decimal code point>, U+<hex>, uni<hex> or the character itself)')
