"""Typed layer parameters: a layer's parameter Message -> the netdef dataclass, with Caffe's rules.

The defaults and consistency checks follow the ``LayerSetUp`` of each Caffe layer (see
``reference/caffe.md`` §1 and §3). Values Caffe would accept but this project cannot reproduce in
the TEST phase (STOCHASTIC pooling, BatchNorm on batch statistics, ...) are rejected with an
error naming the layer and the field, rather than silently computing something else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dgnam_jax.caffe import netdef as nd
from dgnam_jax.caffe import schema
from dgnam_jax.caffe.textformat import Ident, Message

# Which `<x>_param` field holds each supported type's parameters.
PARAM_FIELD: dict[str, str] = {
    'Convolution': 'convolution_param', 'Deconvolution': 'convolution_param',
    'InnerProduct': 'inner_product_param', 'Pooling': 'pooling_param', 'LRN': 'lrn_param',
    'ReLU': 'relu_param', 'Dropout': 'dropout_param', 'Softmax': 'softmax_param',
    'Concat': 'concat_param', 'Eltwise': 'eltwise_param', 'BatchNorm': 'batch_norm_param',
    'Scale': 'scale_param', 'Reshape': 'reshape_param', 'Flatten': 'flatten_param',
    'Crop': 'crop_param', 'Input': 'input_param',
}

_MANY = 1 << 30
# type -> (min bottoms, max bottoms, min tops, max tops), as the Caffe layers check them.
BLOB_COUNTS: dict[str, tuple[int, int, int, int]] = {
    **{t: (1, 1, 1, 1) for t in ('Convolution', 'Deconvolution', 'InnerProduct', 'Pooling',
                                 'LRN', 'ReLU', 'Dropout', 'Softmax', 'BatchNorm', 'Scale',
                                 'Reshape', 'Flatten')},
    'Input': (0, 0, 1, _MANY), 'Concat': (1, _MANY, 1, 1), 'Eltwise': (2, _MANY, 1, 1),
    'Crop': (2, 2, 1, 1), 'Split': (1, 1, 1, _MANY),
}

SUPPORTED_TYPES = frozenset(BLOB_COUNTS)


class ParamError(Exception):
  """A bad parameter value; the normaliser adds the file and layer to the message."""


class Params:
  """Typed, validated access to one parameter message (absent message: all defaults)."""

  def __init__(self, msg: Message | None, field: str):
    self.msg = msg if msg is not None else Message()
    self.field = field

  def has(self, name: str) -> bool:
    return name in self.msg

  def _fail(self, name: str, what: str) -> ParamError:
    return ParamError(f'{self.field}.{name} {what}')

  def _int(self, name: str, value: Any, lo: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise self._fail(name, f'must be an integer, got {value!r}')
    if lo is not None and value < lo:
      raise self._fail(name, f'must be >= {lo}, got {value}')
    return value

  def int(self, name: str, default: int | None, lo: int | None = None) -> int | None:
    value = self.msg.get(name)
    return default if value is None else self._int(name, value, lo)

  def ints(self, name: str, lo: int | None = None) -> list[int]:
    return [self._int(name, v, lo) for v in self.msg.getall(name)]

  def float(self, name: str, default: float) -> float:
    value = self.msg.get(name)
    return default if value is None else self._float(name, value)

  def floats(self, name: str) -> list[float]:
    return [self._float(name, v) for v in self.msg.getall(name)]

  def _float(self, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise self._fail(name, f'must be a number, got {value!r}')
    # Caffe holds these as float32; rounding here makes text and binary sources agree.
    return float(np.float32(value))

  def bool(self, name: str, default: bool | None) -> bool | None:
    value = self.msg.get(name)
    if value is None:
      return default
    if isinstance(value, bool):
      return value
    if isinstance(value, int) and value in (0, 1):
      return bool(value)
    raise self._fail(name, f'must be true or false, got {value!r}')

  def enum(self, name: str, enum: str, default: str) -> str:
    value = self.msg.get(name)
    if value is None:
      return default
    names = schema.ENUMS[enum]
    if isinstance(value, Ident) and value in names.values():
      return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in names:
      return names[value]
    raise self._fail(name, f'must be one of {sorted(names.values())}, got {value!r}')

  def shapes(self, name: str) -> list[tuple[int, ...]]:
    out = []
    for value in self.msg.getall(name):
      if not isinstance(value, Message):
        raise self._fail(name, f'must be a BlobShape message, got {value!r}')
      out.append(tuple(Params(value, f'{self.field}.{name}').ints('dim')))
    return out

  def spatial(self, rep: str, h: str, w: str, default: int | None, repeated: bool
              ) -> tuple[int, int]:
    """A (h, w) pair from ``rep`` (one value or one per dim) or the ``h``/``w`` overrides."""
    values = self.ints(rep, 0) if repeated else ([] if not self.has(rep) else [self.int(rep, 0)])
    if self.has(h) or self.has(w):
      if values:
        raise self._fail(rep, f'and {h}/{w} are exclusive: give one or the other')
      return self.int(h, 0, 0), self.int(w, 0, 0)
    if not values:
      if default is None:
        raise self._fail(rep, f'(or {h} and {w}) is required')
      return default, default
    if len(values) == 1:
      return values[0], values[0]
    if len(values) == 2:
      return values[0], values[1]
    raise self._fail(rep, f'has {len(values)} values; only 2-D (1 or 2 values) is supported')


def _conv(p: Params, layer_type: str, n_bottoms: int) -> nd.ConvolutionParam:
  del layer_type, n_bottoms
  num_output = p.int('num_output', None, 1)
  if num_output is None:
    raise ParamError('convolution_param.num_output is required')
  axis = p.int('axis', 1)
  if axis != 1:
    raise ParamError(f'convolution_param.axis {axis} is not supported (only 1, the channels)')
  kernel = p.spatial('kernel_size', 'kernel_h', 'kernel_w', None, repeated=True)
  stride = p.spatial('stride', 'stride_h', 'stride_w', 1, repeated=True)
  pad = p.spatial('pad', 'pad_h', 'pad_w', 0, repeated=True)
  dilation = p.ints('dilation', 1)
  if len(dilation) > 2:
    raise ParamError(f'convolution_param.dilation has {len(dilation)} values; only 2-D is '
                     'supported')
  dilation = tuple(dilation * 2 if len(dilation) == 1 else dilation or (1, 1))
  if min(kernel) < 1:
    raise ParamError(f'convolution_param kernel {kernel} must be nonzero')
  if min(stride) < 1:
    raise ParamError(f'convolution_param stride {stride} must be nonzero')
  group = p.int('group', 1, 1)
  if num_output % group:
    raise ParamError(f'convolution_param.num_output {num_output} is not a multiple of '
                     f'group {group}')
  return nd.ConvolutionParam(num_output=num_output, kernel=kernel, stride=stride, pad=pad,
                             dilation=dilation, group=group,
                             bias_term=p.bool('bias_term', True), axis=axis)


def _inner_product(p: Params, *_) -> nd.InnerProductParam:
  num_output = p.int('num_output', None, 1)
  if num_output is None:
    raise ParamError('inner_product_param.num_output is required')
  return nd.InnerProductParam(num_output=num_output, bias_term=p.bool('bias_term', True),
                              axis=p.int('axis', 1), transpose=p.bool('transpose', False))


def _pooling(p: Params, *_) -> nd.PoolingParam:
  pool = p.enum('pool', 'PoolMethod', 'MAX')
  if pool == 'STOCHASTIC':
    raise ParamError('pooling_param.pool STOCHASTIC is not supported (only MAX and AVE)')
  global_pooling = p.bool('global_pooling', False)
  if global_pooling:
    if any(p.has(f) for f in ('kernel_size', 'kernel_h', 'kernel_w')):
      raise ParamError('pooling_param: a kernel size cannot be given with global_pooling')
    kernel = (0, 0)
  else:
    kernel = p.spatial('kernel_size', 'kernel_h', 'kernel_w', None, repeated=False)
    if min(kernel) < 1:
      raise ParamError(f'pooling_param kernel {kernel} must be nonzero')
  stride = p.spatial('stride', 'stride_h', 'stride_w', 1, repeated=False)
  pad = p.spatial('pad', 'pad_h', 'pad_w', 0, repeated=False)
  if min(stride) < 1:
    raise ParamError(f'pooling_param stride {stride} must be nonzero')
  if global_pooling and (pad != (0, 0) or stride != (1, 1)):
    raise ParamError('pooling_param: global_pooling requires pad 0 and stride 1')
  if not global_pooling and (pad[0] >= kernel[0] or pad[1] >= kernel[1]):
    raise ParamError(f'pooling_param pad {pad} must be smaller than the kernel {kernel}')
  return nd.PoolingParam(pool=pool, kernel=kernel, stride=stride, pad=pad,
                         global_pooling=global_pooling,
                         round_mode=p.enum('round_mode', 'RoundMode', 'CEIL'))


def _lrn(p: Params, *_) -> nd.LRNParam:
  local_size = p.int('local_size', 5, 1)
  if local_size % 2 != 1:
    raise ParamError(f'lrn_param.local_size {local_size} must be odd')
  return nd.LRNParam(local_size=local_size, alpha=p.float('alpha', 1.0),
                     beta=p.float('beta', 0.75),
                     norm_region=p.enum('norm_region', 'NormRegion', 'ACROSS_CHANNELS'),
                     k=p.float('k', 1.0))


def _concat(p: Params, *_) -> nd.ConcatParam:
  if p.has('axis') and p.has('concat_dim'):
    raise ParamError('concat_param: give axis or concat_dim, not both')
  axis = p.int('axis', None) if p.has('axis') else p.int('concat_dim', 1, 0)
  return nd.ConcatParam(axis=axis)


def _eltwise(p: Params, layer_type: str, n_bottoms: int) -> nd.EltwiseParam:
  del layer_type
  operation = p.enum('operation', 'EltwiseOp', 'SUM')
  coeff = tuple(p.floats('coeff'))
  if coeff and operation != 'SUM':
    raise ParamError(f'eltwise_param.coeff is only allowed with operation SUM, not {operation}')
  if coeff and len(coeff) != n_bottoms:
    raise ParamError(f'eltwise_param.coeff has {len(coeff)} values for {n_bottoms} bottoms')
  return nd.EltwiseParam(operation=operation, coeff=coeff)


def _batch_norm(p: Params, *_) -> nd.BatchNormParam:
  use_global_stats = p.bool('use_global_stats', None)
  if use_global_stats is False:
    raise ParamError('batch_norm_param.use_global_stats false (batch statistics in the TEST '
                     'phase) is not supported')
  return nd.BatchNormParam(use_global_stats=use_global_stats, eps=p.float('eps', 1e-5))


def _scale(p: Params, layer_type: str, n_bottoms: int) -> nd.ScaleParam:
  del layer_type, n_bottoms  # a second bottom (learned-free scale) is rejected by BLOB_COUNTS
  return nd.ScaleParam(axis=p.int('axis', 1), num_axes=p.int('num_axes', 1, -1),
                       bias_term=p.bool('bias_term', False))


def _reshape(p: Params, *_) -> nd.ReshapeParam:
  shapes = p.shapes('shape')
  if not shapes:
    raise ParamError('reshape_param.shape is required')
  shape = shapes[-1]
  if any(d < -1 for d in shape) or shape.count(-1) > 1:
    raise ParamError(f'reshape_param.shape {shape}: dims must be >= -1, with at most one -1')
  return nd.ReshapeParam(shape=shape, axis=p.int('axis', 0), num_axes=p.int('num_axes', -1, -1))


def _crop(p: Params, *_) -> nd.CropParam:
  return nd.CropParam(axis=p.int('axis', 2), offset=tuple(p.ints('offset', 0)))


def _input(p: Params, layer_type: str, n_bottoms: int, n_tops: int = 1) -> nd.InputParam:
  del layer_type, n_bottoms
  shapes = p.shapes('shape')
  if len(shapes) not in (1, n_tops):
    raise ParamError(f"input_param.shape must be given once, or once per top ({n_tops}); got "
                     f'{len(shapes)}')
  for shape in shapes:
    if any(d < 1 for d in shape):
      raise ParamError(f'input_param.shape {shape} has a dim < 1')
  return nd.InputParam(shapes=tuple(shapes))


_BUILDERS: dict[str, Callable[..., nd.LayerParam]] = {
    'Convolution': _conv, 'Deconvolution': _conv, 'InnerProduct': _inner_product,
    'Pooling': _pooling, 'LRN': _lrn, 'Concat': _concat, 'Eltwise': _eltwise,
    'BatchNorm': _batch_norm, 'Scale': _scale, 'Reshape': _reshape, 'Crop': _crop,
    'ReLU': lambda p, *_: nd.ReLUParam(negative_slope=p.float('negative_slope', 0.0)),
    'Dropout': lambda p, *_: nd.DropoutParam(dropout_ratio=p.float('dropout_ratio', 0.5)),
    'Softmax': lambda p, *_: nd.SoftmaxParam(axis=p.int('axis', 1)),
    'Flatten': lambda p, *_: nd.FlattenParam(axis=p.int('axis', 1),
                                             end_axis=p.int('end_axis', -1)),
}


def build(layer_type: str, msg: Message | None, bottoms: Sequence[str],
          tops: Sequence[str]) -> nd.LayerParam:
  """The typed parameter of a supported layer.

  Args:
    layer_type: a V2 type string in :data:`SUPPORTED_TYPES`.
    msg: the layer's ``<x>_param`` message, or None when absent (all defaults).
    bottoms: the layer's bottom blob names (some checks depend on their number).
    tops: the layer's top blob names.

  Raises:
    ParamError: a message naming the parameter field; the caller adds file and layer.
  """
  lo_b, hi_b, lo_t, hi_t = BLOB_COUNTS[layer_type]
  for what, n, lo, hi in (('bottom', len(bottoms), lo_b, hi_b), ('top', len(tops), lo_t, hi_t)):
    if not lo <= n <= hi:
      want = str(lo) if lo == hi else f'at least {lo}' if hi == _MANY else f'{lo} to {hi}'
      raise ParamError(f'{layer_type} takes {want} {what} blob(s), got {n}'
                       + (' (this option is not supported)' if n > hi else ''))
  if layer_type == 'Split':
    return nd.NoParam()
  p = Params(msg, PARAM_FIELD[layer_type])
  if layer_type == 'Input':
    return _input(p, layer_type, len(bottoms), len(tops))
  return _BUILDERS[layer_type](p, layer_type, len(bottoms))

