"""Caffe-exact layer operations on NHWC arrays.

Each function reproduces what BVLC Caffe computes in the TEST phase (see ``reference/caffe.md`` §3),
on channels-last data. Kernels are in Flax layouts: convolution ``(kh, kw, C_in/g, C_out)`` and
deconvolution ``(kh, kw, C_out/g, C_in)``; both are ``caffe_blob.transpose(2, 3, 1, 0)``.

Blobs that are not 4-D keep Caffe's axis order. :func:`to_nchw` / :func:`to_nhwc` convert at the
Caffe boundary and :func:`caffe_axis` maps a Caffe axis onto the internal layout.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax
import numpy as np

Array = jax.Array
Pair = tuple[int, int]
_DIMS = ('NHWC', 'HWIO', 'NHWC')
MAX_SPLIT_GROUPS = 4  # conv2d splits up to this many groups; more (depthwise) stay native


def to_nchw(x):
  """Internal layout -> Caffe layout (only 4-D blobs differ)."""
  return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def to_nhwc(x):
  """Caffe layout -> internal layout (only 4-D blobs differ)."""
  return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def caffe_axis(axis: int, ndim: int) -> int:
  """Maps a (possibly negative) Caffe axis of an ``ndim`` blob onto the internal layout."""
  axis = axis + ndim if axis < 0 else axis
  if not 0 <= axis < ndim:
    raise ValueError(f'axis {axis} out of range for a {ndim}-D blob')
  return (0, 3, 1, 2)[axis] if ndim == 4 else axis


def conv2d(x: Array, kernel: Array, bias: Array | None, *, stride: Pair = (1, 1),
           pad: Pair = (0, 0), dilation: Pair = (1, 1), group: int = 1,
           precision=None) -> Array:
  """Caffe Convolution: symmetric zero padding, floor output size, channel groups.

  A few groups (CaffeNet's 2) run as one convolution per group plus a concat: the same sums,
  4-7x faster on XLA:CPU than ``feature_group_count`` (``benchmarks/bench_engine.py``), and free of
  the batch all-gathers the SPMD partitioner puts around grouped convs (``reference/jax.md``).
  """
  kernel = kernel.astype(x.dtype)
  if 1 < group <= MAX_SPLIT_GROUPS:
    parts = zip(jnp.split(x, group, axis=-1), jnp.split(kernel, group, axis=-1))
    y = jnp.concatenate([conv2d(xg, kg, None, stride=stride, pad=pad, dilation=dilation,
                                precision=precision) for xg, kg in parts], axis=-1)
    return y if bias is None else y + bias.astype(y.dtype)
  y = lax.conv_general_dilated(
      x, kernel, window_strides=stride,
      padding=[(pad[0], pad[0]), (pad[1], pad[1])], rhs_dilation=dilation,
      dimension_numbers=_DIMS, feature_group_count=group, precision=precision)
  return y if bias is None else y + bias.astype(y.dtype)


def _weight_grad_im2col(x: Array, dy: Array, kh: int, kw: int, stride: Pair, pad: Pair) -> Array:
  """d loss / d kernel of a conv as one matmul of the shifted inputs with the output gradient."""
  xp = jnp.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0)))
  h, w = dy.shape[1:3]
  cols = [xp[:, i:i + stride[0] * (h - 1) + 1:stride[0], j:j + stride[1] * (w - 1) + 1:stride[1]]
          for i in range(kh) for j in range(kw)]
  patches = jnp.stack(cols, axis=3).reshape(-1, kh * kw * x.shape[-1])
  dw = patches.T @ dy.reshape(-1, dy.shape[-1]).astype(patches.dtype)
  return dw.reshape(kh, kw, x.shape[-1], dy.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d_train(x: Array, kernel: Array, stride: Pair = (1, 1), pad: Pair = (0, 0)) -> Array:
  """:func:`conv2d` (one group, no dilation, no bias) with a faster weight gradient on CPU.

  Same values; the backward computes d/d kernel as an im2col matmul, 1.4-1.8x faster than
  XLA:CPU's weight-gradient convolution for the 5x5 layers of the small training nets. For
  training only: it is not differentiable twice and never used for synthesis.
  """
  return conv2d(x, kernel, None, stride=stride, pad=pad)


def _conv2d_train_fwd(x, kernel, stride, pad):
  return conv2d_train(x, kernel, stride, pad), (x, kernel)


def _conv2d_train_bwd(stride, pad, res, dy):
  x, kernel = res
  _, vjp_x = jax.vjp(lambda v: conv2d(v, kernel, None, stride=stride, pad=pad), x)
  dw = _weight_grad_im2col(x, dy, kernel.shape[0], kernel.shape[1], stride, pad)
  return vjp_x(dy)[0], dw.astype(kernel.dtype)


conv2d_train.defvjp(_conv2d_train_fwd, _conv2d_train_bwd)


def deconv_kernel_as_conv(kernel: Array, group: int) -> Array:
  """(kh, kw, C_out/g, C_in) deconv kernel -> the flipped HWIO kernel of the equivalent conv."""
  kh, kw, cout_g, cin = kernel.shape
  k = kernel.reshape(kh, kw, cout_g, group, cin // group)
  k = k.transpose(0, 1, 4, 3, 2).reshape(kh, kw, cin // group, group * cout_g)
  return k[::-1, ::-1]


def deconv2d(x: Array, kernel: Array, bias: Array | None, *, stride: Pair = (1, 1),
             pad: Pair = (0, 0), dilation: Pair = (1, 1), group: int = 1,
             precision=None) -> Array:
  """Caffe Deconvolution: out = s(H-1) + d(k-1) + 1 - 2p.

  Computed as a correlation of the stride-dilated input with the flipped kernel, padded by
  d(k-1)-p on both sides; this form supports groups, which ``lax.conv_transpose`` does not.
  """
  kh, kw = kernel.shape[:2]
  padding = [(dilation[0] * (kh - 1) - pad[0],) * 2, (dilation[1] * (kw - 1) - pad[1],) * 2]
  y = lax.conv_general_dilated(
      x, deconv_kernel_as_conv(kernel.astype(x.dtype), group), window_strides=(1, 1),
      padding=padding, lhs_dilation=stride, rhs_dilation=dilation, dimension_numbers=_DIMS,
      feature_group_count=group, precision=precision)
  return y if bias is None else y + bias.astype(y.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def deconv2d_train(x: Array, kernel: Array, stride: Pair = (1, 1), pad: Pair = (0, 0)) -> Array:
  """:func:`deconv2d` (one group, no dilation, no bias) with a fast weight gradient on CPU.

  XLA:CPU's weight gradient of the lhs-dilated convolution was 10-15x slower than the forward
  pass for the small generators' 4x4 stride-2 layers; here it is one matmul of the input with the
  output gradient's k*k strided slices (``out[s*i + t - p] += x[i] K[t]``). Training only.
  """
  return deconv2d(x, kernel, None, stride=stride, pad=pad)


def _deconv2d_train_fwd(x, kernel, stride, pad):
  return deconv2d_train(x, kernel, stride, pad), (x, kernel)


def _deconv2d_train_bwd(stride, pad, res, dy):
  x, kernel = res
  kh, kw, cout, cin = kernel.shape
  n, h, w, _ = x.shape
  _, vjp_x = jax.vjp(lambda v: deconv2d(v, kernel, None, stride=stride, pad=pad), x)
  # dK[t] = sum_i x[i] dy[s*i + t - p]: pad dy so every index is in range, then slice per tap.
  dyp = jnp.pad(dy, ((0, 0), (pad[0], kh), (pad[1], kw), (0, 0)))
  cols = [dyp[:, ty:ty + stride[0] * (h - 1) + 1:stride[0], tx:tx + stride[1] * (w - 1) + 1:
              stride[1]] for ty in range(kh) for tx in range(kw)]
  taps = jnp.stack(cols, axis=3).reshape(-1, kh * kw * cout)
  dk = x.reshape(-1, cin).T.astype(taps.dtype) @ taps  # (cin, kh*kw*cout)
  dk = dk.reshape(cin, kh, kw, cout).transpose(1, 2, 3, 0)
  return vjp_x(dy)[0], dk.astype(kernel.dtype)


deconv2d_train.defvjp(_deconv2d_train_fwd, _deconv2d_train_bwd)


def inner_product(x: Array, kernel: Array, bias: Array | None, precision=None) -> Array:
  """Caffe InnerProduct on an already flattened (N, K) input with a (K, O) kernel."""
  y = jnp.dot(x, kernel.astype(x.dtype), precision=precision)
  return y if bias is None else y + bias.astype(y.dtype)


def flatten_for_inner_product(x: Array, axis: int = 1) -> Array:
  """Flattens from Caffe ``axis`` on. 4-D NHWC blobs with axis 1 flatten in (H, W, C) order.

  The converter permutes InnerProduct kernels to match, so no transpose is needed at run time.
  """
  if x.ndim == 4 and axis == 1:
    return x.reshape(x.shape[0], -1)
  x = to_nchw(x)
  return x.reshape(x.shape[:axis] + (-1,))


def pool_output_size(size: int, kernel: int, stride: int, pad: int, ceil: bool = True) -> int:
  """Caffe's pooled size, including the rule that drops a last window starting in the padding."""
  span = size + 2 * pad - kernel
  out = (-(-span // stride) if ceil else span // stride) + 1
  if pad > 0 and (out - 1) * stride >= size + pad:
    out -= 1
  return out


def _pool_geometry(x: Array, kernel: Pair, stride: Pair, pad: Pair, ceil: bool):
  """Output sizes and the (lo, hi) padding that makes reduce_window produce exactly them."""
  outs, pads, crops = [], [], []
  for size, k, s, p in zip(x.shape[1:3], kernel, stride, pad):
    out = pool_output_size(size, k, s, p, ceil)
    hi = (out - 1) * s + k - size - p
    outs.append(out)
    pads.append((p, max(hi, 0)))
    crops.append(size + min(hi, 0))  # floor mode may leave unused trailing rows
  return outs, pads, crops


def max_pool(x: Array, kernel: Pair, stride: Pair, pad: Pair = (0, 0), ceil: bool = True) -> Array:
  """Caffe MAX pooling: the window is clipped to the image, so padding never wins."""
  _, pads, crops = _pool_geometry(x, kernel, stride, pad, ceil)
  x = x[:, :crops[0], :crops[1]]
  # Constant (numpy) init values let JAX recognise the monoid, so the pool is differentiable.
  return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, (1, *kernel, 1),
                           (1, *stride, 1), [(0, 0), *pads, (0, 0)])


def ave_pool_divisor(size: int, kernel: int, stride: int, pad: int, out: int) -> np.ndarray:
  """Per-output-position AVE divisor: pad cells count, the ceil overhang past H + pad does not."""
  starts = np.arange(out) * stride - pad
  return (np.minimum(starts + kernel, size + pad) - starts).astype(np.float64)


def ave_pool(x: Array, kernel: Pair, stride: Pair, pad: Pair = (0, 0), ceil: bool = True) -> Array:
  """Caffe AVE pooling: sum over in-image pixels divided by Caffe's divisor."""
  outs, pads, crops = _pool_geometry(x, kernel, stride, pad, ceil)
  x = x[:, :crops[0], :crops[1]]
  summed = lax.reduce_window(x, np.zeros((), x.dtype), lax.add, (1, *kernel, 1),
                             (1, *stride, 1), [(0, 0), *pads, (0, 0)])
  div_h = ave_pool_divisor(x.shape[1], kernel[0], stride[0], pad[0], outs[0])
  div_w = ave_pool_divisor(x.shape[2], kernel[1], stride[1], pad[1], outs[1])
  divisor = np.outer(div_h, div_w)[None, :, :, None]
  return summed / jnp.asarray(divisor, x.dtype)


def lrn_across_channels(x: Array, local_size: int, alpha: float, beta: float,
                        k: float = 1.0) -> Array:
  """Caffe LRN ACROSS_CHANNELS: x * (k + alpha/n * sum of squares over n channels)^-beta."""
  half = (local_size - 1) // 2
  sq = lax.reduce_window(x * x, np.zeros((), x.dtype), lax.add, (1, 1, 1, local_size),
                         (1, 1, 1, 1), [(0, 0), (0, 0), (0, 0), (half, half)])
  return x * (k + (alpha / local_size) * sq) ** -beta


def lrn_within_channel(x: Array, local_size: int, alpha: float, beta: float) -> Array:
  """Caffe LRN WITHIN_CHANNEL: a padded AVE pool of x^2 over n x n (k is ignored, as in Caffe)."""
  half = (local_size - 1) // 2
  mean_sq = ave_pool(x * x, (local_size,) * 2, (1, 1), (half, half))
  return x * (1.0 + alpha * mean_sq) ** -beta


def relu(x: Array, negative_slope: float = 0.0) -> Array:
  """Caffe ReLU; the slope applies to x <= 0, so the gradient at 0 is the slope, as in Caffe."""
  if negative_slope == 0.0:
    return jnp.maximum(x, 0)
  return jnp.where(x > 0, x, negative_slope * x)


def softmax(x: Array, axis: int = 1) -> Array:
  """Caffe Softmax over Caffe ``axis``."""
  return jax.nn.softmax(x, axis=caffe_axis(axis, x.ndim))


def batch_norm(x: Array, mean: Array, var: Array, eps: float) -> Array:
  """Caffe BatchNorm (global stats); ``mean``/``var`` are already divided by the scale factor."""
  shape = _channel_shape(x)
  return (x - mean.reshape(shape)) / jnp.sqrt(var.reshape(shape) + eps)


def _channel_shape(x: Array) -> tuple[int, ...]:
  """Broadcast shape of a per-channel (Caffe axis 1) vector against ``x``."""
  shape = [1] * x.ndim
  shape[caffe_axis(1, x.ndim)] = -1
  return tuple(shape)


def scale(x: Array, gamma: Array, beta: Array | None, axis: int = 1) -> Array:
  """Caffe Scale (one bottom): multiplies by ``gamma`` spanning Caffe axes [axis, axis+gamma.ndim).
  """
  y = to_nchw(x)
  axis = axis + y.ndim if axis < 0 else axis
  shape = (1,) * axis + gamma.shape + (1,) * (y.ndim - axis - gamma.ndim)
  y = y * gamma.reshape(shape).astype(y.dtype)
  if beta is not None:
    y = y + beta.reshape(shape).astype(y.dtype)
  return to_nhwc(y)


def eltwise(xs: Sequence[Array], operation: str = 'SUM',
            coeff: Sequence[float] = ()) -> Array:
  """Caffe Eltwise: SUM (optional coefficients), PROD or MAX."""
  if operation == 'SUM':
    coeff = tuple(coeff) or (1.0,) * len(xs)
    out = coeff[0] * xs[0] if coeff[0] != 1.0 else xs[0]
    for c, x in zip(coeff[1:], xs[1:]):
      out = out + (x if c == 1.0 else c * x)
    return out
  op = {'PROD': jnp.multiply, 'MAX': jnp.maximum}[operation]
  out = xs[0]
  for x in xs[1:]:
    out = op(out, x)
  return out


def concat(xs: Sequence[Array], axis: int = 1) -> Array:
  """Caffe Concat along Caffe ``axis``."""
  return jnp.concatenate(xs, axis=caffe_axis(axis, xs[0].ndim))


def crop(x: Array, reference_shape: Sequence[int], axis: int = 2,
         offset: Sequence[int] = ()) -> Array:
  """Caffe Crop: dims from ``axis`` on take the reference blob's size (Caffe order shape)."""
  y = to_nchw(x)
  axis = axis + y.ndim if axis < 0 else axis
  index = []
  for i in range(y.ndim):
    if i < axis:
      index.append(slice(None))
      continue
    off = offset[0] if len(offset) == 1 else (offset[i - axis] if offset else 0)
    if off + reference_shape[i] > y.shape[i]:
      raise ValueError(f'crop of axis {i} ({off}+{reference_shape[i]}) exceeds {y.shape[i]}')
    index.append(slice(off, off + reference_shape[i]))
  return to_nhwc(y[tuple(index)])


def reshape(x: Array, shape: Sequence[int], axis: int = 0, num_axes: int = -1) -> Array:
  """Caffe Reshape (0 copies a dim, -1 infers one) in Caffe order.

  A positive leading dim of a reshape that spans axis 0 is read as the batch size: deploy
  prototxts hard-code their batch (the DeePSim generator says 1), and nets here run any batch.
  """
  y = to_nchw(x)
  axis = axis + y.ndim + 1 if axis < 0 else axis
  end = y.ndim if num_axes == -1 else axis + num_axes
  dims = list(shape)
  for i, d in enumerate(dims):
    if d == 0:
      dims[i] = y.shape[axis + i]
  if axis == 0 and dims and dims[0] > 0:
    dims[0] = y.shape[0]
  new_shape = tuple(y.shape[:axis]) + tuple(dims) + tuple(y.shape[end:])
  if -1 in new_shape:
    known = math.prod(d for d in new_shape if d != -1)
    new_shape = tuple(math.prod(y.shape) // known if d == -1 else d for d in new_shape)
  if math.prod(new_shape) != math.prod(y.shape):
    raise ValueError(f'cannot reshape {tuple(y.shape)} to {new_shape}')
  return to_nhwc(y.reshape(new_shape))


def flatten(x: Array, axis: int = 1, end_axis: int = -1) -> Array:
  """Caffe Flatten of Caffe axes [axis, end_axis]."""
  y = to_nchw(x)
  axis = axis + y.ndim if axis < 0 else axis
  end_axis = end_axis + y.ndim if end_axis < 0 else end_axis
  new_shape = y.shape[:axis] + (-1,) + y.shape[end_axis + 1:]
  return to_nhwc(y.reshape(new_shape))
