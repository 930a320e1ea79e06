"""Reads PyTorch checkpoints (``torch.save`` files) into numpy without executing pickled code.

A ``.pth`` file is a pickle, and ``torch.load`` (before ``weights_only``) runs whatever callable
the pickle names. This reader never does: every global the pickle refers to is checked against a
short allow-list *before* unpickling (by scanning the opcodes with :mod:`pickletools`, which
executes nothing), and the unpickler itself resolves only those names, to local stand-ins that
rebuild tensors as numpy arrays. ``torch`` is not imported.

Both on-disk formats are read:

- **legacy** (before PyTorch 1.6): concatenated pickles (magic number, protocol, system info,
  the object, the list of storage keys), then each storage as a little-endian int64 element count
  followed by its raw bytes;
- **zip** (PyTorch 1.6 and later): ``<archive>/data.pkl`` plus one raw file per storage
  (``<archive>/data/<key>``) and, since PyTorch 2.1, ``<archive>/byteorder``.

Anything else - another global, a truncated file, a storage shorter than its tensors - raises
:class:`TorchFormatError` naming the file and the state-dict key.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import pickletools
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
MAX_PICKLE_BYTES = 64 << 20  # a state dict's pickle is metadata only; weights live elsewhere

# torch.<X>Storage -> numpy dtype (little-endian; the byte order is applied when reading).
STORAGE_DTYPES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


class TorchFormatError(ValueError):
  """A PyTorch checkpoint that is malformed, truncated or refers to a forbidden global."""


MAX_DIMS = 8


class _Frozen:
  """Base of the stand-ins the unpickler hands out: no ``__dict__`` and no ``__setstate__``
  that accepts anything, so a pickle's BUILD opcode cannot rewrite them (they are shared by
  every load in the process)."""
  __slots__ = ()

  def __setstate__(self, state):
    raise TypeError('the pickle tries to set the state of a tensor, storage or function')


class _StorageType(_Frozen):
  """Stand-in for ``torch.<X>Storage``: carries only the element dtype."""
  __slots__ = ('name', 'dtype')

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(STORAGE_DTYPES[name])


class _Storage(_Frozen):
  """A storage declared by the pickle; its bytes are attached later."""
  __slots__ = ('key', 'dtype', 'numel', 'data')

  def __init__(self, key: str, dtype: np.dtype, numel: int):
    self.key, self.dtype, self.numel = key, dtype, numel
    self.data: np.ndarray | None = None


class _TensorRef(_Frozen):
  """What ``_rebuild_tensor_v2`` described: a strided view of a storage."""
  __slots__ = ('storage', 'offset', 'size', 'stride')

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _int_tuple(value, what: str) -> tuple[int, ...]:
  if not isinstance(value, tuple) or len(value) > MAX_DIMS or not all(
      type(v) is int and 0 <= v < 2**40 for v in value):  # noqa: E721 (bool is not a size)
    raise TypeError(f'{what} must be a tuple of at most {MAX_DIMS} non-negative ints')
  return value


class _RebuildTensor(_Frozen):
  """Stand-in for ``torch._utils._rebuild_tensor_v2``: records the view, checks its fields."""
  __slots__ = ()

  def __call__(self, storage, storage_offset, size, stride, requires_grad=False,
               backward_hooks=None, metadata=None):
    del requires_grad, backward_hooks, metadata
    if not isinstance(storage, _Storage):
      raise TypeError('a tensor whose storage is not a persistent storage')
    if type(storage_offset) is not int or storage_offset < 0:  # noqa: E721
      raise TypeError('a tensor offset must be a non-negative int')
    size, stride = _int_tuple(size, 'size'), _int_tuple(stride, 'stride')
    if len(size) != len(stride):
      raise TypeError(f'size {size} and stride {stride} differ in length')
    return _TensorRef(storage, storage_offset, size, stride)


class _RebuildParameter(_Frozen):
  """Stand-in for ``torch._utils._rebuild_parameter``: the parameter's tensor."""
  __slots__ = ()

  def __call__(self, data, requires_grad=False, backward_hooks=None):
    del requires_grad, backward_hooks
    if not isinstance(data, _TensorRef):
      raise TypeError('a parameter that is not a tensor')
    return data


