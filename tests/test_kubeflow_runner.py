"""The Kubeflow runner: the compiled KFP v2 spec, read as Kubeflow reads it, against the
pipeline object pipeline/pipeline.py builds (the one LocalDagRunner runs)."""
import json
import os

import pytest
import yaml
from google.protobuf import json_format
from kfp.client import client as kfp_client_module
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.utils import import_utils, name_utils

from cns_vaegan.data import arithmetic_tuples
from cns_vaegan.kubeflow import kubeflow_v2_runner
from cns_vaegan.pipeline import configs, pipeline
from conftest import TINY_ARCHITECTURE

IMAGE = 'registry.example/cns-vaegan:test'
BEAM_ARGS = ['--direct_running_mode=in_memory', '--direct_num_workers=1']
CONFIG_EXAMPLE = os.path.join(configs.REPO_ROOT, 'kubeflow', 'config.example.yaml')


def runner_argv(tmp, output='pipeline.yaml', extra=()):
  """Runner flags with tmp paths, the tiny network, and Beam arguments after --."""
  tmp = str(tmp)
  architecture = os.path.join(tmp, 'architecture.json')
  with open(architecture, 'w') as f:
    json.dump(TINY_ARCHITECTURE, f)
  return ['--pipeline-root', f'{tmp}/root', '--data-root', f'{tmp}/png',
          '--serving-base', f'{tmp}/serving', '--container-image', IMAGE,
          '--architecture', architecture, '--train-steps', '4', '--hparam', 'batch_size=4',
          '--output', os.path.join(tmp, output), *extra, '--', *BEAM_ARGS]


def read_spec(path):
  """The file as kfp.Client reads it before uploading, and as a strict PipelineSpec proto."""
  with open(path, encoding='utf-8') as f:
    document = json.load(f) if path.endswith('.json') else yaml.safe_load(f)
  return json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())  # unknown fields fail


@pytest.fixture(scope='module')
def compiled(tmp_path_factory):
  """(runner args, PipelineSpec proto, the pipeline object) for a run asking for 2 GPUs."""
  tmp = tmp_path_factory.mktemp('kubeflow')
  argv = runner_argv(tmp, extra=['--trainer-gpus', '2'])
  kubeflow_v2_runner.main(argv)
  args = kubeflow_v2_runner.parse_args(argv)
  return args, read_spec(args.output), kubeflow_v2_runner.create_pipeline(args)


def _executor(spec, task_name):
  component = spec.components[spec.root.dag.tasks[task_name].component_ref.name]
  return spec.deployment_spec.fields['executors'].struct_value.fields[component.executor_label]


def _container(spec, task_name):
  return json_format.MessageToDict(_executor(spec, task_name).struct_value)['container']


def _expected_tasks(tfx_pipeline):
  """{KFP task: upstream tasks} from the pipeline object. A LatestBlessedModelStrategy
  Resolver becomes two KFP tasks (TFX's step_builder): '<id>-model-blessing-resolver', then
  '<id>-model-resolver', which its consumers depend on."""
  resolvers = {node.id for node in tfx_pipeline.components if isinstance(node, tfx.dsl.Resolver)}

  def task(node_id):
    return f'{node_id}-model-resolver' if node_id in resolvers else node_id

  expected = {}
  for node in tfx_pipeline.components:
    if node.id in resolvers:
      expected[f'{node.id}-model-blessing-resolver'] = set()
      expected[f'{node.id}-model-resolver'] = {f'{node.id}-model-blessing-resolver'}
    else:
      expected[node.id] = {task(upstream.id) for upstream in node.upstream_nodes}
  return expected


def test_spec_parses_with_kfp_protos_in_yaml_and_json(compiled, tmp_path):
  args, spec, _ = compiled
  assert spec.schema_version == '2.1.0'  # open-source KFP resolves only 2.1 parameter constants
  assert spec.pipeline_info.name == configs.PIPELINE_NAME
  assert spec.default_pipeline_root == args.pipeline_root
  assert spec.sdk_version.startswith('tfx-')
  # kfp.Client.upload_pipeline reads the file with this function before sending it.
  assert kfp_client_module._extract_pipeline_yaml(args.output).pipeline_spec == spec  # pylint: disable=protected-access

  as_yaml, as_json = (kubeflow_v2_runner.parse_args(runner_argv(tmp_path, output)) for output in
                      ('pipeline.yaml', 'pipeline.json'))
  kubeflow_v2_runner.compile_pipeline(as_yaml)
  kubeflow_v2_runner.compile_pipeline(as_json)
  assert read_spec(as_json.output) == read_spec(as_yaml.output)


