"""Tiny stand-ins for the DeePSim generator and CaffeNet, for tests and benchmarks.

Same layer kinds as the paper's nets (InnerProduct -> Reshape -> stride-2 and stride-1
Deconvolutions with leaky ReLU 0.3; grouped conv, ceil-mode MAX pooling, LRN, fc6/fc8), but a
16-d code, a 16x16 image and a 14x14 classifier input, so a DGN-AM step compiles and runs in
seconds on a CPU.
"""

GENERATOR = '''name: "tiny_gen"
input: "feat" input_shape { dim: 1 dim: 16 }
layer { name: "defc5" type: "InnerProduct" bottom: "feat" top: "defc5"
  inner_product_param { num_output: 64 } }
layer { name: "relu_defc5" type: "ReLU" bottom: "defc5" top: "defc5"
  relu_param { negative_slope: 0.3 } }
layer { name: "reshape" type: "Reshape" bottom: "defc5" top: "reshape_defc5"
  reshape_param { shape { dim: 1 dim: 4 dim: 4 dim: 4 } } }
layer { name: "deconv1" type: "Deconvolution" bottom: "reshape_defc5" top: "deconv1"
  convolution_param { num_output: 8 kernel_size: 4 stride: 2 pad: 1 } }
layer { name: "relu_deconv1" type: "ReLU" bottom: "deconv1" top: "deconv1"
  relu_param { negative_slope: 0.3 } }
layer { name: "conv1_1" type: "Deconvolution" bottom: "deconv1" top: "conv1_1"
  convolution_param { num_output: 8 kernel_size: 3 stride: 1 pad: 1 } }
layer { name: "relu_conv1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1"
  relu_param { negative_slope: 0.3 } }
layer { name: "deconv0" type: "Deconvolution" bottom: "conv1_1" top: "deconv0"
  convolution_param { num_output: 3 kernel_size: 4 stride: 2 pad: 1 } }
'''

CLASSIFIER = '''name: "tiny_clf"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 14 dim: 14 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 6 kernel_size: 3 stride: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 3 stride: 2 } }
layer { name: "norm1" type: "LRN" bottom: "pool1" top: "norm1"
  lrn_param { local_size: 3 alpha: 0.0001 beta: 0.75 } }
layer { name: "conv2" type: "Convolution" bottom: "norm1" top: "conv2"
  convolution_param { num_output: 8 kernel_size: 3 pad: 1 group: 2 } }
layer { name: "relu2" type: "ReLU" bottom: "conv2" top: "conv2" }
layer { name: "fc6" type: "InnerProduct" bottom: "conv2" top: "fc6"
  inner_product_param { num_output: 16 } }
layer { name: "relu6" type: "ReLU" bottom: "fc6" top: "fc6" }
layer { name: "fc8" type: "InnerProduct" bottom: "fc6" top: "fc8"
  inner_product_param { num_output: 10 } }
layer { name: "prob" type: "Softmax" bottom: "fc8" top: "prob" }
'''


def random_params(netdef, seed: int, scale: float = 1.0):
  """Random parameters for a :class:`~dgnam_jax.caffe.netdef.NetDef` (fan-in scaled kernels)."""
  import jax  # pylint: disable=import-outside-toplevel (keeps the prototxt texts import-light)
  import numpy as np  # pylint: disable=import-outside-toplevel
  from dgnam_jax.nets import convert  # pylint: disable=import-outside-toplevel

  pshapes, _ = convert.shapes(netdef)
  rng = np.random.default_rng(seed)

  def init(path, shape):
    fan_in = int(np.prod(shape[:-1])) if path[-1].key == 'kernel' else 1
    std = scale / np.sqrt(fan_in) if path[-1].key == 'kernel' else 0.1
    return (rng.standard_normal(shape) * std).astype(np.float32)

  return jax.tree_util.tree_map_with_path(init, pshapes, is_leaf=lambda s: isinstance(s, tuple))


def pipeline(seed: int = 0):
  """(pipeline, generator params, classifier params) of the tiny pair with random weights:
  code 16 -> 16x16x3 image -> centre crop 14x14 -> classifier (fc8: 10 units)."""
  from dgnam_jax.caffe import parse_prototxt  # pylint: disable=import-outside-toplevel
  from dgnam_jax.nets.graph import CaffeGraph  # pylint: disable=import-outside-toplevel
  # pylint: disable-next=import-outside-toplevel
  from dgnam_jax.nets.pipeline import ImageSpace, Pipeline

  gen_def = parse_prototxt(GENERATOR, 'tiny_gen')
  clf_def = parse_prototxt(CLASSIFIER, 'tiny_clf')
  pipe = Pipeline(CaffeGraph(gen_def), CaffeGraph(clf_def), code_shape=(16,),
                  generator_space=ImageSpace(size=(16, 16)),
                  classifier_space=ImageSpace(size=(14, 14)))
  return pipe, random_params(gen_def, seed, 20.0), random_params(clf_def, seed + 1, 1.5)
