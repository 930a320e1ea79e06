"""A protobuf wire-format decoder driven by the field tables in :mod:`schema`.

Pure Python plus numpy, no generated code. Decodes into the same :class:`Message` tree as the text
parser; enum fields stay ints. Packed float payloads (``BlobProto.data``) become numpy views made
with ``np.frombuffer``, so a 233 MB caffemodel costs no per-float Python work.

Accepted: packed and unpacked repeated scalars; fields in any order; unknown field numbers (skipped
by wire type, as forks add fields); a known number with an unexpected wire type (skipped, as
protobuf does). Rejected with :class:`CaffeFormatError`: truncated data, lengths past the end of
the enclosing message, invalid wire types (groups included: Caffe never writes them), over-long
varints, invalid UTF-8 in strings.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np

from dgnam_jax.caffe import schema
from dgnam_jax.caffe.netdef import CaffeFormatError
from dgnam_jax.caffe.textformat import Message

_VARINT_KINDS = frozenset(('int32', 'int64', 'uint32', 'uint64', 'bool', 'enum'))
_SIGNED_KINDS = frozenset(('int32', 'int64', 'enum'))
_LAYER_MESSAGES = frozenset(('LayerParameter', 'V1LayerParameter'))
_F32 = np.dtype('<f4')
_F64 = np.dtype('<f8')
_unpack_f32 = struct.Struct('<f').unpack_from
_unpack_f64 = struct.Struct('<d').unpack_from


class _WireError(Exception):
  """A decoding error before the file name and layer are attached."""

  def __init__(self, what: str, offset: int):
    super().__init__(what)
    self.what = what
    self.offset = offset
    self.layer: str | None = None


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
  """Reads one varint at ``pos``; returns (value, next position)."""
  if pos < end:
    b = buf[pos]
    if b < 0x80:  # fast path: most tags and small values are one byte
      return b, pos + 1
  result, shift, start = 0, 0, pos
  while True:
    if pos >= end:
      raise _WireError('truncated varint', start)
    b = buf[pos]
    pos += 1
    result |= (b & 0x7F) << shift
    if b < 0x80:
      return result, pos
    shift += 7
    if shift >= 70:
      raise _WireError('varint longer than 10 bytes', start)


def _convert_varint(kind: str, value: int) -> int | bool:
  if kind == 'bool':
    return value != 0
  if kind == 'uint32':
    return value & 0xFFFFFFFF
  if kind in _SIGNED_KINDS:
    value &= 0xFFFFFFFFFFFFFFFF  # two's complement, 64 bits, as protobuf writes negatives
    if value >= 1 << 63:
      value -= 1 << 64
    if kind != 'int64':
      value = ((value + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
  return value


def _array(buf: bytes, pos: int, length: int, dtype: np.dtype, field: str) -> np.ndarray:
  if length % dtype.itemsize:
    raise _WireError(f'packed field {field!r} has {length} bytes, not a multiple of '
                     f'{dtype.itemsize}', pos)
  return np.frombuffer(buf, dtype, length // dtype.itemsize, pos)


def _decode_into(msg: Message, buf: bytes, pos: int, end: int, table_name: str) -> None:
  """Decodes the fields in ``buf[pos:end]`` into ``msg`` using table ``table_name``."""
  table = schema.MESSAGES[table_name]
  while pos < end:
    tag_pos = pos
    key, pos = _varint(buf, pos, end)
    number, wire_type = key >> 3, key & 7
    if number == 0:
      raise _WireError('invalid field number 0', tag_pos)
    if wire_type == 0:
      value, pos = _varint(buf, pos, end)
    elif wire_type == 2:
      length, pos = _varint(buf, pos, end)
      if pos + length > end:
        field = table.get(number)
        err = _WireError(f'field {field.name if field else number!r} claims {length} bytes but '
                         f'only {end - pos} remain', tag_pos)
        if field is not None and field.sub in _LAYER_MESSAGES:
          err.layer = _peek_layer_name(buf, pos, end, field.sub)
        raise err
      value, start, pos = None, pos, pos + length
    elif wire_type == 5 or wire_type == 1:
      start, pos = pos, pos + (4 if wire_type == 5 else 8)
      if pos > end:
        raise _WireError('truncated fixed-width value', tag_pos)
    else:
      raise _WireError(f'invalid wire type {wire_type} (field {number})', tag_pos)
    field = table.get(number)
    if field is None:
      continue  # unknown field (e.g. a fork's extra parameter): skipped by its wire type
    kind, name = field.kind, field.name
    if kind in _VARINT_KINDS:
      if wire_type == 0:
        msg.add(name, _convert_varint(kind, value))
      elif wire_type == 2:  # packed repeated varints
        p = start
        while p < pos:
          v, p = _varint(buf, p, pos)
          msg.add(name, _convert_varint(kind, v))
    elif kind == 'floats' or kind == 'doubles':
      dtype = _F32 if kind == 'floats' else _F64
      if wire_type == 2:
        msg.add(name, _array(buf, start, pos - start, dtype, name))
      elif wire_type == (5 if kind == 'floats' else 1):  # unpacked: one element per record
        msg.add(name, np.frombuffer(buf, dtype, 1, start))
    elif kind == 'float' or kind == 'double':
      single = kind == 'float'
      if wire_type == (5 if single else 1):
        msg.add(name, (_unpack_f32 if single else _unpack_f64)(buf, start)[0])
      elif wire_type == 2:  # packed repeated floats (e.g. EltwiseParameter.coeff)
        for v in _array(buf, start, pos - start, _F32 if single else _F64, name).tolist():
          msg.add(name, v)
    elif wire_type != 2 or kind == 'skip':
      continue
    elif kind == 'message':
      if field.sub is None:
        continue  # opaque (fillers, ParamSpec, transform_param): never interpreted
      sub = Message()
      try:
        _decode_into(sub, buf, start, pos, field.sub)
      except _WireError as err:
        if err.layer is None and field.sub in _LAYER_MESSAGES:
          err.layer = _layer_name(sub)
        raise
      msg.add(name, sub)
    elif kind == 'string':
      try:
        msg.add(name, bytes(buf[start:pos]).decode('utf-8'))
      except UnicodeDecodeError:
        raise _WireError(f'string field {name!r} is not valid UTF-8', start) from None
    elif kind == 'bytes':
      msg.add(name, bytes(buf[start:pos]))


def _layer_name(layer: Message) -> str | None:
  name = layer.get('name')
  if name is None and isinstance(layer.get('layer'), Message):  # V0 inside V1
    name = layer.get('layer').get('name')
  return name


def _peek_layer_name(buf: bytes, pos: int, end: int, table_name: str) -> str | None:
  """Best effort: the name of a layer whose record is cut off by the end of the data."""
  table = schema.MESSAGES[table_name]
  try:
    while pos < end:
      key, pos = _varint(buf, pos, end)
      number, wire_type = key >> 3, key & 7
      if wire_type != 2:
        return None  # names come first in every layer message Caffe writes
      length, pos = _varint(buf, pos, end)
      field = table.get(number)
      if field is not None and field.name == 'name' and pos + length <= end:
        return bytes(buf[pos:pos + length]).decode('utf-8')
      if field is not None and field.name == 'layer':  # V0 layer inside a V1 entry
        return _peek_layer_name(buf, pos, min(end, pos + length), 'V0LayerParameter')
      pos += length
  except (_WireError, UnicodeDecodeError):
    pass
  return None


def decode(data: bytes | bytearray | memoryview, message: str, filename: str,
           what: str = 'caffemodel') -> Message:
  """Decodes a serialized message of table ``message`` (e.g. "NetParameter").

  Args:
    data: the serialized bytes. Float arrays in the result are views into ``data``.
    message: a table name in :data:`schema.MESSAGES`.
    filename: used in error messages.
    what: how to call the file in error messages.

  Returns:
    The decoded :class:`Message`.

  Raises:
    CaffeFormatError: naming the file (and the layer being decoded, when known).
  """
  buf = data if isinstance(data, bytes) else bytes(data)
  msg = Message()
  try:
    _decode_into(msg, buf, 0, len(buf), message)
  except _WireError as err:
    where = f' in layer {err.layer!r}' if err.layer else ''
    hint = ''
    if _looks_like_text(buf):
      hint = ' (the file looks like text: is it a prototxt?)'
    raise CaffeFormatError(f'{filename}: not a valid {what} ({message}): {err.what} at byte '
                           f'{err.offset}{where}{hint}') from None
  return msg


def _looks_like_text(buf: bytes) -> bool:
  head = buf[:512]
  return bool(head) and all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def concat_floats(chunks: list[Any]) -> np.ndarray:
  """Joins the float32/float64 chunks of a ``floats``/``doubles`` field into one float32 array.

  The result is a fresh, aligned, writable array that no longer refers to the file's bytes.
  """
  if not chunks:
    return np.zeros((0,), np.float32)
  if len(chunks) == 1:
    return chunks[0].astype(np.float32, copy=True)
  return np.concatenate(chunks).astype(np.float32, copy=False)