def test_every_component_runs_the_image_with_its_executor_and_beam_args(compiled):
  args, spec, tfx_pipeline = compiled
  assert args.beam_pipeline_args == configs.DEFAULT_BEAM_PIPELINE_ARGS + BEAM_ARGS
  for node in tfx_pipeline.components:
    if isinstance(node, tfx.dsl.Resolver):
      continue
    container = _container(spec, node.id)
    executor_class = name_utils.get_full_name(node.executor_spec.executor_class)
    import_utils.import_class_by_path(executor_class)  # the image has what the spec names
    assert container['image'] == IMAGE, node.id
    # TFX's entrypoint behind the project's wrapper (kubeflow/container_entrypoint.py).
    assert container['command'] == ['python', '-m', 'cns_vaegan.kubeflow.container_entrypoint'], node.id
    inputs_spec = json_format.Parse(container['args'][5], pipeline_spec_pb2.ComponentInputsSpec())
    assert container['args'] == [
        '--executor_class_path', executor_class,
        '--json_serialized_invocation_args', '{{$}}',  # the launcher's executor input
        '--json_serialized_inputs_spec_args', container['args'][5],
        *args.beam_pipeline_args], node.id
    assert inputs_spec == spec.components[node.id].input_definitions, node.id
  # FileBasedExampleGen's driver (span, fingerprint) is a pre-cache hook, run by Vertex AI.
  hook = _container(spec, 'PngExampleGen')['lifecycle']['preCacheCheck']
  assert hook['command'][-1] == 'tfx.orchestration.kubeflow.v2.file_based_example_gen.driver'


def test_task_parameters_carry_the_runner_flags(compiled):
  args, spec, _ = compiled
  tasks = spec.root.dag.tasks

  def parameter(task, name):
    return json_format.MessageToDict(tasks[task].inputs.parameters[name].runtime_value.constant)

  assert parameter('PngExampleGen', 'input_base') == args.data_root
  assert parameter('PngExampleGen', 'image_size') == TINY_ARCHITECTURE['img_h']
  assert json.loads(parameter('Trainer', 'train_args')) == {'num_steps': 4}
  assert json.loads(parameter('Trainer', 'custom_config')) == {
      'architecture': args.architecture_values, 'training': dict(configs.RECIPE, batch_size=4)}
  assert parameter('Trainer', 'run_fn') == pipeline.RUN_FN
  destination = json.loads(parameter('Pusher', 'push_destination'))
  assert destination['filesystem']['base_directory'] == f'{args.serving_base}/{configs.MODEL_NAME}'
  tuples = json.loads(parameter('GlyphEvaluator', 'arithmetic_tuples'))
  assert tuples == [list(t) for t in arithmetic_tuples.read_tuples()] and ['酪', '鉻', '鉸'] in tuples


def _upstream_tasks(task):
  """A task's upstream tasks as KFP's compiler counts them (addImplicitDependencies in its
  argo compiler): the explicit dependent_tasks plus the producers of its inputs."""
  producers = {a.task_output_artifact.producer_task for a in task.inputs.artifacts.values()}
  producers |= {p.task_output_parameter.producer_task for p in task.inputs.parameters.values()}
  return (set(task.dependent_tasks) | producers) - {''}


def test_dag_matches_the_local_pipeline_component_graph(compiled):
  _, spec, tfx_pipeline = compiled
  actual = {name: _upstream_tasks(task) for name, task in spec.root.dag.tasks.items()}
  assert actual == _expected_tasks(tfx_pipeline)
  assert set(spec.components) == set(actual)
  # Data validated in the cluster too, before the Trainer starts.
  assert actual['ExampleValidator'] == {'StatisticsGen', 'SchemaGen'}
  assert 'ExampleValidator' in actual['Trainer']


def test_a_pinned_schema_compiles_to_import_schema_gen(tmp_path):
  args = kubeflow_v2_runner.parse_args(
      runner_argv(tmp_path, extra=['--schema', 'gs://bucket/reviewed/schema.pbtxt']))
  spec = json_format.ParseDict(kubeflow_v2_runner.compile_pipeline(args), pipeline_spec_pb2.PipelineSpec())
  tasks = spec.root.dag.tasks
  assert 'SchemaGen' not in tasks
  assert _upstream_tasks(tasks['ExampleValidator']) == {'StatisticsGen', 'ImportSchemaGen'}
  assert 'ImportSchemaGen' in _upstream_tasks(tasks['Trainer'])
  schema_file = tasks['ImportSchemaGen'].inputs.parameters['schema_file'].runtime_value.constant
  assert json_format.MessageToDict(schema_file) == 'gs://bucket/reviewed/schema.pbtxt'