class _StateDict(collections.OrderedDict):
  """``collections.OrderedDict`` as the unpickler builds it: BUILD state (PyTorch's
  ``_metadata``) is accepted and dropped."""

  def __setstate__(self, state):
    del state


_ALLOWED = {
    ('collections', 'OrderedDict'): _StateDict,
    ('torch._utils', '_rebuild_tensor_v2'): _RebuildTensor(),
    ('torch._utils', '_rebuild_parameter'): _RebuildParameter(),
    **{('torch', name): _StorageType(name) for name in STORAGE_DTYPES},
}


def _check_globals(data: bytes, where: str) -> None:
  """Refuses a pickle that names any global outside the allow-list, without running it.

  Simulates just enough of the pickle machine (string pushes and the memo) to know the module
  and name of every ``GLOBAL`` / ``STACK_GLOBAL``; a name computed any other way is refused. The
  error names the last string key read before the global, so the user can find the entry.
  """
  memo: dict[int, str | None] = {}
  recent: list[str | None] = [None, None]  # values of the last two pushes (None: not a string)
  last_key = None
  try:
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
      name = op.name
      if name in ('GLOBAL', 'INST'):
        module, attr = arg.split(' ', 1)
      elif name == 'STACK_GLOBAL':
        module, attr = recent
        if module is None or attr is None:
          raise TorchFormatError(f'{where}: refuses a global whose name is computed'
                                 f'{_near(last_key)}')
      elif name in ('EXT1', 'EXT2', 'EXT4'):
        raise TorchFormatError(f'{where}: refuses the copyreg extension code {arg}'
                               f'{_near(last_key)}')
      else:
        if name in ('PUT', 'BINPUT', 'LONG_BINPUT'):
          memo[arg] = recent[-1]
        elif name == 'MEMOIZE':
          memo[len(memo)] = recent[-1]
        elif name in ('GET', 'BINGET', 'LONG_BINGET'):
          recent = [recent[-1], memo.get(arg)]
        elif isinstance(arg, str) and ('UNICODE' in name or 'STRING' in name):
          recent = [recent[-1], arg]
          if arg not in ('storage', 'cpu') and not arg.isdigit():
            last_key = arg
        else:
          recent = [recent[-1], None]
        continue
      if (module, attr) not in _ALLOWED:
        raise TorchFormatError(f'{where}: refuses to load the global {module}.{attr}'
                               f'{_near(last_key)}: only tensors, storages and OrderedDict '
                               'are allowed (nothing in the file is executed)')
      recent = [recent[-1], None]
  except TorchFormatError:
    raise
  except Exception as e:  # pickletools raises ValueError on a truncated or corrupt stream
    raise TorchFormatError(f'{where}: not a readable pickle ({e}){_near(last_key)}') from None


def _near(key: str | None) -> str:
  return f' (after key {key!r})' if key else ''


class _Unpickler(pickle.Unpickler):
  """Resolves only allow-listed globals; storages come from ``storages`` by persistent id."""

  def __init__(self, data: bytes, where: str, storages: dict[str, _Storage] | None,
               numel_is_bytes: bool = False):
    super().__init__(io.BytesIO(data))
    self.where, self.storages, self.numel_is_bytes = where, storages, numel_is_bytes

  def find_class(self, module, name):
    if (module, name) in _ALLOWED:
      return _ALLOWED[(module, name)]
    raise TorchFormatError(f'{self.where}: refuses to load the global {module}.{name}')

  def persistent_load(self, pid):
    if self.storages is None:
      raise TorchFormatError(f'{self.where}: unexpected persistent id in a header pickle')
    if (not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != 'storage'
        or not isinstance(pid[1], _StorageType)):
      raise TorchFormatError(f'{self.where}: unsupported persistent id {pid!r:.80}')
    _, stype, key, _location, numel = pid[:5]
    if len(pid) > 5 and pid[5] is not None:
      raise TorchFormatError(f'{self.where}: storage {key!r} is a legacy storage view; '
                             'unsupported')
    if type(numel) is not int or not 0 <= numel < 2**40:  # noqa: E721
      raise TorchFormatError(f'{self.where}: storage {key!r} declares {numel!r} elements')
    key = str(key)
    if key not in self.storages:
      self.storages[key] = _Storage(key, stype.dtype, numel)
    elif (self.storages[key].dtype, self.storages[key].numel) != (stype.dtype, numel):
      raise TorchFormatError(f'{self.where}: storage {key!r} is declared twice, differently')
    return self.storages[key]


