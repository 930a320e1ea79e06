"""Writes PyTorch checkpoint files (legacy and zip formats) without torch, for tests.

The pickles name the same globals ``torch.save`` writes (``torch._utils._rebuild_tensor_v2``,
``torch.FloatStorage``, ``collections.OrderedDict``); ``Global`` lets a test name any other global,
which is how the malicious files are made.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np

TYPE_NAMES = {np.dtype(np.float32): 'FloatStorage', np.dtype(np.float64): 'DoubleStorage',
              np.dtype(np.int64): 'LongStorage', np.dtype(np.float16): 'HalfStorage'}


class Global:
  """A reference to ``module.name`` pickled as a GLOBAL opcode (the module need not exist)."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle's save_reduce wants a callable
    raise AssertionError('never called')


class Storage:
  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, np.ascontiguousarray(array).reshape(-1)


class Tensor:
  """A tensor as torch pickles it: a view (offset, size, stride) of a storage."""

  def __init__(self, storage: Storage, offset: int, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

  def __reduce__(self):
    return (Global('torch._utils', '_rebuild_tensor_v2'),
            (self.storage, self.offset, self.size, self.stride, False, collections.OrderedDict()))


class Reduce:
  """An arbitrary ``callable(*args)`` in the pickle (what a malicious file does)."""

  def __init__(self, func: Global, args: tuple):
    self.func, self.args = func, args

  def __reduce__(self):
    return (self.func, self.args)


class _Pickler(pickle._Pickler):  # the pure-Python pickler lets save() be extended
  def __init__(self, f, protocol=2):
    super().__init__(f, protocol)

  def persistent_id(self, obj):
    if isinstance(obj, Storage):
      name = TYPE_NAMES[obj.array.dtype]
      return ('storage', Global('torch', name), obj.key, 'cpu', obj.array.size)
    return None

  def save(self, obj, save_persistent_id=True):
    if isinstance(obj, Global):
      self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
      return
    super().save(obj, save_persistent_id)


def dumps(obj, protocol=2) -> bytes:
  buf = io.BytesIO()
  _Pickler(buf, protocol).dump(obj)
  return buf.getvalue()


def tensors(state: dict[str, np.ndarray]) -> tuple[collections.OrderedDict, list[Storage]]:
  """A state dict of :class:`Tensor` s, one storage each (contiguous)."""
  out, storages = collections.OrderedDict(), []
  for i, (k, v) in enumerate(state.items()):
    v = np.asarray(v)
    s = Storage(str(1000 + i), v)
    storages.append(s)
    stride = tuple(int(x // v.itemsize) for x in np.ascontiguousarray(v).strides)
    out[k] = Tensor(s, 0, v.shape, stride)
  return out, storages


def legacy_bytes(obj, storages: list[Storage]) -> bytes:
  """The pre-1.6 format: magic, protocol, sys info, the object, storage keys, raw storages."""
  parts = [dumps(0x1950A86A20F9469CFC6C), dumps(1001),
           dumps({'protocol_version': 1001, 'little_endian': True,
                  'type_sizes': {'short': 2, 'int': 4, 'long': 8}}),
           dumps(obj), dumps([s.key for s in storages])]
  for s in storages:
    parts.append(struct.pack('<q', s.array.size) + s.array.astype(s.array.dtype.newbyteorder('<'))
                 .tobytes())
  return b''.join(parts)


def zip_bytes(obj, storages: list[Storage], archive: str = 'archive') -> bytes:
  """The zip format of PyTorch >= 1.6 (``data.pkl``, ``data/<key>``, ``byteorder``)."""
  buf = io.BytesIO()
  with zipfile.ZipFile(buf, 'w', zipfile.ZIP_STORED) as z:
    z.writestr(f'{archive}/data.pkl', dumps(obj))
    z.writestr(f'{archive}/byteorder', 'little')
    for s in storages:
      z.writestr(f'{archive}/data/{s.key}', s.array.tobytes())
    z.writestr(f'{archive}/version', '3\n')
  return buf.getvalue()


def write(path: str, state: dict[str, np.ndarray], fmt: str) -> str:
  obj, storages = tensors(state)
  with open(path, 'wb') as f:
    f.write(legacy_bytes(obj, storages) if fmt == 'legacy' else zip_bytes(obj, storages))
  return path


def mark(path: str) -> None:
  """What the crafted pickles call: leaves a file behind, so a test sees whether code ran."""
  with open(path, 'w') as f:
    f.write('code ran')
