"""Checks of the deploy prototxts in dgnam_jax/nets/prototxt/ (names, shapes, parameter counts)."""

import collections
import importlib.util
import math
import os
import sys
import time

import numpy as np
import pytest

import numpy_caffe as ref

ROOT = os.path.join(os.path.dirname(__file__), os.pardir)
PROTO_DIR = os.path.join(ROOT, 'dgnam_jax', 'nets', 'prototxt')
_READER = os.path.join(ROOT, 'dgnam_jax', 'caffe', 'reader.py')

# file -> (input shapes, {blob: expected shape}, expected parameter count, layer types left out of
# the count). The counts of CaffeNet, Places205, ResNet-50 and the fc6 generator are the published
# ones; GoogLeNet's and the pool5 generator's are worked out by hand in the comments below.
EXPECTED = {
    'caffenet.prototxt': (
        {'data': (1, 3, 227, 227)},
        {'conv1': (1, 96, 55, 55), 'pool1': (1, 96, 27, 27), 'norm2': (1, 256, 13, 13),
         'pool5': (1, 256, 6, 6), 'fc8': (1, 1000), 'prob': (1, 1000)},
        60_965_224, ()),
    'places205.prototxt': (
        {'data': (1, 3, 227, 227)},
        {'pool5': (1, 256, 6, 6), 'fc7': (1, 4096), 'fc8': (1, 205), 'prob': (1, 205)},
        57_708_109, ()),
    'googlenet.prototxt': (
        {'data': (1, 3, 224, 224)},
        {'conv1/7x7_s2': (1, 64, 112, 112), 'pool1/3x3_s2': (1, 64, 56, 56),
         'pool2/3x3_s2': (1, 192, 28, 28), 'inception_3a/output': (1, 256, 28, 28),
         'inception_3b/output': (1, 480, 28, 28), 'pool3/3x3_s2': (1, 480, 14, 14),
         'inception_4e/output': (1, 832, 14, 14), 'pool4/3x3_s2': (1, 832, 7, 7),
         'inception_5b/output': (1, 1024, 7, 7), 'pool5/7x7_s1': (1, 1024, 1, 1),
         'loss3/classifier': (1, 1000), 'prob': (1, 1000)},
        # conv1 9,472 + conv2 114,944 + inceptions 5,849,136 + classifier 1,025,000.
        6_998_552, ()),
    'resnet50.prototxt': (
        {'data': (1, 3, 224, 224)},
        {'conv1': (1, 64, 112, 112), 'pool1': (1, 64, 56, 56), 'res2c': (1, 256, 56, 56),
         'res3d': (1, 512, 28, 28), 'res4f': (1, 1024, 14, 14), 'res5c': (1, 2048, 7, 7),
         'pool5': (1, 2048, 1, 1), 'fc1000': (1, 1000), 'prob': (1, 1000)},
        25_557_096, ('BatchNorm',)),
    'deepsim_fc6.prototxt': (
        {'feat': (1, 4096)},
        {'reshape_defc5': (1, 256, 4, 4), 'deconv5': (1, 256, 8, 8), 'conv5_1': (1, 512, 8, 8),
         'conv3_1': (1, 128, 32, 32), 'deconv0': (1, 3, 256, 256)},
        56_097_891, ()),
    'deepsim_fc7.prototxt': (
        {'feat': (1, 4096)}, {'deconv0': (1, 3, 256, 256)}, 56_097_891, ()),
    'deepsim_pool5.prototxt': (
        {'feat': (1, 256, 6, 6)},
        {'Rconv6': (1, 512, 6, 6), 'Rconv7': (1, 512, 6, 6), 'Rconv8': (1, 512, 4, 4),
         'deconv5': (1, 256, 8, 8), 'deconv0': (1, 3, 256, 256)},
        # Rconv6 1,180,160 + Rconv7/8 2 x 2,359,808 + the fc6 trunk with a 512-channel deconv5
        # (5,753,955 - 1,048,832 + 2,097,408 = 6,802,531).
        12_702_307, ()),
}


