"""Tiny stand-ins for the DeePSim generator and CaffeNet (same layer kinds, seconds on a CPU)."""

import jax
import numpy as np

from dgnam_jax import convert
from dgnam_jax.caffe import parse_prototxt
from dgnam_jax.nets import CaffeGraph
from dgnam_jax.nets.tiny import CLASSIFIER, GENERATOR  # re-exported for the tests
from dgnam_jax.pipeline import ImageSpace, Pipeline


def random_params(netdef, seed, scale=1.0):
  pshapes, _ = convert.shapes(netdef)
  rng = np.random.default_rng(seed)

  def init(path, shape):
    fan_in = int(np.prod(shape[:-1])) if path[-1].key == 'kernel' else 1
    std = scale / np.sqrt(fan_in) if path[-1].key == 'kernel' else 0.1
    return (rng.standard_normal(shape) * std).astype(np.float32)

  return jax.tree_util.tree_map_with_path(init, pshapes, is_leaf=lambda s: isinstance(s, tuple))


def tiny_pipeline(seed=0):
  """(pipeline, generator params, classifier params) of the tiny pair; images 16 -> crop 14."""
  gen_def = parse_prototxt(GENERATOR, 'tiny_gen')
  clf_def = parse_prototxt(CLASSIFIER, 'tiny_clf')
  pipe = Pipeline(CaffeGraph(gen_def), CaffeGraph(clf_def), code_shape=(16,),
                  generator_space=ImageSpace(size=(16, 16)),
                  classifier_space=ImageSpace(size=(14, 14)))
  return pipe, random_params(gen_def, seed, 20.0), random_params(clf_def, seed + 1, 1.5)
