"""Plain, hashable descriptions of a Caffe net (the result of parsing a prototxt).

Every Caffe encoding (V0 ``layers { layer {} }``, V1 ``layers`` with enum types, V2 ``layer``) is
normalised into these frozen dataclasses, so the rest of the project sees one format. They hold no
weights and are hashable, so a :class:`NetDef` can be a static attribute of a Flax module.

Shapes are always in Caffe's order (N, C, H, W); spatial pairs are (h, w).
"""

from __future__ import annotations

import dataclasses
from typing import Union


class CaffeFormatError(ValueError):
  """A Caffe file could not be read or does not describe a valid net.

  The message always names the file and, where one is involved, the layer.
  """


@dataclasses.dataclass(frozen=True)
class ConvolutionParam:
  """ConvolutionParameter, used by both Convolution and Deconvolution."""
  num_output: int
  kernel: tuple[int, int]  # (h, w): kernel_size, or kernel_h/kernel_w
  stride: tuple[int, int] = (1, 1)  # (h, w): stride, or stride_h/stride_w
  pad: tuple[int, int] = (0, 0)  # (h, w): pad, or pad_h/pad_w
  dilation: tuple[int, int] = (1, 1)  # (h, w): Caffe's repeated dilation field
  group: int = 1  # channel groups (AlexNet's two towers)
  bias_term: bool = True
  axis: int = 1  # the channel axis; only 1 is supported


@dataclasses.dataclass(frozen=True)
class InnerProductParam:
  num_output: int
  bias_term: bool = True
  axis: int = 1
  transpose: bool = False


@dataclasses.dataclass(frozen=True)
class PoolingParam:
  pool: str = 'MAX'  # 'MAX' | 'AVE' | 'STOCHASTIC'
  kernel: tuple[int, int] = (0, 0)  # (0, 0) only when global_pooling
  stride: tuple[int, int] = (1, 1)
  pad: tuple[int, int] = (0, 0)
  global_pooling: bool = False
  round_mode: str = 'CEIL'  # 'CEIL' | 'FLOOR'


@dataclasses.dataclass(frozen=True)
class LRNParam:
  local_size: int = 5
  alpha: float = 1.0
  beta: float = 0.75
  norm_region: str = 'ACROSS_CHANNELS'  # | 'WITHIN_CHANNEL'
  k: float = 1.0


@dataclasses.dataclass(frozen=True)
class ReLUParam:
  negative_slope: float = 0.0  # leaky ReLU (DeePSim: 0.3)


@dataclasses.dataclass(frozen=True)
class DropoutParam:
  dropout_ratio: float = 0.5  # identity at test time (Caffe scales while training)


@dataclasses.dataclass(frozen=True)
class SoftmaxParam:
  axis: int = 1  # the class axis


@dataclasses.dataclass(frozen=True)
class ConcatParam:
  axis: int = 1  # channels (GoogLeNet's inception outputs)


@dataclasses.dataclass(frozen=True)
class EltwiseParam:
  operation: str = 'SUM'  # 'PROD' | 'SUM' | 'MAX'
  coeff: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class BatchNormParam:
  use_global_stats: bool | None = None  # None: Caffe's default (True in TEST)
  eps: float = 1e-5


@dataclasses.dataclass(frozen=True)
class ScaleParam:
  axis: int = 1
  num_axes: int = 1
  bias_term: bool = False


@dataclasses.dataclass(frozen=True)
class ReshapeParam:
  shape: tuple[int, ...]
  axis: int = 0
  num_axes: int = -1


@dataclasses.dataclass(frozen=True)
class FlattenParam:
  axis: int = 1
  end_axis: int = -1


@dataclasses.dataclass(frozen=True)
class CropParam:
  axis: int = 2
  offset: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class InputParam:
  shapes: tuple[tuple[int, ...], ...]  # one per top, or a single shared one


@dataclasses.dataclass(frozen=True)
class NoParam:
  """For layers without parameters (Split, Silence, ...)."""


LayerParam = Union[ConvolutionParam, InnerProductParam, PoolingParam, LRNParam, ReLUParam,
                   DropoutParam, SoftmaxParam, ConcatParam, EltwiseParam, BatchNormParam,
                   ScaleParam, ReshapeParam, FlattenParam, CropParam, InputParam, NoParam]


@dataclasses.dataclass(frozen=True)
class LayerDef:
  """One layer as the TEST-phase forward pass sees it.

  Attributes:
    name: Caffe layer name, verbatim (may contain '/').
    type: V2 type string ("Convolution", "Split", ...), also for V0/V1 sources.
    bottoms: input blob names.
    tops: output blob names (equal to bottoms for in-place layers).
    param: typed parameters for ``type`` (NoParam when it has none).
  """
  name: str
  type: str
  bottoms: tuple[str, ...]
  tops: tuple[str, ...]
  param: LayerParam = NoParam()


@dataclasses.dataclass(frozen=True)
class NetDef:
  """A whole deploy net, TEST phase, with Caffe's automatic Split layers inserted.

  Net-level inputs (``input:`` + ``input_shape``/``input_dim``) become a first layer named "input"
  of type "Input", as Caffe's upgrader does, so ``layers`` alone describes the graph.
  """
  name: str
  layers: tuple[LayerDef, ...]
  # The file it was read from (error messages); not part of its identity (equality, hash).
  source: str = dataclasses.field(default='', compare=False)

  @property
  def inputs(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """(blob name, Caffe shape) of every net input, in declaration order."""
    out = []
    for layer in self.layers:
      if layer.type == 'Input':
        shapes = layer.param.shapes
        for i, top in enumerate(layer.tops):
          out.append((top, tuple(shapes[i] if len(shapes) > 1 else shapes[0])))
    return tuple(out)

  def layer(self, name: str) -> LayerDef:
    for layer in self.layers:
      if layer.name == name:
        return layer
    raise KeyError(f'no layer named {name!r} in net {self.name!r}')
