"""Tests of the float64 numpy reference interpreter (tests/numpy_caffe.py).

Two kinds of evidence that the reference is right:
  * per-layer checks against deliberately naive loop versions of Caffe's CPU code, and
  * every blob of every real-Caffe golden in tests/fixtures/caffe (needs the prototxt/caffemodel
    reader; skipped until dgnam_jax/caffe/reader.py exists).
"""

import importlib
import itertools
import math
import os

import numpy as np
import pytest

from dgnam_jax.caffe import netdef as nd
import numpy_caffe as ref

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'caffe')
_READER = os.path.join(os.path.dirname(__file__), os.pardir, 'dgnam_jax', 'caffe', 'reader.py')


def _rng(seed=0):
  return np.random.default_rng(seed)


# --------------------------------------------------------------------------------------------------
# Naive versions, written loop by loop from Caffe's CPU layer code.


def naive_conv(x, w, b, stride, pad, dilation, group):
  n, c, h, wd = x.shape
  o, cg, kh, kw = w.shape
  oh = (h + 2 * pad[0] - (dilation[0] * (kh - 1) + 1)) // stride[0] + 1
  ow = (wd + 2 * pad[1] - (dilation[1] * (kw - 1) + 1)) // stride[1] + 1
  og = o // group
  y = np.zeros((n, o, oh, ow))
  for b_, oc, yy, xx in itertools.product(range(n), range(o), range(oh), range(ow)):
    g = oc // og
    acc = 0.0
    for ic, i, j in itertools.product(range(cg), range(kh), range(kw)):
      r = yy * stride[0] - pad[0] + i * dilation[0]
      s = xx * stride[1] - pad[1] + j * dilation[1]
      if 0 <= r < h and 0 <= s < wd:
        acc += w[oc, ic, i, j] * x[b_, g * cg + ic, r, s]
    y[b_, oc, yy, xx] = acc + (b[oc] if b is not None else 0.0)
  return y


def naive_deconv(x, w, b, stride, pad, dilation, group):
  n, c_in, h, wd = x.shape
  _, cog, kh, kw = w.shape
  oh = stride[0] * (h - 1) + dilation[0] * (kh - 1) + 1 - 2 * pad[0]
  ow = stride[1] * (wd - 1) + dilation[1] * (kw - 1) + 1 - 2 * pad[1]
  cig = c_in // group
  y = np.zeros((n, group * cog, oh, ow))
  for b_, ic, yy, xx in itertools.product(range(n), range(c_in), range(h), range(wd)):
    g = ic // cig
    for oc, i, j in itertools.product(range(cog), range(kh), range(kw)):
      r = yy * stride[0] - pad[0] + i * dilation[0]
      s = xx * stride[1] - pad[1] + j * dilation[1]
      if 0 <= r < oh and 0 <= s < ow:
        y[b_, g * cog + oc, r, s] += w[ic, oc, i, j] * x[b_, ic, yy, xx]
  if b is not None:
    y += b[None, :, None, None]
  return y


def naive_pool(x, method, k, s, p, ceil=True):
  """pooling_layer.cpp, Forward_cpu, literally."""
  n, c, h, w = x.shape
  rnd = math.ceil if ceil else math.floor
  oh = int(rnd((h + 2 * p[0] - k[0]) / s[0])) + 1
  ow = int(rnd((w + 2 * p[1] - k[1]) / s[1])) + 1
  if p[0] or p[1]:
    if (oh - 1) * s[0] >= h + p[0]:
      oh -= 1
    if (ow - 1) * s[1] >= w + p[1]:
      ow -= 1
  y = np.zeros((n, c, oh, ow))
  for b_, ch, ph, pw in itertools.product(range(n), range(c), range(oh), range(ow)):
    hs, ws = ph * s[0] - p[0], pw * s[1] - p[1]
    if method == 'MAX':
      he, we = min(hs + k[0], h), min(ws + k[1], w)
      hs, ws = max(hs, 0), max(ws, 0)
      y[b_, ch, ph, pw] = x[b_, ch, hs:he, ws:we].max()
    else:
      he, we = min(hs + k[0], h + p[0]), min(ws + k[1], w + p[1])
      size = (he - hs) * (we - ws)
      hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
      y[b_, ch, ph, pw] = x[b_, ch, hs:he, ws:we].sum() / size
  return y


def naive_lrn_across(x, n_local, alpha, beta, k):
  pre = (n_local - 1) // 2
  y = np.zeros_like(x)
  c = x.shape[1]
  for ch in range(c):
    lo, hi = max(0, ch - pre), min(c, ch - pre + n_local)
    acc = (x[:, lo:hi] ** 2).sum(axis=1)
    y[:, ch] = x[:, ch] * (k + alpha / n_local * acc) ** (-beta)
  return y


