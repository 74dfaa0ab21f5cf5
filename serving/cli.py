"""Command line for the served model: type characters, get the seed's figures as PNGs.

The characters are rendered with the dataset's font (as the built-in dataset was),
sent to the model server over gRPC, and the answers composed into figures:

    python -m cns_vaegan.serving.cli arith 酪 鉻 鉸          # four-panel a·(A − B + C)
    python -m cns_vaegan.serving.cli interpolate 你 妳
    python -m cns_vaegan.serving.cli sample -n 64
    python -m cns_vaegan.serving.cli reconstruct 你好嗎
    python -m cns_vaegan.serving.cli batch data/arithmetic_tuples.txt
    python -m cns_vaegan.serving.cli status --server tfserving:8500

--server points at TF Serving or the embedded server (default 127.0.0.1:8500). The flags
before the command (--server, --out, ...) may come after it too. Figures go to --out,
./cns-vaegan-figures by default (in the folder you run it from; ignored by git at the
repository's root), and the CLI prints the path of each file it writes. `sample` asks for
at most --max-batch-size glyphs a request (the server's own cap, which its metadata does
not say: the embedded server's default unless told), the i-th request with seed + i.
"""
import argparse
import io
import os
import sys
from typing import List

import grpc
import numpy as np
from PIL import Image
from tqdm import tqdm

from cns_vaegan.components import glyph_figures
from cns_vaegan.data import arithmetic_tuples, render_glyphs
from cns_vaegan.serving.client import GlyphClient
from cns_vaegan.serving.prediction import MAX_BATCH_SIZE

DEFAULT_OUT = 'cns-vaegan-figures'


class Figures:
  """Renders characters, calls the server, writes PNG figures into out_dir; returns their paths."""

  def __init__(self, client: GlyphClient, renderer: render_glyphs.GlyphRenderer, out_dir: str,
               max_batch_size: int = MAX_BATCH_SIZE):
    self.client, self.renderer, self.out_dir = client, renderer, os.path.abspath(out_dir)
    self.max_batch_size = max_batch_size
    os.makedirs(self.out_dir, exist_ok=True)

  def _pngs(self, characters: str) -> List[bytes]:
    return [self.renderer.render_png(c) for c in characters]

  def _pixels(self, characters: str) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(p)).convert('L'), np.float32)[..., None] / 255.0
                     for p in self._pngs(characters)])

  def _save(self, image: np.ndarray, name: str) -> str:
    """Writes the figure; its absolute path, which the CLI prints."""
    return glyph_figures.save_png(image, os.path.join(self.out_dir, name))

  def arithmetic(self, a: str, b: str, c: str, coefficients=()) -> str:
    pngs = self._pngs(a + b + c)
    out = self.client.arithmetic(pngs[:1], pngs[1:2], pngs[2:], coefficients)
    size = out['images'].shape[2:4]  # the model's size; typed glyphs may be rendered larger
    inputs = np.stack([self._resize(x, size) for x in self._pixels(a + b + c)])
    return self._save(glyph_figures.arithmetic_panel(inputs, out), f'arith_{a}-{b}+{c}.png')

  def interpolate(self, start: str, end: str, steps: int) -> str:
    strip = self.client.interpolate(self._pngs(start), self._pngs(end), steps)['images'][0]
    figure = glyph_figures.grid(glyph_figures.from_unit_range(strip), columns=len(strip))
    return self._save(figure, f'interpolate_{start}-{end}.png')

  def sample(self, n: int, seed: int) -> str:
    """n glyphs in requests of at most max_batch_size, the i-th with seed + i (one seed would
    draw the same codes in every request)."""
    sizes = [min(self.max_batch_size, n - start) for start in range(0, n, self.max_batch_size)]
    with tqdm(total=n, desc='sample', unit='glyph', disable=len(sizes) < 2) as progress:
      parts = []
      for index, size in enumerate(sizes):
        parts.append(self.client.sample(size, seed + index)['images'])
        progress.update(size)
    images = np.concatenate(parts)
    figure = glyph_figures.grid(glyph_figures.from_unit_range(images), columns=int(np.ceil(np.sqrt(n))))
    return self._save(figure, f'samples_n{n}_seed{seed}.png')

  def reconstruct(self, characters: str) -> str:
    out = self.client.reconstruct(self._pngs(characters))['images']
    size = out.shape[1:3]
    originals = np.stack([self._resize(x, size) for x in self._pixels(characters)])
    figure = glyph_figures.panel([glyph_figures.from_unit_range(originals),
                                  glyph_figures.from_unit_range(out)])
    return self._save(figure, f'reconstruct_{characters}.png')

  @staticmethod
  def _resize(image: np.ndarray, size) -> np.ndarray:
    if image.shape[:2] == tuple(size):
      return image
    pil = Image.fromarray(glyph_figures.from_unit_range(image)[..., 0]).resize(
        (size[1], size[0]), Image.Resampling.LANCZOS)
    return np.asarray(pil, np.float32)[..., None] / 255.0


