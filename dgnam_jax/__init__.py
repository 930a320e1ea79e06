"""dgnam_jax: DGN-AM (Nguyen et al., NIPS 2016) as a JAX/Flax library.

Public API:
  load_checkpoint(path) -> (module, params, metadata)   load a converted or trained net
  CaffeGraph, CaffeNet, DeePSimGenerator, NetOutputs    Flax modules (NHWC, Caffe-exact)
  NETS, net_info                                       the paper's nets by name
  caffe                                                Caffe formats (prototxt, caffemodel, mean)
"""

from dgnam_jax import caffe
from dgnam_jax.checkpoint import load_checkpoint
from dgnam_jax.nets import NETS, CaffeGraph, CaffeNet, DeePSimGenerator, NetOutputs, net_info

__version__ = '0.1.0'

__all__ = ['CaffeGraph', 'CaffeNet', 'DeePSimGenerator', 'NETS', 'NetOutputs', 'caffe',
           'load_checkpoint', 'net_info']
