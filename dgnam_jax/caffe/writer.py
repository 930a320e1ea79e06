"""Encoders for caffemodels and BlobProto mean files (for tests, benchmarks and weight export).

Fields are written in ascending field-number order, as Caffe writes them. Float payloads are
handed to the output as memoryviews of contiguous little-endian float32 arrays, and nested
messages are built as chunk lists with precomputed sizes, so each float is copied once and a
233 MB caffemodel is written in about a second.
"""

from __future__ import annotations

import dataclasses
import os
import struct
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dgnam_jax.caffe import netdef as nd
from dgnam_jax.caffe import schema
from dgnam_jax.caffe.netdef import LayerDef, NetDef
from dgnam_jax.caffe.textformat import Message

_Chunks = tuple[list, int]  # (bytes-like pieces, total size)


def _varint(value: int) -> bytes:
  if value < 0:
    value += 1 << 64  # negative int32/int64: ten-byte two's complement, as protobuf writes
  out = bytearray()
  while value >= 0x80:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _number(table: str, name: str) -> int:
  return schema.BY_NAME[table][name][0]


def _len_field(num: int, chunks: _Chunks) -> _Chunks:
  pieces, size = chunks
  head = _varint(num << 3 | 2) + _varint(size)
  return [head, *pieces], len(head) + size


def _string(num: int, text: str) -> _Chunks:
  data = text.encode('utf-8')
  return _len_field(num, ([data], len(data)))


def _int(num: int, value: int) -> _Chunks:
  data = _varint(num << 3) + _varint(value)
  return [data], len(data)


def _join(parts: Sequence[_Chunks]) -> _Chunks:
  pieces: list = []
  for p, _ in parts:
    pieces.extend(p)
  return pieces, sum(s for _, s in parts)


def _shape(dims: Sequence[int]) -> _Chunks:
  """A BlobShape: ``dim`` packed."""
  if not dims:
    return [], 0
  payload = b''.join(_varint(int(d)) for d in dims)
  return _len_field(_number('BlobShape', 'dim'), ([payload], len(payload)))


def _blob(array: np.ndarray, legacy_dims: bool) -> _Chunks:
  a = np.ascontiguousarray(array, dtype='<f4')
  parts = []
  if legacy_dims:
    if a.ndim > 4:
      raise ValueError(f'a {a.ndim}-D blob {a.shape} cannot use legacy 4-D dims')
    dims = (1,) * (4 - a.ndim) + a.shape  # right-aligned: bias 1x1x1xN, IP weight 1x1xOxI
    parts += [_int(i + 1, d) for i, d in enumerate(dims)]
  if a.size:
    parts.append(_len_field(_number('BlobProto', 'data'), ([memoryview(a).cast('B')], a.nbytes)))
  if not legacy_dims:
    parts.append(_len_field(_number('BlobProto', 'shape'), _shape(a.shape)))
  return _join(parts)


def encode_blobproto(array: np.ndarray, legacy_dims: bool = True) -> bytes:
  """Serializes one array as a BlobProto (e.g. a mean file: (C, H, W) -> num 1).

  Args:
    array: any float array with at most 4 dims when ``legacy_dims``.
    legacy_dims: write num/channels/height/width (right-aligned to 4-D) instead of a BlobShape.
  """
  pieces, _ = _blob(np.asarray(array), legacy_dims)
  return b''.join(pieces)


def _encode(msg: Message, table: str) -> _Chunks:
  """A Message -> its serialization under ``table``, fields in ascending number order."""
  if table == 'BlobShape':
    return _shape(msg.getall('dim'))
  parts = []
  for num, field in sorted(schema.MESSAGES[table].items()):
    for value in msg.getall(field.name):
      if field.kind == 'message':
        parts.append(_len_field(num, _encode(value, field.sub)))
      elif field.kind == 'string':
        parts.append(_string(num, value))
      elif field.kind == 'float':
        data = _varint(num << 3 | 5) + struct.pack('<f', value)
        parts.append(([data], len(data)))
      elif field.kind == 'enum':
        names = {v: k for k, v in schema.ENUMS[field.sub].items()}
        parts.append(_int(num, names[value] if isinstance(value, str) else value))
      else:  # integer kinds and bool; Caffe's repeated ints here are unpacked
        parts.append(_int(num, int(value)))
  return _join(parts)


