"""Every layer and option of the generic net against the float64 numpy reference.

The real-Caffe goldens (test_converter.py) pin the common cases; these cover the options the
fixtures do not exercise (floor pooling, dilation, WITHIN_CHANNEL LRN, Eltwise PROD/MAX, ...).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgnam_jax.nets import convert
from dgnam_jax.nets import layers
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.nets import CaffeGraph

import numpy_caffe


def _net(body, inputs='input: "data" input_shape { dim: 2 dim: 4 dim: 9 dim: 9 }'):
  return parse_prototxt(f'name: "t"\n{inputs}\n{body}', 'case.prototxt')


CASES = {
    'conv_dilation_group': 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                           'convolution_param { num_output: 6 kernel_size: 3 dilation: 2 pad: 1 '
                           'stride: 2 group: 2 } }',
    'conv_rect_no_bias': 'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
                         'convolution_param { num_output: 3 kernel_h: 3 kernel_w: 2 pad_h: 1 pad_w: 0 '
                         'stride_h: 1 stride_w: 2 bias_term: false } }',
    'deconv_dilation_group': 'layer { name: "d" type: "Deconvolution" bottom: "data" top: "d" '
                             'convolution_param { num_output: 6 kernel_size: 3 stride: 2 pad: 2 '
                             'dilation: 2 group: 2 } }',
    'pool_floor_max': 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param '
                      '{ pool: MAX kernel_size: 2 stride: 2 round_mode: FLOOR } }',
    'pool_floor_ave_pad': 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                          'pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 '
                          'round_mode: FLOOR } }',
    'pool_ceil_ave_overhang': 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" '
                              'pooling_param { pool: AVE kernel_size: 4 stride: 3 pad: 1 } }',
    'pool_global': 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param '
                   '{ pool: AVE global_pooling: true } }',
    'pool_rect': 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param '
                 '{ pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 1 pad_h: 1 } }',
    'lrn_within': 'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param '
                  '{ local_size: 3 alpha: 2.0 beta: 0.6 norm_region: WITHIN_CHANNEL } }',
    'lrn_across_k': 'layer { name: "n" type: "LRN" bottom: "data" top: "n" lrn_param '
                    '{ local_size: 3 alpha: 3.0 beta: 0.9 k: 2.5 } }',
    'eltwise_prod_max_coeff': (
        'layer { name: "s" type: "Split" bottom: "data" top: "a" top: "b" top: "c" }\n'
        'layer { name: "p" type: "Eltwise" bottom: "a" bottom: "b" top: "p" '
        'eltwise_param { operation: PROD } }\n'
        'layer { name: "m" type: "Eltwise" bottom: "p" bottom: "c" top: "m" '
        'eltwise_param { operation: MAX } }\n'
        'layer { name: "w" type: "Eltwise" bottom: "m" bottom: "p" top: "w" '
        'eltwise_param { coeff: 0.5 coeff: -2 } }'),
    'softmax_concat_axes': (
        'layer { name: "sm" type: "Softmax" bottom: "data" top: "sm" softmax_param { axis: 2 } }\n'
        'layer { name: "cat" type: "Concat" bottom: "sm" bottom: "data" top: "cat" '
        'concat_param { axis: 3 } }'),
    'flatten_ip_axis2': (
        'layer { name: "f" type: "Flatten" bottom: "data" top: "f" flatten_param { axis: 2 } }\n'
        'layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" '
        'inner_product_param { num_output: 5 axis: 2 } }'),
    'reshape_infer_copy': (
        'layer { name: "r" type: "Reshape" bottom: "data" top: "r" '
        'reshape_param { shape { dim: 0 dim: -1 dim: 3 } } }\n'
        'layer { name: "r2" type: "Reshape" bottom: "data" top: "r2" '
        'reshape_param { shape { dim: 3 dim: 3 } axis: 2 num_axes: 1 } }'),
    'scale_no_bias_bn': (
        'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" '
        'batch_norm_param { eps: 0.01 } }\n'
        'layer { name: "sc" type: "Scale" bottom: "bn" top: "bn" }\n'
        'layer { name: "sc2" type: "Scale" bottom: "data" top: "sc2" '
        'scale_param { axis: 1 num_axes: 2 bias_term: true } }'),
    'crop_offsets': (
        'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param '
        '{ pool: MAX kernel_size: 3 stride: 2 } }\n'
        'layer { name: "cr" type: "Crop" bottom: "data" bottom: "p" top: "cr" '
        'crop_param { axis: 2 offset: 1 offset: 2 } }'),
    'leaky_relu_dropout': (
        'layer { name: "r" type: "ReLU" bottom: "data" top: "data" '
        'relu_param { negative_slope: -0.7 } }\n'
        'layer { name: "d" type: "Dropout" bottom: "data" top: "data" }'),
}


def _random_params(netdef, seed=0):
  pshapes, _ = convert.shapes(netdef)
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda s: rng.standard_normal(s).astype(np.float32), pshapes,
                        is_leaf=lambda s: isinstance(s, tuple))
  for layer in netdef.layers:
    if layer.type == 'BatchNorm':  # variances must be positive
      params[layer.name]['var'] = np.abs(params[layer.name]['var']) + 0.1
  return params


def _compare(netdef, params, caffe_weights, inputs, tol=1e-5):
  want = numpy_caffe.forward(netdef, caffe_weights, {k: v.astype(np.float64)
                                                      for k, v in inputs.items()})
  got = jax.jit(CaffeGraph(netdef).apply)(
      {'params': params}, {k: jnp.asarray(layers.to_nhwc(v)) for k, v in inputs.items()})
  assert set(got.blobs) == set(want)
  for name, ref in want.items():
    value = layers.to_nchw(np.asarray(got.blobs[name], np.float64))
    assert value.shape == ref.shape, (name, value.shape, ref.shape)
    err = np.abs(value - ref).max() / max(np.abs(ref).max(), 1e-30)
    assert err <= tol, (name, err)


@pytest.mark.parametrize('case', sorted(CASES))
def test_layer_matches_reference(case):
  netdef = _net(CASES[case])
  params = _random_params(netdef)
  weights = convert.flax_to_caffe(netdef, params)
  x = np.random.default_rng(1).standard_normal((2, 4, 9, 9)).astype(np.float32)
  _compare(netdef, params, weights, {'data': x})


def test_batchnorm_zero_scale_factor_means_zero_statistics():
  netdef = _net('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }')
  mean, var = np.full(4, 3.0, np.float32), np.full(4, 5.0, np.float32)
  params = convert.caffe_to_flax(netdef, {'bn': [mean, var, np.zeros(1, np.float32)]})
  np.testing.assert_array_equal(params['bn']['mean'], 0)
  np.testing.assert_array_equal(params['bn']['var'], 0)
  x = np.random.default_rng(0).standard_normal((2, 4, 9, 9)).astype(np.float32)
  _compare(netdef, params, {'bn': [mean, var, np.zeros(1, np.float32)]}, {'data': x})


def test_relu_gradient_at_zero_is_the_slope():
  grad = jax.grad(lambda x: layers.relu(x, 0.3).sum())(jnp.zeros(3))
  np.testing.assert_allclose(grad, 0.3)


def test_pool_output_size_clip_rule():
  assert layers.pool_output_size(3, 2, 2, 1) == 2  # the fixture netA pool3: 3 -> 2, not 3
  assert layers.pool_output_size(112, 3, 2, 0) == 56  # GoogLeNet pool1, ceil
  assert layers.pool_output_size(112, 3, 2, 0, ceil=False) == 55


def test_any_batch_size_and_inputs_checked():
  netdef = _net(CASES['conv_dilation_group'])
  params = _random_params(netdef)
  module = CaffeGraph(netdef)
  for batch in (1, 5):
    out = module.apply({'params': params}, jnp.zeros((batch, 9, 9, 4)))
    assert out.blobs['c'].shape[0] == batch
  with pytest.raises(ValueError, match="input 'data' has Caffe shape"):
    module.apply({'params': params}, jnp.zeros((1, 8, 8, 4)))
  out = module.apply({'params': params}, jnp.zeros((1, 9, 9, 4)), end='c')
  assert set(out.layers) == {'input', 'c'}


@pytest.mark.parametrize('k,stride,pad', [(5, 1, 2), (3, 2, 1), (1, 2, 0), (5, 2, 2)])
def test_conv2d_train_matches_conv2d_and_its_gradients(k, stride, pad):
  rng = np.random.default_rng(k + stride)
  x = jnp.asarray(rng.normal(size=(3, 9, 8, 4)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 4, 5)), jnp.float32)
  dy_seed = jnp.asarray(rng.normal(size=layers.conv2d(x, w, None, stride=(stride,) * 2,
                                                      pad=(pad,) * 2).shape), jnp.float32)

  def loss(fn):
    return lambda x, w: jnp.sum(fn(x, w) * dy_seed)

  ref = lambda x, w: layers.conv2d(x, w, None, stride=(stride,) * 2, pad=(pad,) * 2,
                                   precision='highest')
  fast = lambda x, w: layers.conv2d_train(x, w, (stride,) * 2, (pad,) * 2)
  np.testing.assert_allclose(fast(x, w), ref(x, w), rtol=1e-5, atol=1e-4)
  with jax.default_matmul_precision('highest'):
    got = jax.grad(loss(fast), argnums=(0, 1))(x, w)
  want = jax.grad(loss(ref), argnums=(0, 1))(x, w)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('k,stride,pad', [(4, 2, 1), (3, 1, 1), (5, 2, 2), (2, 2, 0)])
def test_deconv2d_train_matches_deconv2d_and_its_gradients(k, stride, pad):
  rng = np.random.default_rng(10 * k + stride)
  x = jnp.asarray(rng.normal(size=(2, 5, 6, 4)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 3, 4)), jnp.float32)
  ref = lambda x, w: layers.deconv2d(x, w, None, stride=(stride,) * 2, pad=(pad,) * 2,
                                     precision='highest')
  fast = lambda x, w: layers.deconv2d_train(x, w, (stride,) * 2, (pad,) * 2)
  dy = jnp.asarray(rng.normal(size=ref(x, w).shape), jnp.float32)
  np.testing.assert_allclose(fast(x, w), ref(x, w), rtol=1e-5, atol=1e-4)
  with jax.default_matmul_precision('highest'):
    got = jax.grad(lambda x, w: jnp.sum(fast(x, w) * dy), argnums=(0, 1))(x, w)
  want = jax.grad(lambda x, w: jnp.sum(ref(x, w) * dy), argnums=(0, 1))(x, w)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)
