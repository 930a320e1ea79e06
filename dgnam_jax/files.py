"""Files a run leaves behind, written safely: atomic text/npy writes, content hashes, provenance.

Every file is written to a '.tmp-*' sibling and renamed, so a killed run leaves either the old
file or the new one; :func:`cleanup_temp_files` removes the leftovers on restart. Nothing here
knows about sweeps: training, conversion and sweeps all record what produced them through
:func:`provenance`.
"""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from dgnam_jax import images

_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'numpy', 'pillow')


def atomic_write_text(path: str, text: str) -> str:
  """Writes UTF-8 text atomically (parent directories are created). Returns ``path``."""
  with images.atomic_path(path) as tmp:
    with open(tmp, 'w', encoding='utf-8', newline='') as f:
      f.write(text)
  return path


def atomic_save_npy(path: str, array) -> str:
  """Saves one array as .npy atomically, never pickled (loads with allow_pickle=False)."""
  with images.atomic_path(path, '.npy') as tmp:
    # A file object, not a name: np.save would append '.npy' to a name lacking it.
    with open(tmp, 'wb') as f:
      np.save(f, np.asarray(array), allow_pickle=False)
  return path


def atomic_save_npz(path: str, arrays: Mapping[str, np.ndarray]) -> str:
  """Saves named arrays as one .npz atomically (object arrays are refused, never pickled)."""
  arrays = {k: np.asarray(v) for k, v in arrays.items()}
  for k, v in arrays.items():
    if v.dtype == object or k in ('file', 'allow_pickle'):
      raise ValueError(f'{path}: array {k!r} cannot be saved without pickling or clashes with '
                       'np.savez\'s own arguments')
  with images.atomic_path(path, '.npz') as tmp:
    with open(tmp, 'wb') as f:
      np.savez(f, **arrays)
  return path


def cleanup_temp_files(out_dir: str) -> int:
  """Removes leftover '.tmp-*' files anywhere under ``out_dir`` (from a killed run).

  Call it only when no other process is writing into ``out_dir``.

  Returns:
    How many files were removed.
  """
  removed = 0
  for root, _, files in os.walk(out_dir):
    for name in files:
      if name.startswith(images.TEMP_PREFIX):
        os.remove(os.path.join(root, name))
        removed += 1
  return removed


def relative_path(path: str) -> str:
  """``path`` relative to the working directory, with '/' separators (never absolute).

  Provenance records where an input was as the user named it, relative, plus its content hash:
  a committed record then shows no path of the machine that wrote it.
  """
  try:
    rel = os.path.relpath(os.path.abspath(path))
  except ValueError:  # another drive (Windows): keep the last components only
    rel = os.path.join(*os.path.normpath(path).split(os.sep)[-2:])
  return rel.replace(os.sep, '/')


def sha256_file(path: str) -> str:
  """Hex sha256 of a file, read in 16 MiB blocks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for block in iter(lambda: f.read(1 << 24), b''):
      digest.update(block)
  return digest.hexdigest()


def checkpoint_hashes(path: str) -> dict:
  """sha256 of dgnam.json and one combined sha256 over (relative path, file hash) of params/.

  A ``registry:<net>`` name is recorded as given (it names the net on every machine); its cached
  conversion is what gets hashed.
  """
  shown = path
  if path.startswith('registry:'):
    from dgnam_jax.nets.checkpoint import resolve  # noqa: PLC0415 (files is below nets)
    path = resolve(path)
  else:
    shown = relative_path(path)
  params = os.path.join(path, 'params')
  if not os.path.isdir(params):
    raise FileNotFoundError(f'{path} has no params/ directory')
  files = sorted(os.path.relpath(os.path.join(root, name), params).replace(os.sep, '/')
                 for root, _, names in os.walk(params) for name in names)
  combined = hashlib.sha256()
  total = 0
  for rel in files:
    full = os.path.join(params, rel)
    combined.update(f'{rel}\0{sha256_file(full)}\n'.encode())
    total += os.path.getsize(full)
  return {'path': shown,
          'dgnam_json_sha256': sha256_file(os.path.join(path, 'dgnam.json')),
          'params_sha256': combined.hexdigest(), 'params_files': len(files),
          'params_bytes': total}


def provenance(argv: Sequence[str], checkpoints: Mapping[str, str], dtype: str) -> dict:
  """What produced a run: command line, checkpoint hashes, versions, devices, dtype, time.

  Args:
    argv: the command line (usually sys.argv).
    checkpoints: role -> checkpoint directory (e.g. {'generator': ..., 'classifier': ...}).
    dtype: the compute dtype name.

  Returns:
    A JSON-serialisable dict.
  """
  import jax  # pylint: disable=g-import-not-at-top; only this function needs the backend.
  from dgnam_jax import __version__  # pylint: disable=g-import-not-at-top; avoids an import cycle.

  versions = {}
  for package in _PACKAGES:
    try:
      versions[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      versions[package] = None
  versions['dgnam_jax'] = __version__
  devices = jax.devices()
  return {
      'argv': list(argv),
      'checkpoints': {role: checkpoint_hashes(p) for role, p in checkpoints.items()},
      'versions': versions,
      'devices': {'platform': devices[0].platform, 'device_kind': devices[0].device_kind,
                  'count': len(devices)},
      'dtype': str(dtype),
      'python': sys.version.split()[0],
      'python_implementation': platform.python_implementation(),
      'time_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
  }
