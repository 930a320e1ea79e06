"""An independent float64 numpy interpreter of a Caffe deploy net (test helper only).

This is the slow, obviously-correct second opinion that the Flax nets are tested against. It reads
the same :class:`~dgnam_jax.caffe.netdef.NetDef` but shares no code with the package: every layer
is written out from Caffe's TEST-phase definition (``reference/caffe.md`` §3) with explicit
im2col / scatter-add loops and ``np.matmul``, never a convolution library. Blobs stay in Caffe's
layout (NCHW) throughout.

Main entry points:
  * :func:`forward` runs a net and returns every blob, as Caffe's ``net.blobs`` would hold them.
  * :func:`infer_shapes` is the same shape logic without arithmetic (cheap, for big nets).
  * :func:`param_shapes` gives the canonical blob shapes of every learnable layer.

Both passes are batch-agnostic: the batch comes from the inputs, not from the prototxt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math

import numpy as np

from dgnam_jax.caffe import netdef as nd

Shape = tuple[int, ...]


# --------------------------------------------------------------------------------------------------
# Output-size arithmetic, shared by the shape pass and the numeric pass.


def _norm_axis(axis: int, ndim: int, *, allow_end: bool = False) -> int:
  """Caffe's CanonicalAxisIndex (``allow_end`` accepts ``ndim`` itself, for Reshape)."""
  limit = ndim + 1 if allow_end else ndim
  out = axis + limit if axis < 0 else axis
  if not 0 <= out < limit:
    raise ValueError(f'axis {axis} out of range for a {ndim}-D blob')
  return out


def conv_out_size(size: int, k: int, s: int, p: int, d: int) -> int:
  """Convolution output size: floor((H + 2p - (d(k-1)+1)) / s) + 1."""
  out = (size + 2 * p - (d * (k - 1) + 1)) // s + 1
  if out < 1:
    raise ValueError(f'convolution gives an empty output (size {size}, k {k}, s {s}, p {p})')
  return out


def deconv_out_size(size: int, k: int, s: int, p: int, d: int) -> int:
  """Deconvolution output size: s(H-1) + d(k-1) + 1 - 2p."""
  return s * (size - 1) + d * (k - 1) + 1 - 2 * p


