"""The compiled Kubeflow pipeline, executed: KFP's own local runner (kfp.local with its
DockerRunner) runs every task of the spec kubeflow_v2_runner compiles for open-source KFP,
each in the project's image, on a few dozen glyphs and a tiny network. Then the embedded
server serves what the Pusher pushed.

Needs a Docker daemon and the image (scripts/build_image.sh; name CNS_IMAGE, default
cns-vaegan:dev), built from this checkout. Without them the test is skipped and says so;
with CNS_REQUIRE_DOCKER=1 (as .ci/run sets) it fails instead. An image built from other
files (its label, the hash of its build context, differs from this checkout's) fails the
test, saying how to rebuild it: it would test other code than this.
"""
import glob
import json
import os
import shutil

import pytest
from google.protobuf import json_format
from kfp.local import executor_input_utils, executor_output_utils

from cns_vaegan.components.evaluator import blessing_rules
from cns_vaegan.kubeflow import image_source, kubeflow_v2_runner
from cns_vaegan.pipeline import configs
from cns_vaegan.serving import servables
from cns_vaegan.serving.client import GlyphClient
from cns_vaegan.serving.model_server import ModelServer
from conftest import TEST_SIZE, TINY_ARCHITECTURE

IMAGE = os.environ.get('CNS_IMAGE', 'cns-vaegan:dev')
BEAM_ARGS = ['--direct_running_mode=in_memory', '--direct_num_workers=1']


def label_problem(image, labels, checkout_hash):
  """Why an image with these labels is not a build of this checkout, or None."""
  found = (labels or {}).get(image_source.LABEL)
  if found == checkout_hash:
    return None
  return (f'the image {image} was built from other files than this checkout ({image_source.LABEL} '
          f'{found or "missing"}, this checkout {checkout_hash}), so it would test other code')


def docker_problem(image):
  """(why the image cannot run here or is not this checkout's, whether it is the latter),
  or (None, False)."""
  try:
    import docker  # pylint: disable=import-outside-toplevel
    client = docker.from_env()
    client.ping()
  except Exception as error:  # pylint: disable=broad-except
    return f'no Docker daemon answers ({error})', False
  try:
    labels = client.images.get(image).labels
  except docker.errors.ImageNotFound:
    return f'the image {image} is not built', False
  finally:
    client.close()
  stale = label_problem(image, labels, image_source.source_hash(configs.REPO_ROOT))
  return stale, stale is not None


def require_image(image, required, problem=None):
  """Skips, saying what did not run and why, where the image cannot run; fails instead
  where it is `required` (CI), and always where the image is another checkout's.
  `problem`: docker_problem's answer, asked of Docker when not given."""
  problem, stale = problem or docker_problem(image)
  if problem:
    message = (f'NOT RUN: the compiled Kubeflow pipeline in Docker (kfp.local): {problem}. '
               f'{"Rebuild" if stale else "Run"} scripts/build_image.sh (as root: it installs and starts '
               'Docker if needed).')
    if required or stale:
      pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope='module')
def image():
  require_image(IMAGE, required=os.environ.get('CNS_REQUIRE_DOCKER') == '1')
  return IMAGE


def runner_argv(root, image, output):
  """Runner flags for a tiny run; every path under `root`, the only folder kfp.local's
  DockerRunner mounts into the containers."""
  architecture = os.path.join(root, 'architecture.json')
  with open(architecture, 'w') as f:
    json.dump(TINY_ARCHITECTURE, f)
  thresholds = os.path.join(root, 'thresholds.json')  # a 4-step model only has to serve
  with open(thresholds, 'w') as f:  # merged over the defaults: null drops one
    json.dump(dict({path: None for path in blessing_rules.DEFAULT_THRESHOLDS},
                   **{'serving.all_ok': {'min': 1}}), f)
  return ['--pipeline-root', f'{root}/tfx', '--data-root', f'{root}/glyphs',
          '--serving-base', f'{root}/serving', '--container-image', image,
          '--architecture', architecture, '--train-steps', '4', '--hparam', 'batch_size=4',
          '--hparam', 'projector_samples=4', '--thresholds', thresholds, '--eval-examples', '16',
          '--output', output, '--', *BEAM_ARGS]


def task_outputs(run_dir, spec):
  """{task: {output key: RuntimeArtifact}} from the executor output each task's container
  wrote in kfp.local's folder of the task (TFX writes it after the executor succeeded)."""
  components = {task: definition['componentRef']['name'] for task, definition in spec['root']['dag']['tasks'].items()}
  folders = {task: executor_input_utils.get_local_task_resource_name(name) for task, name in components.items()}
  assert len(set(folders.values())) == len(folders), f'kfp.local would mix task folders: {folders}'
  result = {}
  for task, folder in folders.items():
    path = os.path.join(run_dir, folder, 'executor_output.json')
    assert os.path.isfile(path), f'task {task} wrote no executor output ({path})'
    output = executor_output_utils.load_executor_output(path)
    declared = spec['components'][components[task]].get('outputDefinitions', {}).get('artifacts', {})
    assert set(output.artifacts) == set(declared), task
    result[task] = {}
    for key, artifacts in output.artifacts.items():
      [artifact] = artifacts.artifacts
      assert os.path.isdir(artifact.uri) and os.listdir(artifact.uri), f'{task}.{key}: empty {artifact.uri}'
      result[task][key] = artifact
  return result


