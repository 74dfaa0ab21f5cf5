"""Compiled steps run the way their containers run on Kubeflow: PngExampleGen's command
and arguments from the spec, `{{$}}` replaced by the executor input that KFP's driver
provisions (parameters from the task's constants; one output artifact with the component's
type and a URI under the pipeline root; the executor output file), in a fresh process;
then StatisticsGen on those Examples, passed the way kfp.local passes them (untyped).
"""
import json
import os
import subprocess

import pytest
import tensorflow as tf
from google.protobuf import json_format
from kfp.local import executor_input_utils, executor_output_utils
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils
from tfx.types import standard_artifacts

from cns_vaegan.components import glyph_examples
from cns_vaegan.components.png_example_gen import executor as png_executor
from cns_vaegan.data import render_glyphs
from cns_vaegan.kubeflow import container_entrypoint, kubeflow_v2_runner
from test_kubeflow_runner import read_spec, runner_argv

CHARACTERS = '酪鉻鉸你好'


def executor_input(spec, task_name, pipeline_root, output_file):
  """ExecutorInput as KFP's container driver fills it (driver.go: resolveInputs, provisionOutputs)."""
  task = spec.root.dag.tasks[task_name]
  component = spec.components[task.component_ref.name]
  result = pipeline_spec_pb2.ExecutorInput()
  for name, parameter in task.inputs.parameters.items():
    result.inputs.parameter_values[name].CopyFrom(parameter.runtime_value.constant)
  for name, output in component.output_definitions.artifacts.items():
    artifact = result.outputs.artifacts[name].artifacts.add()
    artifact.uri = f'{pipeline_root}/{spec.pipeline_info.name}/run-1/{task_name}/uuid-1/{name}'
    artifact.type.CopyFrom(output.artifact_type)
  result.outputs.output_file = output_file
  return result


def run_compiled_command(spec, task_name, invocation):
  """Runs the task's compiled command with `{{$}}` = the executor input; returns the process."""
  executors = json_format.MessageToDict(spec.deployment_spec)['executors']
  container = executors[spec.components[spec.root.dag.tasks[task_name].component_ref.name].executor_label]['container']
  command = container['command'] + [json_format.MessageToJson(invocation) if arg == '{{$}}' else arg
                                    for arg in container['args']]
  return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def test_png_example_gen_runs_from_its_compiled_container_command(tmp_path):
  data = tmp_path / 'png'
  render_glyphs.render_dataset(str(data), size=16, characters=list(CHARACTERS), progress=False)
  (data / 'README.txt').write_text('not a glyph')
  args = kubeflow_v2_runner.parse_args(runner_argv(tmp_path))
  assert args.data_root == str(data)
  kubeflow_v2_runner.compile_pipeline(args)
  spec = read_spec(args.output)

  output_file = str(tmp_path / 'kfp_outputs' / 'output_metadata.json')
  invocation = executor_input(spec, 'PngExampleGen', args.pipeline_root, output_file)
  done = run_compiled_command(spec, 'PngExampleGen', invocation)
  assert done.returncode == 0, done.stderr[-3000:]

  # What the launcher reads back: the Examples artifact at its provisioned URI, with splits.
  output = json_format.Parse(open(output_file).read(), pipeline_spec_pb2.ExecutorOutput())
  [examples] = output.artifacts['examples'].artifacts
  assert examples.uri == f'{args.pipeline_root}/cns-vaegan/run-1/PngExampleGen/uuid-1/examples'
  metadata = json_format.MessageToDict(examples.metadata)
  assert json.loads(metadata['split_names']) == ['train', 'eval']
  assert metadata['num_examples'] == len(CHARACTERS) and metadata['num_bad_files'] == 1

  characters = []
  for split in ('train', 'eval'):
    pattern = os.path.join(examples.uri, f'Split-{split}', '*')
    for record in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), compression_type='GZIP'):
      example = tf.train.Example.FromString(record.numpy())
      features = example.features.feature
      characters.append(features[glyph_examples.CHARACTER].bytes_list.value[0].decode())
      assert len(features[glyph_examples.IMAGE].float_list.value) == 16 * 16  # the tiny architecture's size
  assert sorted(characters) == sorted(CHARACTERS)
  report = json.load(open(os.path.join(examples.uri, png_executor.REPORT_FILE_NAME)))
  assert [os.path.basename(bad['file']) for bad in report['bad_files']] == ['README.txt']

  # StatisticsGen gets the Examples as kfp.local passes an upstream artifact: built by
  # kfp.local's own functions, typed as KFP's generic system.Artifact (it drops TFX's
  # instance schema). The entrypoint types it from the component's input definitions.
  [upstream] = executor_output_utils.get_outputs_for_task(invocation, spec.components['PngExampleGen']).values()
  assert upstream.schema_title == 'system.Artifact'
  statistics_root = str(tmp_path / 'kfp_local' / 'StatisticsGen')
  statistics_input = executor_input_utils.construct_executor_input(
      spec.components['StatisticsGen'], {'examples': upstream, 'exclude_splits': '[]'},
      statistics_root, block_input_artifact=False)
  done = run_compiled_command(spec, 'StatisticsGen', statistics_input)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "Input artifacts ['examples'] came without their TFX type" in done.stderr
  for split in ('train', 'eval'):
    assert os.path.getsize(os.path.join(statistics_root, 'statistics', f'Split-{split}', 'FeatureStats.pb')) > 0


