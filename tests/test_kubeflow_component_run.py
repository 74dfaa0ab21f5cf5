"""One compiled step run the way its container runs on Kubeflow: PngExampleGen's command
and arguments from the spec, `{{$}}` replaced by the executor input that KFP's driver
provisions (parameters from the task's constants; one output artifact with the component's
type and a URI under the pipeline root; the executor output file), in a fresh process.
"""
import json
import os
import subprocess

import tensorflow as tf
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from cns_vaegan.components import glyph_examples
from cns_vaegan.components.png_example_gen import executor as png_executor
from cns_vaegan.data import render_glyphs
from cns_vaegan.kubeflow import kubeflow_v2_runner
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


def test_png_example_gen_runs_from_its_compiled_container_command(tmp_path):
  data = tmp_path / 'png'
  render_glyphs.render_dataset(str(data), size=16, characters=list(CHARACTERS), progress=False)
  (data / 'README.txt').write_text('not a glyph')
  args = kubeflow_v2_runner.parse_args(runner_argv(tmp_path))
  assert args.data_root == str(data)
  kubeflow_v2_runner.compile_pipeline(args)
  spec = read_spec(args.output)

  executors = json_format.MessageToDict(spec.deployment_spec)['executors']
  container = executors[spec.components['PngExampleGen'].executor_label]['container']
  output_file = str(tmp_path / 'kfp_outputs' / 'output_metadata.json')
  invocation = json_format.MessageToJson(
      executor_input(spec, 'PngExampleGen', args.pipeline_root, output_file))
  command = container['command'] + [invocation if arg == '{{$}}' else arg for arg in container['args']]
  done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
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
