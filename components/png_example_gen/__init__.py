"""PngExampleGen: a folder of glyph PNGs -> gzipped tf.train.Example TFRecords (train/eval)."""
from cns_vaegan.components.png_example_gen.component import PngExampleGen

__all__ = ['PngExampleGen']