def test_gpus_are_requested_for_the_trainer_only(compiled, tmp_path):
  _, spec, tfx_pipeline = compiled
  # KFP's driver turns accelerator (resource_type/resource_count, or type/count on older
  # backends) into the pod's resources.limits["nvidia.com/gpu"].
  assert _container(spec, 'Trainer')['resources'] == {'accelerator': {
      'resourceType': 'nvidia.com/gpu', 'resourceCount': '2', 'type': 'nvidia.com/gpu', 'count': '2'}}
  for node in tfx_pipeline.components:
    if node.id != 'Trainer' and not isinstance(node, tfx.dsl.Resolver):
      assert 'resources' not in _container(spec, node.id), node.id

  no_gpu = kubeflow_v2_runner.parse_args(runner_argv(tmp_path))
  assert no_gpu.trainer_gpus == 0
  assert 'resources' not in _container(
      json_format.ParseDict(kubeflow_v2_runner.compile_pipeline(no_gpu), pipeline_spec_pb2.PipelineSpec()),
      'Trainer')


def test_config_file_gives_flags_and_the_command_line_wins(tmp_path, capsys):
  args = kubeflow_v2_runner.parse_args(
      ['--config', CONFIG_EXAMPLE, '--train-steps', '7', '--hparam', 'gamma=0.01',
       '--', '--direct_num_workers=2'])
  with open(CONFIG_EXAMPLE) as f:
    config = yaml.safe_load(f)
  assert args.pipeline_root == config['pipeline-root'] and args.data_root == config['data-root']
  assert args.serving_base == config['serving-base'] and args.container_image == config['container-image']
  assert args.trainer_gpus == config['trainer-gpus'] and args.endpoint == config['endpoint']
  assert args.train_steps == 7  # the command line wins over the file's train-steps
  # The profile's recipe (config-example.yaml asks for GPUs: the gpu profile), then the flags.
  assert args.training_values == dict(configs.RECIPE, batch_size=64, gamma=0.01)
  assert args.beam_pipeline_args == (configs.DEFAULT_BEAM_PIPELINE_ARGS + config['beam-args']
                                     + ['--direct_num_workers=2'])

  with pytest.raises(SystemExit):  # where things live has no default
    kubeflow_v2_runner.parse_args(['--data-root', 'gs://b/png', '--serving-base', 'gs://b/s',
                                   '--container-image', IMAGE])
  with pytest.raises(SystemExit):  # the local runner's own validation, before anything runs
    kubeflow_v2_runner.parse_args(runner_argv(tmp_path, extra=['--hparam', 'no_such_setting=1']))
  assert "unknown training setting 'no_such_setting'; valid keys: batch_size (int)" in capsys.readouterr().err
  # A config file's hparam list goes through the same parsing.
  config = tmp_path / 'config.yaml'
  config.write_text(yaml.safe_dump({'hparam': ['latent_tanh=False', 'gamma=0.5']}))
  from_file = kubeflow_v2_runner.parse_args(['--config', str(config)] + runner_argv(tmp_path))
  assert from_file.training_values['latent_tanh'] is False and from_file.training_values['gamma'] == 0.5


class FakeKfpClient:
  """Records what the runner asks of kfp.Client; `existing` is the pipeline id KFP knows."""
  existing = None
  calls = []

  def __init__(self, host):
    self.calls.append(('Client', host))

  def get_pipeline_id(self, name):
    self.calls.append(('get_pipeline_id', name))
    return self.existing

  def upload_pipeline(self, path, pipeline_name):
    self.calls.append(('upload_pipeline', path, pipeline_name))
    return type('Pipeline', (), {'pipeline_id': 'p-new'})

  def list_pipeline_versions(self, pipeline_id, page_size, sort_by):
    self.calls.append(('list_pipeline_versions', pipeline_id))
    version = type('Version', (), {'pipeline_version_id': 'v-first'})
    return type('Versions', (), {'pipeline_versions': [version]})

  def upload_pipeline_version(self, path, pipeline_version_name, pipeline_id):
    self.calls.append(('upload_pipeline_version', path, pipeline_id))
    return type('Version', (), {'pipeline_version_id': 'v-next'})

  def create_experiment(self, name, namespace):
    self.calls.append(('create_experiment', name, namespace))
    return type('Experiment', (), {'experiment_id': 'e-1'})

  def run_pipeline(self, **kwargs):
    self.calls.append(('run_pipeline', kwargs))
    return type('Run', (), {'run_id': 'r-1'})


