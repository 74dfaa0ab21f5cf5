"""The cns-vaegan TFX pipeline: PNG glyphs -> Examples -> statistics -> schema.

One function builds the pipeline from plain arguments, so every runner (local,
Kubeflow) shares the same definition and differs only in how it runs it.
"""
from typing import List, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from cns_vaegan.components.png_example_gen import PngExampleGen


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    image_size: int,
    image_channels: int,
    eval_percent: int,
    beam_pipeline_args: Optional[List[str]] = None,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
  """Returns the pipeline; components in data-flow order."""
  example_gen = PngExampleGen(
      input_base=data_root, image_size=image_size, image_channels=image_channels,
      eval_percent=eval_percent)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=[example_gen, statistics_gen, schema_gen],
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args,
  )
