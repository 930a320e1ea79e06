"""Caffe blobs <-> Flax parameter trees for any :class:`NetDef`.

Caffe stores conv kernels (O, I/g, kh, kw), deconv kernels (C_in, C_out/g, kh, kw), InnerProduct
weights (O, K) with K flattened in (C, H, W) order, and BatchNorm statistics scaled by a factor
held in a third blob. Flax layouts are described in CHECKPOINTS.md. Old (V0/V1) files keep legacy
4-D shapes such as 1x1x1xN biases; they are accepted when they hold the same values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from dgnam_jax.caffe.netdef import CaffeFormatError, LayerDef, NetDef
from dgnam_jax.nets.graph import CaffeGraph

PARAM_TYPES = ('Convolution', 'Deconvolution', 'InnerProduct', 'BatchNorm', 'Scale')


def abstract_inputs(netdef: NetDef, batch: int | None = None) -> dict[str, jax.ShapeDtypeStruct]:
  """Shape-only inputs (NHWC when 4-D) at the prototxt's declared shapes."""
  out = {}
  for name, shape in netdef.inputs:
    shape = ((batch,) + tuple(shape[1:])) if batch else tuple(shape)
    if len(shape) == 4:
      shape = (shape[0], shape[2], shape[3], shape[1])
    out[name] = jax.ShapeDtypeStruct(shape, jnp.float32)
  return out


# The largest parameter or blob (per sample) a net may declare: 2^31 values, 8 GiB of float32,
# beyond any net of the paper (CaffeNet's fc6 weight: 37.7 M). Checked on shapes, before any
# allocation, so that a few bytes of prototxt cannot ask for terabytes.
MAX_ELEMENTS = 2**31


def shapes(netdef: NetDef, batch: int | None = None):
  """(param shapes, blob shapes in Caffe order) of ``netdef`` without computing anything.

  Raises:
    CaffeFormatError: a parameter or blob over :data:`MAX_ELEMENTS` values, naming it.
  """
  module, inputs = CaffeGraph(netdef), abstract_inputs(netdef, batch)
  for name, spec in inputs.items() if isinstance(inputs, dict) else ():
    _check_size(netdef, f'input {name!r}', spec.shape[1:])
  params = jax.eval_shape(module.init, jax.random.PRNGKey(0), inputs).get('params', {})
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    _check_size(netdef, 'parameter ' + '/'.join(str(getattr(k, 'key', k)) for k in path),
                leaf.shape)
  outs = jax.eval_shape(module.apply, {'params': params}, inputs)
  order = list(dict.fromkeys(top for layer in netdef.layers for top in layer.tops))
  blobs = {k: _caffe_shape(outs.blobs[k].shape) for k in order}  # forward order, as Caffe
  for name, shape in blobs.items():
    _check_size(netdef, f'blob {name!r}', shape[1:])
  return jax.tree.map(lambda s: tuple(s.shape), params), blobs


def _check_size(netdef: NetDef, what: str, shape) -> None:
  n = int(np.prod(np.asarray(shape, np.float64)))  # float: no int64 overflow on absurd dims
  if n > MAX_ELEMENTS:
    raise CaffeFormatError(f'{netdef.source or netdef.name}: {what} of shape {tuple(shape)} has '
                           f'{n:.3g} values (over {MAX_ELEMENTS:.3g})')


def _caffe_shape(shape):
  return (shape[0], shape[3], shape[1], shape[2]) if len(shape) == 4 else tuple(shape)


def _fit(blob: np.ndarray, shape: tuple[int, ...], where: str) -> np.ndarray:
  """Reshapes a stored blob to the canonical Caffe ``shape``, allowing legacy 4-D padding."""
  stored = tuple(blob.shape)
  squeeze = lambda s: tuple(s[next((i for i, d in enumerate(s) if d != 1), len(s)):])
  if stored != tuple(shape) and squeeze(stored) != squeeze(tuple(shape)):
    raise CaffeFormatError(f'{where} has shape {stored}, expected {tuple(shape)}')
  return np.asarray(blob, np.float32).reshape(shape)


def _ip_kernel_from_caffe(w: np.ndarray, bottom: tuple[int, ...], axis: int) -> np.ndarray:
  """(O, K) Caffe weight -> (K, O) kernel, rows permuted to NHWC flatten order for 4-D bottoms."""
  if len(bottom) == 4 and axis == 1:
    c, h, wd = bottom[1:]
    return w.reshape(-1, c, h, wd).transpose(2, 3, 1, 0).reshape(h * wd * c, -1)
  return w.T


def _ip_kernel_to_caffe(k: np.ndarray, bottom: tuple[int, ...], axis: int) -> np.ndarray:
  if len(bottom) == 4 and axis == 1:
    c, h, wd = bottom[1:]
    return k.reshape(h, wd, c, -1).transpose(3, 2, 0, 1).reshape(k.shape[1], -1)
  return k.T


