"""PngExampleGen: TFX's file-based ExampleGen, reading glyph PNGs.

It keeps FileBasedExampleGen's driver, so the input folder is fingerprinted and a
re-run over unchanged PNGs is a cache hit while any changed file re-ingests, and
its standard `Examples` output, so TFX's own StatisticsGen/SchemaGen/Trainer read it.
Execution parameters are added: the model's image size and channel count, because
images are converted to the model's layout here, once, and the largest PNG side accepted.
"""
from typing import Optional

from tfx.components.example_gen import component as example_gen_component
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import component_spec, standard_component_specs

from cns_vaegan.components import glyph_examples
from cns_vaegan.components.png_example_gen import executor


class PngExampleGenSpec(standard_component_specs.FileBasedExampleGenSpec):
  """FileBasedExampleGen's spec plus the target image layout."""
  PARAMETERS = {
      **standard_component_specs.FileBasedExampleGenSpec.PARAMETERS,
      executor.IMAGE_SIZE_KEY: component_spec.ExecutionParameter(type=int),
      executor.IMAGE_CHANNELS_KEY: component_spec.ExecutionParameter(type=int),
      executor.MAX_IMAGE_SIDE_KEY: component_spec.ExecutionParameter(type=int, optional=True),
  }


def split_config(eval_percent: int) -> example_gen_pb2.Output:
  """train/eval split by a hash of the character, so a character never moves between splits."""
  if not 0 < eval_percent < 100:
    raise ValueError(f'eval_percent must be between 1 and 99, got {eval_percent}')
  return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(
      splits=[example_gen_pb2.SplitConfig.Split(name='train', hash_buckets=100 - eval_percent),
              example_gen_pb2.SplitConfig.Split(name='eval', hash_buckets=eval_percent)],
      partition_feature_name=glyph_examples.CHARACTER))


class PngExampleGen(example_gen_component.FileBasedExampleGen):
  """Ingests a folder of glyph PNGs (one character per file) into train/eval Examples."""

  SPEC_CLASS = PngExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

  def __init__(self, input_base: str, image_size: int = 32, image_channels: int = 1,
               eval_percent: int = 10, input_pattern: str = '*',
               output_config: Optional[example_gen_pb2.Output] = None,
               max_image_side: int = glyph_examples.MAX_IMAGE_SIDE):
    """Args:
      input_base: folder of PNGs (local path or any filesystem TFX/Beam can read, e.g. gs://).
      image_size: side of the square images the model takes; every PNG is converted to it.
      image_channels: 1 (grayscale) or 3 (RGB).
      eval_percent: share of characters in the eval split (by hash of the character).
      input_pattern: glob of the files to read, relative to input_base. Every matching
        file is either an example or listed as bad in the ingestion report.
      output_config: a full example_gen_pb2.Output, overriding eval_percent.
      max_image_side: a PNG wider or taller is listed as bad from its header, never decoded.
    """
    if image_size <= 0:
      raise ValueError(f'image_size must be positive, got {image_size}')
    if image_channels not in (1, 3):
      raise ValueError(f'image_channels must be 1 or 3, got {image_channels}')
    input_config = example_gen_pb2.Input(splits=[
        example_gen_pb2.Input.Split(name='glyphs', pattern=input_pattern)])
    # FileBasedExampleGen builds its own spec; build ours the same way, with the extras.
    spec = PngExampleGenSpec(
        input_base=input_base,
        input_config=input_config,
        output_config=output_config or split_config(eval_percent),
        custom_config=None,
        range_config=None,
        output_data_format=example_gen_pb2.FORMAT_TF_EXAMPLE,
        output_file_format=example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        examples=example_gen_component.types.Channel(
            type=example_gen_component.standard_artifacts.Examples),
        **{executor.IMAGE_SIZE_KEY: image_size, executor.IMAGE_CHANNELS_KEY: image_channels,
           executor.MAX_IMAGE_SIDE_KEY: max_image_side})
    # Skip FileBasedExampleGen.__init__ (it would build the plain spec) but keep its
    # class attributes: driver, and the base component's initialisation.
    super(example_gen_component.FileBasedExampleGen, self).__init__(spec=spec)
