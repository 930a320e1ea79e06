"""The DeePSim generators G_l (Dosovitskiy & Brox 2016) used by DGN-AM, written out by hand.

``fc6``/``fc7`` map a 4096-d code to a 256x256 BGR, mean-subtracted, 0-255-scale image through
three InnerProducts, a reshape to 256x4x4 and nine Deconvolutions; ``pool5`` starts from a
6x6x256 code with three 3x3 convolutions. Every non-linearity is Caffe ReLU with slope 0.3 and
there is none after ``deconv0`` (``reference/original.md`` §5.1). conv5_1/conv4_1/conv3_1 are
stride-1 *Deconvolutions* in the original, and are kept as such so their blobs load unchanged.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dgnam_jax.nets import layers as L
from dgnam_jax.nets import modules
from dgnam_jax.nets.graph import NetOutputs
from dgnam_jax.nets.recorder import Recorder, StopForward

_SLOPE = 0.3
# (name, features, kernel, stride) of the up-convolutional trunk; pad is 1 throughout.
_TRUNK = (('deconv5', 256, 4, 2), ('conv5_1', 512, 3, 1), ('deconv4', 256, 4, 2),
          ('conv4_1', 256, 3, 1), ('deconv3', 128, 4, 2), ('conv3_1', 128, 3, 1),
          ('deconv2', 64, 4, 2), ('deconv1', 32, 4, 2), ('deconv0', 3, 4, 2))
# (name, ReLU name, pad) of the pool5 generator's extra 3x3 convolutions (names as in
# synthesizing/nets/upconv/pool5/generator.prototxt).
_POOL5_CONVS = (('Rconv6', 'Rrelu6', 1), ('Rconv7', 'Rrelu7', 1), ('Rconv8', 'Rrelu8', 0))
CODE_SHAPES = {'fc6': (4096,), 'fc7': (4096,), 'pool5': (256, 6, 6)}  # Caffe (C, H, W) order


class DeePSimGenerator(nn.Module):
  """DeePSim generator for code layer ``variant`` ('fc6', 'fc7' or 'pool5').

  Attributes:
    variant: which CaffeNet layer the generator inverts.
    dtype: compute dtype.
    precision: ``lax.Precision`` for convolutions and matmuls.
  """
  variant: str = 'fc6'
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, feat, end: str | None = None) -> NetOutputs:
    """Maps codes ``feat`` ((N, 4096), or (N, 6, 6, 256) for pool5) to images (N, 256, 256, 3)."""
    if self.variant not in CODE_SHAPES:
      raise ValueError(f'unknown DeePSim variant {self.variant!r}; valid: {sorted(CODE_SHAPES)}')
    rec = Recorder(end)
    kw = dict(dtype=self.dtype, precision=self.precision)
    rec.blobs['feat'] = x = feat
    try:
      if self.variant == 'pool5':
        for name, relu, pad in _POOL5_CONVS:
          x = rec.add(name, name, modules.Conv(512, (3, 3), pad=(pad, pad), name=name, **kw)(x))
          x = rec.add(relu, name, L.relu(x, _SLOPE))
      else:
        for name in ('defc7', 'defc6', 'defc5'):
          x = rec.add(name, name, modules.InnerProduct(4096, name=name, **kw)(x))
          x = rec.add(f'relu_{name}', name, L.relu(x, _SLOPE))
        x = rec.add('reshape', 'reshape_defc5', L.reshape(x, (1, 256, 4, 4)))
      for name, feats, k, s in _TRUNK:
        x = rec.add(name, name, modules.Deconv(feats, (k, k), (s, s), (1, 1), name=name,
                                               **kw)(x))
        if name != 'deconv0':
          x = rec.add(f'relu_{name}', name, L.relu(x, _SLOPE))
    except StopForward:
      pass
    return rec.outputs()