def _caffe_blob_shapes(layer: LayerDef, pshapes: Mapping[str, tuple]) -> list[tuple[int, ...]]:
  """Canonical Caffe shapes of a layer's blobs, derived from its Flax parameter shapes."""
  t = layer.type
  if t == 'Convolution':
    kh, kw, i, o = pshapes['kernel']
    out = [(o, i, kh, kw)]
  elif t == 'Deconvolution':
    kh, kw, o, i = pshapes['kernel']
    out = [(i, o, kh, kw)]
  elif t == 'InnerProduct':
    k, o = pshapes['kernel']
    out = [(k, o) if layer.param.transpose else (o, k)]
  elif t == 'BatchNorm':
    return [pshapes['mean'], pshapes['var'], (1,)]
  else:  # Scale
    return [pshapes['scale']] + ([pshapes['bias']] if 'bias' in pshapes else [])
  return out + ([pshapes['bias']] if 'bias' in pshapes else [])


def caffe_to_flax(netdef: NetDef, caffe_blobs: Mapping[str, Sequence[np.ndarray]],
                  source: str = '<caffemodel>') -> dict:
  """Builds the Flax ``params`` tree of ``netdef`` from Caffe blobs (layer name -> blobs).

  Layers in ``caffe_blobs`` that the net does not use are ignored, as Caffe ignores them.

  Raises:
    CaffeFormatError: naming ``source`` and the layer, when a layer is missing, has the wrong
      number of blobs or a blob of the wrong shape.
  """
  pshapes, bshapes = shapes(netdef)
  params = {}
  for layer in netdef.layers:
    if layer.type not in PARAM_TYPES:
      continue
    where = f'{source}: layer {layer.name!r} ({layer.type})'
    if layer.name not in caffe_blobs:
      raise CaffeFormatError(f'{where} is missing from the caffemodel')
    blobs, want = list(caffe_blobs[layer.name]), _caffe_blob_shapes(layer, pshapes[layer.name])
    if len(blobs) != len(want):
      raise CaffeFormatError(f'{where} has {len(blobs)} blobs, expected {len(want)}')
    blobs = [_fit(b, s, f'{where} blob {i}') for i, (b, s) in enumerate(zip(blobs, want))]
    params[layer.name] = _layer_to_flax(layer, blobs, bshapes[layer.bottoms[0]])
  return params


def _layer_to_flax(layer: LayerDef, blobs: list[np.ndarray], bottom: tuple) -> dict:
  t = layer.type
  if t in ('Convolution', 'Deconvolution'):
    out = {'kernel': blobs[0].transpose(2, 3, 1, 0)}
  elif t == 'InnerProduct':
    w = blobs[0].T if layer.param.transpose else blobs[0]
    out = {'kernel': _ip_kernel_from_caffe(w, bottom, layer.param.axis)}
  elif t == 'BatchNorm':
    s = float(blobs[2].reshape(-1)[0])
    factor = 0.0 if s == 0 else 1.0 / s  # Caffe: a zero factor means zero statistics
    return {'mean': blobs[0] * np.float32(factor), 'var': blobs[1] * np.float32(factor)}
  else:  # Scale
    out = {'scale': blobs[0]}
    return out | ({'bias': blobs[1]} if len(blobs) > 1 else {})
  if len(blobs) > 1:
    out['bias'] = blobs[1]
  return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def flax_to_caffe(netdef: NetDef, params: Mapping[str, Mapping[str, np.ndarray]]
                  ) -> dict[str, list[np.ndarray]]:
  """Inverse of :func:`caffe_to_flax`: canonical Caffe blobs (BatchNorm factor written as 1)."""
  _, bshapes = shapes(netdef)
  out = {}
  for layer in netdef.layers:
    if layer.type not in PARAM_TYPES:
      continue
    p = {k: np.asarray(v, np.float32) for k, v in params[layer.name].items()}
    t = layer.type
    if t in ('Convolution', 'Deconvolution'):
      blobs = [p['kernel'].transpose(3, 2, 0, 1)]
    elif t == 'InnerProduct':
      w = _ip_kernel_to_caffe(p['kernel'], bshapes[layer.bottoms[0]], layer.param.axis)
      blobs = [w.T if layer.param.transpose else w]
    elif t == 'BatchNorm':
      out[layer.name] = [p['mean'], p['var'], np.ones((1,), np.float32)]
      continue
    else:
      blobs = [p['scale']]
    if 'bias' in p:
      blobs.append(p['bias'])
    out[layer.name] = [np.ascontiguousarray(b) for b in blobs]
  return out


def count_params(params, exclude_types: Sequence[str] = (), netdef: NetDef | None = None) -> int:
  """Number of scalars in ``params``; optionally skipping layers of some types (e.g. BatchNorm)."""
  skip = {l.name for l in netdef.layers if l.type in exclude_types} if netdef else set()
  return sum(math.prod(np.shape(v)) for name, layer in params.items() if name not in skip
             for v in jax.tree.leaves(layer))
