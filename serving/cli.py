"""Command line for the served model: type characters, get the seed's figures as PNGs.

The characters are rendered with the dataset's font (as the built-in dataset was),
sent to the model server over gRPC, and the answers composed into figures:

    python -m cns_vaegan.serving.cli arith 酪 鉻 鉸          # four-panel a·(A − B + C)
    python -m cns_vaegan.serving.cli interpolate 你 妳
    python -m cns_vaegan.serving.cli sample -n 64
    python -m cns_vaegan.serving.cli reconstruct 你好嗎
    python -m cns_vaegan.serving.cli batch data/arithmetic_tuples.txt
    python -m cns_vaegan.serving.cli status

--server points at TF Serving or the embedded server (default 127.0.0.1:8500).
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


class Figures:
  """Renders characters, calls the server, writes PNG figures into out_dir."""

  def __init__(self, client: GlyphClient, renderer: render_glyphs.GlyphRenderer, out_dir: str):
    self.client, self.renderer, self.out_dir = client, renderer, out_dir
    os.makedirs(out_dir, exist_ok=True)

  def _pngs(self, characters: str) -> List[bytes]:
    return [self.renderer.render_png(c) for c in characters]

  def _pixels(self, characters: str) -> np.ndarray:
    return np.stack([np.asarray(Image.open(io.BytesIO(p)).convert('L'), np.float32)[..., None] / 255.0
                     for p in self._pngs(characters)])

  def _save(self, image: np.ndarray, name: str) -> str:
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
    images = self.client.sample(n, seed)['images']
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


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--server', default='127.0.0.1:8500', help='host:port of the gRPC API')
  parser.add_argument('--model-name', default='cns_vaegan')
  parser.add_argument('--model-version', type=int, help='ask for this version (default: latest)')
  parser.add_argument('--font', default=render_glyphs.DEFAULT_FONT)
  parser.add_argument('--size', type=int, default=render_glyphs.DEFAULT_SIZE,
                      help='render size of typed characters (the server resizes to its model)')
  parser.add_argument('--out', default='figures', help='folder for the PNG figures')
  parser.add_argument('--timeout', type=float, default=30.0, help='deadline of each call, seconds')
  commands = parser.add_subparsers(dest='command', required=True)
  arith = commands.add_parser('arith', help='a·(A − B + C): the seed\'s four-panel figure')
  arith.add_argument('characters', nargs='+', help='A B C (or ABC)')
  arith.add_argument('--coefficients', default='',
                     help='comma-separated a values (default: the model\'s, the seed\'s 0.25,0.5,1,2,3)')
  interpolate = commands.add_parser('interpolate', help='a strip from one character to another')
  interpolate.add_argument('characters', nargs='+', help='A B (or AB)')
  interpolate.add_argument('--steps', type=int, default=8)
  sample = commands.add_parser('sample', help="a grid of sampled glyphs (the model's sampling distribution)")
  sample.add_argument('-n', type=int, default=64)
  sample.add_argument('--seed', type=int, default=0)
  reconstruct = commands.add_parser('reconstruct', help='characters and their reconstructions')
  reconstruct.add_argument('characters')
  batch = commands.add_parser('batch', help='arith for every "A B C" line of a test.txt file')
  batch.add_argument('file', nargs='?', default=arithmetic_tuples.DEFAULT_PATH)
  commands.add_parser('status', help='the served versions and their states')
  args = parser.parse_args(argv)

  with GlyphClient(args.server, args.model_name, args.model_version, args.timeout) as client:
    try:
      if args.command == 'status':
        for status in client.model_status():
          print(f'{args.model_name} version {status["version"]}: {status["state"]} {status["error"]}')
        return 0
      figures = Figures(client, render_glyphs.GlyphRenderer(args.font, args.size), args.out)
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