def _pool_geometry(param: nd.PoolingParam, hw: tuple[int, int]):
  """Returns (kernel, stride, pad, out) for a pooling layer on an (H, W) input.

  Caffe rounds up by default, then drops a last window that would start inside the bottom/right
  padding (the "clip rule", applied to both dims as soon as either has padding).
  """
  if param.global_pooling:
    kernel, stride, pad = hw, (1, 1), (0, 0)
  else:
    kernel, stride, pad = param.kernel, param.stride, param.pad
  out = []
  for size, k, s, p in zip(hw, kernel, stride, pad):
    span = size + 2 * p - k
    o = (-(-span // s) if param.round_mode == 'CEIL' else span // s) + 1
    if pad[0] > 0 or pad[1] > 0:
      if (o - 1) * s >= size + p:
        o -= 1
    out.append(o)
  return tuple(kernel), tuple(stride), tuple(pad), tuple(out)


def _reshape_target(param: nd.ReshapeParam, shape: Shape) -> Shape:
  """Caffe's Reshape output shape, made batch-agnostic.

  Dim 0 copies the bottom dim, -1 is inferred. If the replaced range starts at axis 0 with a
  positive first dim, the bottom's batch is used instead: prototxts such as the DeePSim generator
  hard-code batch 1 there, and we want to run them at any batch.
  """
  start = _norm_axis(param.axis, len(shape), allow_end=True)
  end = len(shape) if param.num_axes == -1 else start + param.num_axes
  spec = list(param.shape)
  if start == 0 and spec and spec[0] > 0:
    spec[0] = shape[0]
  new = []
  infer = None
  for i, dim in enumerate(spec):
    if dim == 0:
      new.append(shape[start + i])
    elif dim == -1:
      if infer is not None:
        raise ValueError('Reshape: more than one -1 dim')
      infer = i
      new.append(1)
    else:
      new.append(dim)
  out = list(shape[:start]) + new + list(shape[end:])
  total = math.prod(shape)
  if infer is not None:
    known = math.prod(out)
    if total % known:
      raise ValueError(f'Reshape: cannot infer a dim of {shape} -> {param.shape}')
    out[start + infer] = total // known
  if math.prod(out) != total:
    raise ValueError(f'Reshape: {shape} ({total}) does not fit {tuple(out)}')
  return tuple(out)


def _scale_shape(param: nd.ScaleParam, bottom: Shape) -> Shape:
  """Shape of a one-bottom Scale layer's scale/bias blob: bottom[axis:axis+num_axes]."""
  axis = _norm_axis(param.axis, len(bottom))
  end = len(bottom) if param.num_axes == -1 else axis + param.num_axes
  return tuple(bottom[axis:end])


def _crop_offsets(param: nd.CropParam, ndim: int) -> tuple[int, list[int]]:
  axis = _norm_axis(param.axis, ndim)
  n = ndim - axis
  if not param.offset:
    offsets = [0] * n
  elif len(param.offset) == 1:
    offsets = [param.offset[0]] * n
  elif len(param.offset) == n:
    offsets = list(param.offset)
  else:
    raise ValueError(f'Crop: {len(param.offset)} offsets for {n} cropped axes')
  return axis, offsets


# Parameters that may be left out of a layer (all their fields have defaults).
_DEFAULT_PARAMS = {
    'ReLU': nd.ReLUParam, 'Dropout': nd.DropoutParam, 'Softmax': nd.SoftmaxParam,
    'Concat': nd.ConcatParam, 'Eltwise': nd.EltwiseParam, 'BatchNorm': nd.BatchNormParam,
    'Scale': nd.ScaleParam, 'Flatten': nd.FlattenParam, 'Crop': nd.CropParam,
    'LRN': nd.LRNParam, 'Pooling': nd.PoolingParam,
}


def _param(layer: nd.LayerDef):
  """The layer's typed parameters, with Caffe's defaults where the layer gives none."""
  if isinstance(layer.param, nd.NoParam) and layer.type in _DEFAULT_PARAMS:
    return _DEFAULT_PARAMS[layer.type]()
  return layer.param


def _output_shapes(layer: nd.LayerDef, bottoms: Sequence[Shape]) -> list[Shape]:
  """Shape of every top of ``layer`` given its bottom shapes (not used for Input)."""
  t, p = layer.type, _param(layer)
  if t in ('ReLU', 'Dropout', 'BatchNorm', 'Scale', 'LRN', 'Softmax'):
    return [bottoms[0]]
  if t == 'Split':
    return [bottoms[0]] * len(layer.tops)
  if t in ('Convolution', 'Deconvolution'):
    n, _, h, w = bottoms[0]
    size = conv_out_size if t == 'Convolution' else deconv_out_size
    hw = [size(x, k, s, q, d) for x, k, s, q, d in zip((h, w), p.kernel, p.stride, p.pad,
                                                        p.dilation)]
    return [(n, p.num_output, *hw)]
  if t == 'InnerProduct':
    axis = _norm_axis(p.axis, len(bottoms[0]))
    return [tuple(bottoms[0][:axis]) + (p.num_output,)]
  if t == 'Pooling':
    n, c, h, w = bottoms[0]
    *_, out = _pool_geometry(p, (h, w))
    return [(n, c, *out)]
  if t == 'Concat':
    axis = _norm_axis(p.axis, len(bottoms[0]))
    out = list(bottoms[0])
    for b in bottoms[1:]:
      if len(b) != len(out) or any(b[i] != out[i] for i in range(len(b)) if i != axis):
        raise ValueError(f'Concat {layer.name}: shapes {bottoms} disagree off axis {axis}')
      out[axis] += b[axis]
    return [tuple(out)]
  if t == 'Eltwise':
    if any(b != bottoms[0] for b in bottoms):
      raise ValueError(f'Eltwise {layer.name}: shapes {bottoms} differ')
    return [bottoms[0]]
  if t == 'Reshape':
    return [_reshape_target(p, bottoms[0])]
  if t == 'Flatten':
    shape = bottoms[0]
    start = _norm_axis(p.axis, len(shape))
    end = _norm_axis(p.end_axis, len(shape))
    return [tuple(shape[:start]) + (math.prod(shape[start:end + 1]),) + tuple(shape[end + 1:])]
  if t == 'Crop':
    axis, offsets = _crop_offsets(p, len(bottoms[0]))
    for i, off in enumerate(offsets):
      if bottoms[0][axis + i] < off + bottoms[1][axis + i]:
        raise ValueError(f'Crop {layer.name}: {bottoms[1]} at {offsets} exceeds {bottoms[0]}')
    return [tuple(bottoms[0][:axis]) + tuple(bottoms[1][axis:])]
  raise NotImplementedError(f'layer {layer.name!r}: type {t!r} is not supported')


# --------------------------------------------------------------------------------------------------
# Parameter blobs.


def _layer_blob_shapes(layer: nd.LayerDef, bottoms: Sequence[Shape]) -> list[Shape]:
  """Canonical shapes of a layer's parameter blobs, in Caffe's blob order."""
  t, p = layer.type, _param(layer)
  if t in ('Convolution', 'Deconvolution'):
    c_in = bottoms[0][1]
    if c_in % p.group or p.num_output % p.group:
      raise ValueError(f'{layer.name}: channels not divisible by group {p.group}')
    if t == 'Convolution':
      w = (p.num_output, c_in // p.group, *p.kernel)
    else:
      w = (c_in, p.num_output // p.group, *p.kernel)
    return [w, (p.num_output,)] if p.bias_term else [w]
  if t == 'InnerProduct':
    axis = _norm_axis(p.axis, len(bottoms[0]))
    k = math.prod(bottoms[0][axis:])
    w = (k, p.num_output) if p.transpose else (p.num_output, k)
    return [w, (p.num_output,)] if p.bias_term else [w]
  if t == 'BatchNorm':
    c = bottoms[0][1]
    return [(c,), (c,), (1,)]
  if t == 'Scale':
    if len(bottoms) == 1:
      shape = _scale_shape(p, bottoms[0])
      return [shape, shape] if p.bias_term else [shape]
    return [tuple(bottoms[1])] if p.bias_term else []
  return []


def canonical_blobs(layer: nd.LayerDef, blobs: Sequence[np.ndarray],
                    bottoms: Sequence[Shape]) -> list[np.ndarray]:
  """Reshapes (possibly legacy 4-D) blobs to their canonical shapes, as float64."""
  shapes = _layer_blob_shapes(layer, bottoms)
  if len(blobs) != len(shapes):
    raise ValueError(f'layer {layer.name!r} ({layer.type}) needs {len(shapes)} blobs, '
                     f'got {len(blobs)}')
  out = []
  for blob, shape in zip(blobs, shapes):
    blob = np.asarray(blob, dtype=np.float64)
    if blob.size != math.prod(shape):
      raise ValueError(f'layer {layer.name!r}: blob of shape {blob.shape} does not fit {shape}')
    out.append(blob.reshape(shape))
  return out


# --------------------------------------------------------------------------------------------------
# Shape-only pass.


def _input_shapes(net: nd.NetDef, given: Mapping[str, Shape] | None) -> dict[str, Shape]:
  shapes = dict(net.inputs)
  for name, shape in (given or {}).items():
    if name not in shapes:
      raise KeyError(f'{name!r} is not an input of net {net.name!r}')
    shapes[name] = tuple(int(x) for x in shape)
  return shapes


def infer_shapes(net: nd.NetDef, input_shapes: Mapping[str, Shape] | None = None
                 ) -> dict[str, Shape]:
  """Shape of every blob after the forward pass, without computing anything.

  Args:
    net: the net.
    input_shapes: overrides for the declared input shapes (for example another batch size).

  Returns:
    blob name -> Caffe shape.
  """
  inputs = _input_shapes(net, input_shapes)
  shapes: dict[str, Shape] = {}
  for layer in net.layers:
    if layer.type == 'Input':
      for top in layer.tops:
        shapes[top] = inputs[top]
      continue
    outs = _output_shapes(layer, [shapes[b] for b in layer.bottoms])
    shapes.update(zip(layer.tops, outs))
  return shapes


def param_shapes(net: nd.NetDef, input_shapes: Mapping[str, Shape] | None = None
                 ) -> dict[str, list[Shape]]:
  """Canonical parameter blob shapes of every layer that has blobs, in net order."""
  inputs = _input_shapes(net, input_shapes)
  shapes: dict[str, Shape] = {}
  params: dict[str, list[Shape]] = {}
  for layer in net.layers:
    if layer.type == 'Input':
      for top in layer.tops:
        shapes[top] = inputs[top]
      continue
    bottoms = [shapes[b] for b in layer.bottoms]
    blob_shapes = _layer_blob_shapes(layer, bottoms)
    if blob_shapes:
      params[layer.name] = blob_shapes
    shapes.update(zip(layer.tops, _output_shapes(layer, bottoms)))
  return params


def count_params(net: nd.NetDef, exclude_types: Sequence[str] = ()) -> int:
  """Number of parameters (blob elements), skipping layers of ``exclude_types``."""
  types = {layer.name: layer.type for layer in net.layers}
  return sum(math.prod(s) for name, blob_shapes in param_shapes(net).items()
             if types[name] not in exclude_types for s in blob_shapes)


# --------------------------------------------------------------------------------------------------
# Layer arithmetic (float64, NCHW).


def _window_slice(start: int, count: int, step: int) -> slice:
  """Indices start, start+step, ..., count of them."""
  return slice(start, start + step * (count - 1) + 1, step)


def convolution(x, w, b, *, stride, pad, dilation, group):
  """Caffe Convolution by im2col: w is (C_out, C_in/group, kh, kw)."""
  n, c, h, wd = x.shape
  c_out, c_g, kh, kw = w.shape
  oh = conv_out_size(h, kh, stride[0], pad[0], dilation[0])
  ow = conv_out_size(wd, kw, stride[1], pad[1], dilation[1])
  xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
  # cols[n, c, i, j, y, x] = padded input at (y*s + i*d, x*s + j*d): Caffe's im2col buffer.
  cols = np.empty((n, c, kh, kw, oh, ow))
  for i in range(kh):
    for j in range(kw):
      cols[:, :, i, j] = xp[:, :, _window_slice(i * dilation[0], oh, stride[0]),
                            _window_slice(j * dilation[1], ow, stride[1])]
  cols = cols.reshape(n, group, c_g * kh * kw, oh * ow)
  wg = w.reshape(group, c_out // group, c_g * kh * kw)
  y = np.matmul(wg[None], cols).reshape(n, c_out, oh, ow)
  if b is not None:
    y = y + b[None, :, None, None]
  return y


def deconvolution(x, w, b, *, stride, pad, dilation, group):
  """Caffe Deconvolution by scatter-add (col2im): w is (C_in, C_out/group, kh, kw).

  Input pixel (y, x) of channel ci adds w[ci, co] * value to output rows y*s - p + i*d,
  columns x*s - p + j*d; contributions that land outside the output are dropped.
  """
  n, c_in, h, wd = x.shape
  _, c_og, kh, kw = w.shape
  c_ig = c_in // group
  # cols[n, g, (co, i, j), pixel] = sum_ci w[ci, co, i, j] * x[n, ci, pixel] within group g.
  wg = w.reshape(group, c_ig, c_og * kh * kw).transpose(0, 2, 1)
  cols = np.matmul(wg[None], x.reshape(n, group, c_ig, h * wd))
  cols = cols.reshape(n, group * c_og, kh, kw, h, wd)
  full_h = stride[0] * (h - 1) + dilation[0] * (kh - 1) + 1
  full_w = stride[1] * (wd - 1) + dilation[1] * (kw - 1) + 1
  canvas = np.zeros((n, group * c_og, full_h, full_w))
  for i in range(kh):
    for j in range(kw):
      canvas[:, :, _window_slice(i * dilation[0], h, stride[0]),
             _window_slice(j * dilation[1], wd, stride[1])] += cols[:, :, i, j]
  y = canvas[:, :, pad[0]:full_h - pad[0], pad[1]:full_w - pad[1]]
  if b is not None:
    y = y + b[None, :, None, None]
  return y


def pooling(x, param: nd.PoolingParam):
  """Caffe MAX/AVE pooling (ceil/floor, clip rule, Caffe's AVE divisor)."""
  n, c, h, w = x.shape
  (kh, kw), (sh, sw), (ph, pw), (oh, ow) = _pool_geometry(param, (h, w))
  # Pad enough on the bottom/right for the last (possibly overhanging) window.
  extra_h = max(0, (oh - 1) * sh + kh - h - ph)
  extra_w = max(0, (ow - 1) * sw + kw - w - pw)
  if param.pool == 'MAX':
    # -inf padding never wins, which is Caffe's window clipping to [0, H).
    xp = np.pad(x, ((0, 0), (0, 0), (ph, extra_h), (pw, extra_w)), constant_values=-np.inf)
    out = np.full((n, c, oh, ow), -np.inf)
    for i in range(kh):
      for j in range(kw):
        out = np.maximum(out, xp[:, :, _window_slice(i, oh, sh), _window_slice(j, ow, sw)])
    return out
  if param.pool == 'AVE':
    xp = np.pad(x, ((0, 0), (0, 0), (ph, extra_h), (pw, extra_w)))
    out = np.zeros((n, c, oh, ow))
    for i in range(kh):
      for j in range(kw):
        out += xp[:, :, _window_slice(i, oh, sh), _window_slice(j, ow, sw)]
    # Divisor: the window clipped to [-p, H + p), so padding counts but the ceil overhang not.
    def extent(o, k, s, p, size):
      start = np.arange(o) * s - p
      return np.minimum(start + k, size + p) - start
    div = np.outer(extent(oh, kh, sh, ph, h), extent(ow, kw, sw, pw, w))
    return out / div
  raise NotImplementedError(f'pooling method {param.pool!r}')


def lrn(x, param: nd.LRNParam):
  """Caffe LRN; alpha is divided by the window size."""
  n_local = param.local_size
  pre = (n_local - 1) // 2
  if param.norm_region == 'ACROSS_CHANNELS':
    sq = np.pad(x * x, ((0, 0), (pre, n_local - 1 - pre), (0, 0), (0, 0)))
    c = x.shape[1]
    window = sum(sq[:, i:i + c] for i in range(n_local))
    return x * (param.k + param.alpha / n_local * window) ** (-param.beta)
  if param.norm_region == 'WITHIN_CHANNEL':
    # Caffe builds this from layers: square, AVE pool (n, pad (n-1)/2, stride 1), then
    # power(1 + alpha * mean, -beta); k is not used.
    pool = nd.PoolingParam(pool='AVE', kernel=(n_local, n_local), stride=(1, 1),
                           pad=(pre, pre))
    return x * (1.0 + param.alpha * pooling(x * x, pool)) ** (-param.beta)
  raise NotImplementedError(f'LRN region {param.norm_region!r}')


def inner_product(x, w, b, *, axis, transpose):
  axis = _norm_axis(axis, x.ndim)
  flat = x.reshape(math.prod(x.shape[:axis]), -1)  # row-major over (C, H, W)
  y = flat @ (w if transpose else w.T)
  if b is not None:
    y = y + b
  return y.reshape(*x.shape[:axis], -1)


def softmax(x, axis):
  z = np.exp(x - x.max(axis=axis, keepdims=True))
  return z / z.sum(axis=axis, keepdims=True)


def _channel_view(v, ndim):
  """(C,) -> broadcastable along axis 1 of an ndim blob."""
  return v.reshape((1, -1) + (1,) * (ndim - 2))


def batch_norm(x, blobs, param: nd.BatchNormParam):
  use_global = True if param.use_global_stats is None else param.use_global_stats
  if use_global:
    factor = blobs[2][0]
    factor = 0.0 if factor == 0 else 1.0 / factor
    mean, var = blobs[0] * factor, blobs[1] * factor
  else:
    # Batch statistics over every axis but the channel one (biased variance, as Caffe).
    axes = (0,) + tuple(range(2, x.ndim))
    mean = x.mean(axis=axes)
    var = ((x - _channel_view(mean, x.ndim)) ** 2).mean(axis=axes)
  return (x - _channel_view(mean, x.ndim)) / np.sqrt(_channel_view(var, x.ndim) + param.eps)


def scale(x, scale_blob, bias, axis):
  axis = _norm_axis(axis, x.ndim)
  shape = (1,) * axis + scale_blob.shape + (1,) * (x.ndim - axis - scale_blob.ndim)
  y = x * scale_blob.reshape(shape)
  if bias is not None:
    y = y + bias.reshape(shape)
  return y


# --------------------------------------------------------------------------------------------------
# The forward pass.


def _run_layer(layer: nd.LayerDef, xs: list[np.ndarray], blobs: list[np.ndarray]
               ) -> list[np.ndarray]:
  t, p = layer.type, _param(layer)
  if t == 'Convolution' or t == 'Deconvolution':
    if p.axis != 1:
      raise NotImplementedError(f'{layer.name}: convolution axis {p.axis}')
    fn = convolution if t == 'Convolution' else deconvolution
    return [fn(xs[0], blobs[0], blobs[1] if p.bias_term else None, stride=p.stride, pad=p.pad,
               dilation=p.dilation, group=p.group)]
  if t == 'InnerProduct':
    return [inner_product(xs[0], blobs[0], blobs[1] if p.bias_term else None, axis=p.axis,
                          transpose=p.transpose)]
  if t == 'Pooling':
    return [pooling(xs[0], p)]
  if t == 'LRN':
    return [lrn(xs[0], p)]
  if t == 'ReLU':
    x = xs[0]
    return [np.maximum(x, 0) + p.negative_slope * np.minimum(x, 0)]
  if t == 'Dropout':
    return [xs[0].copy()]  # Caffe scales at training time, so TEST is the identity
  if t == 'Softmax':
    return [softmax(xs[0], _norm_axis(p.axis, xs[0].ndim))]
  if t == 'Concat':
    return [np.concatenate(xs, axis=_norm_axis(p.axis, xs[0].ndim))]
  if t == 'Eltwise':
    if p.operation == 'SUM':
      coeff = p.coeff or (1.0,) * len(xs)
      if len(coeff) != len(xs):
        raise ValueError(f'{layer.name}: {len(coeff)} coefficients for {len(xs)} bottoms')
      return [sum(c * x for c, x in zip(coeff, xs))]
    if p.operation == 'PROD':
      return [math.prod(xs[1:], start=xs[0])]
    if p.operation == 'MAX':
      return [np.maximum.reduce(xs)]
    raise NotImplementedError(f'Eltwise operation {p.operation!r}')
  if t == 'BatchNorm':
    return [batch_norm(xs[0], blobs, p)]
  if t == 'Scale':
    if len(xs) == 1:
      return [scale(xs[0], blobs[0], blobs[1] if p.bias_term else None, p.axis)]
    return [scale(xs[0], xs[1], blobs[0] if p.bias_term else None, p.axis)]
  if t == 'Reshape':
    return [xs[0].reshape(_reshape_target(p, xs[0].shape))]
  if t == 'Flatten':
    return [xs[0].reshape(_output_shapes(layer, [xs[0].shape])[0])]
  if t == 'Crop':
    axis, offsets = _crop_offsets(p, xs[0].ndim)
    index = [slice(None)] * axis + [slice(o, o + xs[1].shape[axis + i])
                                    for i, o in enumerate(offsets)]
    return [xs[0][tuple(index)]]
  if t == 'Split':
    return [xs[0].copy() for _ in layer.tops]
  raise NotImplementedError(f'layer {layer.name!r}: type {t!r} is not supported')


def forward(net: nd.NetDef, weights: Mapping[str, Sequence[np.ndarray]],
            inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """Runs the TEST-phase forward pass in float64.

  Args:
    net: the net.
    weights: layer name -> parameter blobs in Caffe order; canonical or legacy 4-D shapes.
    inputs: input blob name -> array (any batch size).

  Returns:
    Every blob after the pass (in-place layers overwrite their blob), as float64 arrays.
  """
  values: dict[str, np.ndarray] = {}
  for layer in net.layers:
    if layer.type == 'Input':
      for top in layer.tops:
        if top not in inputs:
          raise KeyError(f'no value given for input {top!r}')
        values[top] = np.asarray(inputs[top], dtype=np.float64)
      continue
    xs = [values[b] for b in layer.bottoms]
    shapes = [x.shape for x in xs]
    blobs = canonical_blobs(layer, weights.get(layer.name, ()), shapes)
    outs = _run_layer(layer, xs, blobs)
    expected = _output_shapes(layer, shapes)
    for top, out, shape in zip(layer.tops, outs, expected, strict=True):
      if out.shape != tuple(shape):  # keeps infer_shapes honest
        raise AssertionError(f'{layer.name}: computed {out.shape}, shape logic says {shape}')
      values[top] = out
  return values
