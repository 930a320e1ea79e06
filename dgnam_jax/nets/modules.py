"""Linen wrappers that own the parameters of Caffe layers.

Each module is instantiated with ``name=<Caffe layer name>``, so a parameter tree reads
``{'conv1': {'kernel', 'bias'}, 'bn1': {'mean', 'var'}, ...}`` and a converted caffemodel maps onto
it by lookup. Layouts are documented in CHECKPOINTS.md.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from dgnam_jax.nets import layers

Dtype = Any
_kernel_init = nn.initializers.lecun_normal()
_bias_init = nn.initializers.normal(0.01)


class Conv(nn.Module):
  """Caffe Convolution (kernel (kh, kw, C_in/g, C_out))."""
  features: int
  kernel: tuple[int, int]
  stride: tuple[int, int] = (1, 1)
  pad: tuple[int, int] = (0, 0)
  dilation: tuple[int, int] = (1, 1)
  group: int = 1
  bias_term: bool = True
  dtype: Dtype = jnp.float32
  precision: Any = None
  fast_weight_grad: bool = False  # training nets: layers.conv2d_train's im2col weight gradient

  @nn.compact
  def __call__(self, x):
    w = self.param('kernel', _kernel_init,
                   (*self.kernel, x.shape[-1] // self.group, self.features), jnp.float32)
    b = self.param('bias', _bias_init, (self.features,), jnp.float32) if self.bias_term else None
    plain = self.group == 1 and self.dilation == (1, 1) and self.precision is None
    if self.fast_weight_grad and plain:
      y = layers.conv2d_train(x.astype(self.dtype), w.astype(self.dtype), self.stride, self.pad)
      return y if b is None else y + b.astype(y.dtype)
    return layers.conv2d(x.astype(self.dtype), w, b, stride=self.stride, pad=self.pad,
                         dilation=self.dilation, group=self.group, precision=self.precision)


class Deconv(Conv):
  """Caffe Deconvolution (kernel (kh, kw, C_out/g, C_in) = Caffe blob .transpose(2, 3, 1, 0))."""

  @nn.compact
  def __call__(self, x):
    w = self.param('kernel', _kernel_init,
                   (*self.kernel, self.features // self.group, x.shape[-1]), jnp.float32)
    b = self.param('bias', _bias_init, (self.features,), jnp.float32) if self.bias_term else None
    plain = self.group == 1 and self.dilation == (1, 1) and self.precision is None
    if self.fast_weight_grad and plain:
      y = layers.deconv2d_train(x.astype(self.dtype), w.astype(self.dtype), self.stride,
                                self.pad)
      return y if b is None else y + b.astype(y.dtype)
    return layers.deconv2d(x.astype(self.dtype), w, b, stride=self.stride, pad=self.pad,
                           dilation=self.dilation, group=self.group, precision=self.precision)


class InnerProduct(nn.Module):
  """Caffe InnerProduct (kernel (K, O); K in NHWC-flatten order for 4-D bottoms)."""
  features: int
  axis: int = 1
  bias_term: bool = True
  dtype: Dtype = jnp.float32
  precision: Any = None

  @nn.compact
  def __call__(self, x):
    x = layers.flatten_for_inner_product(x, self.axis).astype(self.dtype)
    w = self.param('kernel', _kernel_init, (x.shape[-1], self.features), jnp.float32)
    b = self.param('bias', _bias_init, (self.features,), jnp.float32) if self.bias_term else None
    y = layers.inner_product(x, w, b, precision=self.precision)
    return layers.to_nhwc(y) if y.ndim == 4 else y


class BatchNorm(nn.Module):
  """Caffe BatchNorm with global statistics (already divided by Caffe's scale factor)."""
  eps: float = 1e-5
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    c = x.shape[layers.caffe_axis(1, x.ndim)]
    mean = self.param('mean', nn.initializers.zeros, (c,), jnp.float32)
    var = self.param('var', nn.initializers.ones, (c,), jnp.float32)
    return layers.batch_norm(x.astype(self.dtype), mean.astype(self.dtype),
                             var.astype(self.dtype), self.eps)


class Scale(nn.Module):
  """Caffe Scale with one bottom: learned ``scale`` (and ``bias``) over Caffe axes."""
  axis: int = 1
  num_axes: int = 1
  bias_term: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    caffe_shape = layers.to_nchw(x).shape
    axis = self.axis + x.ndim if self.axis < 0 else self.axis
    end = x.ndim if self.num_axes == -1 else axis + self.num_axes
    shape = tuple(caffe_shape[axis:end])
    gamma = self.param('scale', nn.initializers.ones, shape, jnp.float32)
    beta = self.param('bias', nn.initializers.zeros, shape, jnp.float32) if self.bias_term else None
    return layers.scale(x.astype(self.dtype), gamma, beta, axis)