# --------------------------------------------------------------------------------------------------
# Per-layer checks.


@pytest.mark.parametrize('stride,pad,dilation,group', [
    ((1, 1), (0, 0), (1, 1), 1),
    ((2, 1), (1, 2), (1, 1), 2),
    ((3, 2), (2, 0), (2, 1), 3),
])
def test_convolution_matches_naive(stride, pad, dilation, group):
  rng = _rng(1)
  x = rng.normal(size=(2, 6, 9, 8))
  w = rng.normal(size=(6, 6 // group, 3, 2))
  b = rng.normal(size=6)
  got = ref.convolution(x, w, b, stride=stride, pad=pad, dilation=dilation, group=group)
  np.testing.assert_allclose(got, naive_conv(x, w, b, stride, pad, dilation, group), atol=1e-12)


@pytest.mark.parametrize('k,stride,pad,dilation,group', [
    ((4, 4), (2, 2), (1, 1), (1, 1), 1),
    ((3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((4, 3), (2, 3), (1, 0), (1, 2), 2),
])
def test_deconvolution_matches_naive(k, stride, pad, dilation, group):
  rng = _rng(2)
  x = rng.normal(size=(2, 4, 5, 4))
  w = rng.normal(size=(4, 6 // group, *k))
  b = rng.normal(size=6)
  got = ref.deconvolution(x, w, b, stride=stride, pad=pad, dilation=dilation, group=group)
  want = naive_deconv(x, w, b, stride, pad, dilation, group)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-12)


def test_deconvolution_is_adjoint_of_convolution():
  # <conv(x), y> == <x, deconv(y)> with the same blob: Caffe's deconv is conv's backward pass.
  rng = _rng(3)
  x = rng.normal(size=(1, 4, 10, 10))
  w = rng.normal(size=(6, 2, 4, 4))  # conv: (C_out=6, C_in/g=2); deconv reads it as (C_in=6, 2)
  kw = dict(stride=(2, 2), pad=(1, 1), dilation=(1, 1), group=2)
  cx = ref.convolution(x, w, None, **kw)
  y = rng.normal(size=cx.shape)
  dy = ref.deconvolution(y, w, None, **kw)
  assert dy.shape == x.shape  # 10 -> 5 -> s(H-1)+k-2p = 10
  np.testing.assert_allclose((cx * y).sum(), (x * dy).sum(), rtol=1e-12)


@pytest.mark.parametrize('method', ['MAX', 'AVE'])
@pytest.mark.parametrize('size,k,s,p,ceil', [
    (10, 3, 2, 0, True),  # 10 -> 5 (ceil overhang)
    (5, 3, 2, 1, True),  # padded
    (3, 2, 2, 1, True),  # the clip rule fires: 3 -> 2, not 3
    (7, 3, 2, 1, False),  # floor
    (13, 3, 2, 0, True),  # CaffeNet-style exact fit
    (8, 3, 1, 1, True),  # GoogLeNet inception pool
])
def test_pooling_matches_naive(method, size, k, s, p, ceil):
  rng = _rng(4)
  x = rng.normal(size=(2, 3, size, size + 1)) - 2.0  # negatives: MAX padding must never win
  param = nd.PoolingParam(pool=method, kernel=(k, k), stride=(s, s), pad=(p, p),
                          round_mode='CEIL' if ceil else 'FLOOR')
  got = ref.pooling(x, param)
  want = naive_pool(x, method, (k, k), (s, s), (p, p), ceil)
  assert got.shape == want.shape
  np.testing.assert_allclose(got, want, atol=1e-12)


def test_pooling_clip_rule_shape():
  param = nd.PoolingParam(pool='AVE', kernel=(2, 2), stride=(2, 2), pad=(1, 1))
  assert ref.pooling(np.ones((1, 1, 3, 3)), param).shape == (1, 1, 2, 2)


def test_global_pooling():
  x = _rng(5).normal(size=(2, 3, 5, 4))
  got = ref.pooling(x, nd.PoolingParam(pool='AVE', global_pooling=True))
  np.testing.assert_allclose(got[:, :, 0, 0], x.mean(axis=(2, 3)))
  got = ref.pooling(x, nd.PoolingParam(pool='MAX', global_pooling=True))
  np.testing.assert_allclose(got[:, :, 0, 0], x.max(axis=(2, 3)))


def test_lrn_across_channels_matches_naive():
  x = _rng(6).normal(size=(2, 7, 3, 3)) * 3
  param = nd.LRNParam(local_size=5, alpha=0.5, beta=0.75, k=2.0)
  np.testing.assert_allclose(ref.lrn(x, param), naive_lrn_across(x, 5, 0.5, 0.75, 2.0),
                             rtol=1e-12)


def test_lrn_within_channel():
  x = _rng(7).normal(size=(1, 2, 5, 5))
  param = nd.LRNParam(local_size=3, alpha=0.5, beta=0.75, norm_region='WITHIN_CHANNEL', k=7.0)
  # Caffe's divisor is always n*n here (padding counts), and k is ignored.
  sq = np.pad(x * x, ((0, 0), (0, 0), (1, 1), (1, 1)))
  win = sum(sq[:, :, i:i + 5, j:j + 5] for i in range(3) for j in range(3)) / 9
  np.testing.assert_allclose(ref.lrn(x, param), x * (1 + 0.5 * win) ** -0.75, rtol=1e-12)


def test_batch_norm_scale_factor():
  x = _rng(8).normal(size=(2, 3, 2, 2))
  mean, var = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
  param = nd.BatchNormParam(use_global_stats=True)
  got = ref.batch_norm(x, [mean * 10, var * 10, np.array([10.0])], param)
  want = (x - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
  np.testing.assert_allclose(got, want, rtol=1e-12)
  # A zero factor means zero statistics, not a division by zero.
  got = ref.batch_norm(x, [mean, var, np.array([0.0])], param)
  np.testing.assert_allclose(got, x / np.sqrt(1e-5), rtol=1e-12)


def test_reshape_is_batch_agnostic():
  param = nd.ReshapeParam(shape=(1, 256, 4, 4))
  assert ref._reshape_target(param, (5, 4096)) == (5, 256, 4, 4)
  assert ref._reshape_target(nd.ReshapeParam(shape=(0, -1)), (3, 4, 5)) == (3, 20)
  assert ref._reshape_target(nd.ReshapeParam(shape=(2, -1), axis=1), (3, 4, 5)) == (3, 2, 10)


def _layer(name, type_, bottoms, tops, param=nd.NoParam()):
  return nd.LayerDef(name, type_, tuple(bottoms), tuple(tops), param)


def test_forward_small_net_by_hand():
  """A hand-built net: in-place layers, Split copies, legacy 4-D blob shapes, batch override."""
  net = nd.NetDef('hand', (
      _layer('input', 'Input', [], ['data'], nd.InputParam(((1, 2, 6, 6),))),
      _layer('conv', 'Convolution', ['data'], ['conv'],
             nd.ConvolutionParam(num_output=4, kernel=(3, 3), pad=(1, 1), group=2)),
      _layer('relu', 'ReLU', ['conv'], ['conv'], nd.ReLUParam(0.3)),
      _layer('split', 'Split', ['conv'], ['conv_s0', 'conv_s1']),
      _layer('pool', 'Pooling', ['conv_s0'], ['pool'],
             nd.PoolingParam('MAX', (2, 2), (2, 2))),
      _layer('drop', 'Dropout', ['pool'], ['pool'], nd.DropoutParam()),
      _layer('scale', 'Scale', ['conv_s1'], ['scaled'], nd.ScaleParam(bias_term=True)),
      _layer('prod', 'Eltwise', ['conv_s1', 'scaled'], ['prod'], nd.EltwiseParam('PROD')),
      _layer('fc', 'InnerProduct', ['pool'], ['fc'], nd.InnerProductParam(num_output=3)),
      _layer('flat', 'Flatten', ['prod'], ['flat'], nd.FlattenParam()),
      _layer('prob', 'Softmax', ['fc'], ['prob']),
  ))
  rng = _rng(9)
  w = rng.normal(size=(4, 1, 3, 3))
  b = rng.normal(size=4)
  gamma, beta = rng.normal(size=4), rng.normal(size=4)
  fc_w, fc_b = rng.normal(size=(3, 36)), rng.normal(size=3)
  weights = {
      'conv': [w, b.reshape(1, 1, 1, 4)],  # legacy bias dims
      'scale': [gamma, beta],
      'fc': [fc_w.reshape(1, 1, 3, 36), fc_b],  # legacy IP dims
  }
  x = rng.normal(size=(3, 2, 6, 6))  # batch 3, although the net says 1
  out = ref.forward(net, weights, {'data': x})

  conv = naive_conv(x, w, b, (1, 1), (1, 1), (1, 1), 2)
  conv = np.where(conv > 0, conv, 0.3 * conv)
  np.testing.assert_allclose(out['conv'], conv, atol=1e-12)
  np.testing.assert_allclose(out['conv_s1'], conv, atol=1e-12)
  pool = naive_pool(conv, 'MAX', (2, 2), (2, 2), (0, 0))
  np.testing.assert_allclose(out['pool'], pool, atol=1e-12)
  scaled = conv * gamma[:, None, None] + beta[:, None, None]
  np.testing.assert_allclose(out['flat'], (conv * scaled).reshape(3, -1), atol=1e-12)
  fc = pool.reshape(3, -1) @ fc_w.T + fc_b
  np.testing.assert_allclose(out['fc'], fc, atol=1e-12)
  e = np.exp(fc - fc.max(axis=1, keepdims=True))
  np.testing.assert_allclose(out['prob'], e / e.sum(axis=1, keepdims=True), atol=1e-12)
  assert out['conv_s0'] is not out['conv_s1']  # Split tops are copies

  shapes = ref.infer_shapes(net, {'data': (3, 2, 6, 6)})
  assert shapes == {k: v.shape for k, v in out.items()}
  assert ref.count_params(net) == 4 * 9 + 4 + 4 + 4 + 3 * 36 + 3


def test_concat_crop_eltwise_sum():
  net = nd.NetDef('cce', (
      _layer('input', 'Input', [], ['a', 'b'], nd.InputParam(((1, 2, 5, 6), (1, 3, 2, 3)))),
      _layer('cat', 'Concat', ['a', 'a'], ['cat'], nd.ConcatParam(axis=1)),
      _layer('crop', 'Crop', ['cat', 'b'], ['crop'], nd.CropParam(axis=1, offset=(1, 2, 3))),
      _layer('sum', 'Eltwise', ['crop', 'b'], ['sum'], nd.EltwiseParam('SUM', (2.0, -1.0))),
      _layer('max', 'Eltwise', ['crop', 'b'], ['max'], nd.EltwiseParam('MAX')),
  ))
  rng = _rng(10)
  a, b = rng.normal(size=(2, 2, 5, 6)), rng.normal(size=(2, 3, 2, 3))
  out = ref.forward(net, {}, {'a': a, 'b': b})
  cat = np.concatenate([a, a], axis=1)
  crop = cat[:, 1:4, 2:4, 3:6]
  np.testing.assert_allclose(out['crop'], crop)
  np.testing.assert_allclose(out['sum'], 2 * crop - b)
  np.testing.assert_allclose(out['max'], np.maximum(crop, b))


# --------------------------------------------------------------------------------------------------
# Real-Caffe goldens.

# (golden, prototxt, caffemodel)
GOLDENS = [
    ('golden_netA.npz', 'netA.prototxt', 'netA.caffemodel'),
    ('golden_netA2.npz', 'netA2.prototxt', 'netA2.caffemodel'),
    ('golden_netA2.npz', 'netA2.prototxt', 'netA2_v1.caffemodel'),
    ('golden_netA2.npz', 'netA2.prototxt', 'netA2_v0.caffemodel'),
    ('golden_netA2.npz', 'netA2.prototxt', 'netA2_v1_upgraded.caffemodel'),
    ('golden_netA2.npz', 'netA2.prototxt', 'netA2_v0_upgraded.caffemodel'),
    ('golden_netB.npz', 'netB.prototxt', 'netB.caffemodel'),
    ('golden_netB4.npz', 'netB4.prototxt', 'netB4.caffemodel'),
    ('golden_netC.npz', 'netC.prototxt', 'netC.caffemodel'),
    ('golden_lenet_v1.npz', 'bvlc_lenet_deploy.prototxt',
     'pl8787_exp_caffe__lenet_iter_10000.caffemodel'),
    ('golden_lenet_v2.npz', 'bvlc_lenet_deploy.prototxt',
     'ethereon_caffe-tensorflow__lenet_iter_10000.caffemodel'),
]


def _reader():
  if not os.path.exists(_READER):
    pytest.skip('dgnam_jax/caffe/reader.py does not exist yet')
  return importlib.import_module('dgnam_jax.caffe.reader')


@pytest.mark.parametrize('golden,prototxt,model', GOLDENS, ids=lambda s: s.split('.')[0])
def test_reproduces_caffe_golden(golden, prototxt, model):
  reader = _reader()
  net = reader.read_prototxt(os.path.join(FIXTURES, prototxt))
  layers = reader.read_caffemodel(os.path.join(FIXTURES, model))
  weights = {name: [np.asarray(b) for b in layer.blobs] for name, layer in layers.items()}
  data = np.load(os.path.join(FIXTURES, golden))
  inputs = {k[3:]: data[k] for k in data.files if k.startswith('in_')}
  out = ref.forward(net, weights, inputs)

  expected = {k[5:]: data[k] for k in data.files if k.startswith('blob_')}
  assert set(out) == set(expected)
  for name, want in expected.items():
    got = out[name]
    assert got.shape == want.shape, name
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err <= 1e-5, f'{name}: relative max error {err:.2e}'
