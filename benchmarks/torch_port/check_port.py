"""The PyTorch side of the port check: the TF reference's weights in the port, the same inputs,
the outputs compared (forward passes, 3 train steps per schedule, metrics).

  python benchmarks/torch_port/check_port.py /tmp/gp_check   (after tf_reference.py; a venv with torch)
"""
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import vaegan_torch as vt  # pylint: disable=wrong-import-position

torch.set_num_threads(2)


def mapping(model):
  """{keras weight key: (torch tensor, kind)} for every weight of the three networks."""
  out = {}

  def bn(prefix, module):
    out[f'{prefix}/gamma'] = (module.weight, 'vector')
    out[f'{prefix}/beta'] = (module.bias, 'vector')
    out[f'{prefix}/moving_mean'] = (module.running_mean, 'vector')
    out[f'{prefix}/moving_variance'] = (module, 'moving_variance')

  for i, block in enumerate(model.encoder.blocks):
    out[f'encoder/enc{i + 1}_conv/kernel'] = (block.conv.weight, 'kernel')
    bn(f'encoder/enc{i + 1}_bn', block.bn)
  for name in ('mean', 'log_variance'):
    out[f'encoder/{name}/kernel'] = (getattr(model.encoder, name).weight, 'dense')
    out[f'encoder/{name}/bias'] = (getattr(model.encoder, name).bias, 'vector')
  out['decoder/dec_dense/kernel'] = (model.decoder.dense.weight, 'dense')
  bn('decoder/dec_dense_bn', model.decoder.dense_bn)
  for i, (deconv, norm) in enumerate(zip(model.decoder.deconvs, model.decoder.bns)):
    out[f'decoder/dec{i + 1}_deconv/kernel'] = (deconv.deconv.weight, 'kernel')
    bn(f'decoder/dec{i + 1}_bn', norm)
  out['decoder/dec_out/kernel'] = (model.decoder.out.deconv.weight, 'kernel')
  out['decoder/dec_out/bias'] = (model.decoder.out.deconv.bias, 'vector')
  for i, block in enumerate(model.discriminator.blocks):
    out[f'discriminator/dis{i + 1}_conv/kernel'] = (block.conv.weight, 'kernel')
    if block.bn is None:
      out[f'discriminator/dis{i + 1}_conv/bias'] = (block.conv.bias, 'vector')
    else:
      bn(f'discriminator/dis{i + 1}_bn', block.bn)
  out['discriminator/logit/kernel'] = (model.discriminator.logit.weight, 'dense')
  out['discriminator/logit/bias'] = (model.discriminator.logit.bias, 'vector')
  return out


def to_keras(tensor, kind):
  if kind == 'moving_variance':
    return tensor.keras_moving_variance().detach().numpy()
  value = tensor.detach().numpy()
  if kind == 'kernel':  # Conv2d (out,in,kh,kw) / ConvTranspose2d (in,out,kh,kw) -> Keras (kh,kw,in|out,out|in)
    return value.transpose(2, 3, 1, 0)
  if kind == 'dense':
    return value.T
  return value


@torch.no_grad()
def load_keras(model, reference, prefix):
  for key, (tensor, kind) in mapping(model).items():
    value = reference[f'{prefix}/{key}']
    if kind == 'moving_variance':
      assert np.all(value == 1.0), 'only initial moving variances can be ported'
      tensor.running_var.fill_(1.0)
      continue
    if kind == 'kernel':
      value = value.transpose(3, 2, 0, 1)
    elif kind == 'dense':
      value = value.T
    assert tuple(tensor.shape) == value.shape, (key, tensor.shape, value.shape)
    tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))
  keys = {k.split('/', 2)[2] for k in reference.files if k.startswith(prefix + '/')}
  assert keys == set(mapping(model)), f'unmapped weights: {keys ^ set(mapping(model))}'


def compare(name, ours, theirs, report):
  ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
  assert ours.shape == theirs.shape, (name, ours.shape, theirs.shape)
  abs_diff = float(np.max(np.abs(ours - theirs)))
  scale = float(np.max(np.abs(theirs))) or 1.0
  report[name] = {'max_abs': abs_diff, 'max_rel_to_scale': abs_diff / scale}
  return abs_diff / scale


