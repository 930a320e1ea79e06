"""A small ResNet for 32/64 px images: the project's independent judge (another net family).

DGN-AM images are scored by how often a classifier that was *not* visualized recognizes them.
A judge of another architecture family than the CaffeNet-like nets (residual blocks, BatchNorm,
global average pooling, no fc hidden layers) makes a shared blind spot less likely.

Same interface as :mod:`dgnam_jax.nets.small` (train form with BatchNorm, export by folding it,
a Caffe deploy prototxt), so ``experiments.train_classifier --arch=resnet`` trains, resumes and
exports it unchanged. Layer names follow Caffe's ResNet release: ``conv1``, ``res2a_branch2a``,
``res2a_branch2b``, ``res3a_branch1`` (projection shortcut), ``res2a`` (the sum), ``pool5``
(global mean, the judge's feature layer) and ``fc8``.
"""

from __future__ import annotations

import dataclasses
import string
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from dgnam_jax.nets import layers as L
from dgnam_jax.nets import modules, small
from dgnam_jax.nets.graph import NetOutputs
from dgnam_jax.nets.recorder import StopForward
from dgnam_jax.nets.small import BN_EPS, caffe_layer_text, param_count  # noqa: F401 (re-export)

BASE_CHANNELS = (16, 32, 64)


@dataclasses.dataclass(frozen=True)
class SmallResNetConfig:
  """Architecture of a :class:`SmallResNet`.

  Attributes:
    num_classes: outputs of fc8.
    input_size: square input side, a multiple of 32 (the stem's stride is size // 32).
    width: multiplier of the stage channels 16-32-64 (rounded to multiples of 8).
    blocks: basic blocks per stage (2: a ResNet-14).
  """
  num_classes: int = 10
  input_size: int = 32
  width: float = 1.0
  blocks: int = 2

  def __post_init__(self):
    small.check_architecture(self, self.blocks >= 1)

  def channels(self) -> tuple[int, ...]:
    return tuple(max(8, int(round(c * self.width / 8)) * 8) for c in BASE_CHANNELS)

  def blocks_spec(self) -> list[tuple[str, int, int, bool]]:
    """(name, channels, stride, projection shortcut) of every residual block, in order."""
    out, prev = [], self.channels()[0]
    for s, c in enumerate(self.channels(), start=2):
      for b in range(self.blocks):
        stride = 2 if (b == 0 and s > 2) else 1
        out.append((f'res{s}{string.ascii_lowercase[b]}', c, stride, stride != 1 or c != prev))
        prev = c
    return out

  def to_dict(self) -> dict[str, Any]:
    return {'arch': 'resnet', **dataclasses.asdict(self)}


class SmallResNet(nn.Module):
  """Small ResNet classifier (train form with BatchNorm, or the BN-folded deploy form).

  Attributes mirror :class:`dgnam_jax.nets.small.SmallCaffeNet` (``dropout`` is accepted and
  unused: the judge has no fc hidden layers).
  """
  config: SmallResNetConfig = SmallResNetConfig()
  train_form: bool = False  # BatchNorm with batch statistics, input scaling (training)
  dropout: float = 0.0  # accepted for the trainer's sake, unused (no fc hidden layers)
  input_scale_div: float = 64.0  # the train form's input divisor (deploy folds it into conv1)
  dtype: Any = jnp.float32  # compute dtype
  precision: Any = None  # lax.Precision of convolutions and matmuls

  @nn.compact
  def __call__(self, x, end: str | None = None, train: bool = False) -> NetOutputs:
    """Forward pass on NHWC BGR mean-subtracted 0-255 input; ``layers['fc8']`` are the logits."""
    rec, kw, tf, x = small.forward_start(self, x, end)

    def conv(v, name, feats, k, s):
      y = modules.Conv(feats, (k, k), (s, s), (k // 2, k // 2), bias_term=not tf, name=name,
                       fast_weight_grad=tf, **kw)(v)
      if tf:
        y = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=BN_EPS,
                         dtype=self.dtype, name=f'bn_{name}')(y)
      return rec.add(name, name, y)

    try:
      s = self.config.input_size // 32
      x = conv(x, 'conv1', self.config.channels()[0], 3 + 2 * (s - 1), s)
      x = rec.add('conv1_relu', 'conv1', L.relu(x))
      for name, c, stride, proj in self.config.blocks_spec():
        y = conv(x, f'{name}_branch2a', c, 3, stride)
        y = rec.add(f'{name}_branch2a_relu', f'{name}_branch2a', L.relu(y))
        y = conv(y, f'{name}_branch2b', c, 3, 1)
        short = conv(x, f'{name}_branch1', c, 1, stride) if proj else x
        x = rec.add(name, name, y + short)
        x = rec.add(f'{name}_relu', name, L.relu(x))
      x = rec.add('pool5', 'pool5', jnp.mean(x, axis=(1, 2), keepdims=True))
      x = rec.add('fc8', 'fc8', modules.InnerProduct(self.config.num_classes, name='fc8',
                                                     **kw)(x))
      rec.add('prob', 'prob', L.softmax(x))
    except StopForward:
      pass
    return rec.outputs()


