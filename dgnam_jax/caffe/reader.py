"""Public readers for Caffe files: prototxt (V0/V1/V2 text), caffemodel, mean binaryproto."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator

import numpy as np

from dgnam_jax.caffe import normalize, schema, textformat, wire
from dgnam_jax.caffe.netdef import CaffeFormatError, NetDef
from dgnam_jax.caffe.textformat import Message

_LEGACY_DIMS = ('num', 'channels', 'height', 'width')


@dataclasses.dataclass(frozen=True, eq=False)
class CaffeLayerBlobs:
  """The learned blobs of one caffemodel layer.

  Iterating, ``len`` and indexing go to ``blobs``, so it can be used as a list of arrays.

  Attributes:
    type: the layer type as a V2 string ("Convolution"), also for V0/V1 files; for a V0 type
      without a V2 equivalent (e.g. "padding"), the V0 string.
    blobs: float32 arrays, shaped as stored: legacy 4-D (num, channels, height, width) when the
      file uses those fields (e.g. a bias as (1, 1, 1, N)), else ``shape.dim``.
  """
  type: str
  blobs: tuple[np.ndarray, ...]

  def __iter__(self) -> Iterator[np.ndarray]:
    return iter(self.blobs)

  def __len__(self) -> int:
    return len(self.blobs)

  def __getitem__(self, index: int) -> np.ndarray:
    return self.blobs[index]


def parse_prototxt(text: str, filename: str = '<string>') -> NetDef:
  """Parses a prototxt (V0, V1 or V2 text format) into the TEST-phase :class:`NetDef`.

  Args:
    text: the prototxt contents.
    filename: used in error messages.

  Raises:
    CaffeFormatError: on syntax errors (with line and column) and on nets this project cannot
      run, naming the file and the layer.
  """
  return normalize.normalize(textformat.parse(text, filename), filename)


def read_prototxt(path: str | os.PathLike) -> NetDef:
  """Reads a prototxt file; see :func:`parse_prototxt`."""
  filename = os.fspath(path)
  with open(filename, 'rb') as f:
    data = f.read()
  try:
    text = data.decode('utf-8')
  except UnicodeDecodeError:
    text = None
  if text is None or '\0' in text:
    raise CaffeFormatError(f'{filename}: not a text prototxt (binary data; a caffemodel is read '
                           'with read_caffemodel)')
  return parse_prototxt(text, filename)


def _read_binary(path: str | os.PathLike, what: str) -> tuple[str, bytes]:
  filename = os.fspath(path)
  with open(filename, 'rb') as f:
    data = f.read()
  if not data:
    raise CaffeFormatError(f'{filename}: empty file, not a {what}')
  return filename, data


def blob_array(blob: Message, where: str) -> np.ndarray:
  """A decoded BlobProto -> float32 array, shaped by Caffe's rule (legacy dims, else shape.dim).

  Raises:
    CaffeFormatError: (prefixed with ``where``) if the data length does not match the shape.
  """
  if any(d in blob for d in _LEGACY_DIMS):
    shape = tuple(int(blob.get(d, 0)) for d in _LEGACY_DIMS)
  else:
    shape_msg = blob.get('shape')
    shape = tuple(shape_msg.getall('dim')) if isinstance(shape_msg, Message) else ()
  if any(d < 0 for d in shape):
    raise CaffeFormatError(f'{where}: negative dimension in blob shape {shape}')
  chunks = blob.getall('double_data') or blob.getall('data')
  data = wire.concat_floats(chunks)
  if data.size != math.prod(shape):
    raise CaffeFormatError(f'{where}: {data.size} values for blob shape {shape} '
                           f'({math.prod(shape)} expected)')
  return data.reshape(shape)


def _layer_name_type(entry: Message, version: str) -> tuple[str, str, Message]:
  """(name, V2 type, message holding `blobs`) of one layer entry of any version."""
  if version == 'V2':
    return entry.get('name', ''), entry.get('type', ''), entry
  inner = entry.get('layer')
  if isinstance(inner, Message):  # V0 inside a V1 "layers" entry
    type0 = inner.get('type', '')
    v1 = schema.V0_TO_V1_TYPE.get(type0)
    return inner.get('name', ''), schema.V1_TO_V2_TYPE[v1] if v1 else type0, inner
  enum = schema.ENUMS['V1LayerType'].get(entry.get('type', 0), 'NONE')
  return entry.get('name', ''), schema.V1_TO_V2_TYPE.get(enum, ''), entry


def read_caffemodel(path: str | os.PathLike) -> dict[str, CaffeLayerBlobs]:
  """Reads the learned blobs of a binary caffemodel (V0, V1 or V2 NetParameter).

  Args:
    path: the ``.caffemodel`` file.

  Returns:
    Layer name -> :class:`CaffeLayerBlobs`, in file order. Every layer is listed, those without
    blobs with an empty tuple. If a name occurs twice, the later layer wins (as in Caffe's
    CopyTrainedLayersFrom) unless it has no blobs and the earlier one has.

  Raises:
    CaffeFormatError: naming the file (and the layer) when the file is empty, truncated, not a
      NetParameter, or holds a blob whose data does not match its shape.
  """
  filename, data = _read_binary(path, 'caffemodel')
  msg = wire.decode(data, 'NetParameter', filename)
  v2, v1 = msg.getall('layer'), msg.getall('layers')
  if not v2 and not v1:
    raise CaffeFormatError(f'{filename}: not a caffemodel: no layers found (is it a Caffe '
                           'NetParameter?)')
  if v2 and v1:
    raise CaffeFormatError(f'{filename}: the net mixes "layer" (V2) and "layers" (V1) entries')
  out: dict[str, CaffeLayerBlobs] = {}
  for entry in v2 or v1:
    name, layer_type, holder = _layer_name_type(entry, 'V2' if v2 else 'V1')
    blobs = tuple(blob_array(b, f'{filename}: layer {name!r} blob {k}')
                  for k, b in enumerate(holder.getall('blobs')))
    if name in out and out[name].blobs and not blobs:
      continue
    out[name] = CaffeLayerBlobs(layer_type, blobs)
  return out


def read_mean_binaryproto(path: str | os.PathLike) -> np.ndarray:
  """Reads a mean file (a serialized BlobProto) as a (C, H, W) float32 array.

  Accepts legacy dims with num = 1 and BlobShape dims of (1, C, H, W) or (C, H, W).

  Raises:
    CaffeFormatError: naming the file when it is not such a BlobProto.
  """
  filename, data = _read_binary(path, 'mean binaryproto')
  msg = wire.decode(data, 'BlobProto', filename, what='mean binaryproto')
  if 'data' not in msg and 'double_data' not in msg:
    raise CaffeFormatError(f'{filename}: not a mean binaryproto: no BlobProto data found')
  mean = blob_array(msg, filename)
  if mean.ndim == 4 and mean.shape[0] == 1:
    mean = mean[0]
  if mean.ndim != 3:
    raise CaffeFormatError(f'{filename}: a mean must be (C, H, W) or (1, C, H, W); got '
                           f'{mean.shape}')
  return mean
