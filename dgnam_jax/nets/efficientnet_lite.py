"""EfficientNet-Lite (Tan & Le, 2019; the Lite variants of the TF reference) in Flax, for import.

Imported weights map 1:1: every module is named after the PyTorch state dict's module path
(``_conv_stem``, ``_blocks.3._depthwise_conv``, ``_conv_head``, ``_fc``), and each convolution
carries the batch norm that follows it folded into its ``kernel`` and ``bias`` (done once at
import, :func:`fold_state_dict`), so a forward pass is convolutions, ReLU6 and adds only.

Lite differs from EfficientNet-B: ReLU6 instead of swish, no squeeze-and-excitation, and the stem
(32 channels) and head (1280 channels, one block in the first and last stage) are not scaled.
Convolutions pad like TensorFlow's ``SAME`` (more on the bottom/right when the total is odd),
which is what the weights were trained with; ``lax`` computes the same padding.

Named outputs (``NetOutputs.layers``, for ``--layer=``): ``_conv_stem`` (after ReLU6), every
``_blocks.<i>`` (the block's output, after the residual add), ``_conv_head`` (after ReLU6),
``_avg_pooling`` (the pooled 1280-d features), ``_fc`` (the logits) and ``prob`` (softmax).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from dgnam_jax.nets.graph import NetOutputs
from dgnam_jax.nets.recorder import Recorder, StopForward

BN_EPS = 1e-3  # the TF reference's batch_norm_epsilon
# (repeats, kernel, stride, expand ratio, input filters, output filters) of the seven stages.
BASE_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40),
               (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192),
               (1, 3, 1, 6, 192, 320))
STEM, HEAD = 32, 1280


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """One MBConv block: 1x1 expand (if ``expand`` > 1), kxk depthwise, 1x1 project."""
  index: int
  kernel: int
  stride: int
  expand: int
  inputs: int
  outputs: int

  @property
  def hidden(self) -> int:
    return self.inputs * self.expand

  @property
  def residual(self) -> bool:
    return self.stride == 1 and self.inputs == self.outputs


@dataclasses.dataclass(frozen=True)
class EfficientNetLiteConfig:
  """Compound scaling of EfficientNet-Lite: width and depth multipliers and input resolution."""
  width: float
  depth: float
  image_size: int
  num_classes: int = 1000

  def filters(self, n: int) -> int:
    """The TF reference's round_filters: scale, round to a multiple of 8, never lose > 10 %."""
    scaled = n * self.width
    out = max(8, int(scaled + 4) // 8 * 8)
    return out + 8 if out < 0.9 * scaled else out

  def blocks(self) -> list[BlockSpec]:
    out: list[BlockSpec] = []
    last = len(BASE_STAGES) - 1
    for s, (reps, k, stride, e, cin, cout) in enumerate(BASE_STAGES):
      cin = STEM if s == 0 else self.filters(cin)
      cout = self.filters(cout)
      reps = reps if s in (0, last) else int(math.ceil(self.depth * reps))
      for r in range(reps):
        out.append(BlockSpec(len(out), k, stride if r == 0 else 1, e, cin if r == 0 else cout,
                             cout))
    return out

  def layer_names(self) -> list[str]:
    return (['_conv_stem'] + [f'_blocks.{b.index}' for b in self.blocks()]
            + ['_conv_head', '_avg_pooling', '_fc', 'prob'])


CONFIGS = {
    'efficientnet_lite1': EfficientNetLiteConfig(1.0, 1.1, 240),
    'efficientnet_lite2': EfficientNetLiteConfig(1.1, 1.2, 260),
}


def relu6(x):
  return jnp.clip(x, 0.0, 6.0)


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
  """TF ``SAME`` padding (before, after) of one spatial axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + kernel - size, 0)
  return total // 2, total - total // 2


def _taps(xp, kernel, stride: int, oh: int, ow: int):
  """sum over (i, j) of xp[:, i::stride, j::stride][:oh, :ow] * kernel[i, j, 0]."""
  k = kernel.shape[0]
  out = None
  for i in range(k):
    for j in range(k):
      tap = lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + (oh - 1) * stride + 1,
                                         j + (ow - 1) * stride + 1, xp.shape[3]),
                      (1, stride, stride, 1)) * kernel[i, j, 0]
      out = tap if out is None else out + tap
  return out


def _depthwise_geometry(shape, k: int, stride: int):
  (t, b), (l, r) = same_padding(shape[1], k, stride), same_padding(shape[2], k, stride)
  return (t, b), (l, r), -(-shape[1] // stride), -(-shape[2] // stride)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def depthwise_conv_same(x, kernel, stride: int):
  """Depthwise convolution (kernel (k, k, 1, C)) with TF ``SAME`` padding, as k*k shifted
  multiply-adds, with a hand-written gradient of the same form.

  XLA:CPU runs ``feature_group_count=C`` convolutions 10x slower forward and 17-35x slower in the
  input gradient than a sum of strided slices, and autodiff of that sum (a padded copy per tap)
  is 10x slower than its forward; the gradient below is again one sum of k*k slices (of the
  stride-dilated output gradient, with the kernel flipped). ``benchmarks/bench_depthwise.py``
  measures all three. The products are the convolution's; only the order of the additions
  differs.
  """
  return _depthwise_fwd(x, kernel, stride)[0]


def _depthwise_fwd(x, kernel, stride):
  (t, b), (l, r), oh, ow = _depthwise_geometry(x.shape, kernel.shape[0], stride)
  xp = jnp.pad(x, ((0, 0), (t, b), (l, r), (0, 0)))
  return _taps(xp, kernel, stride, oh, ow), (xp, kernel, (t, l, x.shape[1], x.shape[2]))


def _depthwise_bwd(stride, res, dy):
  xp, kernel, (t, l, h, w) = res
  k = kernel.shape[0]
  hp, wp = xp.shape[1], xp.shape[2]
  oh, ow = dy.shape[1], dy.shape[2]
  # d xp[p] = sum_i dyd[p - i] w[i], dyd = dy dilated by the stride: a correlation of the
  # (k - 1)-padded dyd with the flipped kernel, over every position of xp.
  extra_h = hp + k - 1 - ((oh - 1) * stride + 1 + 2 * (k - 1))
  extra_w = wp + k - 1 - ((ow - 1) * stride + 1 + 2 * (k - 1))
  dyp = lax.pad(dy, jnp.zeros((), dy.dtype),
                ((0, 0, 0), (k - 1, k - 1 + extra_h, stride - 1),
                 (k - 1, k - 1 + extra_w, stride - 1), (0, 0, 0)))
  dx = _taps(dyp, kernel[::-1, ::-1], 1, hp, wp)[:, t:t + h, l:l + w]
  dkernel = jnp.stack([jnp.stack([
      jnp.sum(lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + (oh - 1) * stride + 1,
                                          j + (ow - 1) * stride + 1, xp.shape[3]),
                        (1, stride, stride, 1)) * dy, axis=(0, 1, 2))
      for j in range(k)]) for i in range(k)])[:, :, None, :]
  return dx, dkernel.astype(kernel.dtype)


depthwise_conv_same.defvjp(_depthwise_fwd, _depthwise_bwd)


class SameConv(nn.Module):
  """Convolution with TF ``SAME`` padding and a bias (the folded batch norm's shift)."""
  features: int
  kernel: int
  stride: int = 1
  groups: int = 1
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x):
    w = self.param('kernel', nn.initializers.lecun_normal(),
                   (self.kernel, self.kernel, x.shape[-1] // self.groups, self.features),
                   jnp.float32)
    b = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    if self.groups > 1 and self.groups == self.features == x.shape[-1]:
      y = depthwise_conv_same(x.astype(self.dtype), w.astype(self.dtype), self.stride)
      return y + b.astype(y.dtype)
    if self.kernel == 1 and self.stride == 1 and self.groups == 1:
      # A 1x1 convolution is a matmul over channels; XLA:CPU's dot beats its conv here.
      y = jnp.einsum('nhwc,cd->nhwd', x.astype(self.dtype), w[0, 0].astype(self.dtype),
                     precision=self.precision)
      return y + b.astype(y.dtype)
    y = lax.conv_general_dilated(x.astype(self.dtype), w.astype(self.dtype),
                                 (self.stride, self.stride), 'SAME',
                                 dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                 feature_group_count=self.groups, precision=self.precision)
    return y + b.astype(y.dtype)


class MBConv(nn.Module):
  """Mobile inverted bottleneck (no squeeze-and-excitation in the Lite variants)."""
  spec: BlockSpec
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x):
    s, kw = self.spec, dict(dtype=self.dtype, precision=self.precision)
    y = x
    if s.expand != 1:
      y = relu6(SameConv(s.hidden, 1, name='_expand_conv', **kw)(y))
    y = relu6(SameConv(s.hidden, s.kernel, s.stride, groups=s.hidden, name='_depthwise_conv',
                       **kw)(y))
    y = SameConv(s.outputs, 1, name='_project_conv', **kw)(y)
    return y + x if s.residual else y


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite classifier on NHWC images already preprocessed (see the checkpoint's
  ``channel_order`` / ``pixel_scale`` / ``mean`` / ``std``); returns :class:`NetOutputs`."""
  config: EfficientNetLiteConfig
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x, end: str | None = None) -> NetOutputs:
    rec = Recorder(end)
    rec.blobs['data'] = x
    kw = dict(dtype=self.dtype, precision=self.precision)
    try:
      x = rec.add('_conv_stem', '_conv_stem',
                  relu6(SameConv(STEM, 3, 2, name='_conv_stem', **kw)(x)))
      for spec in self.config.blocks():
        name = f'_blocks.{spec.index}'
        x = rec.add(name, name, MBConv(spec, name=name, **kw)(x))
      x = rec.add('_conv_head', '_conv_head',
                  relu6(SameConv(HEAD, 1, name='_conv_head', **kw)(x)))
      x = rec.add('_avg_pooling', '_avg_pooling', jnp.mean(x.astype(jnp.float32), axis=(1, 2)))
      fc = nn.Dense(self.config.num_classes, name='_fc', dtype=self.dtype,
                    precision=self.precision, param_dtype=jnp.float32)
      x = rec.add('_fc', '_fc', fc(x))
      rec.add('prob', 'prob', jax.nn.softmax(x.astype(jnp.float32), axis=-1))
    except StopForward:
      pass
    return rec.outputs()


# --- import: PyTorch state dict -> folded Flax params --------------------------------------------

def _bn_names(config: EfficientNetLiteConfig) -> dict[str, str]:
  """Folded conv module path -> the batch norm module that follows it in the state dict."""
  out = {'_conv_stem': '_bn0', '_conv_head': '_bn1'}
  for b in config.blocks():
    p = f'_blocks.{b.index}'
    if b.expand != 1:
      out[f'{p}._expand_conv'] = f'{p}._bn0'
    out[f'{p}._depthwise_conv'] = f'{p}._bn1'
    out[f'{p}._project_conv'] = f'{p}._bn2'
  return out


def expected_state_dict(config: EfficientNetLiteConfig) -> dict[str, tuple[int, ...]]:
  """Key -> shape of every float tensor the PyTorch reference's state dict holds."""
  shapes: dict[str, tuple[int, ...]] = {}

  def conv(name, cout, cin_per_group, k, bn):
    shapes[f'{name}.weight'] = (cout, cin_per_group, k, k)
    for leaf in ('weight', 'bias', 'running_mean', 'running_var'):
      shapes[f'{bn}.{leaf}'] = (cout,)

  conv('_conv_stem', STEM, 3, 3, '_bn0')
  for b in config.blocks():
    p = f'_blocks.{b.index}'
    if b.expand != 1:
      conv(f'{p}._expand_conv', b.hidden, b.inputs, 1, f'{p}._bn0')
    conv(f'{p}._depthwise_conv', b.hidden, 1, b.kernel, f'{p}._bn1')
    conv(f'{p}._project_conv', b.outputs, b.hidden, 1, f'{p}._bn2')
  conv('_conv_head', HEAD, config.blocks()[-1].outputs, 1, '_bn1')
  shapes['_fc.weight'] = (config.num_classes, HEAD)
  shapes['_fc.bias'] = (config.num_classes,)
  return shapes


def fold_state_dict(config: EfficientNetLiteConfig, state: Mapping[str, np.ndarray]
                    ) -> dict[str, Any]:
  """Folds each batch norm into its convolution and lays kernels out as Flax's HWIO.

  ``bn(conv(x)) = conv(x) * g / sqrt(v + eps) + (b - m * g / sqrt(v + eps))``, computed in
  float64 and stored as float32. The state dict must already have been checked against
  :func:`expected_state_dict`.
  """
  params: dict[str, Any] = {}
  for conv, bn in _bn_names(config).items():
    w = np.asarray(state[f'{conv}.weight'], np.float64)
    g, b, m, v = (np.asarray(state[f'{bn}.{k}'], np.float64)
                  for k in ('weight', 'bias', 'running_mean', 'running_var'))
    factor = g / np.sqrt(v + BN_EPS)
    leaf = {'kernel': (w * factor[:, None, None, None]).transpose(2, 3, 1, 0).astype(np.float32),
            'bias': (b - m * factor).astype(np.float32)}
    node = params
    if conv.startswith('_blocks.'):
      block, name = conv.rsplit('.', 1)
      node = params.setdefault(block, {})
      conv = name
    node[conv] = leaf
  params['_fc'] = {'kernel': np.asarray(state['_fc.weight'], np.float32).T.copy(),
                   'bias': np.asarray(state['_fc.bias'], np.float32)}
  return params
