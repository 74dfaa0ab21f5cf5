"""Writes one file per kind of bad glyph input, for the ingestion tests."""
import os


def write_bad_glyph_files(folder) -> dict:
  """Writes one file per kind of bad input; returns {file name: expected reason fragment}."""
  import io
  from PIL import Image
  folder = str(folder)
  os.makedirs(folder, exist_ok=True)

  def png(mode, size=(16, 16), value=128, **save):
    buffer = io.BytesIO()
    Image.new(mode, size, value).save(buffer, format='PNG', **save)
    return buffer.getvalue()

  good = png('L')
  files = {
      'U22823.png': (good[: len(good) // 2], 'unreadable image'),           # truncated 大
      'U23567.png': (b'', 'empty file'),                                      # 小
      'U23665.png': (b'this is not an image\n', 'unreadable image'),          # 山, text
      'notes.txt': (b'a README someone left here\n', 'does not name a character'),
      'U24029.png': (png('I;16', value=4000), "unsupported PNG mode 'I;16'"),  # 川, 16-bit
      'U26085.png': (_jpeg_bytes(), 'not a PNG (it is JPEG)'),               # 日
  }
  for name, (data, _) in files.items():
    with open(os.path.join(folder, name), 'wb') as f:
      f.write(data)
  return {name: reason for name, (_, reason) in files.items()}


def _jpeg_bytes() -> bytes:
  import io
  from PIL import Image
  buffer = io.BytesIO()
  Image.new('L', (16, 16), 200).save(buffer, format='JPEG')
  return buffer.getvalue()
