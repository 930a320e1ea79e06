"""dgnam_jax: DGN-AM (Nguyen et al., NIPS 2016) as a JAX/Flax library.

Public API:
  optimize_codes(pipe, gen_params, clf_params, codes0, targets, hyper, lower, upper, ...)
      the DGN-AM loop for many neurons at once (vmap + scan, sharded over devices)
  Objective, Target, make_targets, Hyper, make_hyper, OptimizeResult
  Pipeline, ImageSpace                                  generator -> crop -> classifier
  seeded_codes, original_codes                          initial codes
  load_checkpoint(path) -> (module, params, metadata)   load a converted or trained net
  CaffeGraph, CaffeNet, DeePSimGenerator, NetOutputs    Flax modules (NHWC, Caffe-exact)
  NETS, net_info                                        the paper's nets by name
  caffe                                                 Caffe formats (prototxt, caffemodel, mean)
"""

from dgnam_jax import caffe
from dgnam_jax.checkpoint import load_checkpoint
from dgnam_jax.codes import original_codes, seeded_codes
from dgnam_jax.nets import NETS, CaffeGraph, CaffeNet, DeePSimGenerator, NetOutputs, net_info
from dgnam_jax.optimize import Hyper, OptimizeResult, make_hyper, optimize_codes
from dgnam_jax.pipeline import ImageSpace, Pipeline
from dgnam_jax.targets import Objective, Target, make_targets

__version__ = '0.1.0'

__all__ = ['CaffeGraph', 'CaffeNet', 'DeePSimGenerator', 'Hyper', 'ImageSpace', 'NETS',
           'NetOutputs', 'Objective', 'OptimizeResult', 'Pipeline', 'Target', 'caffe',
           'load_checkpoint', 'make_hyper', 'make_targets', 'net_info', 'optimize_codes',
           'original_codes', 'seeded_codes']
