"""PyTorch re-implementation of cns-vaegan's TF VAE-GAN trainer and of its reconstruction metrics.

A PORT, not the project's code: it exists because the GPU machine we can borrow has PyTorch but
no TensorFlow. It mirrors, line for line where it can:
  components/trainer/networks.py   encoder / decoder / discriminator (Keras 'same' padding,
                                   NHWC flatten order, glorot-uniform kernels, zero biases)
  components/trainer/vaegan.py     losses (Eq. 9), latent tanh, 'sequential' and 'one_pass' steps
  components/trainer/input_data.py shuffled epochs streamed back to back, batch 64
  keras Adam / BatchNormalization  exact update rules (Keras epsilon placement, biased moving var)
  components/evaluator/quality_metrics.py, baselines.py
                                   PSNR, SSIM (= tf.image.ssim), identity top-1/top-5 among all
                                   glyphs, mean glyph and PCA baselines, sample diversity.
Several cells (recipes) train side by side in one process, each on its own CUDA stream, each
step replayed from a CUDA graph; every cell stops cleanly at a wall-clock deadline and is still
evaluated and saved. One JSON line per evaluation on stdout; in --out (3 files, as the GPU
machine returns at most 8): results.json (every evaluation, the baselines, the run), glyphs.png
(eval glyphs, then per cell its reconstructions of them and prior samples) and
reconstructions.npz (every cell's final reconstructions of all eval glyphs, uint8).
"""
import time

_STARTED = time.time()  # the deadline counts from here, before the slow imports

import argparse  # pylint: disable=wrong-import-position
import collections  # pylint: disable=wrong-import-position
import json  # pylint: disable=wrong-import-position
import math  # pylint: disable=wrong-import-position
import os  # pylint: disable=wrong-import-position
import sys  # pylint: disable=wrong-import-position

import numpy as np  # pylint: disable=wrong-import-position
import torch  # pylint: disable=wrong-import-position
import torch.nn.functional as F  # pylint: disable=wrong-import-position
from torch import nn  # pylint: disable=wrong-import-position

LOG_2PI = math.log(2.0 * math.pi)
DIVERSITY_SET = 512

# The recipes to compare (TrainingConfig fields that differ from the seed's defaults).
CELLS = {
    'seed': {'update_schedule': 'sequential', 'dis_l_layer': 4},
    'seed_l3': {'update_schedule': 'sequential', 'dis_l_layer': 3},
    'one_pass_l3': {'update_schedule': 'one_pass', 'dis_l_layer': 3},
    'one_pass_l3_decay': {'update_schedule': 'one_pass', 'dis_l_layer': 3, 'learning_rate_decay': 0.3},
}
DEFAULTS = {  # training_config.TrainingConfig's defaults (the seed's)
    'update_schedule': 'sequential', 'dis_l_layer': 4, 'learning_rate': 2e-4, 'beta1': 0.5,
    'gamma': 0.1, 'decoder_steps_per_discriminator_step': 2, 'kl_weight': 1.0, 'pixel_weight': 0.0,
    'learning_rate_decay': 0.0,
}
_SHORT = {'schedule': 'update_schedule', 'layer': 'dis_l_layer', 'lr': 'learning_rate',
          'decay': 'learning_rate_decay', 'pixel': 'pixel_weight', 'kl': 'kl_weight',
          'decoder_steps': 'decoder_steps_per_discriminator_step'}


def cell_config(spec: str):
  """'seed' or 'name:key=value,...' (keys: TrainingConfig fields or schedule/layer/lr/decay/pixel/kl)."""
  name, _, rest = spec.partition(':')
  config = dict(DEFAULTS)
  if name in CELLS:
    config.update(CELLS[name])
  elif not rest:
    raise SystemExit(f'unknown cell {name!r} (known: {sorted(CELLS)}, or name:key=value,...)')
  for item in filter(None, rest.split(',')):
    key, _, value = item.partition('=')
    key = _SHORT.get(key, key)
    if key not in DEFAULTS:
      raise SystemExit(f'cell {name}: unknown key {key!r} (known: {sorted(DEFAULTS)})')
    config[key] = value if key == 'update_schedule' else type(DEFAULTS[key])(float(value))
  if config['update_schedule'] not in ('sequential', 'one_pass') or config['dis_l_layer'] not in (1, 2, 3, 4):
    raise SystemExit(f'cell {name}: bad update_schedule or dis_l_layer in {config}')
  return name, config