def nchw(x):
  return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def nhwc_features(feature, like):
  """Our NCHW-flattened features in Keras' NHWC flatten order."""
  n, c, h, w = like.shape
  return feature.reshape(n, c, h, w).permute(0, 2, 3, 1).reshape(n, -1)


def check_forward(ref, report):
  model = vt.VAEGAN()
  load_keras(model, ref, 'sequential_l4/init')
  x, eps = nchw(ref['batch3/image']), torch.from_numpy(ref['batch3/eps'])
  model.train()
  with torch.no_grad():
    mean, log_variance = model.encoder(x)
    reconstruction = model.decoder(torch.tanh(mean + torch.exp(0.5 * log_variance) * eps))
    real_logit, real_features = model.discriminator(x)
    fake_logit, fake_features = model.discriminator(reconstruction)
    # feature map shapes, for the NHWC reorder
    shapes, h = [], x
    for block in model.discriminator.blocks:
      h = block.conv(vt.same_pad(h))
      shapes.append(h)
    model.eval()
    eval_reconstruction = model.reconstruct(x)
    eval_real_logit = model.discriminator(x)[0]
  ours = {'mean': mean, 'log_variance': log_variance,
          'reconstruction': reconstruction.permute(0, 2, 3, 1), 'real_logit': real_logit,
          'fake_logit': fake_logit, 'eval_reconstruction': eval_reconstruction.permute(0, 2, 3, 1),
          'eval_real_logit': eval_real_logit}
  for i in range(4):
    ours[f'real_features{i + 1}'] = nhwc_features(real_features[i], shapes[i])
    ours[f'fake_features{i + 1}'] = nhwc_features(fake_features[i], shapes[i])
  worst = 0.0
  for key, value in ours.items():
    worst = max(worst, compare(f'forward/{key}', value.numpy(), ref[f'forward/{key}'], report))
  for key, (tensor, kind) in mapping(model).items():  # BN moving statistics after the passes
    if 'moving' in key:
      worst = max(worst, compare(f'forward/after/{key}', to_keras(tensor, kind), ref[f'forward/after/{key}'], report))
  return worst


def train_steps(ref, case, overrides, dtype):
  """The port's 3 train steps from the reference's initial weights, in float32 or float64."""
  config = dict(vt.DEFAULTS, **overrides)
  model = vt.VAEGAN().train()
  load_keras(model, ref, f'{case}/init')
  model.to(dtype)
  trainer = vt.Trainer(model, config, total_steps=3)
  logged = []
  for step in range(3):
    trainer.lr.fill_(trainer.learning_rate_at(step))
    values = trainer.step(nchw(ref[f'batch{step}/image']).to(dtype), torch.from_numpy(ref[f'batch{step}/eps']).to(dtype))
    logged.append(dict(zip(vt.LOGGED, values.tolist())))
  model.eval()
  with torch.no_grad():
    recon = model.reconstruct(nchw(ref['batch3/image']).to(dtype)).permute(0, 2, 3, 1).double().numpy()
  weights = {key: to_keras(tensor, kind).astype(np.float64) for key, (tensor, kind) in mapping(model).items()}
  return logged, weights, recon