def test_compiled_pipeline_runs_in_the_image_under_kfp_local(image, glyph_dir, tmp_path):
  import kfp  # pylint: disable=import-outside-toplevel
  from kfp import local  # pylint: disable=import-outside-toplevel
  root = str(tmp_path / 'kfp')
  shutil.copytree(glyph_dir, os.path.join(root, 'glyphs'))
  args = kubeflow_v2_runner.parse_args(runner_argv(root, image, str(tmp_path / 'pipeline.yaml')))
  spec = kubeflow_v2_runner.compile_pipeline(args)
  assert kubeflow_v2_runner.open_source_kfp_problems(spec) == []  # no Resolver: KFP runs all

  local.init(runner=local.DockerRunner(), pipeline_root=root)  # raises if a task fails
  kfp.components.load_component_from_file(args.output)()

  [run_dir] = glob.glob(os.path.join(root, f'{spec["pipelineInfo"]["name"]}-*'))
  outputs = task_outputs(run_dir, spec)  # every task of the compiled DAG, whatever they are

  def uri(task, key):
    return outputs[task][key].uri

  def metadata(task, key):
    return json_format.MessageToDict(outputs[task][key].metadata)

  assert json.loads(metadata('PngExampleGen', 'examples')['split_names']) == ['train', 'eval']
  for split in ('train', 'eval'):
    assert glob.glob(os.path.join(uri('PngExampleGen', 'examples'), f'Split-{split}', '*.gz'))
    assert os.path.getsize(os.path.join(uri('StatisticsGen', 'statistics'), f'Split-{split}', 'FeatureStats.pb'))
  schema = open(os.path.join(uri('SchemaGen', 'schema'), 'schema.pbtxt')).read()
  assert 'name: "image"' in schema and f'size: {TEST_SIZE * TEST_SIZE}' in schema
  assert os.path.isfile(os.path.join(uri('Trainer', 'model'), 'Format-Serving', 'saved_model.pb'))
  metrics = json.load(open(os.path.join(uri('GlyphEvaluator', 'evaluation'), 'metrics.json'), encoding='utf-8'))
  assert metrics['blessing']['blessed']
  assert os.path.isfile(os.path.join(uri('GlyphEvaluator', 'blessing'), 'BLESSED'))
  assert metadata('GlyphEvaluator', 'blessing')['blessed'] == 1

  # Pushed as TF Serving expects: <serving base>/<model name>/<numeric version>/saved_model.pb
  pushed = metadata('Pusher', 'pushed_model')
  model_base = os.path.join(args.serving_base, configs.MODEL_NAME)
  [(version, path)] = servables.available_versions(model_base).items()
  assert pushed['pushed'] == 1 and pushed['pushed_destination'] == path
  with open(os.path.join(glyph_dir, f'U{ord("酪")}.png'), 'rb') as f:
    png = f.read()
  server = ModelServer(args.serving_base, configs.MODEL_NAME, port=0, rest_port=None)
  server.start(wait_for_model_seconds=30)
  try:
    with GlyphClient(f'127.0.0.1:{server.port}') as client:
      assert client.reconstruct([png])['images'].shape == (1, TEST_SIZE, TEST_SIZE, 1)
      assert client.last_version == version
  finally:
    server.stop()


def test_without_docker_it_says_what_did_not_run_and_ci_fails(monkeypatch):
  monkeypatch.setenv('DOCKER_HOST', 'unix:///nonexistent/docker.sock')
  for required, outcome in ((False, pytest.skip.Exception), (True, pytest.fail.Exception)):
    with pytest.raises(outcome, match='NOT RUN: the compiled Kubeflow pipeline in Docker .*no Docker daemon answers'):
      require_image(IMAGE, required)


def test_an_image_built_from_other_files_fails_saying_how_to_rebuild_it():
  this = image_source.source_hash(configs.REPO_ROOT)
  assert label_problem(IMAGE, {image_source.LABEL: this, 'other': 'x'}, this) is None
  older = label_problem(IMAGE, {image_source.LABEL: '0' * 64}, this)
  assert older == (f'the image {IMAGE} was built from other files than this checkout ({image_source.LABEL} '
                   f'{"0" * 64}, this checkout {this}), so it would test other code')
  assert f'({image_source.LABEL} missing,' in label_problem(IMAGE, None, this)  # built before labels
  for required in (False, True):  # even where a missing Docker only skips
    with pytest.raises(pytest.fail.Exception, match=r'NOT RUN: .*other files than this checkout.*\. '
                                                    r'Rebuild scripts/build_image\.sh'):
      require_image(IMAGE, required, problem=(older, True))
  with pytest.raises(pytest.skip.Exception, match=f'the image {IMAGE} is not built. Run scripts/build_image.sh'):
    require_image(IMAGE, False, problem=(f'the image {IMAGE} is not built', False))
