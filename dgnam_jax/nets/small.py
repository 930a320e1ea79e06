"""A CaffeNet-like classifier for small images (32 px CIFAR-10, 64 px Tiny ImageNet).

The embedded default classifier of the project: the CaffeNet layer sequence and names (conv1..conv5,
pool5, fc6..fc8, relu*, drop*, prob) scaled down, so ``layer='fc8'`` or ``'conv5'`` and the fc6
code (post-ReLU) mean what they mean in the paper. LRN is left out (BatchNorm replaces it in
training).

The module has two forms:

* **train** (``train_form=True``): conv/fc without bias, each followed by a Flax ``BatchNorm``
  (``bn1``..``bn7``), dropout on fc6/fc7, and the input divided by ``input_scale_div`` (64) so
  BGR mean-subtracted 0-255 pixels reach conv1 at unit scale.
* **deploy** (default): a plain Caffe net. :func:`export_params` folds each BatchNorm and the input
  scale into the conv/fc kernels and biases, so the exported net takes NHWC BGR mean-subtracted
  0-255 pixels, returns :class:`NetOutputs` like :class:`CaffeNet` and is described exactly by
  :func:`deploy_prototxt` (the generic ``CaffeGraph`` runs it too).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax.nets import layers as L
from dgnam_jax.nets import modules
from dgnam_jax.nets.graph import NetOutputs
from dgnam_jax.nets.recorder import Recorder, StopForward

# Conv channels at width 1: CaffeNet's 96-256-384-384-256 at a third (the prototype's widths,
# which fit a 2-core CPU budget).
BASE_CHANNELS = (32, 64, 96, 96, 64)
BN_EPS = 1e-5


def check_architecture(config, *valid: bool) -> None:
  """Raises ValueError unless the input side is a positive multiple of 32 (the strided stems
  map it onto the 32 px geometry), width and classes are positive, and ``valid`` holds."""
  if config.input_size % 32 or config.input_size <= 0:
    raise ValueError(f'input_size must be a positive multiple of 32, got {config.input_size}')
  if config.width <= 0 or config.num_classes <= 0 or not all(valid):
    raise ValueError(f'bad architecture {config}')


@dataclasses.dataclass(frozen=True)
class SmallNetConfig:
  """Architecture of a :class:`SmallCaffeNet` (everything a deploy module depends on).

  Attributes:
    num_classes: outputs of fc8.
    input_size: square input side in pixels; a multiple of 32 (conv1's stride is size // 32, so
      every later layer sees the 32 px geometry: 32 -> pool1 16 -> pool2 8 -> pool5 4).
    width: multiplier of the conv channels (rounded to multiples of 8).
    fc_width: outputs of fc6 and fc7 (fc6 post-ReLU is the generator's code).
  """
  num_classes: int = 10
  input_size: int = 32
  width: float = 1.0
  fc_width: int = 512

  def __post_init__(self):
    check_architecture(self, self.fc_width > 0)

  def channels(self) -> tuple[int, ...]:
    return tuple(max(8, int(round(c * self.width / 8)) * 8) for c in BASE_CHANNELS)

  def convs(self) -> tuple[tuple[str, int, int, int, int, bool], ...]:
    """(name, features, kernel, stride, pad, pool after the ReLU) of conv1..conv5."""
    s = self.input_size // 32
    k1 = 3 + 2 * s  # 5x5 at 32 px; 7x7 stride 2 at 64 px: conv1 always outputs 32x32
    c = self.channels()
    return (('conv1', c[0], k1, s, k1 // 2, True), ('conv2', c[1], 5, 1, 2, True),
            ('conv3', c[2], 3, 1, 1, False), ('conv4', c[3], 3, 1, 1, False),
            ('conv5', c[4], 3, 1, 1, True))

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


CIFAR10_CONFIG = SmallNetConfig()


def forward_start(net: nn.Module, x, end: str | None):
  """The small classifiers' common start: (recorder with the 'data' blob, conv/dense keyword
  arguments, train form?, the input scaled as the train form expects)."""
  rec = Recorder(end)
  rec.blobs['data'] = x
  if net.train_form:
    x = x / net.input_scale_div
  return rec, dict(dtype=net.dtype, precision=net.precision), net.train_form, x


class SmallCaffeNet(nn.Module):
  """CaffeNet-like classifier for small images (see the module docstring).

  Attributes:
    config: the architecture.
    train_form: build the training form (BatchNorm, dropout, input scaling) instead of the
      deploy form.
    dropout: dropout rate after relu6 / relu7 (train form, ``train=True`` only).
    input_scale_div: the train form divides its input by this (deploy folds it into conv1).
    dtype: compute dtype.
    precision: ``lax.Precision`` for convolutions and matmuls.
  """
  config: SmallNetConfig = CIFAR10_CONFIG
  train_form: bool = False
  dropout: float = 0.3
  input_scale_div: float = 64.0
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x, end: str | None = None, train: bool = False) -> NetOutputs:
    """Forward pass on NHWC BGR mean-subtracted 0-255 input.

    Args:
      x: (N, H, W, 3) input.
      end: stop after this layer (like Caffe's ``forward(end=...)``).
      train: train form only: batch statistics (updating ``batch_stats``) and dropout.

    Returns:
      :class:`NetOutputs`; ``layers['conv5']`` is before relu5, ``blobs['fc6']`` after relu6.
    """
    rec, kw, tf, x = forward_start(self, x, end)

    def bn(v, i):
      if not tf:
        return v
      # Flax's momentum is the decay of the running average (Caffe's moving_average_fraction).
      return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPS,
                          dtype=self.dtype, name=f'bn{i}')(v)

    try:
      for i, (name, feats, k, s, p, pool) in enumerate(self.config.convs(), start=1):
        y = modules.Conv(feats, (k, k), (s, s), (p, p), bias_term=not tf, name=name,
                         fast_weight_grad=tf, **kw)(x)
        x = rec.add(name, name, bn(y, i))
        x = rec.add(f'relu{i}', name, L.relu(x))
        if pool:
          x = rec.add(f'pool{i}', f'pool{i}', (max_pool_3x3s2 if tf else _caffe_pool)(x))
      for i in (6, 7):
        y = modules.InnerProduct(self.config.fc_width, bias_term=not tf, name=f'fc{i}', **kw)(x)
        x = rec.add(f'fc{i}', f'fc{i}', bn(y, i))
        x = rec.add(f'relu{i}', f'fc{i}', L.relu(x))
        if tf:
          x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = rec.add(f'drop{i}', f'fc{i}', x)
      x = rec.add('fc8', 'fc8', modules.InnerProduct(self.config.num_classes, name='fc8', **kw)(x))
      rec.add('prob', 'prob', L.softmax(x))
    except StopForward:
      pass
    return rec.outputs()


def init_train_variables(config: SmallNetConfig, seed: int) -> dict[str, dict]:
  """Fresh train-form variables ``{'params', 'batch_stats'}``, drawn on the host with numpy.

  He-normal conv/fc kernels (lecun-normal for fc8), zero fc8 bias, BatchNorm scale 1 / bias 0,
  running mean 0 / var 1. Host-side because ``jit(module.init)`` takes 10+ s to compile on a
  busy 2-core CPU for what is a handful of random draws.
  """
  return he_train_variables(SmallCaffeNet(config, train_form=True), config.input_size,
                            [seed, 20160530])


def he_train_variables(model: nn.Module, input_size: int, rng_seed,
                       zero_scale=lambda layer: False) -> dict[str, dict]:
  """Train-form variables of a BatchNorm classifier: He-normal kernels (gain 1 for fc8), zero
  biases, BatchNorm scale 1 (0 where ``zero_scale(layer)``), running mean 0 / var 1."""
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jnp.zeros((1, input_size, input_size, 3)))
  rng = np.random.default_rng(rng_seed)
  params, stats = {}, {}
  for layer, leaves in shapes['params'].items():
    out = params[layer] = {}
    for leaf, sd in leaves.items():
      shape = tuple(sd.shape)
      if leaf == 'kernel':
        fan_in = int(np.prod(shape[:-1]))
        gain = 1.0 if layer == 'fc8' else 2.0  # ReLU follows every layer but fc8
        out[leaf] = rng.normal(0.0, np.sqrt(gain / fan_in), shape).astype(np.float32)
      elif leaf == 'scale':
        out[leaf] = np.full(shape, 0.0 if zero_scale(layer) else 1.0, np.float32)
      else:
        out[leaf] = np.zeros(shape, np.float32)
  for layer, leaves in shapes['batch_stats'].items():
    stats[layer] = {'mean': np.zeros(leaves['mean'].shape, np.float32),
                    'var': np.ones(leaves['var'].shape, np.float32)}
  return {'params': params, 'batch_stats': stats}


def fold_batch_norm(kernel, bn_params, bn_stats, input_scale_div: float = 1.0
                    ) -> dict[str, np.ndarray]:
  """{'kernel', 'bias'} of a bias-free conv/fc followed by a BatchNorm, as one layer.

  ``bn(W x) = gamma (W x - mu) / sqrt(var + eps) + beta``, so the kernel is
  ``W * gamma / sqrt(var + eps)`` (per output channel) and the bias ``beta - mu * that factor``;
  the kernel is also divided by ``input_scale_div`` (conv1 absorbs the input scaling).
  """
  factor = np.asarray(bn_params['scale'], np.float64) / np.sqrt(
      np.asarray(bn_stats['var'], np.float64) + BN_EPS)
  bias = np.asarray(bn_params['bias'], np.float64) - np.asarray(bn_stats['mean'],
                                                                np.float64) * factor
  w = np.asarray(kernel, np.float64) * factor / input_scale_div  # broadcasts over the outputs
  return {'kernel': w.astype(np.float32), 'bias': bias.astype(np.float32)}


def _caffe_pool(x):
  return L.max_pool(x, (3, 3), (2, 2))


def max_pool_3x3s2(x):
  """Caffe's 3x3 stride-2 MAX pooling (ceil mode), as the max of 9 strided slices.

  Same values as ``layers.max_pool``; its gradient is elementwise selects, about 10x faster on
  XLA-CPU than the ``select_and_scatter`` that ``reduce_window``'s gradient lowers to, which
  dominated the training step.
  """
  h, w = x.shape[1:3]
  oh, ow = L.pool_output_size(h, 3, 2, 0), L.pool_output_size(w, 3, 2, 0)
  need_h, need_w = 2 * (oh - 1) + 3, 2 * (ow - 1) + 3
  x = jnp.pad(x, ((0, 0), (0, need_h - h), (0, need_w - w), (0, 0)), constant_values=-jnp.inf)
  out = None
  for i in range(3):
    for j in range(3):
      s = x[:, i:i + 2 * oh - 1:2, j:j + 2 * ow - 1:2]
      out = s if out is None else jnp.maximum(out, s)
  return out


def export_params(config: SmallNetConfig, params: dict, batch_stats: dict,
                  input_scale_div: float = 64.0) -> dict[str, dict[str, np.ndarray]]:
  """Folds the train form's BatchNorms and input scale into deploy-form conv/fc parameters.

  See :func:`fold_batch_norm`; conv1's kernel is also divided by ``input_scale_div``.

  Args:
    config: the architecture of both forms.
    params: the train form's ``params`` collection.
    batch_stats: the train form's ``batch_stats`` collection (running mean / var).
    input_scale_div: what the train form divided its input by.

  Returns:
    The deploy form's ``params`` (float32 numpy leaves).
  """
  names = [c[0] for c in config.convs()] + ['fc6', 'fc7']
  out = {name: fold_batch_norm(params[name]['kernel'], params[f'bn{i}'], batch_stats[f'bn{i}'],
                               input_scale_div if i == 1 else 1.0)
         for i, name in enumerate(names, start=1)}
  out['fc8'] = {k: np.asarray(v, np.float32) for k, v in params['fc8'].items()}
  return out


def param_count(params) -> int:
  """Number of scalars in a params tree."""
  return int(sum(np.prod(np.shape(v)) for v in jax.tree.leaves(params)))


def caffe_layer_text(name: str, ltype: str, bottom: str | None, top: str, param: str = '') -> str:
  """One V2 text ``layer { ... }`` block; ``param`` is its already indented parameter message."""
  return (f'layer {{\n  name: "{name}"\n  type: "{ltype}"\n'
          + (f'  bottom: "{bottom}"\n' if bottom else '') + f'  top: "{top}"\n' + param + '}')


def deploy_prototxt(config: SmallNetConfig, name: str = 'SmallCaffeNet',
                    dropout: float = 0.3) -> str:
  """The Caffe deploy prototxt (V2 text) of the deploy form of ``config``.

  ``dropout`` is only recorded (Dropout is the identity at test time).
  """
  lines = [f'# CaffeNet-like classifier for {config.input_size} px images (dgnam_jax.nets.small).',
           '# Generated by dgnam_jax.nets.small.deploy_prototxt from',
           f'# {config!r}.',
           f'name: "{name}"']

  def layer(lname, ltype, bottom, top, param=''):
    lines.append(caffe_layer_text(lname, ltype, bottom, top, param))

  size = config.input_size
  layer('data', 'Input', None, 'data',
        f'  input_param {{\n    shape {{\n      dim: 1\n      dim: 3\n      dim: {size}\n'
        f'      dim: {size}\n    }}\n  }}\n')
  bottom = 'data'
  for i, (cname, feats, k, s, p, pool) in enumerate(config.convs(), start=1):
    layer(cname, 'Convolution', bottom, cname,
          f'  convolution_param {{\n    num_output: {feats}\n    pad: {p}\n'
          f'    kernel_size: {k}\n    stride: {s}\n  }}\n')
    layer(f'relu{i}', 'ReLU', cname, cname)
    bottom = cname
    if pool:
      layer(f'pool{i}', 'Pooling', cname, f'pool{i}',
            '  pooling_param {\n    pool: MAX\n    kernel_size: 3\n    stride: 2\n  }\n')
      bottom = f'pool{i}'
  for i, feats in ((6, config.fc_width), (7, config.fc_width), (8, config.num_classes)):
    layer(f'fc{i}', 'InnerProduct', bottom, f'fc{i}',
          f'  inner_product_param {{\n    num_output: {feats}\n  }}\n')
    bottom = f'fc{i}'
    if i < 8:
      layer(f'relu{i}', 'ReLU', bottom, bottom)
      layer(f'drop{i}', 'Dropout', bottom, bottom,
            f'  dropout_param {{\n    dropout_ratio: {dropout:g}\n  }}\n')
  layer('prob', 'Softmax', 'fc8', 'prob')
  return '\n'.join(lines) + '\n'


MODEL = SmallCaffeNet  # the module class training code builds from a config