def _msg(**fields: Any) -> Message:
  msg = Message()
  for name, value in fields.items():
    for v in (value if isinstance(value, (list, tuple)) else [value]):
      msg.add(name, v)
  return msg


def _pair(msg: Message, pair: tuple[int, int], one: str, h: str, w: str, default: int) -> None:
  # A square value goes into the plain field, which 2014 (optional) and ND (repeated) Caffe read.
  if pair[0] != pair[1]:
    msg.add(h, pair[0])
    msg.add(w, pair[1])
  elif pair[0] != default:
    msg.add(one, pair[0])


def _param_message(layer: LayerDef, version: str) -> tuple[str, Message] | None:
  """The layer's typed parameter as a ``<x>_param`` message, as Caffe would write it."""
  p = layer.param
  if isinstance(p, nd.ConvolutionParam):
    m = _msg(num_output=p.num_output, bias_term=p.bias_term, group=p.group, axis=p.axis)
    _pair(m, p.kernel, 'kernel_size', 'kernel_h', 'kernel_w', 0)
    _pair(m, p.stride, 'stride', 'stride_h', 'stride_w', 1)
    _pair(m, p.pad, 'pad', 'pad_h', 'pad_w', 0)
    if p.dilation != (1, 1):
      m.fields['dilation'] = list(p.dilation)
    return 'convolution_param', m
  if isinstance(p, nd.PoolingParam):
    m = _msg(pool=p.pool)
    if p.global_pooling:
      m.add('global_pooling', True)
    else:
      _pair(m, p.kernel, 'kernel_size', 'kernel_h', 'kernel_w', 0)
    _pair(m, p.stride, 'stride', 'stride_h', 'stride_w', 1)
    _pair(m, p.pad, 'pad', 'pad_h', 'pad_w', 0)
    if p.round_mode != 'CEIL':  # the field only exists since 2018
      m.add('round_mode', p.round_mode)
    return 'pooling_param', m
  if isinstance(p, nd.ConcatParam) and version == 'V1' and p.axis >= 0:
    return 'concat_param', _msg(concat_dim=p.axis)  # 2014 Caffe only knew concat_dim
  if isinstance(p, nd.ReshapeParam):
    return 'reshape_param', _msg(shape=_msg(dim=p.shape), axis=p.axis, num_axes=p.num_axes)
  if isinstance(p, nd.InputParam):
    return 'input_param', _msg(shape=[_msg(dim=s) for s in p.shapes])
  if isinstance(p, nd.BatchNormParam):
    # The default 1e-5 is not a float32 value: writing it would read back rounded.
    m = _msg(eps=p.eps) if p.eps != nd.BatchNormParam.eps else Message()
    if p.use_global_stats is not None:
      m.add('use_global_stats', p.use_global_stats)
    return 'batch_norm_param', m
  simple = {nd.InnerProductParam: 'inner_product_param', nd.LRNParam: 'lrn_param',
            nd.ReLUParam: 'relu_param', nd.DropoutParam: 'dropout_param',
            nd.SoftmaxParam: 'softmax_param', nd.ConcatParam: 'concat_param',
            nd.EltwiseParam: 'eltwise_param', nd.ScaleParam: 'scale_param',
            nd.FlattenParam: 'flatten_param', nd.CropParam: 'crop_param'}
  if type(p) in simple:
    return simple[type(p)], _msg(**dataclasses.asdict(p))
  return None


def _layer_params(layer: LayerDef, table: str, version: str) -> list[_Chunks]:
  found = _param_message(layer, version)
  if found is None:
    return []
  name, msg = found
  num, field = schema.BY_NAME[table][name]
  return [_len_field(num, _encode(msg, field.sub))]


def _input_shapes(layer: LayerDef) -> list[tuple[int, ...]]:
  shapes = layer.param.shapes
  return [tuple(shapes[i] if len(shapes) > 1 else shapes[0]) for i in range(len(layer.tops))]


def _layer_v2(layer: LayerDef, blobs: Sequence[np.ndarray], legacy_dims: bool) -> _Chunks:
  t = 'LayerParameter'
  parts = [_string(_number(t, 'name'), layer.name), _string(_number(t, 'type'), layer.type)]
  parts += [_string(_number(t, 'bottom'), b) for b in layer.bottoms]
  parts += [_string(_number(t, 'top'), b) for b in layer.tops]
  parts += [_len_field(_number(t, 'blobs'), _blob(b, legacy_dims)) for b in blobs]
  return _join(parts + _layer_params(layer, t, 'V2'))  # parameter fields are numbered >= 100