# ------------------------------------------------------------------------------ networks
class BatchNorm(nn.Module):
  """keras.layers.BatchNormalization(momentum 0.9, epsilon 1e-5) over dim 1.

  Training normalizes with the batch's (biased) statistics through cuDNN, which updates the
  running variance with the UNBIASED batch variance where Keras uses the biased one. Every
  training call normalizes the same n values per channel, so Keras' moving variance is an exact
  affine function of PyTorch's: keras = (torch - c)(n - 1)/n + c, c = 0.9^t the weight still on
  the initial 1 after t updates. Inference uses that Keras value.
  """

  def __init__(self, channels, momentum=0.9, eps=1e-5):
    super().__init__()
    self.keras_momentum, self.eps = momentum, eps
    self.weight = nn.Parameter(torch.ones(channels))
    self.bias = nn.Parameter(torch.zeros(channels))
    self.register_buffer('running_mean', torch.zeros(channels))
    self.register_buffer('running_var', torch.ones(channels))
    self.register_buffer('updates', torch.zeros(()))
    self.n = None  # values per channel in a training call

  def forward(self, x):
    if self.training:
      n = x.numel() // x.shape[1]
      if self.n is None:
        self.n = n
      elif n != self.n:
        raise ValueError(f'BatchNorm: training batches must keep one shape ({n} != {self.n} values)')
      self.updates.add_(1.0)
      return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, True,
                          1.0 - self.keras_momentum, self.eps)
    return F.batch_norm(x, self.running_mean, self.keras_moving_variance(), self.weight, self.bias,
                        False, 0.0, self.eps)

  def keras_moving_variance(self):
    if self.n is None:
      return self.running_var
    c = self.keras_momentum ** self.updates
    return (self.running_var - c) * ((self.n - 1) / self.n) + c