def _unpickle(data: bytes, where: str, storages=None):
  _check_globals(data, where)
  try:
    return _Unpickler(data, where, storages).load()
  except TorchFormatError:
    raise
  except Exception as e:
    raise TorchFormatError(f'{where}: could not rebuild the pickled object ({e})') from None


def _split_pickles(f, where: str, count: int) -> list[bytes]:
  """Reads ``count`` consecutive pickles from a file object, each up to its STOP opcode."""
  out = []
  for i in range(count):
    start = f.tell()
    try:
      for op, _, pos in pickletools.genops(f):
        if op.name == 'STOP':
          break
        if pos - start > MAX_PICKLE_BYTES:
          raise TorchFormatError(f'{where}: pickle {i} is larger than {MAX_PICKLE_BYTES} bytes')
    except TorchFormatError:
      raise
    except Exception as e:
      raise TorchFormatError(f'{where}: truncated or corrupt pickle {i} of the legacy format '
                             f'({e})') from None
    end = f.tell()
    f.seek(start)
    out.append(f.read(end - start))
  return out


def _read_legacy(path: str) -> tuple[Any, dict[str, _Storage]]:
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    magic, protocol, sys_info, main, keys = _split_pickles(f, path, 5)
    if _unpickle(magic, path) != LEGACY_MAGIC:
      raise TorchFormatError(f'{path}: not a PyTorch checkpoint (wrong magic number)')
    if _unpickle(protocol, path) != LEGACY_PROTOCOL:
      raise TorchFormatError(f'{path}: unsupported legacy protocol version')
    info = _unpickle(sys_info, path)
    if not isinstance(info, dict) or not info.get('little_endian', False):
      raise TorchFormatError(f'{path}: only little-endian legacy checkpoints are supported')
    storages: dict[str, _Storage] = {}
    obj = _unpickle(main, path, storages)
    order = _unpickle(keys, path)
    if not isinstance(order, list) or sorted(map(str, order)) != sorted(storages):
      raise TorchFormatError(f'{path}: the storage key list does not match the tensors')
    for key in map(str, order):
      s = storages[key]
      head = f.read(8)
      if len(head) < 8:
        raise TorchFormatError(f'{path}: truncated: storage {key} is missing')
      (numel,) = struct.unpack('<q', head)
      left = size - f.tell()
      if numel < 0 or numel * s.dtype.itemsize > left:
        raise TorchFormatError(f'{path}: truncated or corrupt: storage {key} declares {numel} '
                               f'elements, {left} bytes are left')
      if numel != s.numel:
        raise TorchFormatError(f'{path}: storage {key} holds {numel} elements, the pickle '
                               f'declares {s.numel}')
      raw = f.read(numel * s.dtype.itemsize)
      if len(raw) < numel * s.dtype.itemsize:
        raise TorchFormatError(f'{path}: truncated: storage {key} has {len(raw)} of '
                               f'{numel * s.dtype.itemsize} bytes')
      s.data = np.frombuffer(raw, s.dtype.newbyteorder('<'))
  return obj, storages