def _layer_v1(layer: LayerDef, blobs: Sequence[np.ndarray], legacy_dims: bool) -> _Chunks:
  t = 'V1LayerParameter'
  enum_name = schema.V2_TO_V1_TYPE.get(layer.type)
  if enum_name is None:
    raise ValueError(f'layer {layer.name!r}: type {layer.type} has no V1 encoding; use '
                     "version='V2'")
  enum = {v: k for k, v in schema.ENUMS['V1LayerType'].items()}[enum_name]
  parts = [_string(_number(t, 'bottom'), b) for b in layer.bottoms]
  parts += [_string(_number(t, 'top'), b) for b in layer.tops]
  parts += [_string(_number(t, 'name'), layer.name), _int(_number(t, 'type'), enum)]
  parts += [_len_field(_number(t, 'blobs'), _blob(b, legacy_dims)) for b in blobs]
  return _join(parts + _layer_params(layer, t, 'V1'))  # parameter fields are numbered > 6


def _net(netdef: NetDef, blobs: Mapping[str, Sequence[np.ndarray]], version: str,
         legacy_dims: bool) -> _Chunks:
  if version not in ('V1', 'V2'):
    raise ValueError(f"version must be 'V1' or 'V2', got {version!r}")
  unknown = set(blobs) - {layer.name for layer in netdef.layers}
  if unknown:
    raise ValueError(f'blobs given for layers not in net {netdef.name!r}: {sorted(unknown)}')
  t = 'NetParameter'
  parts = [_string(_number(t, 'name'), netdef.name)] if netdef.name else []
  if version == 'V2':
    field = _number(t, 'layer')
    parts += [_len_field(field, _layer_v2(layer, blobs.get(layer.name, ()), legacy_dims))
              for layer in netdef.layers]
    return _join(parts)
  # V1 has no Input layer: net inputs go into the net-level input/input_dim fields, as in 2014.
  field = _number(t, 'layers')
  parts += [_len_field(field, _layer_v1(layer, blobs.get(layer.name, ()), legacy_dims))
            for layer in netdef.layers if layer.type != 'Input']
  inputs = [(top, shape) for layer in netdef.layers if layer.type == 'Input'
            for top, shape in zip(layer.tops, _input_shapes(layer))]
  parts += [_string(_number(t, 'input'), name) for name, _ in inputs]
  if all(len(shape) == 4 for _, shape in inputs):
    parts += [_int(_number(t, 'input_dim'), d) for _, shape in inputs for d in shape]
  else:
    parts += [_len_field(_number(t, 'input_shape'), _shape(shape)) for _, shape in inputs]
  return _join(parts)


def encode_caffemodel(netdef: NetDef, blobs: Mapping[str, Sequence[np.ndarray]], *,
                      version: str = 'V2', legacy_dims: bool = False) -> bytes:
  """Serializes a net and its blobs as a caffemodel (a binary NetParameter).

  Each layer is written with its name, type, bottoms, tops, blobs and typed parameters, so the
  file also describes the net (as a caffemodel saved by Caffe does).

  Args:
    netdef: the net; its layers are written in order.
    blobs: layer name -> float arrays (converted to float32).
    version: 'V2' (``layer``, string types) or 'V1' (``layers``, enum types; Input layers become
      net-level ``input`` + ``input_dim``).
    legacy_dims: write num/channels/height/width right-aligned to 4-D (as 2014 Caffe did)
      instead of BlobShape.

  Raises:
    ValueError: for blobs of unknown layers, types V1 cannot express, or > 4-D legacy blobs.
  """
  pieces, _ = _net(netdef, blobs, version, legacy_dims)
  return b''.join(pieces)


def write_caffemodel(path: str | os.PathLike, netdef: NetDef,
                     blobs: Mapping[str, Sequence[np.ndarray]], *, version: str = 'V2',
                     legacy_dims: bool = False) -> None:
  """Writes :func:`encode_caffemodel`'s output to ``path`` without joining it in memory."""
  pieces, _ = _net(netdef, blobs, version, legacy_dims)
  with open(os.fspath(path), 'wb') as f:
    f.writelines(pieces)