@pytest.mark.parametrize('existing, version', [(None, 'v-first'), ('p-old', 'v-next')])
def test_submit_creates_or_updates_the_pipeline_and_prints_the_run_url(
    compiled, tmp_path, monkeypatch, capsys, existing, version):
  import kfp
  monkeypatch.setattr(kfp, 'Client', FakeKfpClient)
  monkeypatch.setattr(FakeKfpClient, 'existing', existing)
  monkeypatch.setattr(FakeKfpClient, 'calls', [])
  kubeflow_v2_runner.main(runner_argv(tmp_path, extra=['--endpoint', 'http://kfp.example:8080/']))
  output = str(tmp_path / 'pipeline.yaml')
  calls = {call[0]: call[1:] for call in FakeKfpClient.calls}
  assert calls['Client'] == ('http://kfp.example:8080/',)
  if existing:
    assert calls['upload_pipeline_version'] == (output, 'p-old') and 'upload_pipeline' not in calls
  else:
    assert calls['upload_pipeline'] == (output, configs.PIPELINE_NAME)
  [run] = calls['run_pipeline']
  assert run['experiment_id'] == 'e-1' and run['pipeline_id'] == (existing or 'p-new')
  assert run['version_id'] == version and run['pipeline_root'] == f'{tmp_path}/root'
  assert 'Run: http://kfp.example:8080/#/runs/details/r-1' in capsys.readouterr().out


def test_by_default_the_spec_runs_on_open_source_kfp_without_the_resolver(compiled):
  _, spec, tfx_pipeline = compiled
  assert kubeflow_v2_runner.open_source_kfp_problems(json_format.MessageToDict(spec)) == []
  assert not [n for n in tfx_pipeline.components if isinstance(n, tfx.dsl.Resolver)]
  assert 'GlyphEvaluator' in spec.root.dag.tasks  # judged by its thresholds alone


def test_with_baseline_resolver_the_resolver_tasks_are_flagged_for_open_source_kfp(tmp_path):
  argv = runner_argv(tmp_path, extra=['--baseline-resolver'])
  kubeflow_v2_runner.main(argv)
  args = kubeflow_v2_runner.parse_args(argv)
  spec, tfx_pipeline = read_spec(args.output), kubeflow_v2_runner.create_pipeline(args)
  resolver_tasks = {task for task in _expected_tasks(tfx_pipeline)
                    if 'resolver' in _executor(spec, task).struct_value.fields}
  assert resolver_tasks  # the latest-blessed-model Resolver, for Vertex AI Pipelines
  assert kubeflow_v2_runner.open_source_kfp_problems(
      json_format.MessageToDict(spec)) == sorted(resolver_tasks)


def test_the_trainer_pods_gpus_pick_the_profile_not_the_compiling_machine(tmp_path):
  with_gpus = kubeflow_v2_runner.parse_args(runner_argv(tmp_path, extra=['--trainer-gpus', '2']))
  without = kubeflow_v2_runner.parse_args(runner_argv(tmp_path))
  assert (with_gpus.profile, without.profile) == ('gpu', 'cpu')
  forced = kubeflow_v2_runner.parse_args(runner_argv(tmp_path, extra=['--profile', 'seed']))
  assert forced.profile == 'seed' and forced.train_steps == 4  # --train-steps still wins


def test_workers_compile_to_a_vertex_training_job_of_that_many_machines(tmp_path):
  argv = runner_argv(tmp_path, extra=['--workers', '3', '--trainer-gpus', '2', '--vertex-project', 'p',
                                      '--vertex-region', 'europe-west4'])
  kubeflow_v2_runner.main(argv)
  args = kubeflow_v2_runner.parse_args(argv)
  spec = read_spec(args.output)
  config = json.loads(json_format.MessageToDict(
      spec.root.dag.tasks['Trainer'].inputs.parameters['custom_config'].runtime_value.constant))
  machine = {'machine_type': 'n1-standard-8', 'accelerator_type': 'NVIDIA_TESLA_T4', 'accelerator_count': 2}
  pool = {'machine_spec': machine, 'container_spec': {'image_uri': IMAGE}}
  # The first pool is the chief (Vertex names it so in TF_CONFIG), the second the other workers.
  assert config['ai_platform_training_args'] == {
      'project': 'p', 'worker_pool_specs': [dict(pool, replica_count=1), dict(pool, replica_count=2)]}
  assert config['ai_platform_enable_vertex'] is True
  assert config['ai_platform_vertex_region'] == 'europe-west4'
  assert config['architecture'] == args.architecture_values  # run_fn's settings ride along
  assert 'local_workers' not in config
  # The Trainer step submits the job (the extension's executor); its pod asks for no GPU itself.
  container = _container(spec, 'Trainer')
  assert container['args'][1] == ('tfx.extensions.google_cloud_ai_platform.trainer.executor.'
                                  'GenericExecutor')
  assert 'resources' not in container


def test_workers_without_vertex_are_refused_saying_why(tmp_path):
  with pytest.raises(SystemExit, match='--workers > 1 needs --vertex-project'):
    kubeflow_v2_runner.parse_args(runner_argv(tmp_path, extra=['--workers', '2']))
  with pytest.raises(SystemExit, match='go together'):
    kubeflow_v2_runner.parse_args(runner_argv(tmp_path, extra=['--vertex-project', 'p']))
