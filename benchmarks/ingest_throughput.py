"""Ingestion throughput: PngExampleGen (Beam) vs a plain single-process Python loop.

Both do the same work per image: read the PNG, decode, convert to the model layout,
build and serialize the tf.train.Example, write gzipped TFRecords. The component
runs as the pipeline runs it (LocalDagRunner, Beam arguments as given, cache off),
so its figure includes TFX and Beam start-up. Prints images/s of each and the ratio.

    make benchmark                         # the full built-in font (20,920 glyphs)
    make benchmark ARGS="--limit 2000 -- --direct_num_workers=2"
"""
import argparse
import os
import sys
import tempfile
import time

import tensorflow as tf
from tfx import v1 as tfx

from cns_vaegan.components import glyph_examples
from cns_vaegan.components.png_example_gen import PngExampleGen
from cns_vaegan.pipeline import configs, local_runner


def plain_loop(files, out_path, size, channels) -> float:
  start = time.perf_counter()
  with tf.io.TFRecordWriter(out_path, options='GZIP') as writer:
    for path in files:
      with open(path, 'rb') as f:
        glyph = glyph_examples.decode_glyph(path, f.read(), size, channels)
      writer.write(glyph_examples.to_example(glyph).SerializeToString())
  return time.perf_counter() - start


def component_run(data_root, work_dir, size, channels, beam_args) -> float:
  pipeline = tfx.dsl.Pipeline(
      pipeline_name='ingest-benchmark',
      pipeline_root=os.path.join(work_dir, 'root'),
      components=[PngExampleGen(input_base=data_root, image_size=size, image_channels=channels)],
      enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          os.path.join(work_dir, 'metadata.db')),
      beam_pipeline_args=beam_args)
  start = time.perf_counter()
  tfx.orchestration.LocalDagRunner().run(pipeline)
  return time.perf_counter() - start


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  beam_extra = []
  if '--' in argv:
    argv, beam_extra = argv[:argv.index('--')], argv[argv.index('--') + 1:]
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--data-root', help='PNG folder (default: the built-in dataset)')
  parser.add_argument('--limit', type=int, help='use only the first N files (a copy is made)')
  parser.add_argument('--image-size', type=int, default=32)
  args = parser.parse_args(argv)
  beam_args = configs.DEFAULT_BEAM_PIPELINE_ARGS + beam_extra

  data_root = args.data_root or local_runner.ensure_builtin_dataset()
  with tempfile.TemporaryDirectory() as work:
    files = sorted(os.path.join(data_root, f) for f in os.listdir(data_root))
    if args.limit:
      files = files[:args.limit]
      subset = os.path.join(work, 'subset')
      os.makedirs(subset)
      for path in files:
        os.symlink(path, os.path.join(subset, os.path.basename(path)))
      data_root = subset
    n = len(files)
    loop_s = plain_loop(files, os.path.join(work, 'plain.tfrecord.gz'), args.image_size, 1)
    component_s = component_run(data_root, work, args.image_size, 1, beam_args)

  print(f'images: {n}  image size: {args.image_size}  cores: {os.cpu_count()}')
  print(f'beam args: {" ".join(beam_args)}')
  print(f'plain single-process loop: {n / loop_s:8.0f} images/s  ({loop_s:.1f} s)')
  print(f'PngExampleGen (LocalDagRunner): {n / component_s:8.0f} images/s  ({component_s:.1f} s, '
        'incl. TFX + Beam start-up)')
  print(f'ratio component / loop: {loop_s / component_s:.2f}x')


if __name__ == '__main__':
  main()
