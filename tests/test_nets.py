"""Full-size nets: parameter counts, shapes, hand-written == generic, float64 reference parity."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgnam_jax import nets
from dgnam_jax.nets import convert
from dgnam_jax.nets import layers
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.nets import CaffeGraph

import numpy_caffe

HANDWRITTEN = ['caffenet', 'places205', 'deepsim_fc6', 'deepsim_fc7', 'deepsim_pool5']
PARAM_COUNTS = {'caffenet': 60_965_224, 'places205': 57_708_109, 'deepsim_fc6': 56_097_891,
                'deepsim_fc7': 56_097_891}


def _netdef(name):
  return parse_prototxt(nets.prototxt_text(name), nets.net_info(name).prototxt)


def _input(netdef, batch=1, seed=0, scale=50.0):
  (name, shape), = netdef.inputs
  shape = (batch,) + tuple(shape[1:])
  x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32) * scale
  return name, x  # Caffe (NCHW) layout


def _rel_err(got, want):
  return float(np.abs(np.asarray(got, np.float64) - want).max() / max(np.abs(want).max(), 1e-30))


@pytest.mark.parametrize('name', sorted(PARAM_COUNTS))
def test_handwritten_parameter_counts(name):
  netdef = _netdef(name)
  module = nets.net_info(name).factory()
  _, x = _input(netdef)
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0),
                             jax.ShapeDtypeStruct(layers.to_nhwc(x).shape, jnp.float32))
  assert convert.count_params(variables['params']) == PARAM_COUNTS[name]
  pshapes, _ = convert.shapes(netdef)
  assert convert.count_params(pshapes_to_zeros(pshapes)) == PARAM_COUNTS[name]


def pshapes_to_zeros(pshapes):
  return jax.tree.map(lambda s: np.empty(s, np.uint8), pshapes,
                      is_leaf=lambda s: isinstance(s, tuple))


@pytest.mark.parametrize('name', HANDWRITTEN)
def test_handwritten_blob_shapes_match_prototxt(name):
  netdef = _netdef(name)
  _, want = convert.shapes(netdef, batch=2)
  module = nets.net_info(name).factory()
  _, x = _input(netdef, batch=2)
  xs = jax.ShapeDtypeStruct(layers.to_nhwc(x).shape, jnp.float32)
  variables = jax.eval_shape(module.init, jax.random.PRNGKey(0), xs)
  outs = jax.eval_shape(module.apply, variables, xs)
  got = {k: layers.to_nchw(np.empty(v.shape, np.uint8)).shape for k, v in outs.blobs.items()}
  assert got == {k: v for k, v in want.items() if k in got}
  assert set(got) == set(want)  # every Caffe blob is returned by the hand-written module


def test_output_shapes_of_paper_nets():
  expect = {'caffenet': ('prob', (1, 1000)), 'places205': ('prob', (1, 205)),
            'googlenet': ('prob', (1, 1000)), 'resnet50': ('prob', (1, 1000)),
            'deepsim_fc6': ('deconv0', (1, 3, 256, 256)),
            'deepsim_pool5': ('deconv0', (1, 3, 256, 256))}
  for name, (blob, shape) in expect.items():
    _, blobs = convert.shapes(_netdef(name), batch=1)
    assert blobs[blob] == shape, name
  _, g = convert.shapes(_netdef('googlenet'), batch=1)
  assert g['pool1/3x3_s2'] == (1, 64, 56, 56)  # Caffe's ceil mode: floor would give 55
  assert g['pool4/3x3_s2'][2:] == (7, 7)
  _, r = convert.shapes(_netdef('resnet50'), batch=1)
  assert r['pool1'] == (1, 64, 56, 56)
  _, c = convert.shapes(_netdef('caffenet'), batch=1)
  assert c['pool5'] == (1, 256, 6, 6)


def test_generic_parameter_counts():
  pshapes, _ = convert.shapes(_netdef('resnet50'))
  params = pshapes_to_zeros(pshapes)
  learned = convert.count_params(params, exclude_types=('BatchNorm',), netdef=_netdef('resnet50'))
  assert learned == 25_557_096
  assert 'bias' in params['conv1']
  pshapes, _ = convert.shapes(_netdef('googlenet'))
  # BVLC GoogLeNet deploy (no auxiliary heads); the number is recorded in BUILD_NOTES.md.
  assert convert.count_params(pshapes_to_zeros(pshapes)) == 6_998_552


def _random_params(module, x, seed=0):
  return module.init(jax.random.PRNGKey(seed), x)['params']


@pytest.mark.slow
@pytest.mark.parametrize('name', HANDWRITTEN)
def test_handwritten_equals_generic_on_random_weights(name):
  netdef = _netdef(name)
  module = nets.net_info(name).factory()
  inp, x = _input(netdef, batch=2, scale=1.0 if 'deepsim' in name else 50.0)
  x = jnp.asarray(layers.to_nhwc(x))
  params = _random_params(module, x)
  hand = jax.jit(module.apply)({'params': params}, x)
  gen = jax.jit(CaffeGraph(netdef).apply)({'params': params}, {inp: x})
  for key, value in hand.blobs.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(gen.blobs[key]), err_msg=key)
  for key, value in hand.layers.items():
    np.testing.assert_array_equal(np.asarray(value), np.asarray(gen.layers[key]), err_msg=key)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['caffenet', 'deepsim_fc6'])
def test_full_size_matches_float64_reference(name):
  """Every blob within 1e-4 of an independent float64 numpy forward pass (random weights)."""
  netdef = _netdef(name)
  module = nets.net_info(name).factory()
  inp, x = _input(netdef, batch=1, scale=1.0 if 'deepsim' in name else 50.0)
  params = _random_params(module, jnp.asarray(layers.to_nhwc(x)), seed=1)
  caffe_blobs = convert.flax_to_caffe(netdef, jax.tree.map(np.asarray, params))
  want = numpy_caffe.forward(netdef, {k: [b.astype(np.float64) for b in v]
                                      for k, v in caffe_blobs.items()},
                             {inp: x.astype(np.float64)})
  got = jax.jit(module.apply)({'params': params}, jnp.asarray(layers.to_nhwc(x)))
  assert set(got.blobs) == set(want)
  for key, value in got.blobs.items():
    err = _rel_err(layers.to_nchw(np.asarray(value)), want[key])
    assert err <= 1e-4, (key, err)
  assert math.prod(want['deconv0' if 'deepsim' in name else 'prob'].shape) > 0


@pytest.mark.slow
@pytest.mark.parametrize('name,version', [('caffenet', 'V1'), ('caffenet', 'V2'),
                                          ('googlenet', 'V1'), ('googlenet', 'V2'),
                                          ('resnet50', 'V2'), ('deepsim_fc6', 'V2'),
                                          ('places205', 'V1')])
def test_full_size_round_trip_through_caffemodel(tmp_path, name, version):
  """Random params -> caffemodel (V1 legacy dims or V2 BlobShape) -> converter -> same params."""
  from dgnam_jax import load_checkpoint
  from dgnam_jax.caffe import write_caffemodel
  from dgnam_jax.nets.from_caffe import ConvertOptions, convert_caffe
  netdef = _netdef(name)
  pshapes, _ = convert.shapes(netdef)
  rng = np.random.default_rng(0)
  params = jax.tree.map(lambda s: rng.standard_normal(s, np.float32), pshapes,
                        is_leaf=lambda s: isinstance(s, tuple))
  proto, model = tmp_path / 'deploy.prototxt', tmp_path / 'm.caffemodel'
  proto.write_text(nets.prototxt_text(name))
  write_caffemodel(str(model), netdef, convert.flax_to_caffe(netdef, params), version=version,
                   legacy_dims=version == 'V1')
  ckpt = convert_caffe(str(proto), str(model), str(tmp_path / 'ckpt'), ConvertOptions(net=name))
  _, restored, meta = load_checkpoint(ckpt)
  assert meta['net'] == name
  assert jax.tree.structure(restored) == jax.tree.structure(params)
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(restored)):
    np.testing.assert_array_equal(a, np.asarray(b), err_msg=str(path))
