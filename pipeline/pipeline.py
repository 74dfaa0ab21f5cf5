"""The cns-vaegan TFX pipeline: PNG glyphs -> Examples -> statistics -> schema (inferred, or
a reviewed one pinned) -> ExampleValidator -> Trainer -> GlyphEvaluator (against the latest
blessed model) -> Pusher (only if blessed, each push a new version).

One function builds the pipeline from plain arguments, so every runner (local,
Kubeflow) shares the same definition and differs only in how it runs it.
"""
from typing import Any, Dict, List, Optional

from kfp.pipeline_spec import pipeline_spec_pb2
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from cns_vaegan.components.evaluator import GlyphEvaluator
from cns_vaegan.components.png_example_gen import PngExampleGen
from cns_vaegan.components.pusher import VersionedPusher
from cns_vaegan.components.trainer import local_cluster


# The Trainer calls this function; model code lives beside it in components/trainer/.
RUN_FN = 'cns_vaegan.components.trainer.run_fn.run_fn'

# The Kubernetes extended resource of NVIDIA GPUs (the NVIDIA device plugin's name).
GPU_RESOURCE = 'nvidia.com/gpu'


def gpu_resources(count: int) -> pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec:
  """Kubeflow container resources asking for `count` GPUs: KFP makes it the pod's limit
  `nvidia.com/gpu: count`. Both the newer resource_* fields and the older ones are set, as
  the KFP SDK does, so old and new KFP backends read it."""
  resources = pipeline_spec_pb2.PipelineDeploymentConfig.PipelineContainerSpec.ResourceSpec()
  resources.accelerator.resource_type = GPU_RESOURCE
  resources.accelerator.resource_count = str(count)
  resources.accelerator.type = GPU_RESOURCE
  resources.accelerator.count = count
  return resources