def _reader():
  if not os.path.exists(_READER):
    pytest.skip('dgnam_jax/caffe/reader.py does not exist yet')
  from dgnam_jax.caffe import reader  # pylint: disable=g-import-not-at-top
  return reader


def _net(filename):
  return _reader().read_prototxt(os.path.join(PROTO_DIR, filename))


def _make_module():
  path = os.path.join(PROTO_DIR, 'make_prototxts.py')
  spec = importlib.util.spec_from_file_location('make_prototxts', path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up there
  spec.loader.exec_module(module)
  return module


def test_files_are_generator_output():
  """The committed files are exactly what make_prototxts.py writes."""
  make = _make_module()
  assert set(make.NETS) == set(EXPECTED)
  for filename, fn in make.NETS.items():
    with open(os.path.join(PROTO_DIR, filename)) as f:
      assert f.read() == fn(), f'{filename} is stale: rerun dgnam_jax/nets/prototxt/make_prototxts.py'


@pytest.mark.parametrize('filename', sorted(EXPECTED))
def test_shapes_and_parameter_count(filename):
  inputs, blobs, count, exclude = EXPECTED[filename]
  net = _net(filename)
  assert dict(net.inputs).keys() == inputs.keys()
  shapes = ref.infer_shapes(net, inputs)
  for blob, shape in blobs.items():
    assert shapes[blob] == shape, blob
  assert ref.count_params(net, exclude_types=exclude) == count


def _source(net, blob):
  """The blob a (possibly Split-inserted) blob copies."""
  splits = {top: l.bottoms[0] for l in net.layers if l.type == 'Split' for top in l.tops}
  while blob in splits:
    blob = splits[blob]
  return blob


def _types(net):
  return collections.Counter(layer.type for layer in net.layers if layer.type != 'Split')


def test_caffenet_layers():
  net = _net('caffenet.prototxt')
  assert dict(net.inputs) == {'data': (10, 3, 227, 227)}
  names = [layer.name for layer in net.layers if layer.type != 'Input']
  assert names == ['conv1', 'relu1', 'pool1', 'norm1', 'conv2', 'relu2', 'pool2', 'norm2',
                   'conv3', 'relu3', 'conv4', 'relu4', 'conv5', 'relu5', 'pool5',
                   'fc6', 'relu6', 'drop6', 'fc7', 'relu7', 'drop7', 'fc8', 'prob']
  params = ref.param_shapes(net, {'data': (1, 3, 227, 227)})
  assert params['conv2'][0] == (256, 48, 5, 5)
  assert params['conv4'][0] == (384, 192, 3, 3)
  assert params['conv5'][0] == (256, 192, 3, 3)
  assert params['fc6'][0] == (4096, 9216)
  lrn = net.layer('norm1').param
  assert (lrn.local_size, lrn.norm_region, lrn.k) == (5, 'ACROSS_CHANNELS', 1.0)
  assert (lrn.alpha, lrn.beta) == (pytest.approx(1e-4), pytest.approx(0.75))


def test_places_is_caffenet_with_205_classes():
  places, caffenet = _net('places205.prototxt'), _net('caffenet.prototxt')
  trunk = lambda net: [l for l in net.layers if l.type != 'Input' and l.name not in ('fc8',)]
  assert trunk(places) == trunk(caffenet)
  assert places.layer('fc8').param.num_output == 205
  assert dict(places.inputs) == {'data': (1, 3, 227, 227)}


def test_googlenet_layers():
  net = _net('googlenet.prototxt')
  assert _types(net) == {'Input': 1, 'Convolution': 57, 'ReLU': 57, 'Pooling': 14, 'LRN': 2,
                         'Concat': 9, 'Dropout': 1, 'InnerProduct': 1, 'Softmax': 1}
  cat = net.layer('inception_4d/output')
  assert cat.bottoms == tuple(f'inception_4d/{b}' for b in ('1x1', '3x3', '5x5', 'pool_proj'))
  assert net.layer('inception_3a/relu_5x5_reduce').tops == ('inception_3a/5x5_reduce',)
  assert net.layer('conv1/7x7_s2').param.pad == (3, 3)
  assert net.layer('inception_5b/pool').param.pad == (1, 1)
  assert net.layer('pool5/drop_7x7_s1').param.dropout_ratio == pytest.approx(0.4)


def test_resnet50_layers():
  net = _net('resnet50.prototxt')
  assert _types(net) == {'Input': 1, 'Convolution': 53, 'BatchNorm': 53, 'Scale': 53,
                         'ReLU': 49, 'Eltwise': 16, 'Pooling': 2, 'InnerProduct': 1,
                         'Softmax': 1}
  convs = [l for l in net.layers if l.type == 'Convolution']
  assert [l.name for l in convs if l.param.bias_term] == ['conv1']
  strided = sorted(l.name for l in convs if l.param.stride == (2, 2))
  assert strided == ['conv1', 'res3a_branch1', 'res3a_branch2a', 'res4a_branch1',
                     'res4a_branch2a', 'res5a_branch1', 'res5a_branch2a']
  assert [_source(net, b) for b in net.layer('res4b').bottoms] == ['res4a', 'res4b_branch2c']
  assert [_source(net, b) for b in net.layer('res4a').bottoms] == ['res4a_branch1',
                                                                   'res4a_branch2c']
  assert net.layer('bn4b_branch2b').param.use_global_stats is True
  assert net.layer('scale4b_branch2b').param.bias_term is True
  # BatchNorm holds 3 blobs (mean, var, factor): 2 x 26,560 channels + 53 factors.
  with_bn = ref.count_params(net)
  assert with_bn - 25_557_096 == 2 * 26_560 + 53


@pytest.mark.parametrize('filename', ['deepsim_fc6.prototxt', 'deepsim_fc7.prototxt',
                                      'deepsim_pool5.prototxt'])
def test_generator_layers(filename):
  net = _net(filename)
  relus = [l for l in net.layers if l.type == 'ReLU']
  assert relus and all(l.param.negative_slope == pytest.approx(0.3) for l in relus)
  assert all(l.tops == l.bottoms for l in relus)
  deconvs = [l for l in net.layers if l.type == 'Deconvolution']
  assert [l.name for l in deconvs] == ['deconv5', 'conv5_1', 'deconv4', 'conv4_1', 'deconv3',
                                       'conv3_1', 'deconv2', 'deconv1', 'deconv0']
  assert all(l.param.pad == (1, 1) for l in deconvs)
  assert net.layers[-1].name == 'deconv0'  # linear output
  if filename != 'deepsim_pool5.prototxt':
    reshape = net.layer('reshape')
    assert reshape.tops == ('reshape_defc5',) and reshape.param.shape == (1, 256, 4, 4)


def _random_weights(net, input_shapes, rng):
  types = {layer.name: layer.type for layer in net.layers}
  weights = {}
  for name, shapes in ref.param_shapes(net, input_shapes).items():
    if types[name] == 'BatchNorm':  # mean, positive variance, scale factor
      c = shapes[0][0]
      weights[name] = [rng.normal(size=c) * 0.1, rng.uniform(0.5, 2.0, size=c), np.ones(1)]
      continue
    # Fan-in scaling keeps activations O(1) through deep stacks.
    weights[name] = [rng.normal(size=s) / math.sqrt(max(1, math.prod(s[1:]))) for s in shapes]
  return weights


@pytest.mark.slow
@pytest.mark.parametrize('filename', sorted(EXPECTED))
def test_full_forward_batch1(filename):
  """A float64 forward of the whole net with random weights runs, fast, with consistent shapes."""
  inputs, _, _, _ = EXPECTED[filename]
  net = _net(filename)
  rng = np.random.default_rng(0)
  weights = _random_weights(net, inputs, rng)
  values = {name: rng.normal(size=shape) * 50 for name, shape in inputs.items()}
  start = time.perf_counter()
  out = ref.forward(net, weights, values)
  assert time.perf_counter() - start < 60
  assert {k: v.shape for k, v in out.items()} == ref.infer_shapes(net, inputs)
  final = out[net.layers[-1].tops[0]]
  assert np.all(np.isfinite(final))
  if net.layers[-1].type == 'Softmax':
    np.testing.assert_allclose(final.sum(), 1.0)