def _characters(text: str, count: int, what: str) -> str:
  text = ''.join(text.split())
  if len(text) != count:
    raise SystemExit(f'cli: {what} takes {count} character(s), got {text!r}')
  return text


# The flags every command takes, before or after its name: (flag, default, argparse keywords).
GLOBAL_FLAGS = [
    ('--server', '127.0.0.1:8500', dict(help='host:port of the gRPC API (default 127.0.0.1:8500)')),
    ('--model-name', 'cns_vaegan', dict(help='the served model\'s name (default cns_vaegan)')),
    ('--model-version', None, dict(type=int, help='ask for this version (default: latest)')),
    ('--font', render_glyphs.DEFAULT_FONT, dict(help='font the characters are rendered with '
                                                '(default: the dataset\'s)')),
    ('--size', render_glyphs.DEFAULT_SIZE,
     dict(type=int, help='render size of typed characters (the server resizes to its model)')),
    ('--out', DEFAULT_OUT, dict(help=f'folder for the PNG figures (default ./{DEFAULT_OUT})')),
    ('--timeout', 30.0, dict(type=float, help='deadline of each call, seconds (default 30)')),
    ('--max-batch-size', MAX_BATCH_SIZE,
     dict(type=int, help='glyphs a request may ask for: the server\'s --max-batch-size (default '
                         f'{MAX_BATCH_SIZE}, the embedded server\'s); `sample` splits larger n')),
]


def parse_args(argv=None) -> argparse.Namespace:
  # A parent parser gives the global flags to the main parser and to every command. Their
  # argparse default is SUPPRESS, so a command's parser does not overwrite a value given
  # before the command; the real defaults are filled in after parsing.
  common = argparse.ArgumentParser(add_help=False)
  for flag, _, keywords in GLOBAL_FLAGS:
    common.add_argument(flag, default=argparse.SUPPRESS, **keywords)
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], parents=[common])
  commands = parser.add_subparsers(dest='command', required=True)

  def command(name, **keywords):
    return commands.add_parser(name, parents=[common], **keywords)

  arith = command('arith', help='a·(A − B + C): the seed\'s four-panel figure')
  arith.add_argument('characters', nargs='+', help='A B C (or ABC)')
  arith.add_argument('--coefficients', default='',
                     help='comma-separated a values (default: the model\'s, the seed\'s 0.25,0.5,1,2,3)')
  interpolate = command('interpolate', help='a strip from one character to another')
  interpolate.add_argument('characters', nargs='+', help='A B (or AB)')
  interpolate.add_argument('--steps', type=int, default=8)
  sample = command('sample', help="a grid of sampled glyphs (the model's sampling distribution)")
  sample.add_argument('-n', type=int, default=64)
  sample.add_argument('--seed', type=int, default=0)
  reconstruct = command('reconstruct', help='characters and their reconstructions')
  reconstruct.add_argument('characters')
  batch = command('batch', help='arith for every "A B C" line of a test.txt file')
  batch.add_argument('file', nargs='?', default=arithmetic_tuples.DEFAULT_PATH)
  command('status', help='the served versions and their states')
  args = parser.parse_args(argv)
  for flag, default, _ in GLOBAL_FLAGS:
    if not hasattr(args, flag[2:].replace('-', '_')):
      setattr(args, flag[2:].replace('-', '_'), default)
  if args.max_batch_size < 1:
    parser.error('--max-batch-size must be 1 or more')
  if args.command == 'sample' and args.n < 1:
    parser.error('sample: -n must be 1 or more')
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  with GlyphClient(args.server, args.model_name, args.model_version, args.timeout) as client:
    try:
      if args.command == 'status':
        for status in client.model_status():
          print(f'{args.model_name} version {status["version"]}: {status["state"]} {status["error"]}')
        return 0
      figures = Figures(client, render_glyphs.GlyphRenderer(args.font, args.size), args.out,
                        args.max_batch_size)
      if args.command == 'arith':
        a, b, c = _characters(''.join(args.characters), 3, 'arith')
        coefficients = [float(x) for x in args.coefficients.split(',') if x.strip()]
        print(figures.arithmetic(a, b, c, coefficients))
      elif args.command == 'interpolate':
        start, end = _characters(''.join(args.characters), 2, 'interpolate')
        print(figures.interpolate(start, end, args.steps))
      elif args.command == 'sample':
        print(figures.sample(args.n, args.seed))
      elif args.command == 'reconstruct':
        print(figures.reconstruct(''.join(args.characters.split())))
      elif args.command == 'batch':
        for a, b, c in tqdm(arithmetic_tuples.read_tuples(args.file), desc='arithmetic', unit='tuple'):
          tqdm.write(figures.arithmetic(a, b, c))
    except grpc.RpcError as error:
      print(f'cli: {error.code().name}: {error.details()}', file=sys.stderr)
      return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