def _untyped_examples(kind):
  """An executor input whose `examples` input has no TFX type, as a KFP launcher may pass it."""
  invocation = pipeline_spec_pb2.ExecutorInput()
  artifact = invocation.inputs.artifacts['examples'].artifacts.add(uri='/r/examples', name='e1')
  if kind == 'system.Artifact':  # kfp.local
    artifact.type.schema_title = 'system.Artifact'
  else:  # an empty instance schema (kubeflow/pipelines#13476)
    artifact.type.instance_schema = ''
  artifact.metadata.update({'split_names': '["train", "eval"]', 'span': 0})
  return invocation


@pytest.fixture(scope='module')
def spec(tmp_path_factory):
  args = kubeflow_v2_runner.parse_args(runner_argv(tmp_path_factory.mktemp('spec')))
  kubeflow_v2_runner.compile_pipeline(args)
  return read_spec(args.output)


@pytest.mark.parametrize('kind', ['system.Artifact', 'empty schema'])
def test_entrypoint_types_untyped_inputs_from_the_components_input_definitions(spec, kind):
  declared = spec.components['StatisticsGen'].input_definitions
  invocation = _untyped_examples(kind)
  with pytest.raises((ImportError, AttributeError)):  # what TFX's entrypoint alone does
    kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(invocation.inputs.artifacts)

  assert container_entrypoint.restore_input_types(invocation, declared) == ['examples']
  [examples] = kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(invocation.inputs.artifacts)['examples']
  assert isinstance(examples, standard_artifacts.Examples)
  assert (examples.uri, examples.split_names, examples.span) == ('/r/examples', '["train", "eval"]', 0)

  # A typed input is kept; an input the component does not declare is left alone.
  assert container_entrypoint.restore_input_types(invocation, declared) == []
  other = _untyped_examples(kind)
  assert container_entrypoint.restore_input_types(other, pipeline_spec_pb2.ComponentInputsSpec()) == []
  assert container_entrypoint.type_title(other.inputs.artifacts['examples'].artifacts[0].type) in (
      container_entrypoint.GENERIC_TITLES)


def test_entrypoint_makes_the_output_folders_before_the_executor_runs(spec, tmp_path):
  # GlyphEvaluator writes its figures into its evaluation URI, which kfp.local does not create.
  invocation = pipeline_spec_pb2.ExecutorInput()
  task_root = str(tmp_path / 'GlyphEvaluator')
  for name, output in spec.components['GlyphEvaluator'].output_definitions.artifacts.items():
    invocation.outputs.artifacts[name].CopyFrom(
        executor_input_utils.artifact_type_schema_to_artifact_list(name, output.artifact_type, task_root))
  container_entrypoint.make_output_dirs(invocation)
  assert sorted(os.listdir(task_root)) == ['blessing', 'evaluation']
  assert all(os.path.isdir(os.path.join(task_root, name)) for name in os.listdir(task_root))
