"""TensorBoard's projector as `tensorboard --logdir` serves it, for the training and pipeline tests."""
import json

import numpy as np
from tensorboard.backend import application
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.plugins import base_plugin
from tensorboard.plugins.projector import projector_plugin
from werkzeug import test as werkzeug_test
from werkzeug import wrappers


def projector_client(logdir: str) -> werkzeug_test.Client:
  """TensorBoard's own projector plugin over `logdir`, its runs found as TensorBoard finds them."""
  multiplexer = plugin_event_multiplexer.EventMultiplexer()
  multiplexer.AddRunsFromDirectory(logdir)
  multiplexer.Reload()
  context = base_plugin.TBContext(
      logdir=logdir, data_provider=data_provider.MultiplexerDataProvider(multiplexer, logdir))
  app = application.TensorBoardWSGI([projector_plugin.ProjectorPlugin(context)])
  return werkzeug_test.Client(app, wrappers.Response)


def projector_embedding(logdir: str, run: str) -> dict:
  """What the Projector tab loads for `run`: the embedding's values, labels and sprite.

  Fails unless TensorBoard lists the run and serves each part of its first embedding."""
  client = projector_client(logdir)
  runs = json.loads(client.get('/data/plugin/projector/runs').get_data())
  assert run in runs, f'the Projector tab lists {runs}, not {run!r}'
  config = json.loads(client.get(f'/data/plugin/projector/info?run={run}').get_data())
  [embedding] = config['embeddings']
  name, shape = embedding['tensorName'], [int(d) for d in embedding['tensorShape']]

  def get(route):
    response = client.get(f'/data/plugin/projector/{route}?run={run}&name={name}')
    assert response.status_code == 200, (route, response.get_data(as_text=True))
    return response.get_data()

  values = np.frombuffer(get('tensor'), np.float32).reshape(shape)
  return {'name': name, 'values': values, 'metadata': get('metadata').decode('utf-8').splitlines(),
          'sprite': get('sprite_image')}
