"""The TF Serving manifests (kubeflow/serving/): what `kubectl apply -k` would send passes
Kubernetes' schemas, TF Serving can parse its model config, the server is started as
serving/tf_serving.py starts it locally, and the pieces agree with each other and with the
pipeline (model name, Pusher's base path, ports the CLI uses)."""
import os

import kubernetes_validate
import pytest
import yaml
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from cns_vaegan.pipeline import configs
from cns_vaegan.serving import tf_serving

SERVING = os.path.join(configs.REPO_ROOT, 'kubeflow', 'serving')
# Every Kubernetes minor version kubernetes-validate has schemas for (1.25 ... 1.37).
K8S_VERSIONS = sorted(set(kubernetes_validate.utils.all_versions()))


def _kustomization():
  with open(os.path.join(SERVING, 'kustomization.yaml')) as f:
    return yaml.safe_load(f)


def _resources():
  """The resources kustomize assembles: every document of every listed file, in order."""
  resources = []
  for name in _kustomization()['resources']:
    with open(os.path.join(SERVING, name)) as f:
      resources += [document for document in yaml.safe_load_all(f) if document]
  return resources


def _one(kind):
  [resource] = [r for r in _resources() if r['kind'] == kind]
  return resource


def test_kustomization_lists_every_manifest_and_nothing_else():
  kustomization = _kustomization()
  assert kustomization['apiVersion'] == 'kustomize.config.k8s.io/v1beta1'
  assert kustomization['kind'] == 'Kustomization'
  assert set(kustomization) == {'apiVersion', 'kind', 'resources'}  # no patches to apply
  on_disk = {name for name in os.listdir(SERVING) if name.endswith('.yaml')} - {'kustomization.yaml'}
  assert sorted(kustomization['resources']) == sorted(on_disk)


@pytest.mark.parametrize('version', K8S_VERSIONS)
def test_every_resource_passes_kubernetes_schema_validation(version):
  resources = _resources()
  assert {r['kind'] for r in resources} == {'ServiceAccount', 'ConfigMap', 'Deployment', 'Service'}
  for resource in resources:
    kubernetes_validate.validate(resource, version, strict=True)  # raises on any error


def test_tf_serving_parses_the_model_config_of_the_pushers_base_path():
  config_map = _one('ConfigMap')
  config = text_format.Parse(config_map['data']['models.config'],
                             model_server_config_pb2.ModelServerConfig())
  [model] = config.model_config_list.config
  assert model.name == configs.MODEL_NAME
  # The Pusher writes <serving base>/<model name>/<unix time>/; the base is cluster-specific.
  assert model.base_path.endswith('/' + configs.MODEL_NAME) and '://' in model.base_path
  assert model.model_version_policy.latest.num_versions == 1  # the newest version
  # The same files serving/tf_serving.py writes for a local tensorflow_model_server.
  serving_base = model.base_path[:-len('/' + configs.MODEL_NAME)]
  assert config == tf_serving.model_server_config(configs.MODEL_NAME, serving_base)
  assert config_map['data']['batching.config'] == tf_serving.batching_config()
  assert config_map['data']['monitoring.config'] == tf_serving.MONITORING_CONFIG


def test_deployment_starts_tf_serving_as_tf_serving_py_does_with_probes():
  deployment, service, config_map = _one('Deployment'), _one('Service'), _one('ConfigMap')
  pod = deployment['spec']['template']['spec']
  [container] = pod['containers']
  assert container['image'] == tf_serving.TF_SERVING_IMAGE
  [mount] = container['volumeMounts']
  [volume] = pod['volumes']
  assert volume['name'] == mount['name'] and volume['configMap']['name'] == config_map['metadata']['name']
  files = {name: f'{mount["mountPath"]}/{name}' for name in config_map['data']}
  assert container['command'] + container['args'] == tf_serving.command(files, port=8500, rest_port=8501)

  assert {p['name']: p['containerPort'] for p in container['ports']} == {'grpc': 8500, 'http': 8501}
  assert container['readinessProbe']['httpGet'] == {'path': f'/v1/models/{configs.MODEL_NAME}', 'port': 'http'}
  assert container['livenessProbe']['tcpSocket'] == {'port': 'grpc'}
  assert container['startupProbe']['tcpSocket'] == {'port': 'grpc'}
  assert {'cpu', 'memory'} <= set(container['resources']['requests'])
  assert pod['serviceAccountName'] == _one('ServiceAccount')['metadata']['name']

  # The Service the README port-forwards (svc/cns-vaegan-serving 8500) reaches these pods.
  assert service['metadata']['name'] == 'cns-vaegan-serving'
  labels = deployment['spec']['template']['metadata']['labels']
  assert service['spec']['selector'].items() <= labels.items()
  assert deployment['spec']['selector']['matchLabels'].items() <= labels.items()
  assert {p['port']: p['targetPort'] for p in service['spec']['ports']} == {8500: 'grpc', 8501: 'http'}
