"""Runs the pipeline on this machine with TFX's LocalDagRunner.

    python -m cns_vaegan.pipeline.local_runner                      # built-in dataset
    python -m cns_vaegan.pipeline.local_runner --data-root ~/my_pngs
    python -m cns_vaegan.pipeline.local_runner -- --runner=FlinkRunner --flink_master=host:8081

Arguments after `--` go to Apache Beam unchanged (DirectRunner in multi-processing
mode unless they say otherwise). ML Metadata lives in SQLite under --output-dir, so a
second run with nothing changed reuses every cached result.
"""
import argparse
import os
import sys
from typing import List, Optional

from absl import logging
from tfx import v1 as tfx

from cns_vaegan.data import render_glyphs
from cns_vaegan.pipeline import configs, pipeline


def parse_args(argv: Optional[List[str]] = None):
  argv = list(sys.argv[1:] if argv is None else argv)
  beam_args: List[str] = []
  if '--' in argv:
    split = argv.index('--')
    argv, beam_args = argv[:split], argv[split + 1:]
  parser = argparse.ArgumentParser(
      description='Run the cns-vaegan TFX pipeline locally.',
      epilog='Arguments after -- are passed to Apache Beam (beam_pipeline_args).')
  parser.add_argument('--data-root', default=None,
                      help='folder of glyph PNGs (default: the built-in TW-Kai set, rendered if missing)')
  parser.add_argument('--output-dir', default=configs.OUTPUT_DIR,
                      help='where artifacts and the ML Metadata SQLite store go (default: %(default)s)')
  parser.add_argument('--pipeline-name', default=configs.PIPELINE_NAME)
  parser.add_argument('--image-size', type=int, default=configs.IMAGE_SIZE)
  parser.add_argument('--image-channels', type=int, default=configs.IMAGE_CHANNELS, choices=(1, 3))
  parser.add_argument('--eval-percent', type=int, default=configs.EVAL_PERCENT)
  parser.add_argument('--no-cache', action='store_true', help='re-run every component')
  args = parser.parse_args(argv)
  args.beam_pipeline_args = configs.DEFAULT_BEAM_PIPELINE_ARGS + beam_args
  return args


def ensure_builtin_dataset(data_root: str = configs.BUILTIN_DATA_ROOT) -> str:
  """Renders the built-in TW-Kai dataset on first use."""
  if not os.path.isdir(data_root) or not os.listdir(data_root):
    logging.info('Rendering the built-in dataset into %s', data_root)
    render_glyphs.render_dataset(data_root, size=configs.IMAGE_SIZE)
  return data_root


def run(args) -> None:
  data_root = args.data_root or ensure_builtin_dataset()
  if '://' not in data_root and not os.path.isdir(data_root):
    raise SystemExit(f'local_runner: --data-root {data_root} is not a folder')
  tfx.orchestration.LocalDagRunner().run(pipeline.create_pipeline(
      pipeline_name=args.pipeline_name,
      pipeline_root=configs.pipeline_root(args.output_dir, args.pipeline_name),
      data_root=data_root,
      image_size=args.image_size,
      image_channels=args.image_channels,
      eval_percent=args.eval_percent,
      beam_pipeline_args=args.beam_pipeline_args,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          configs.metadata_path(args.output_dir, args.pipeline_name)),
      enable_cache=not args.no_cache,
  ))


def main(argv: Optional[List[str]] = None) -> None:
  logging.set_verbosity(logging.INFO)
  run(parse_args(argv))


if __name__ == '__main__':
  main()
