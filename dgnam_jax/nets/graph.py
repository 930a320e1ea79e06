"""A Flax module that runs any supported Caffe net from its :class:`NetDef`.

This is what users' own Caffe models and the test fixtures run on; the hand-written nets in this
package must agree with it on the same weights. Blobs are NHWC when 4-D, Caffe order otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from dgnam_jax.nets import layers as L
from dgnam_jax.caffe import netdef as nd
from dgnam_jax.nets import modules


class NetOutputs(NamedTuple):
  """What a net returns.

  Attributes:
    blobs: every named blob after the forward pass, as Caffe's ``net.blobs`` holds it (in-place
      layers such as ReLU have overwritten their blob).
    layers: the output of each layer under the layer's own name, taken when that layer ran: for
      CaffeNet ``layers['conv5']`` is conv5 before ``relu5``; ``layers['relu5']`` is after it.
  """
  blobs: dict[str, jax.Array]
  layers: dict[str, jax.Array]


def _pair_kwargs(p: nd.ConvolutionParam) -> dict[str, Any]:
  return dict(features=p.num_output, kernel=p.kernel, stride=p.stride, pad=p.pad,
              dilation=p.dilation, group=p.group, bias_term=p.bias_term)


def _pool(x, p: nd.PoolingParam):
  kernel, stride, pad = p.kernel, p.stride, p.pad
  if p.global_pooling:
    kernel, stride, pad = tuple(x.shape[1:3]), (1, 1), (0, 0)
  fn = L.max_pool if p.pool == 'MAX' else L.ave_pool
  return fn(x, kernel, stride, pad, ceil=p.round_mode == 'CEIL')


def _lrn(x, p: nd.LRNParam):
  if p.norm_region == 'WITHIN_CHANNEL':
    return L.lrn_within_channel(x, p.local_size, p.alpha, p.beta)
  return L.lrn_across_channels(x, p.local_size, p.alpha, p.beta, p.k)


# Layers without parameters: (bottoms, param) -> list of tops.
_STATELESS = {
    'Pooling': lambda xs, p: [_pool(xs[0], p)],
    'LRN': lambda xs, p: [_lrn(xs[0], p)],
    'ReLU': lambda xs, p: [L.relu(xs[0], p.negative_slope)],
    'Dropout': lambda xs, p: [xs[0]],
    'Softmax': lambda xs, p: [L.softmax(xs[0], p.axis)],
    'Concat': lambda xs, p: [L.concat(xs, p.axis)],
    'Eltwise': lambda xs, p: [L.eltwise(xs, p.operation, p.coeff)],
    'Reshape': lambda xs, p: [L.reshape(xs[0], p.shape, p.axis, p.num_axes)],
    'Flatten': lambda xs, p: [L.flatten(xs[0], p.axis, p.end_axis)],
    'Crop': lambda xs, p: [L.crop(xs[0], L.to_nchw(xs[1]).shape, p.axis, p.offset)],
}


class CaffeGraph(nn.Module):
  """Runs a Caffe net (TEST phase) exactly as Caffe would.

  Attributes:
    netdef: the parsed net (see :func:`dgnam_jax.caffe.parse_prototxt`).
    dtype: compute dtype (parameters are stored in float32 and cast).
    precision: ``lax.Precision`` for convolutions and matmuls.
  """
  netdef: nd.NetDef
  dtype: Any = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, inputs: Mapping[str, jax.Array] | jax.Array,
               end: str | None = None) -> NetOutputs:
    """Runs the net.

    Args:
      inputs: a dict from input blob name to array (NHWC if 4-D, any batch size), or one array
        when the net has a single input.
      end: optional layer name to stop after (Caffe's ``forward(end=...)``).

    Returns:
      A :class:`NetOutputs` with every blob and every layer output computed.
    """
    declared = self.netdef.inputs
    if not isinstance(inputs, Mapping):
      if len(declared) != 1:
        raise ValueError(f'net {self.netdef.name!r} has inputs {[n for n, _ in declared]}; '
                         'pass a dict')
      inputs = {declared[0][0]: inputs}
    blobs: dict[str, jax.Array] = {}
    outs: dict[str, jax.Array] = {}
    for layer in self.netdef.layers:
      if layer.type == 'Input':
        tops = [_take_input(inputs, name, shape) for name, shape in declared
                if name in layer.tops]
      else:
        missing = [b for b in layer.bottoms if b not in blobs]
        if missing:
          raise ValueError(f'layer {layer.name!r}: bottom blob(s) {missing} not computed')
        tops = self._run(layer, [blobs[b] for b in layer.bottoms])
      for name, value in zip(layer.tops, tops):
        blobs[name] = value
      outs[layer.name] = tops[0]
      if layer.name == end:
        break
    else:
      if end is not None:
        raise KeyError(f'no layer named {end!r} in net {self.netdef.name!r}')
    return NetOutputs(blobs, outs)

  def _run(self, layer: nd.LayerDef, xs: list[jax.Array]) -> list[jax.Array]:
    p, kw = layer.param, dict(name=layer.name, dtype=self.dtype)
    if layer.type in ('Convolution', 'Deconvolution'):
      cls = modules.Conv if layer.type == 'Convolution' else modules.Deconv
      return [cls(**_pair_kwargs(p), precision=self.precision, **kw)(xs[0])]
    if layer.type == 'InnerProduct':  # a `transpose` blob is transposed by the converter
      return [modules.InnerProduct(p.num_output, p.axis, p.bias_term,
                                   precision=self.precision, **kw)(xs[0])]
    if layer.type == 'BatchNorm':
      return [modules.BatchNorm(p.eps, **kw)(xs[0])]
    if layer.type == 'Scale':
      return [modules.Scale(p.axis, p.num_axes, p.bias_term, **kw)(xs[0])]
    if layer.type == 'Split':
      return [xs[0]] * len(layer.tops)
    if layer.type in _STATELESS:
      return _STATELESS[layer.type]([x.astype(self.dtype) for x in xs], p)
    raise ValueError(f'unsupported layer type {layer.type} in layer {layer.name}')


def _take_input(inputs: Mapping[str, jax.Array], name: str, shape: tuple[int, ...]):
  if name not in inputs:
    raise ValueError(f'missing net input {name!r}; got {sorted(inputs)}')
  x = jnp.asarray(inputs[name])
  got = L.to_nchw(x).shape
  if tuple(got[1:]) != tuple(shape[1:]):
    raise ValueError(f'input {name!r} has Caffe shape {tuple(got)}; the net expects '
                     f'(N, {", ".join(map(str, shape[1:]))})')
  return x
