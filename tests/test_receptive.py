"""Receptive fields against the gradient's support on the committed CIFAR-10 classifier."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.nets import checkpoint
from dgnam_jax.nets.receptive import Field, receptive_fields

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSIFIER = os.path.join(ROOT, 'checkpoints', 'cifar10', 'classifier')


def test_fields_follow_the_layer_arithmetic():
  meta = checkpoint.read_metadata(CLASSIFIER)
  f = receptive_fields(parse_prototxt(meta['prototxt'], 'cifar10'))
  # conv1 5x5 pad 2; pool1 3x3 stride 2; conv2 5x5 pad 2: 5, 7 (jump 2), 7 + 4 * 2 = 15.
  assert f['conv1'] == Field((5, 5), (1, 1), (0.0, 0.0))
  assert f['pool1'] == Field((7, 7), (2, 2), (1.0, 1.0))
  assert f['conv2'].size == (15, 15) and f['pool5'].jump == (8, 8)
  assert f['fc6'] is None and f['fc8'] is None
  assert f['conv1'].box(0, 0, (32, 32)) == (0, 3, 0, 3)  # clipped at the border
  assert f['conv3'].box(4, 4, (32, 32)) == (6, 32, 6, 32)


@pytest.mark.parametrize('layer,pos', [('conv1', (5, 9)), ('conv2', (8, 8)), ('conv3', (3, 4))])
def test_the_box_is_the_support_of_the_units_gradient(layer, pos):
  module, params, meta = checkpoint.load_checkpoint(CLASSIFIER)
  f = receptive_fields(parse_prototxt(meta['prototxt'], 'cifar10'))[layer]
  top, bottom, left, right = f.box(*pos, (32, 32))

  def unit(x):  # the raw layer output (before its ReLU) at pos, summed over channels
    return module.apply({'params': params}, x).layers[layer][:, pos[0], pos[1], :].sum()

  xs = jax.random.normal(jax.random.PRNGKey(0), (16, 32, 32, 3)) * 60
  grads = jax.vmap(jax.grad(lambda x: unit(x[None])))(xs)
  support = np.asarray(jnp.abs(grads).sum(axis=(0, 3)) > 0)
  want = np.zeros((32, 32), bool)
  want[top:bottom, left:right] = True
  np.testing.assert_array_equal(support, want)


def test_unmodelled_layers_are_named():
  text = ('name: "x" input: "data" input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
          'layer { name: "c" type: "Convolution" bottom: "data" top: "c" '
          'convolution_param { num_output: 2 kernel_size: 3 } }\n'
          'layer { name: "e" type: "Eltwise" bottom: "c" bottom: "c" top: "e" }\n')
  with pytest.raises(ValueError, match="layer 'e'"):
    receptive_fields(parse_prototxt(text, 'x'))