def same_pad(x):
  """TF 'SAME' padding of a 5x5 stride-2 conv: (total 3 on even sizes) 1 before, 2 after."""
  def pads(size):
    total = max((-(-size // 2) - 1) * 2 + 5 - size, 0)
    return total // 2, total - total // 2
  top, bottom = pads(x.shape[2])
  left, right = pads(x.shape[3])
  return F.pad(x, (left, right, top, bottom))


class ConvBlock(nn.Module):
  """Conv2D(5, stride 2, 'same', bias only without BN) [-> BN] -> LeakyReLU."""

  def __init__(self, cin, cout, slope, batch_norm=True):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, 5, stride=2, bias=not batch_norm)
    self.bn = BatchNorm(cout) if batch_norm else None
    self.slope = slope

  def forward(self, x):
    x = self.conv(same_pad(x))
    if self.bn is not None:
      x = self.bn(x)
    return F.leaky_relu(x, self.slope)


class Deconv(nn.Module):
  """Conv2DTranspose(5, stride 2, 'same'): output 2x; TF puts input j at outputs 2j-1..2j+3.

  PyTorch's padding p puts it at 2j-p..2j-p+4, so p=1 and the extra last row/column dropped.
  """

  def __init__(self, cin, cout, bias):
    super().__init__()
    self.deconv = nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=1, bias=bias)

  def forward(self, x):
    h, w = x.shape[2:]
    return self.deconv(x)[:, :, :2 * h, :2 * w]


def nhwc_flatten(x):
  """Keras' Flatten of an NHWC tensor (the dense layers' weight order)."""
  return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class Encoder(nn.Module):
  def __init__(self, ch, z_dim, slope, img_c=1, img_hw=32):
    super().__init__()
    self.blocks = nn.ModuleList(
        [ConvBlock(img_c if i == 0 else ch * 2 ** (i - 1), ch * 2 ** i, slope) for i in range(4)])
    flat = (img_hw // 16) ** 2 * ch * 8
    self.mean = nn.Linear(flat, z_dim)
    self.log_variance = nn.Linear(flat, z_dim)

  def forward(self, x):
    for block in self.blocks:
      x = block(x)
    x = nhwc_flatten(x)
    return self.mean(x), self.log_variance(x)


class Decoder(nn.Module):
  def __init__(self, ch, z_dim, img_c=1, img_hw=32):
    super().__init__()
    self.hw, self.ch = img_hw // 16, ch
    self.dense = nn.Linear(z_dim, self.hw * self.hw * ch * 8, bias=False)
    self.dense_bn = BatchNorm(self.hw * self.hw * ch * 8)
    self.deconvs = nn.ModuleList([Deconv(ch * a, ch * b, bias=False) for a, b in ((8, 4), (4, 2), (2, 1))])
    self.bns = nn.ModuleList([BatchNorm(ch * m) for m in (4, 2, 1)])
    self.out = Deconv(ch, img_c, bias=True)

  def forward(self, z):
    x = F.relu(self.dense_bn(self.dense(z)))
    x = x.view(-1, self.hw, self.hw, self.ch * 8).permute(0, 3, 1, 2)  # Keras Reshape (NHWC)
    for deconv, bn in zip(self.deconvs, self.bns):
      x = F.relu(bn(deconv(x)))
    return torch.tanh(self.out(x))


class Discriminator(nn.Module):
  def __init__(self, ch, slope, img_c=1, img_hw=32):
    super().__init__()
    self.blocks = nn.ModuleList([ConvBlock(img_c if i == 0 else ch * 2 ** (i - 1), ch * 2 ** i, slope,
                                           batch_norm=i > 0) for i in range(4)])
    self.logit = nn.Linear((img_hw // 16) ** 2 * ch * 8, 1)

  def forward(self, x):
    """(logit, [features of conv 1..4]); the features in NCHW flatten order (Dis_l sums over them)."""
    features = []
    for block in self.blocks:
      x = block(x)
      features.append(x.reshape(x.shape[0], -1))
    return self.logit(nhwc_flatten(x)), features


def keras_init(module):
  """glorot_uniform kernels (fan sums as Keras), zero biases; BN gamma 1, beta 0."""
  for m in module.modules():
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
      nn.init.xavier_uniform_(m.weight)
      if m.bias is not None:
        nn.init.zeros_(m.bias)


class VAEGAN(nn.Module):
  def __init__(self, ch=64, z_dim=100, slope=0.02):
    super().__init__()
    self.z_dim = z_dim
    self.encoder = Encoder(ch, z_dim, slope)
    self.decoder = Decoder(ch, z_dim)
    self.discriminator = Discriminator(ch, slope)
    keras_init(self)

  def networks(self):
    return {'discriminator': self.discriminator, 'decoder': self.decoder, 'encoder': self.encoder}

  @torch.no_grad()
  def reconstruct(self, images, batch=1024):
    """Through the encoder MEAN: z = tanh(mean) (the served model's reconstruct)."""
    out = []
    for start in range(0, len(images), batch):
      mean, _ = self.encoder(images[start:start + batch])
      out.append(self.decoder(torch.tanh(mean)))
    return torch.cat(out)


# --------------------------------------------------------------------------------- losses
def bce(logits, label):
  logits = logits.reshape(-1)
  target = torch.ones_like(logits) if label else torch.zeros_like(logits)
  return F.binary_cross_entropy_with_logits(logits, target)


def forward_losses(model, config, images, eps):
  """vaegan.VAEGAN._forward + _losses: each network's loss (batch means) and the logged terms."""
  mean, log_variance = model.encoder(images)
  reconstructions = model.decoder(torch.tanh(mean + torch.exp(0.5 * log_variance) * eps))
  real_logit, real_features = model.discriminator(images)
  fake_logit, fake_features = model.discriminator(reconstructions)
  layer = config['dis_l_layer'] - 1
  dis_l = (0.5 * (torch.square(real_features[layer] - fake_features[layer]) + LOG_2PI).sum(-1)).mean()
  kl = (0.5 * (torch.exp(log_variance) + torch.square(mean) - 1.0 - log_variance).sum(-1)).mean()
  real_bce, fake_bce = bce(real_logit, 1), bce(fake_logit, 0)
  gan = bce(fake_logit, 1)
  decoder = gan + config['gamma'] * dis_l
  encoder = config['kl_weight'] * kl + dis_l
  if config['pixel_weight']:
    pixel = (images - reconstructions).abs().reshape(len(images), -1).sum(-1).mean()
    decoder = decoder + config['pixel_weight'] * pixel
    encoder = encoder + config['pixel_weight'] * pixel
  logged = {'discriminator_loss': real_bce + fake_bce, 'd_real': torch.sigmoid(real_logit).mean(),
            'd_fake': torch.sigmoid(fake_logit).mean(), 'decoder_loss': decoder, 'decoder_gan': gan,
            'encoder_loss': encoder, 'kl': kl, 'dis_l': dis_l}
  return {'discriminator': real_bce + fake_bce, 'decoder': decoder, 'encoder': encoder}, logged


LOGGED = ('discriminator_loss', 'd_real', 'd_fake', 'decoder_loss', 'decoder_gan', 'encoder_loss', 'kl', 'dis_l')
_LOGGED_BY = {'discriminator': ('discriminator_loss', 'd_real', 'd_fake'),
              'decoder': ('decoder_loss', 'decoder_gan'),
              'encoder': ('encoder_loss', 'kl', 'dis_l')}


class KerasAdam:
  """keras.optimizers.Adam's update_step: m += (g-m)(1-b1); v += (g²-v)(1-b2);
  p -= lr·sqrt(1-b2^t)/(1-b1^t) · m / (sqrt(v) + eps), t counting this optimizer's applies."""

  def __init__(self, params, lr, beta1=0.5, beta2=0.999, eps=1e-7):
    self.params, self.lr = list(params), lr  # lr: a 0-d tensor (changed in place by decay)
    self.beta1, self.beta2, self.eps = beta1, beta2, eps
    self.m = [torch.zeros_like(p) for p in self.params]
    self.v = [torch.zeros_like(p) for p in self.params]
    self.t = torch.zeros((), device=self.params[0].device)

  @torch.no_grad()
  def apply(self, grads):
    grads = list(grads)
    self.t.add_(1.0)
    alpha = self.lr * torch.sqrt(1.0 - torch.pow(self.beta2, self.t)) / (1.0 - torch.pow(self.beta1, self.t))
    torch._foreach_lerp_(self.m, grads, 1.0 - self.beta1)
    torch._foreach_lerp_(self.v, torch._foreach_mul(grads, grads), 1.0 - self.beta2)
    denominators = torch._foreach_sqrt(self.v)
    torch._foreach_add_(denominators, self.eps)
    updates = torch._foreach_div(self.m, denominators)
    torch._foreach_mul_(updates, alpha)
    torch._foreach_sub_(self.params, updates)


class Trainer:
  """A VAEGAN, its three Adams and the train step of one recipe (vaegan.VAEGAN.train_step)."""

  def __init__(self, model, config, total_steps):
    self.model, self.config, self.total_steps = model, config, total_steps
    device = next(model.parameters()).device
    self.lr = torch.tensor(float(config['learning_rate']), device=device)
    self.params = {name: [p for p in net.parameters()] for name, net in model.networks().items()}
    self.optimizers = {name: KerasAdam(params, self.lr, beta1=config['beta1'])
                       for name, params in self.params.items()}

  def learning_rate_at(self, step):
    """VAEGAN.learning_rate_at: constant, then linear to 0 over the last `decay` share."""
    decay_steps = self.config['learning_rate_decay'] * self.total_steps
    if decay_steps <= 0:
      return self.config['learning_rate']
    return self.config['learning_rate'] * min(1.0, max(self.total_steps - step, 0) / decay_steps)

  def _update(self, name, images, eps):
    network_losses, logged = forward_losses(self.model, self.config, images, eps)
    grads = torch.autograd.grad(network_losses[name], self.params[name])
    self.optimizers[name].apply(grads)
    return {k: logged[k] for k in _LOGGED_BY[name]}

  def step(self, images, eps):
    """One train step; returns the logged terms as one tensor (LOGGED order)."""
    logged = {}
    if self.config['update_schedule'] == 'sequential':
      logged.update(self._update('discriminator', images, eps))
      for _ in range(self.config['decoder_steps_per_discriminator_step']):
        logged.update(self._update('decoder', images, eps))
      logged.update(self._update('encoder', images, eps))
    else:
      network_losses, logged = forward_losses(self.model, self.config, images, eps)
      names = ('discriminator', 'decoder', 'encoder')
      grads = {name: torch.autograd.grad(network_losses[name], self.params[name],
                                         retain_graph=name != names[-1]) for name in names}
      for name in names:
        self.optimizers[name].apply(grads[name])
    return torch.stack([logged[k].detach() for k in LOGGED])


# -------------------------------------------------------------------------------- metrics
def gaussian_window(size=11, sigma=1.5, device='cpu'):
  """tf.image's _fspecial_gauss: softmax of -(x²+y²)/(2σ²)."""
  coords = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2.0
  g = torch.square(coords) * (-0.5 / sigma ** 2)
  g = (g[None, :] + g[:, None]).reshape(1, -1)
  return torch.softmax(g, dim=-1).reshape(1, 1, size, size)


def ssim(a, b, max_val=1.0, k1=0.01, k2=0.03):
  """tf.image.ssim per image of (n, c, h, w) in [0, max_val]: 'valid' 11x11 Gaussian window.

  In float64 (TF: float32): E[xy] - E[x]E[y] cancels, and a GPU may run float32 convs in TF32.
  """
  channels = a.shape[1]
  a, b = a.double(), b.double()
  window = gaussian_window(device=a.device).double().repeat(channels, 1, 1, 1)
  reduce = lambda x: F.conv2d(x, window, groups=channels)
  c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
  mean0, mean1 = reduce(a), reduce(b)
  num0 = mean0 * mean1 * 2.0
  den0 = torch.square(mean0) + torch.square(mean1)
  luminance = (num0 + c1) / (den0 + c1)
  num1 = reduce(a * b) * 2.0
  den1 = reduce(torch.square(a) + torch.square(b))
  cs = (num1 - num0 + c2) / (den1 - den0 + c2)
  return (luminance * cs).mean(dim=(2, 3)).mean(dim=1).float()


def reconstruction_per_image(real, reconstructed):
  """quality_metrics.reconstruction_per_image on (n, c, h, w) tensors in [0, 1]."""
  mse = torch.mean(torch.square(real - reconstructed), dim=(1, 2, 3))
  psnr = 10.0 * torch.log10(1.0 / torch.clamp(mse, min=1e-10))
  return {'mse': mse, 'psnr': psnr, 'ssim': ssim(real, reconstructed)}


def mean_and_worst_decile(values, higher_is_better):
  ordered = np.sort(np.asarray(values, np.float64))
  if higher_is_better:
    ordered = ordered[::-1]
  worst = ordered[-max(1, len(ordered) // 10):]
  return {'mean': float(np.mean(ordered)), 'worst_decile': float(np.mean(worst))}


def reconstruction_summary(real, reconstructed):
  per_image = reconstruction_per_image(real, reconstructed)
  return {k: mean_and_worst_decile(v.double().cpu().numpy(), higher_is_better=k != 'mse')
          for k, v in per_image.items()}


class References:
  """Every glyph (eval first, then train) in [0, 1], float64 flattened, for identity."""

  def __init__(self, eval01, train01):
    self.refs = torch.cat([eval01, train01]).reshape(len(eval01) + len(train01), -1).double()
    self.squared = torch.sum(self.refs ** 2, dim=1)

  def identity(self, reconstructions, ranks=(1, 5), batch=512):
    """quality_metrics.identity: reconstruction i's own glyph is reference i; rank by pixel L2
    (|r|² - 2q·r, float64), ties with the own glyph counting for it."""
    rank_of_own = []
    for start in range(0, len(reconstructions), batch):
      queries = reconstructions[start:start + batch].reshape(-1, self.refs.shape[1]).double()
      distances = self.squared[None, :] - 2.0 * queries @ self.refs.T
      own = torch.arange(start, start + len(queries), device=queries.device)
      own_distance = distances[torch.arange(len(queries), device=queries.device), own]
      rank_of_own.append(torch.sum(distances < own_distance[:, None], dim=1))
    rank_of_own = torch.cat(rank_of_own)
    return {f'top{k}': float(torch.mean((rank_of_own < k).double())) for k in ranks}


def mean_pairwise_distance(images):
  flat = images.reshape(len(images), -1).double()
  squared = torch.sum(flat ** 2, dim=1)
  distances = torch.sqrt(torch.clamp(squared[:, None] + squared[None, :] - 2 * flat @ flat.T, min=0))
  n = len(flat)
  return float(distances.sum() / max(n * (n - 1), 1))


def baseline_reconstructions(train01_np, measured01_np, z_dim):
  """baselines.reconstructors on numpy (as the project): mean glyph and PCA-k, fitted on train."""
  mean = train01_np.mean(axis=0, dtype=np.float64).astype(np.float32)
  out = {'mean_glyph': np.broadcast_to(mean, measured01_np.shape).copy()}
  components = sorted({max(1, z_dim // 4), max(1, z_dim // 2), z_dim})
  flat = np.asarray(train01_np, np.float64).reshape(len(train01_np), -1)
  centre = flat.mean(axis=0)
  _, _, vt = np.linalg.svd(flat - centre, full_matrices=False)
  basis = vt[:max(1, min(max(components), len(flat) // 2))].T
  for k in components:
    b = basis[:, :k]
    x = (np.asarray(measured01_np, np.float64).reshape(len(measured01_np), -1) - centre) @ b @ b.T
    out[f'pca_{k}'] = np.clip(x + centre, 0.0, 1.0).astype(np.float32).reshape(measured01_np.shape)
  return out


def measure_baselines(train01_np, eval01_np, references, z_dim, device):
  """baselines.measure: reconstruction summary of each baseline; identity but for the constant."""
  report = {}
  real = torch.from_numpy(eval01_np).permute(0, 3, 1, 2).contiguous().to(device)
  for name, recon in baseline_reconstructions(train01_np, eval01_np, z_dim).items():
    recon = torch.from_numpy(recon).permute(0, 3, 1, 2).contiguous().to(device)
    report[name] = {'reconstruction': reconstruction_summary(real, recon)}
    if name != 'mean_glyph':
      report[name]['identity'] = references.identity(recon)
  return report


# ------------------------------------------------------------------------------- figures
def figure_png(panels, labels, path, columns=16, padding=2):
  """Panels of glyphs (each (n, h, w) in [0, 1], 16 a row) stacked top to bottom, one gap row
  between panels: white on black as glyph_figures.grid. The order is `labels`' (results.json)."""
  rows = []
  h, w = panels[0].shape[1:]
  for panel in panels:
    images = np.clip(np.round(np.asarray(panel) * 255.0), 0, 255).astype(np.uint8)
    for start in range(0, len(images), columns):
      row = np.zeros((h + padding, columns * (w + padding) + padding), np.uint8)
      for i, image in enumerate(images[start:start + columns]):
        row[padding:, padding + i * (w + padding):padding + i * (w + padding) + w] = image
      rows.append(row)
    rows.append(np.full((padding * 3, rows[-1].shape[1]), 96, np.uint8))  # a grey rule between panels
  canvas = np.concatenate(rows)
  try:
    from PIL import Image  # pylint: disable=import-outside-toplevel
    Image.fromarray(canvas).save(path)
  except ImportError:
    np.save(path + '.npy', canvas)


# ------------------------------------------------------------------------------- training
class Cell:
  """One recipe: model, trainer, its batch stream and noise, on its own CUDA stream and graph."""

  def __init__(self, name, config, args, train_x, device):
    self.name, self.config, self.args, self.train_x, self.device = name, config, args, train_x, device
    torch.manual_seed(args.seed)  # the same initial weights in every cell
    self.model = VAEGAN(args.ch, args.z_dim).to(device).train()
    self.trainer = Trainer(self.model, config, args.steps)
    self.images = torch.empty((args.batch,) + tuple(train_x.shape[1:]), device=device)
    self.eps = torch.empty((args.batch, args.z_dim), device=device)
    generator = torch.Generator(device=device)
    generator.manual_seed(args.seed)  # the same data order and noise in every cell
    # input_data: shuffle (buffer > data) then repeat then batch: epochs streamed back to back.
    epochs = -(-args.steps * args.batch // len(train_x)) + 1
    self.order = torch.cat([torch.randperm(len(train_x), generator=generator, device=device)
                            for _ in range(epochs)])
    self.noise = generator
    self.stream = torch.cuda.Stream(device) if device.type == 'cuda' else None
    if self.stream is not None:  # the weights, data and order were made on the default stream
      self.stream.wait_stream(torch.cuda.current_stream())
    self.graph, self.logged, self.step, self.graph_error, self.graph_check = None, None, 0, None, None
    self.decay = config['learning_rate_decay'] > 0

  def _stream(self):
    return torch.cuda.stream(self.stream) if self.stream is not None else _nullcontext()

  def _load(self):
    b = self.args.batch
    torch.index_select(self.train_x, 0, self.order[self.step * b:(self.step + 1) * b], out=self.images)
    self.eps.normal_(generator=self.noise)
    if self.decay:
      self.trainer.lr.fill_(self.trainer.learning_rate_at(self.step))

  def advance(self):
    """One train step (enqueued; no host sync)."""
    with self._stream():
      self._load()
      if self.graph is not None:
        self.graph.replay()
      else:
        self.logged = self.trainer.step(self.images, self.eps)
    self.step += 1

  def capture(self):
    """Records the step as a CUDA graph (after eager warm-up steps on this stream)."""
    try:
      graph = torch.cuda.CUDAGraph()
      with torch.cuda.graph(graph, stream=self.stream):
        logged = self.trainer.step(self.images, self.eps)
      self.graph, self.logged = graph, logged
    except Exception as error:  # pylint: disable=broad-except  (eager steps still train correctly)
      self.graph, self.graph_error = None, f'{type(error).__name__}: {error}'
      print(json.dumps({'cell': self.name, 'warning': 'CUDA graph capture failed: eager steps',
                        'error': self.graph_error[:500]}), flush=True)
      torch.cuda.synchronize()

  def state(self):
    """Every tensor a step changes: parameters, BN statistics, Adam moments and counts."""
    tensors = list(self.model.parameters()) + list(self.model.buffers())
    for optimizer in self.trainer.optimizers.values():
      tensors += optimizer.m + optimizer.v + [optimizer.t]
    return tensors

  def verify_graph(self):
    """One step both ways from the same state and batch: the replayed graph, then (state restored)
    the eager step. The first forward pass's terms must agree; else the cell goes on eagerly."""
    state = self.state()
    with self._stream():
      self._load()
      snapshot = [t.detach().clone() for t in state]
      self.graph.replay()
      replayed = self.logged.clone()
      replayed_state = [t.detach().clone() for t in state]
      with torch.no_grad():
        for t, saved in zip(state, snapshot):
          t.copy_(saved)
      eager = self.trainer.step(self.images, self.eps)
    self.step += 1
    if self.stream is not None:
      torch.cuda.synchronize()
    first_pass = ('discriminator_loss', 'd_real', 'd_fake') if self.config['update_schedule'] == 'sequential' \
        else LOGGED
    index = [LOGGED.index(k) for k in first_pass]
    difference = ((replayed - eager).abs() / eager.abs().clamp(min=1e-6))[index].max().item()
    n = len(list(self.model.parameters()))  # the weights' move, and how far the two results are apart
    with torch.no_grad():
      moved = sum(float(torch.sum((a.double() - b.double()) ** 2)) for a, b in zip(state[:n], snapshot)) ** 0.5
      apart = sum(float(torch.sum((a.double() - b.double()) ** 2)) for a, b in zip(state[:n], replayed_state)) ** 0.5
    check = {'first_pass_max_rel': difference, 'weights_l2_graph_vs_eager_over_move': apart / max(moved, 1e-30),
             'ok': bool(difference < 1e-3 and math.isfinite(apart))}
    self.graph_check = check
    print(json.dumps({'cell': self.name, 'graph_check': check}), flush=True)
    if not check['ok']:
      self.graph, self.graph_error = None, f'graph replay differs from the eager step: {check}'
      self.logged = eager


class _nullcontext:
  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


class full_float32:  # pylint: disable=invalid-name
  """No TF32 inside (evaluation is float32, as the project's CPU evaluator)."""

  def __enter__(self):
    self.saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False

  def __exit__(self, *exc):
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = self.saved
    return False


def evaluate(cell, data, references, prior_eps, started):
  """Reconstruction quality and identity on the eval glyphs, sample diversity, the last losses."""
  model = cell.model
  model.eval()
  try:
    with torch.no_grad(), full_float32():
      reconstructed = (model.reconstruct(data['eval_x']) + 1.0) / 2.0
      summary = reconstruction_summary(data['eval01'], reconstructed)
      identity = references.identity(reconstructed)
      samples = (model.decoder(torch.tanh(prior_eps)) + 1.0) / 2.0
      diversity = mean_pairwise_distance(samples) / max(data['real_spread'], 1e-12)
      finite = bool(torch.isfinite(reconstructed).all())
  finally:
    model.train()
  logged = {} if cell.logged is None else dict(zip(LOGGED, cell.logged.double().cpu().tolist()))
  record = {'cell': cell.name, 'step': cell.step, 'epoch': round(cell.step * cell.args.batch / data['n_train'], 2),
            'seconds': round(time.time() - started, 1),
            'psnr': summary['psnr']['mean'], 'ssim': summary['ssim']['mean'], 'mse': summary['mse']['mean'],
            'top1': identity['top1'], 'top5': identity['top5'], 'diversity': diversity,
            'psnr_worst_decile': summary['psnr']['worst_decile'],
            'ssim_worst_decile': summary['ssim']['worst_decile'], 'finite': finite,
            'learning_rate': float(cell.trainer.learning_rate_at(max(cell.step - 1, 0))),
            'losses_last_step': logged}
  return record, reconstructed, samples


def load_data(path, device, eval_limit):
  arrays = np.load(path)
  train_u8, eval_u8 = arrays['train'], arrays['eval']
  normalize = lambda u8: torch.from_numpy(u8.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()
  train_x, eval_x = normalize(train_u8).to(device), normalize(eval_u8).to(device)
  to01 = lambda x: (x + 1.0) / 2.0  # the evaluator's pixels: (image + 1) / 2
  data = {'train_x': train_x, 'eval_x': eval_x[:eval_limit] if eval_limit else eval_x,
          'n_train': len(train_x), 'train_u8': train_u8, 'eval_u8': eval_u8}
  data['eval01'] = to01(data['eval_x'])
  # Identity references: the measured eval glyphs first, then the other eval glyphs, then train.
  references = References(to01(eval_x), to01(train_x))
  data['real_spread'] = mean_pairwise_distance(data['eval01'][:DIVERSITY_SET])
  return data, references


def main(argv=None):
  started = _STARTED if argv is None else time.time()
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--data', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), 'glyphs.npz'))
  parser.add_argument('--out', required=True)
  parser.add_argument('--cells', default='seed,seed_l3,one_pass_l3,one_pass_l3_decay',
                      help=f"names from {sorted(CELLS)} (comma-separated), or items 'name:key=value,...' "
                           "separated by spaces or ';'")
  parser.add_argument('--steps', type=int, default=29600, help='29,600 = 100 epochs of 18,956 at 64')
  parser.add_argument('--eval-every', type=int, default=2960)
  parser.add_argument('--ch', type=int, default=64)
  parser.add_argument('--z-dim', type=int, default=100)
  parser.add_argument('--batch', type=int, default=64)
  parser.add_argument('--seed', type=int, default=0)
  parser.add_argument('--deadline-seconds', type=float, default=420.0,
                      help='wall clock from start by which everything is saved')
  parser.add_argument('--reserve-seconds', type=float, default=0.0,
                      help='time kept for the last evaluation and saving (0: measured from the first)')
  parser.add_argument('--warmup-steps', type=int, default=3, help='eager steps before graph capture')
  parser.add_argument('--no-graphs', action='store_true', help='eager steps (no CUDA graphs)')
  parser.add_argument('--no-tf32', action='store_true', help='full float32 convs/matmuls on the GPU')
  parser.add_argument('--no-baselines', action='store_true')
  parser.add_argument('--drop-late-cells', action='store_true',
                      help='when the active cells cannot all finish by the deadline, stop the last '
                           'listed one (repeatedly) so the first ones finish')
  parser.add_argument('--drop-check-every', type=int, default=400, help='steps between projections')
  parser.add_argument('--eval-limit', type=int, default=0, help='measure only the first N eval glyphs')
  parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
  parser.add_argument('--threads', type=int, default=0)
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  if args.threads:
    torch.set_num_threads(args.threads)
  device = torch.device(args.device)
  if device.type == 'cuda':
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = not args.no_tf32  # TF's default on Ampere+ GPUs
    torch.backends.cudnn.allow_tf32 = not args.no_tf32
  specs = []  # items split by spaces or ';'; an item without ':' may be a comma list of names
  for item in args.cells.replace(';', ' ').split():
    specs.extend([item] if ':' in item else [s for s in item.split(',') if s])
  configs = [cell_config(spec) for spec in specs]
  if len({name for name, _ in configs}) != len(configs) or not configs:
    raise SystemExit(f'--cells: names must be given and unique, got {[name for name, _ in configs]}')
  if args.warmup_steps < 1:
    raise SystemExit('--warmup-steps: at least 1 eager step must run before a CUDA graph is captured')
  info = {'torch': torch.__version__, 'device': str(device),
          'gpu': torch.cuda.get_device_name(device) if device.type == 'cuda' else None,
          'args': vars(args), 'cells': {n: c for n, c in configs}}
  print(json.dumps({'info': info}), flush=True)

  data, references = load_data(args.data, device, args.eval_limit)
  results = {'info': info, 'baselines': None, 'evaluations': {n: [] for n, _ in configs}, 'cells': {}}

  if not args.no_baselines:
    t = time.time()
    eval01 = data['eval_u8'].astype(np.float32) / 127.5 - 1.0
    eval01 = (eval01 + 1.0) / 2.0
    train01 = (data['train_u8'].astype(np.float32) / 127.5 - 1.0 + 1.0) / 2.0
    measured = eval01[:args.eval_limit] if args.eval_limit else eval01
    with full_float32():
      results['baselines'] = measure_baselines(train01, measured, references, args.z_dim, device)
    print(json.dumps({'baselines': {name: {'psnr': round(v['reconstruction']['psnr']['mean'], 3),
                                           'ssim': round(v['reconstruction']['ssim']['mean'], 4),
                                           **v.get('identity', {})} for name, v in results['baselines'].items()},
                      'seconds': round(time.time() - t, 1)}), flush=True)

  gen = torch.Generator(device=device)
  gen.manual_seed(args.seed + 7)
  prior_eps = torch.randn((DIVERSITY_SET, args.z_dim), generator=gen, device=device)
  cells = [Cell(name, config, args, data['train_x'], device) for name, config in configs]

  def run_evaluations(which=None):
    if device.type == 'cuda':
      torch.cuda.synchronize()
    t = time.time()
    outputs = {}
    for cell in which or cells:
      record, reconstructed, samples = evaluate(cell, data, references, prior_eps, started)
      results['evaluations'][cell.name].append(record)
      brief = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in record.items()
               if k in ('cell', 'step', 'epoch', 'seconds', 'psnr', 'ssim', 'top1', 'top5', 'diversity', 'finite')}
      brief.update({k: round(record['losses_last_step'][k], 3) for k in ('d_real', 'd_fake', 'kl', 'dis_l')
                    if k in record['losses_last_step']})
      print(json.dumps(brief), flush=True)
      outputs[cell.name] = (reconstructed, samples)
    if device.type == 'cuda':
      torch.cuda.synchronize()
      for cell in which or cells:
        cell.stream.wait_stream(torch.cuda.current_stream())
    write_results()  # after every evaluation, so a crash later still leaves what was measured
    return outputs, time.time() - t

  def write_results():
    with open(os.path.join(args.out, 'results.json'), 'w', encoding='utf-8') as f:
      json.dump(results, f, indent=1)

  _, eval_seconds = run_evaluations()  # step 0
  reserve = args.reserve_seconds or max(10.0, 3.0 * eval_seconds + 5.0)
  deadline = started + args.deadline_seconds - reserve
  use_graphs = device.type == 'cuda' and not args.no_graphs
  pending = collections.deque()
  train_started = last_report = window_started = time.time()
  active, step, last_step, window_step = list(cells), 0, 0, None  # no projection before the window
  stopped_by, dropped = 'steps', []
  try:
    while step < args.steps:
      if time.time() > deadline:
        stopped_by = 'deadline'
        break
      for cell in active:
        if use_graphs and cell.graph is None and cell.graph_error is None and cell.step == args.warmup_steps:
          cell.capture()
          if cell.graph is not None:
            cell.verify_graph()
            continue
        cell.advance()
      step = active[0].step
      if step == args.warmup_steps + 20:  # projections leave out warm-up and capture
        window_started, window_step = time.time(), step
      if device.type == 'cuda' and step % 10 == 0:  # keep the CPU at most ~40 steps ahead of the GPU
        pending.append([cell.stream.record_event() for cell in active])
        if len(pending) > 4:
          for event in pending.popleft():
            event.synchronize()
      if (args.drop_late_cells and window_step is not None and step % args.drop_check_every == 0
          and step >= window_step + 2.5 * args.drop_check_every and len(active) > 1):
        # The projected end of all active cells at the current rate; past the deadline, the last
        # active cell stops here (still evaluated and saved) and the others get its GPU share.
        now = time.time()
        rate = (step - window_step) / max(now - window_started, 1e-9)
        evals_left = (args.steps - 1) // args.eval_every - step // args.eval_every
        finish = now + (args.steps - step) / rate + evals_left * eval_seconds * len(active) / len(cells)
        if finish > deadline:
          cell = active.pop()
          dropped.append({'cell': cell.name, 'step': cell.step, 'steps_per_second': round(rate, 2),
                          'projected_seconds_over': round(finish - deadline, 1)})
          print(json.dumps({'dropped': dropped[-1]}), flush=True)
          window_started, window_step = time.time(), step
        elif step % (5 * args.drop_check_every) == 0:
          window_started, window_step = now, step
      if step % args.eval_every == 0 and step < args.steps:
        now = time.time()
        print(json.dumps({'step': step, 'steps_per_second': round((step - last_step) / (now - last_report), 2),
                          'active_cells': len(active), 'elapsed': round(now - started, 1)}), flush=True)
        run_evaluations(active)
        last_report, last_step = time.time(), step
        window_started, window_step = last_report, step
  except Exception as error:  # pylint: disable=broad-except  (what was trained is still evaluated)
    import traceback  # pylint: disable=import-outside-toplevel
    traceback.print_exc()
    stopped_by = f'error at step {step}: {type(error).__name__}: {error}'[:1000]
    print(json.dumps({'error': stopped_by}), flush=True)
  if device.type == 'cuda':
    torch.cuda.synchronize()
  train_seconds = time.time() - train_started
  outputs, _ = run_evaluations()
  steps = max(cell.step for cell in cells)
  # At most 8 files come back from the GPU machine: one figure, one array file, one JSON.
  real = data['eval01'].squeeze(1).cpu().numpy()
  rows, labels, arrays = [real[:32]], ['eval glyphs 0-31'], {}
  for cell in cells:
    reconstructed, samples = outputs[cell.name]
    recon = reconstructed.squeeze(1).cpu().numpy()
    rows += [recon[:32], samples[:16].squeeze(1).cpu().numpy()]
    labels += [f'{cell.name} reconstructions (step {cell.step})', f'{cell.name} prior samples']
    arrays[f'{cell.name}/reconstructions_u8'] = np.clip(np.round(recon * 255.0), 0, 255).astype(np.uint8)
    arrays[f'{cell.name}/step'] = np.array(cell.step)
    results['cells'][cell.name] = {'steps': cell.step, 'epochs': round(cell.step * args.batch / data['n_train'], 2),
                                   'cuda_graph': cell.graph is not None, 'graph_error': cell.graph_error,
                                   'graph_check': cell.graph_check}
  figure_png(rows, labels, os.path.join(args.out, 'glyphs.png'))
  np.savez_compressed(os.path.join(args.out, 'reconstructions.npz'), **arrays)
  results['figure'] = {'file': 'glyphs.png', 'panels_top_to_bottom': labels, 'glyphs_per_row': 16}
  results['run'] = {'stopped_by': stopped_by, 'steps': steps, 'dropped': dropped, 'train_seconds': round(train_seconds, 1),
                    'steps_per_second_per_cell': round(steps / max(train_seconds, 1e-9), 2),
                    'total_seconds': round(time.time() - started, 1)}
  write_results()
  print(json.dumps({'done': results['run']}), flush=True)
  return results


if __name__ == '__main__':
  sys.exit(0 if main() else 1)