def _read_zip(path: str) -> tuple[Any, dict[str, _Storage]]:
  try:
    zf = zipfile.ZipFile(path)
  except (zipfile.BadZipFile, OSError) as e:
    raise TorchFormatError(f'{path}: truncated or corrupt zip checkpoint ({e})') from None
  with zf:
    names = zf.namelist()
    pkls = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pkls) != 1:
      raise TorchFormatError(f'{path}: a zip checkpoint needs exactly one <archive>/data.pkl')
    prefix = pkls[0][:-len('data.pkl')]
    order = '<'
    if prefix + 'byteorder' in names:
      text = zf.read(prefix + 'byteorder').decode('ascii', 'replace').strip()
      if text not in ('little', 'big'):
        raise TorchFormatError(f'{path}: unknown byteorder {text!r}')
      order = '<' if text == 'little' else '>'
    try:
      if zf.getinfo(pkls[0]).file_size > MAX_PICKLE_BYTES:
        raise TorchFormatError(f'{path}: data.pkl is larger than {MAX_PICKLE_BYTES} bytes')
      storages: dict[str, _Storage] = {}
      obj = _unpickle(zf.read(pkls[0]), path, storages)
      for key, s in storages.items():
        name = f'{prefix}data/{key}'
        if name not in names:
          raise TorchFormatError(f'{path}: storage {key} is missing ({name})')
        want = s.numel * s.dtype.itemsize
        if zf.getinfo(name).file_size != want:  # checked before reading: no zip bombs
          raise TorchFormatError(f'{path}: storage {key} has {zf.getinfo(name).file_size} '
                                 f'bytes, its tensors declare {want}')
        raw = zf.read(name)
        if len(raw) != want:
          raise TorchFormatError(f'{path}: truncated: storage {key} has {len(raw)} of {want} '
                                 'bytes')
        s.data = np.frombuffer(raw, s.dtype.newbyteorder(order))
    except (zipfile.BadZipFile, EOFError, OSError, zlib_error()) as e:
      raise TorchFormatError(f'{path}: truncated or corrupt zip checkpoint ({e})') from None
  return obj, storages


def zlib_error():
  import zlib  # noqa: PLC0415 (only for its exception type)
  return zlib.error


def _materialize(ref: _TensorRef, where: str, key: str) -> np.ndarray:
  s = ref.storage
  size, stride = ref.size, ref.stride
  count = math.prod(size)
  if count == 0:
    return np.zeros(size, s.dtype)
  extent = ref.offset + sum((n - 1) * st for n, st in zip(size, stride)) + 1
  # A view never has more elements than its storage here: state dicts hold no expanded (stride
  # 0) tensors, and the bound stops a small file from asking for a huge copy.
  if extent > s.numel or count > s.numel or s.data is None:
    raise TorchFormatError(f'{where}: key {key!r}: tensor of size {size} (stride {stride}, '
                           f'offset {ref.offset}) does not fit its storage of {s.numel}')
  item = s.data.dtype.itemsize
  view = np.lib.stride_tricks.as_strided(s.data[ref.offset:], shape=size,
                                         strides=tuple(st * item for st in stride),
                                         writeable=False)
  return np.ascontiguousarray(view).astype(s.dtype.newbyteorder('='), copy=False)


def load_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a PyTorch state dict (legacy or zip format) as ``{key: numpy array}``.

  Accepts a plain state dict or a dict holding one under ``'state_dict'`` / ``'model'``.
  Nothing in the file is executed; see the module docstring.

  Raises:
    TorchFormatError: naming the file (and key) for anything malformed, truncated or forbidden.
  """
  if not os.path.isfile(path):
    raise TorchFormatError(f'{path}: no such file')
  obj, _ = _read_zip(path) if zipfile.is_zipfile(path) else _read_legacy(path)
  if isinstance(obj, Mapping):
    for wrapper in ('state_dict', 'model'):
      if isinstance(obj.get(wrapper), Mapping):
        obj = obj[wrapper]
  if not isinstance(obj, Mapping) or not obj:
    raise TorchFormatError(f'{path}: holds {type(obj).__name__}, not a state dict')
  out = {}
  for key, value in obj.items():
    if not isinstance(key, str) or not isinstance(value, _TensorRef):
      raise TorchFormatError(f'{path}: key {key!r} is not a tensor')
    out[key] = _materialize(value, path, key)
  return out
