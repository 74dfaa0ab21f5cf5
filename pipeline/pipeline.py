"""The cns-vaegan TFX pipeline: PNG glyphs -> Examples -> statistics -> schema -> Trainer
-> GlyphEvaluator (against the latest blessed model) -> Pusher (only if blessed).

One function builds the pipeline from plain arguments, so every runner (local,
Kubeflow) shares the same definition and differs only in how it runs it.
"""
from typing import Any, Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from cns_vaegan.components.evaluator import GlyphEvaluator
from cns_vaegan.components.png_example_gen import PngExampleGen


# The Trainer calls this function; model code lives beside it in components/trainer/.
RUN_FN = 'cns_vaegan.components.trainer.run_fn.run_fn'


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    architecture: Dict[str, Any],
    training: Dict[str, Any],
    train_steps: int,
    eval_percent: int,
    serving_model_dir: str,
    evaluation: Optional[Dict[str, Any]] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
  """Returns the pipeline; components in data-flow order.

  `architecture` is the network JSON (components/trainer/architecture.json); images are
  ingested at its size and channels. `training` overrides TrainingConfig defaults.
  `evaluation` holds GlyphEvaluator arguments (thresholds, regression_tolerance,
  max_examples, num_samples, arithmetic_tuples). Blessed models are pushed to
  `serving_model_dir/<unix time>/`, the layout TensorFlow Serving reads as versions.
  """
  if architecture['img_h'] != architecture['img_w']:
    raise ValueError('the pipeline ingests square glyphs: architecture img_h must equal img_w')
  example_gen = PngExampleGen(
      input_base=data_root, image_size=architecture['img_h'],
      image_channels=architecture['img_c'], eval_percent=eval_percent)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  schema_gen = tfx.components.SchemaGen(
      statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
  trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=0),
      custom_config={'architecture': architecture, 'training': training})

  # The latest blessed model is the baseline a new model must not regress against.
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('latest_blessed_model_resolver')
  evaluator = GlyphEvaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'],
      **(evaluation or {}))
  pusher = tfx.components.Pusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)))

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=[example_gen, statistics_gen, schema_gen, trainer, model_resolver, evaluator,
                  pusher],
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args,
  )
