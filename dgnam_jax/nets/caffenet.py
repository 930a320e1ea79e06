"""CaffeNet (bvlc_reference_caffenet) and Places205-AlexNet, written out by hand.

Same graph as the BVLC deploy prototxt: pooling *before* LRN, groups of 2 on conv2/4/5, ReLUs in
place. Parameters are named after the Caffe layers. Input: BGR, mean-subtracted, 0-255 scale,
NHWC (N, 227, 227, 3).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dgnam_jax.nets import layers as L
from dgnam_jax.nets import modules
from dgnam_jax.nets.graph import NetOutputs
from dgnam_jax.nets.recorder import Recorder, StopForward

# (name, features, kernel, stride, pad, group, pool+norm after the ReLU)
_CONVS = (('conv1', 96, 11, 4, 0, 1, True), ('conv2', 256, 5, 1, 2, 2, True),
          ('conv3', 384, 3, 1, 1, 1, False), ('conv4', 384, 3, 1, 1, 2, False),
          ('conv5', 256, 3, 1, 1, 2, False))


class CaffeNet(nn.Module):
  """CaffeNet; ``num_classes=205`` gives Places205-AlexNet.

  Attributes:
    num_classes: outputs of fc8 (1000 for ImageNet, 205 for Places205).
    dtype: compute dtype.
    precision: ``lax.Precision`` for convolutions and matmuls.
  """
  num_classes: int = 1000
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x, end: str | None = None) -> NetOutputs:
    """Forward pass; returns every blob and layer output (see :class:`NetOutputs`)."""
    rec = Recorder(end)
    kw = dict(dtype=self.dtype, precision=self.precision)
    rec.blobs['data'] = x
    try:
      for i, (name, feats, k, s, p, g, pool_norm) in enumerate(_CONVS, start=1):
        x = rec.add(name, name, modules.Conv(feats, (k, k), (s, s), (p, p), group=g,
                                             name=name, **kw)(x))
        x = rec.add(f'relu{i}', name, L.relu(x))
        if pool_norm:
          x = rec.add(f'pool{i}', f'pool{i}', L.max_pool(x, (3, 3), (2, 2)))
          x = rec.add(f'norm{i}', f'norm{i}', L.lrn_across_channels(x, 5, 1e-4, 0.75))
      x = rec.add('pool5', 'pool5', L.max_pool(x, (3, 3), (2, 2)))
      for i in (6, 7):
        x = rec.add(f'fc{i}', f'fc{i}', modules.InnerProduct(4096, name=f'fc{i}', **kw)(x))
        x = rec.add(f'relu{i}', f'fc{i}', L.relu(x))
        x = rec.add(f'drop{i}', f'fc{i}', x)  # Dropout is the identity at test time
      x = rec.add('fc8', 'fc8', modules.InnerProduct(self.num_classes, name='fc8', **kw)(x))
      rec.add('prob', 'prob', L.softmax(x))
    except StopForward:
      pass
    return rec.outputs()
