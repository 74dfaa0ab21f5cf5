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
      'U26376.png': (png_bomb(16000), 'over the 2048 px a side limit'),      # 月, 249 KB: 256 M px
      'U26408.png': (png_with_header(9000, 9000, b'\x78\x9c'), 'over the 2048 px a side limit'),  # 木
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


def png_chunk(kind: bytes, data: bytes) -> bytes:
  import struct
  import zlib
  return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))


def png_with_header(width: int, height: int, idat: bytes = b'', bit_depth: int = 8,
                    colour_type: int = 0) -> bytes:
  """A PNG whose IHDR says width x height, followed by `idat` as it is (possibly wrong)."""
  import struct
  header = struct.pack('>IIBBBBB', width, height, bit_depth, colour_type, 0, 0, 0)
  return (b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', header) + png_chunk(b'IDAT', idat)
          + png_chunk(b'IEND', b''))


_BOMBS = {}


def png_bomb(side: int) -> bytes:
  """A valid all-black side x side grayscale PNG, zlib level 9: 16000 px is 249 KB for 256 M pixels."""
  import zlib
  if side not in _BOMBS:
    compressor, row = zlib.compressobj(9), b'\x00' * (side + 1)  # filter byte 0, then black
    rows_per_chunk = max(1, (1 << 22) // len(row))
    parts = [compressor.compress(row * min(rows_per_chunk, side - start))
             for start in range(0, side, rows_per_chunk)]
    _BOMBS[side] = png_with_header(side, side, b''.join(parts) + compressor.flush())
  return _BOMBS[side]