def _conv_names(config: SmallResNetConfig) -> list[str]:
  names = ['conv1']
  for name, _, _, proj in config.blocks_spec():
    names += [f'{name}_branch2a', f'{name}_branch2b'] + ([f'{name}_branch1'] if proj else [])
  return names


def init_train_variables(config: SmallResNetConfig, seed: int) -> dict[str, dict]:
  """He-normal convs, zero-init last BN scale of each block (a common ResNet trick), numpy."""
  return small.he_train_variables(SmallResNet(config, train_form=True), config.input_size,
                                  [seed, 20151210], lambda layer: layer.endswith('branch2b'))


def export_params(config: SmallResNetConfig, params: dict, batch_stats: dict,
                  input_scale_div: float = 64.0) -> dict[str, dict[str, np.ndarray]]:
  """Folds every BatchNorm (and conv1's input scale) into its convolution."""
  out = {name: small.fold_batch_norm(params[name]['kernel'], params[f'bn_{name}'],
                                     batch_stats[f'bn_{name}'],
                                     input_scale_div if name == 'conv1' else 1.0)
         for name in _conv_names(config)}
  out['fc8'] = {k: np.asarray(v, np.float32) for k, v in params['fc8'].items()}
  return out


def deploy_prototxt(config: SmallResNetConfig, name: str = 'SmallResNet',
                    dropout: float = 0.0) -> str:
  """The Caffe deploy prototxt (V2 text) of the BN-folded deploy form."""
  del dropout
  size = config.input_size
  lines = [f'# Small ResNet judge for {size} px images (dgnam_jax.nets.small_resnet).',
           f'# {config!r}.', f'name: "{name}"',
           caffe_layer_text('data', 'Input', None, 'data',
                            f'  input_param {{\n    shape {{\n      dim: 1\n      dim: 3\n'
                            f'      dim: {size}\n      dim: {size}\n    }}\n  }}\n')]

  def conv(lname, bottom, feats, k, s):
    lines.append(caffe_layer_text(lname, 'Convolution', bottom, lname,
                                  f'  convolution_param {{\n    num_output: {feats}\n'
                                  f'    pad: {k // 2}\n    kernel_size: {k}\n    stride: {s}\n'
                                  '  }\n'))

  def relu(lname, blob):
    lines.append(caffe_layer_text(lname, 'ReLU', blob, blob))

  s = size // 32
  conv('conv1', 'data', config.channels()[0], 3 + 2 * (s - 1), s)
  relu('conv1_relu', 'conv1')
  bottom = 'conv1'
  for bname, c, stride, proj in config.blocks_spec():
    conv(f'{bname}_branch2a', bottom, c, 3, stride)
    relu(f'{bname}_branch2a_relu', f'{bname}_branch2a')
    conv(f'{bname}_branch2b', f'{bname}_branch2a', c, 3, 1)
    short = bottom
    if proj:
      conv(f'{bname}_branch1', bottom, c, 1, stride)
      short = f'{bname}_branch1'
    lines.append(f'layer {{\n  name: "{bname}"\n  type: "Eltwise"\n  bottom: "{bname}_branch2b"'
                 f'\n  bottom: "{short}"\n  top: "{bname}"\n}}')
    relu(f'{bname}_relu', bname)
    bottom = bname
  lines.append(caffe_layer_text('pool5', 'Pooling', bottom, 'pool5',
                                '  pooling_param {\n    pool: AVE\n    global_pooling: true\n'
                                '  }\n'))
  lines.append(caffe_layer_text('fc8', 'InnerProduct', 'pool5', 'fc8',
                                f'  inner_product_param {{\n    num_output: {config.num_classes}'
                                '\n  }\n'))
  lines.append(caffe_layer_text('prob', 'Softmax', 'fc8', 'prob'))
  return '\n'.join(lines) + '\n'


MODEL = SmallResNet  # the module class training code builds from a config