def check_training(ref, case, overrides, report):
  """Weights after 3 steps: the port (float32) against TF, and the port in float32 against float64.

  Adam's first steps move every weight by about lr·sign(g), so weights whose gradient is near 0
  take either sign on float32 rounding: the float32-vs-float64 distance is the noise floor that a
  correct port cannot beat; a wrong one would sit far above it.
  """
  logged32, weights32, recon32 = train_steps(ref, case, overrides, torch.float32)
  logged64, weights64, recon64 = train_steps(ref, case, overrides, torch.float64)
  worst_loss = 0.0
  for step, logged in enumerate(logged32):
    for key, value in logged.items():
      if f'{case}/step{step}/{key}' in ref.files:
        worst_loss = max(worst_loss, compare(f'{case}/step{step}/{key}', value, ref[f'{case}/step{step}/{key}'], report))
  per_network = {}
  for key, theirs in ((k, ref[f'{case}/trained/{k}']) for k in weights32):
    if 'moving' in key:
      continue
    moved = np.linalg.norm(theirs - ref[f'{case}/init/{key}'])
    ratios = [float(np.linalg.norm(a - b) / moved) if moved > 0 else 0.0
              for a, b in ((weights32[key], theirs), (weights64[key], theirs), (weights32[key], weights64[key]))]
    report[f'{case}/trained/{key}'] = dict(zip(('port32_vs_tf', 'port64_vs_tf', 'port32_vs_port64'), ratios))
    net = key.split('/')[0]
    per_network[net] = [max(a, b) for a, b in zip(per_network.get(net, [0.0] * 3), ratios)]
  recon = ref[f'{case}/trained_reconstruction']
  return {'first_step_losses_max_rel': max(abs(logged32[0][k] - float(ref[f'{case}/step0/{k}'])) / abs(float(ref[f'{case}/step0/{k}']))
                                            for k in ('discriminator_loss', 'd_real', 'd_fake')),
          'all_losses_max_rel': worst_loss,
          'weights_l2_diff_over_move_max_per_network [port32 vs TF, port64 vs TF, port32 vs port64]':
              {k: [round(x, 4) for x in v] for k, v in per_network.items()},
          'eval_reconstruction_max_abs [port32 vs TF, port32 vs port64]':
              [float(np.abs(recon32 - recon).max()), float(np.abs(recon32 - recon64).max())]}


def check_grads(directory, report):
  """Each network's gradient of its own loss from one forward pass, against VAEGAN.one_pass_gradients."""
  ref = np.load(os.path.join(directory, 'tf_grads.npz'))
  summary = {}
  batch = np.load(os.path.join(directory, 'tf_reference.npz'))
  x, eps = nchw(batch['batch0/image']), torch.from_numpy(batch['batch0/eps'])
  for case, overrides in {'l4': {'dis_l_layer': 4}, 'l3_pixel': {'dis_l_layer': 3, 'pixel_weight': 0.5}}.items():
    config = dict(vt.DEFAULTS, **overrides)
    grads, logged = {}, None
    for dtype in (torch.float32, torch.float64):
      model = vt.VAEGAN().train()
      load_keras(model, ref, f'{case}/init')
      model.to(dtype)
      network_losses, logged_now = vt.forward_losses(model, config, x.to(dtype), eps.to(dtype))
      logged = logged if logged is not None else logged_now
      table = mapping(model)
      for name, net in model.networks().items():
        params = list(net.parameters())
        by_id = dict(zip([id(p) for p in params], torch.autograd.grad(network_losses[name], params,
                                                                       retain_graph=True)))
        for key, (tensor, kind) in table.items():
          if key.startswith(name + '/') and kind != 'moving_variance' and 'moving_mean' not in key:
            grads[(key, dtype)] = to_keras(by_id[id(tensor)], kind).astype(np.float64)
    worst, worst_key, floor = 0.0, None, 0.0
    for key in sorted({k for k, _ in grads}):
      theirs, ours, exact = ref[f'{case}/grad/{key}'], grads[(key, torch.float32)], grads[(key, torch.float64)]
      norm = max(np.linalg.norm(exact), 1e-30)
      error = float(np.linalg.norm(ours - theirs) / norm)
      report[f'grads/{case}/{key}'] = {'port32_vs_tf': error,
                                       'tf_vs_float64': float(np.linalg.norm(theirs - exact) / norm),
                                       'port32_vs_float64': float(np.linalg.norm(ours - exact) / norm)}
      floor = max(floor, report[f'grads/{case}/{key}']['tf_vs_float64'])
      if error > worst:
        worst, worst_key = error, key
    loss_error = max(abs(float(logged[k]) - float(ref[f'{case}/logged/{k}'])) / max(abs(float(ref[f'{case}/logged/{k}'])), 1e-12)
                     for k in vt.LOGGED)
    summary[case] = {'worst_relative_l2_error_port32_vs_tf': worst, 'worst_weight': worst_key,
                     'worst_relative_l2_error_tf_vs_float64_port': floor, 'losses_max_rel': loss_error}
  # Adam on fixed gradients
  param = torch.from_numpy(ref['adam/initial'].copy())
  lr = torch.tensor(2e-4)
  adam = vt.KerasAdam([param], lr, beta1=0.5)
  adam_error = 0.0
  for step in range(6):
    if step == 3:
      lr.fill_(1e-4)
    adam.apply([torch.from_numpy(ref[f'adam/grad{step}'])])
    moved = np.abs(ref[f'adam/after{step}'] - ref['adam/initial']).max()
    adam_error = max(adam_error, float(np.abs(param.numpy() - ref[f'adam/after{step}']).max() / moved))
  summary['adam_max_abs_over_move'] = adam_error
  return summary


