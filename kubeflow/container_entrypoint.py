"""The command of every compiled step: TFX's Kubeflow V2 entrypoint, after doing two
things TFX's own launchers do and KFP's launchers do not always do for it.

    python -m cns_vaegan.kubeflow.container_entrypoint --executor_class_path ... \\
        --json_serialized_invocation_args '{{$}}' --json_serialized_inputs_spec_args ...

(the arguments of tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor).

1. Untyped inputs get the type their component declares. TFX's entrypoint picks each
input artifact's Python class from its type in the executor input; TFX types are written
as an `instanceSchema` (title `tfx.Examples`, ...), which KFP's launchers do not always
carry downstream. kfp.local (2.16) passes every upstream artifact as KFP's generic
`system.Artifact` (it keeps only KFP's own artifact classes), and the open-source KFP
driver passes an empty schema by the account of sky-uk/kfp-operator's TFX patch. TFX then
stops ("Could not import system.Artifact"). The component's input definitions, compiled
into the same command, say what each input is.
2. Output folders exist before the executor runs, as TFX's launchers make them
(outputs_utils.make_output_dirs). On gs:// a folder need not exist; on a local or mounted
filesystem (kfp.local) an executor that writes files into its output URI fails without.
"""
from typing import List

import yaml
from absl import app, logging
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_entrypoint_utils, kubeflow_v2_run_executor
from tfx.orchestration.portable import outputs_utils

# Type titles that say nothing about which TFX artifact an input is.
GENERIC_TITLES = ('', 'system.Artifact')


def type_title(artifact_type: pipeline_spec_pb2.ArtifactTypeSchema) -> str:
  """The title of a schema_title or instance_schema type; '' when there is none."""
  kind = artifact_type.WhichOneof('kind')
  if kind == 'schema_title':
    return artifact_type.schema_title
  if kind == 'instance_schema':
    return (yaml.safe_load(artifact_type.instance_schema) or {}).get('title', '')
  return ''


def restore_input_types(executor_input: pipeline_spec_pb2.ExecutorInput,
                        inputs_spec: pipeline_spec_pb2.ComponentInputsSpec) -> List[str]:
  """Gives every input artifact with a generic or empty type the type of its input
  definition, in place; returns the input names it changed. Typed inputs are kept."""
  restored = []
  for name, artifact_list in executor_input.inputs.artifacts.items():
    if name not in inputs_spec.artifacts:
      continue
    declared = inputs_spec.artifacts[name].artifact_type
    if type_title(declared) in GENERIC_TITLES:
      continue
    for artifact in artifact_list.artifacts:
      if type_title(artifact.type) in GENERIC_TITLES:
        artifact.type.CopyFrom(declared)
        restored.append(name)
  return restored


def make_output_dirs(executor_input: pipeline_spec_pb2.ExecutorInput) -> None:
  """Creates each output artifact's folder (a value artifact's file), as TFX's launchers do."""
  outputs_utils.make_output_dirs(
      kubeflow_v2_entrypoint_utils.parse_raw_artifact_dict(executor_input.outputs.artifacts))


def main(parsed_argv) -> None:
  args, beam_args = parsed_argv
  executor_input = json_format.Parse(args.json_serialized_invocation_args,
                                     pipeline_spec_pb2.ExecutorInput(), ignore_unknown_fields=True)
  if args.json_serialized_inputs_spec_args:
    inputs_spec = json_format.Parse(args.json_serialized_inputs_spec_args,
                                    pipeline_spec_pb2.ComponentInputsSpec(), ignore_unknown_fields=True)
    restored = restore_input_types(executor_input, inputs_spec)
    if restored:
      logging.warning('Input artifacts %s came without their TFX type; typed them from the '
                      "component's input definitions", sorted(set(restored)))
      args.json_serialized_invocation_args = json_format.MessageToJson(executor_input)
  make_output_dirs(executor_input)
  kubeflow_v2_run_executor.main((args, beam_args))


if __name__ == '__main__':
  app.run(main, flags_parser=kubeflow_v2_run_executor._parse_flags)  # pylint: disable=protected-access