def vertex_trainer_config(vertex: Dict[str, Any], workers: int, gpus: int) -> Dict[str, Any]:
  """custom_config of the Google Cloud Trainer: a Vertex AI custom job of `workers` machines,
  each with `gpus` GPUs, running the pipeline's image. Its first worker pool is the chief
  (one machine), the second the other workers; Vertex sets TF_CONFIG on each."""
  ai_platform = tfx.extensions.google_cloud_ai_platform
  machine = {'machine_type': vertex.get('machine_type') or 'n1-standard-8'}
  if gpus:
    machine.update(accelerator_type=vertex.get('accelerator_type') or 'NVIDIA_TESLA_T4',
                   accelerator_count=gpus)
  pool = {'machine_spec': machine, 'container_spec': {'image_uri': vertex['image']}}
  pools = [dict(pool, replica_count=1)]
  if workers > 1:
    pools.append(dict(pool, replica_count=workers - 1))
  return {ai_platform.ENABLE_VERTEX_KEY: True, ai_platform.VERTEX_REGION_KEY: vertex['region'],
          ai_platform.TRAINING_ARGS_KEY: {'project': vertex['project'], 'worker_pool_specs': pools}}


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    architecture: Dict[str, Any],
    training: Dict[str, Any],
    train_steps: int,
    eval_percent: int,
    serving_model_dir: str,
    input_pattern: str = '*',
    schema_file: Optional[str] = None,
    checkpoint_dir: Optional[str] = None,
    evaluation: Optional[Dict[str, Any]] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    metadata_connection_config: Optional[metadata_store_pb2.ConnectionConfig] = None,
    enable_cache: bool = True,
    trainer_gpus: int = 0,
    trainer_workers: int = 1,
    vertex_training: Optional[Dict[str, Any]] = None,
    baseline_resolver: bool = True,
) -> tfx.dsl.Pipeline:
  """Returns the pipeline; components in data-flow order.

  `architecture` is the network JSON (components/trainer/architecture.json); images are
  ingested at its size and channels. `training` overrides TrainingConfig defaults.
  `schema_file` pins a reviewed schema (a schema.pbtxt) with ImportSchemaGen instead of
  inferring one with SchemaGen. ExampleValidator checks the statistics of every split
  against the schema and writes ExampleAnomalies before the Trainer starts; anomalies
  do not stop the run (the Trainer does not read them, as in TFX's own pipelines): the
  runner's summary reports them, and the Evaluator's blessing stays the gate for what
  is served.
  `checkpoint_dir` is where the Trainer keeps its checkpoints (default: a folder beside
  its model_run named by a hash of inputs and settings; components/trainer/run_fn.py).
  `evaluation` holds GlyphEvaluator arguments (thresholds, false_refusal_rate, retrain_noise,
  max_examples, num_samples, arithmetic_tuples). Blessed models are pushed to
  `serving_model_dir/<unix time>/`, the layout TensorFlow Serving reads as versions, each
  push a version of its own (components/pusher/).
  `trainer_gpus` > 0 asks Kubeflow for that many GPUs for the Trainer's pod (training uses
  MirroredStrategy over every GPU it sees); LocalDagRunner ignores it.
  `trainer_workers` > 1 trains on that many workers as one (MultiWorkerMirroredStrategy,
  components/trainer/cluster.py): with `vertex_training` ({'project', 'region', 'image',
  'machine_type', 'accelerator_type'}) as a Vertex AI custom job of that many machines (the
  Google Cloud Trainer extension; the platform sets each one's TF_CONFIG), else as that many
  processes on the Trainer's own machine (components/trainer/local_cluster.py).
  `baseline_resolver` adds TFX's Resolver for the latest blessed model, the Evaluator's
  baseline. LocalDagRunner and Vertex AI Pipelines run it; open-source Kubeflow Pipelines
  cannot ("resolver executors not implemented"), so its runner can leave it out, and the
  Evaluator then judges by the thresholds alone, as it does the first model anywhere.
  """
  if architecture['img_h'] != architecture['img_w']:
    raise ValueError('the pipeline ingests square glyphs: architecture img_h must equal img_w')
  example_gen = PngExampleGen(
      input_base=data_root, image_size=architecture['img_h'],
      image_channels=architecture['img_c'], eval_percent=eval_percent,
      input_pattern=input_pattern)
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs['examples'])
  if schema_file:
    schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
  else:
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs['statistics'], infer_feature_shape=True)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs['statistics'], schema=schema_gen.outputs['schema'])
  custom_config = {'architecture': architecture, 'training': training}
  if checkpoint_dir:
    custom_config['checkpoint_dir'] = checkpoint_dir
  trainer_kwargs = dict(
      run_fn=RUN_FN,
      examples=example_gen.outputs['examples'],
      schema=schema_gen.outputs['schema'],
      train_args=tfx.proto.TrainArgs(num_steps=train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=0))
  if vertex_training:
    custom_config.update(vertex_trainer_config(vertex_training, trainer_workers, trainer_gpus))
    trainer = tfx.extensions.google_cloud_ai_platform.Trainer(**trainer_kwargs, custom_config=custom_config)
  elif trainer_workers > 1:
    custom_config[local_cluster.WORKERS_KEY] = trainer_workers
    trainer = tfx.components.Trainer(
        **trainer_kwargs, custom_config=custom_config,
        custom_executor_spec=executor_spec.ExecutorClassSpec(local_cluster.Executor))
  else:
    trainer = tfx.components.Trainer(**trainer_kwargs, custom_config=custom_config)
  trainer.add_upstream_node(example_validator)  # validated before the long part, in every runner
  if trainer_gpus > 0 and not vertex_training:  # Vertex's machines carry their own GPUs
    trainer.with_platform_config(gpu_resources(trainer_gpus))

  # The latest blessed model is the baseline a new model must not regress against.
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id('latest_blessed_model_resolver') if baseline_resolver else None
  evaluator = GlyphEvaluator(
      examples=example_gen.outputs['examples'],
      model=trainer.outputs['model'],
      baseline_model=model_resolver.outputs['model'] if model_resolver else None,
      **(evaluation or {}))
  pusher = VersionedPusher(
      model=trainer.outputs['model'],
      model_blessing=evaluator.outputs['blessing'],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=serving_model_dir)),
  ).with_id('Pusher')

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=[c for c in (example_gen, statistics_gen, schema_gen, example_validator, trainer,
                              model_resolver, evaluator, pusher) if c is not None],
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args,
  )