def check_metrics(directory, report):
  with open(os.path.join(directory, 'tf_metrics.json'), encoding='utf-8') as f:
    theirs = json.load(f)
  arrays = np.load(os.path.join(directory, 'tf_metrics.npz'))
  glyphs = np.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'glyphs.npz'))
  data, references = vt.load_data(os.path.join(os.path.dirname(os.path.abspath(__file__)), 'glyphs.npz'),
                                  torch.device('cpu'), 0)
  eval01 = data['eval01']
  out = {}
  for name in ('noisy', 'pca25_shifted'):
    images = nchw(arrays[name])
    per_image = vt.reconstruction_per_image(eval01, images)
    out[name] = {f'per_image_{k}_max_abs': float(np.max(np.abs(v.double().numpy() - arrays[f'{name}/{k}'])))
                 for k, v in per_image.items()}
    ours = {'reconstruction': vt.reconstruction_summary(eval01, images), 'identity': references.identity(images),
            'diversity': vt.mean_pairwise_distance(images[:512]) / vt.mean_pairwise_distance(eval01[:512])}
    out[name]['ours'], out[name]['theirs'] = ours, theirs[name]
  train01 = (glyphs['train'].astype(np.float32) / 127.5 - 1.0 + 1.0) / 2.0
  eval01_np = (glyphs['eval'].astype(np.float32) / 127.5 - 1.0 + 1.0) / 2.0
  ours = vt.measure_baselines(train01, eval01_np, references, 100, torch.device('cpu'))
  out['baselines'] = {'ours': ours, 'theirs': theirs['baselines']}
  report['metrics'] = out
  worst = 0.0

  def walk(a, b, path):
    nonlocal worst
    if isinstance(a, dict):
      for k in a:
        walk(a[k], b[k], f'{path}/{k}')
    else:
      worst = max(worst, abs(a - b))
      if abs(a - b) > 1e-5:
        print(f'  metric differs: {path}: ours {a} theirs {b}')
  for name in ('noisy', 'pca25_shifted'):
    walk(out[name]['ours'], out[name]['theirs'], name)
  walk(out['baselines']['ours'], out['baselines']['theirs'], 'baselines')
  return worst, out


def main(directory):
  ref = np.load(os.path.join(directory, 'tf_reference.npz'))
  report = {}
  summary = {'forward_max_rel': check_forward(ref, report)}
  if os.path.exists(os.path.join(directory, 'tf_grads.npz')):
    summary['gradients'] = check_grads(directory, report)
  cases = {'sequential_l4': {'update_schedule': 'sequential', 'dis_l_layer': 4},
           'one_pass_l3_decay_pixel': {'update_schedule': 'one_pass', 'dis_l_layer': 3,
                                       'learning_rate_decay': 0.5, 'pixel_weight': 0.5},
           'sequential_l3': {'update_schedule': 'sequential', 'dis_l_layer': 3}}
  for case, overrides in cases.items():
    summary[case] = check_training(ref, case, overrides, report)
  if os.path.exists(os.path.join(directory, 'tf_metrics.json')):
    summary['metrics_max_abs_diff'], metrics = check_metrics(directory, report)
    summary['baselines'] = {name: {'psnr': v['reconstruction']['psnr']['mean'],
                                   'ssim': v['reconstruction']['ssim']['mean'],
                                   **v.get('identity', {})} for name, v in metrics['baselines']['ours'].items()}
    summary['per_image'] = {name: {k: v for k, v in metrics[name].items() if k.startswith('per_image')}
                            for name in ('noisy', 'pca25_shifted')}
  with open(os.path.join(directory, 'check_report.json'), 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=1)
  print(json.dumps(summary, indent=1))


if __name__ == '__main__':
  main(sys.argv[1])
