"""A DeePSim-style generator for small images (32 px CIFAR-10, 64 px Tiny ImageNet).

The embedded default generator: the DeePSim fc6 layout (``reference/original.md`` §5.1) scaled
down. The post-ReLU fc6 code of a :class:`~dgnam_jax.nets.small.SmallCaffeNet` goes through three
InnerProducts (defc7, defc6, defc5), a reshape to ``(C, 4, 4)`` and an up-convolutional trunk of
4x4 stride-2 Deconvolutions (``deconv5``, ``deconv4``, ...) each followed by a 3x3 Convolution
(``conv5_1``, ...), ending in a 3x3 ``deconv0`` with three channels and no non-linearity. Every
other layer is followed by a leaky ReLU of slope 0.3, as in DeePSim. Its output is the classifier's
input space (BGR, 0-255, mean subtracted), at the classifier's input size (crop offset 0).

The whole net is plain Caffe, so :func:`deploy_prototxt` describes it exactly and the generic
``CaffeGraph`` runs it too. Training scales the output by ``output_scale`` (so Adam's step size
suits the weights); :func:`deploy_params` moves that factor into ``deconv0`` for export (and maps
the ``'resize_conv'`` training form onto the same deploy net).
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
from dgnam_jax.nets.small import caffe_layer_text

SLOPE = 0.3  # DeePSim's leaky ReLU
UPSAMPLING = ('deconv', 'resize_conv')


@dataclasses.dataclass(frozen=True)
class SmallGenConfig:
  """Architecture of a :class:`SmallDeePSim`.

  Attributes:
    code_dim: length of the code (the classifier's fc6 width).
    fc_widths: outputs of defc7 and defc6.
    start_channels: channels of the 4x4 map defc5 is reshaped to.
    trunk: output channels of each (stride-2 deconv, 3x3 conv) pair; each pair doubles the side,
      so the image side is ``4 * 2 ** len(trunk)``.
    upsample: ``'deconv'`` (DeePSim's free 4x4 stride-2 deconvolutions, which leave a
      checkerboard) or ``'resize_conv'``: each deconvolution is trained as a nearest-neighbour
      2x resize followed by a 3x3 convolution (Odena et al. 2016), whose kernel it equals exactly
      (:func:`resize_conv_kernel`), so the deploy net is the same Caffe net and costs the same.
  """
  code_dim: int = 512
  fc_widths: tuple[int, int] = (1024, 1024)
  start_channels: int = 192
  trunk: tuple[int, ...] = (128, 64, 32)
  upsample: str = dataclasses.field(default='deconv', repr=False)

  def __post_init__(self):
    if len(self.trunk) < 1 or len(self.trunk) > 5 or min(self.trunk) <= 0:
      raise ValueError(f'trunk needs 1 to 5 positive widths, got {self.trunk}')
    if self.upsample not in UPSAMPLING:
      raise ValueError(f'upsample must be one of {UPSAMPLING}, not {self.upsample!r}')

  @property
  def image_size(self) -> int:
    return 4 * 2 ** len(self.trunk)

  def trunk_layers(self) -> tuple[tuple[str, str, int], ...]:
    """(deconv name, conv name, channels) per doubling, numbered down from 5 like DeePSim."""
    return tuple((f'deconv{5 - i}', f'conv{5 - i}_1', c) for i, c in enumerate(self.trunk))

  def to_dict(self) -> dict[str, Any]:
    d = dataclasses.asdict(self)
    if self.upsample == 'deconv':  # the default stays unrecorded: older workdirs still resume
      del d['upsample']
    return d


def resize_conv_kernel(w3):
  """The 4x4 stride-2 pad-1 Deconvolution kernel (kh, kw, C_out, C_in) that equals a
  nearest-neighbour 2x resize followed by the 3x3 pad-1 Convolution ``w3`` (3, 3, C_in, C_out).

  Per axis, output pixel ``o`` of the resize + conv reads input ``floor((o + t - 1) / 2)`` with
  tap ``t``; grouped by the deconvolution's offset ``o + 1 - 2i`` that is the kernel
  ``[w2, w1 + w2, w0 + w1, w0]``. Works on numpy and jax arrays alike.
  """
  taps = np.asarray([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], np.float32)
  xp = jnp if isinstance(w3, jax.Array) else np
  return xp.einsum('ps,qt,stio->pqoi', taps, taps, w3)


CIFAR10_GEN_CONFIG = SmallGenConfig()


class _ResizeConv(nn.Module):
  """A trunk deconvolution in its training form: a learned 3x3 kernel, run as the equal 4x4
  stride-2 deconvolution (:func:`resize_conv_kernel`; cheaper than resizing, then convolving)."""
  features: int
  fast_weight_grad: bool = False
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x):
    w = self.param('kernel', nn.initializers.lecun_normal(), (3, 3, x.shape[-1], self.features),
                   jnp.float32)
    b = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    k = resize_conv_kernel(w).astype(self.dtype)
    if self.fast_weight_grad and self.precision is None:
      return L.deconv2d_train(x.astype(self.dtype), k, (2, 2), (1, 1)) + b.astype(self.dtype)
    return L.deconv2d(x.astype(self.dtype), k, b, stride=(2, 2), pad=(1, 1),
                      precision=self.precision)


class SmallDeePSim(nn.Module):
  """DeePSim-style generator for small images (see the module docstring).

  Attributes:
    config: the architecture.
    output_scale: multiplies ``deconv0`` (training; 1 in an exported net).
    fast_weight_grad: compute kernel gradients with im2col matmuls (training on CPU; same
      values).
    dtype: compute dtype.
    precision: ``lax.Precision`` for convolutions and matmuls.
    train_form: with ``upsample='resize_conv'``, the trunk deconvolutions own 3x3 kernels
      (training); otherwise (deploy, and always for ``'deconv'``) the 4x4 kernels of the Caffe
      net. :func:`deploy_params` maps the first onto the second.
  """
  config: SmallGenConfig = CIFAR10_GEN_CONFIG
  output_scale: float = 1.0
  fast_weight_grad: bool = False  # training: layers.conv2d_train / deconv2d_train
  train_form: bool = False
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, feat, end: str | None = None) -> NetOutputs:
    """Maps (N, code_dim) codes to (N, S, S, 3) images; the image is ``blobs['deconv0']``."""
    cfg = self.config
    rec = Recorder(end)
    kw = dict(dtype=self.dtype, precision=self.precision)
    ckw = dict(kw, fast_weight_grad=self.fast_weight_grad)
    rec.blobs['feat'] = x = feat
    try:
      widths = (*cfg.fc_widths, 16 * cfg.start_channels)
      for name, width in zip(('defc7', 'defc6', 'defc5'), widths):
        x = rec.add(name, name, modules.InnerProduct(width, name=name, **kw)(x))
        x = rec.add(f'relu_{name}', name, L.relu(x, SLOPE))
      x = rec.add('reshape', 'reshape_defc5', L.reshape(x, (-1, cfg.start_channels, 4, 4)))
      for dname, cname, c in cfg.trunk_layers():
        if self.train_form and cfg.upsample == 'resize_conv':
          up = _ResizeConv(c, name=dname, **ckw)
        else:
          up = modules.Deconv(c, (4, 4), (2, 2), (1, 1), name=dname, **ckw)
        x = rec.add(dname, dname, up(x))
        x = rec.add(f'relu_{dname}', dname, L.relu(x, SLOPE))
        x = rec.add(cname, cname, modules.Conv(c, (3, 3), pad=(1, 1), name=cname, **ckw)(x))
        x = rec.add(f'relu_{cname}', cname, L.relu(x, SLOPE))
      y = modules.Deconv(3, (3, 3), (1, 1), (1, 1), name='deconv0', **ckw)(x)
      rec.add('deconv0', 'deconv0', y * self.output_scale if self.output_scale != 1.0 else y)
    except StopForward:
      pass
    return rec.outputs()


def init_params(config: SmallGenConfig, seed: int) -> dict[str, dict[str, np.ndarray]]:
  """MSRA-initialised parameters (DeePSim's filler, leaky-ReLU gain), zero biases; numpy. In the
  training form (``SmallDeePSim(train_form=True)``; the deploy form for ``'deconv'``)."""
  shapes = jax.eval_shape(SmallDeePSim(config, train_form=True).init, jax.random.PRNGKey(0),
                          jnp.zeros((1, config.code_dim)))['params']
  resize_conv = config.upsample == 'resize_conv'
  rng = np.random.default_rng([seed, 20160608])
  out = {}
  for layer, leaves in shapes.items():
    out[layer] = {}
    for leaf, sd in leaves.items():
      shape = tuple(sd.shape)
      if leaf == 'bias':
        out[layer][leaf] = np.zeros(shape, np.float32)
        continue
      # Conv/fc fan-in: all but the output axis; a deconv kernel (kh, kw, C_out, C_in) spreads
      # each input over kh*kw/stride^2 positions, so its effective fan-in is C_in * kh*kw / 4.
      if layer.startswith('deconv') and layer != 'deconv0' and resize_conv:
        fan_in = int(np.prod(shape[:-1]))  # a 3x3 convolution (on the resized map)
      elif layer.startswith('deconv') and layer != 'deconv0':
        fan_in = shape[3] * shape[0] * shape[1] / 4
      elif layer.startswith('deconv'):
        fan_in = shape[3] * shape[0] * shape[1]
      else:
        fan_in = int(np.prod(shape[:-1]))
      gain = 1.0 if layer == 'deconv0' else 2.0 / (1 + SLOPE ** 2)
      out[layer][leaf] = rng.normal(0.0, np.sqrt(gain / fan_in), shape).astype(np.float32)
  return out


def fold_output_scale(params: dict, output_scale: float) -> dict[str, dict[str, np.ndarray]]:
  """Deploy parameters: ``deconv0`` kernel and bias multiplied by ``output_scale`` (numpy)."""
  out = {k: {leaf: np.asarray(v, np.float32) for leaf, v in d.items()} for k, d in params.items()}
  out['deconv0'] = {leaf: (v * np.float32(output_scale)).astype(np.float32)
                    for leaf, v in out['deconv0'].items()}
  return out


def deploy_params(config: SmallGenConfig, params: dict, output_scale: float = 1.0
                  ) -> dict[str, dict[str, np.ndarray]]:
  """Training-form parameters -> those of the deploy net (numpy): the output scale folded into
  ``deconv0`` and, for ``'resize_conv'``, each trunk 3x3 kernel turned into its 4x4 deconvolution."""
  out = fold_output_scale(params, output_scale)
  if config.upsample == 'resize_conv':
    for dname, _, _ in config.trunk_layers():
      out[dname] = dict(out[dname], kernel=resize_conv_kernel(out[dname]['kernel']))
  return out


def deploy_prototxt(config: SmallGenConfig, name: str = 'SmallDeePSim') -> str:
  """The Caffe deploy prototxt (V2 text) of :class:`SmallDeePSim` with ``config``."""
  lines = [f'# DeePSim-style generator for {config.image_size} px images '
           '(dgnam_jax.nets.small_gen).', f'# {config!r}.', f'name: "{name}"']
  if config.upsample == 'resize_conv':
    lines.insert(2, '# Trained as nearest-neighbour 2x resizes + 3x3 convolutions; each deconv* '
                 'below is their exact equivalent.')
  lines.append(caffe_layer_text('feat', 'Input', None, 'feat',
                                '  input_param {\n    shape {\n      dim: 1\n'
                                f'      dim: {config.code_dim}\n    }}\n  }}\n'))

  def relu(bottom, lname):
    lines.append(caffe_layer_text(lname, 'ReLU', bottom, bottom,
                                  f'  relu_param {{\n    negative_slope: {SLOPE:g}\n  }}\n'))

  def conv(lname, ltype, bottom, feats, k, s):
    # Deconvolution takes its settings from convolution_param too.
    lines.append(caffe_layer_text(lname, ltype, bottom, lname,
                                  f'  convolution_param {{\n    num_output: {feats}\n    pad: 1\n'
                                  f'    kernel_size: {k}\n    stride: {s}\n  }}\n'))

  bottom = 'feat'
  widths = (*config.fc_widths, 16 * config.start_channels)
  for lname, width in zip(('defc7', 'defc6', 'defc5'), widths):
    lines.append(caffe_layer_text(lname, 'InnerProduct', bottom, lname,
                                  f'  inner_product_param {{\n    num_output: {width}\n  }}\n'))
    relu(lname, f'relu_{lname}')
    bottom = lname
  lines.append(caffe_layer_text('reshape', 'Reshape', 'defc5', 'reshape_defc5',
                                '  reshape_param {\n    shape {\n      dim: 1\n'
                                f'      dim: {config.start_channels}\n      dim: 4\n'
                                '      dim: 4\n    }\n  }\n'))
  bottom = 'reshape_defc5'
  for dname, cname, c in config.trunk_layers():
    conv(dname, 'Deconvolution', bottom, c, 4, 2)
    relu(dname, f'relu_{dname}')
    conv(cname, 'Convolution', dname, c, 3, 1)
    relu(cname, f'relu_{cname}')
    bottom = cname
  conv('deconv0', 'Deconvolution', bottom, 3, 3, 1)
  return '\n'.join(lines) + '\n'
